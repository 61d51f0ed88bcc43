"""Where the student's waveform CNN spends its time, layer by layer (issue 26's front-end question).

    python benchmarks/cnn_profile.py [--seconds 10] [--repeats 5]

The default and the slim student (`shapes.student_config`, random weights: the cost does not depend on them), torch
fp32 eager on this CPU, one clip of `--seconds`. Each layer's time is the difference between running the model's own
time-major CNN (`time_major_conv_features`) through its first k and first k-1 layers (median of `--repeats`), beside
its multiply-accumulates per audio second (output frames x kernel x input channels x output channels); the last rows
give the whole CNN and the whole forward pass (CNN + projection + 2 transformer layers + CTC head), so the CNN's
share of the model is read from one run. The CPU is named.
"""

import argparse
from types import SimpleNamespace

import torch
from harness import cpu_line, median_seconds
from shapes import student_config

from modeling_distilxlsr import DistilXLSRForCTC
from modeling_distilxlsr.models.modeling_distilxlsr_parts import time_major_conv_features


@torch.no_grad()
def profile(slim: bool, seconds: float, repeats: int) -> list[tuple]:
    config = student_config(slim, vocab_size=40, pad_token_id=0)
    model = DistilXLSRForCTC(config).eval()
    encoder = model.distilxlsr.feature_extractor
    audio = torch.randn(1, int(seconds * 16000))
    rows, previous, samples = [], 0.0, audio.shape[1]
    for k, layer in enumerate(encoder.conv_layers, start=1):
        prefix = SimpleNamespace(conv_layers=encoder.conv_layers[:k])
        total = median_seconds(lambda prefix=prefix: time_major_conv_features(prefix, audio), repeats)
        kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
        samples = (samples - kernel) // stride + 1
        macs = samples * kernel * layer.conv.in_channels * layer.conv.out_channels / seconds
        rows.append((f"conv {k} ({layer.conv.in_channels}->{layer.conv.out_channels}, k{kernel} s{stride})",
                     max(total - previous, 0.0), macs, samples / seconds))  # fmt: skip
        previous = total
    whole = median_seconds(lambda: model(audio), repeats)
    cnn_macs = sum(row[2] for row in rows)
    rows.append(("whole CNN", previous, cnn_macs, None))
    rows.append(("whole forward pass (CNN, projection, transformer, CTC head)", whole, None, None))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(cpu_line(f"{args.seconds:g} s clip, batch 1, fp32 eager, median of {args.repeats}") + "\n")
    for slim in (False, True):
        rows = profile(slim, args.seconds, args.repeats)
        whole = rows[-1][1]
        print(f"### {'slim' if slim else 'default'} student\n")
        print("| layer | ms | share of the forward pass | GMAC per audio second | frames per second |")
        print("|---|---|---|---|---|")
        for name, seconds, macs, rate in rows:
            gmac = f"{macs / 1e9:.3f}" if macs is not None else "-"
            frames = f"{rate:.0f}" if rate is not None else "-"
            print(f"| {name} | {seconds * 1000:.1f} | {seconds / whole:.0%} | {gmac} | {frames} |")
        print()


if __name__ == "__main__":
    main()

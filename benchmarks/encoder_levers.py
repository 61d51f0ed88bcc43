"""What the two levers on the log-mel student's encoder buy at XLSR-53 shapes (issue 36, item 4): a shorter
positional convolution and a lower frame rate for the layers.

    python benchmarks/encoder_levers.py [--taps 128 32] [--strides 1 2] [--groups 16] [--clips 10 60] [--repeats 3]

bf16_profile.py found the log-mel student's 10 s forward pass 61% linear layers, 28% XLSR-53's positional
convolution (128 taps, 16 groups, 1024 wide) and 7% attention: all of it at 50 frames a second.
`train_distill.py --student_pos_conv TAPS GROUPS` shortens the convolution, `--student_encoder_stride N` runs the
layers (and the convolution) at 1/N of the frame rate. This script times the student's forward pass + greedy
decoding (`load_backend`, the path `transcribe.py` takes) for every `--taps` x `--strides`, on torch fp32 and, where
the CPU has it natively, bf16 autocast, on one clip of each `--clips` length, against whisper-tiny shapes on
CTranslate2 int8 (peers.py's row) in the same run. Random weights: the cost does not depend on them. The CER each
costs is measured on trained students (benchmarks/README.md, the mini-lab rows).
"""

import argparse
import os
import tempfile

import numpy as np
import torch
from harness import ISA_CAPS, cap_isa, cpu_line, write_results
from peers import time_ours, time_whisper, whisper_folder
from shapes import ctc_student_folder

from modeling_distilxlsr.inference.cpu_features import native_bf16


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taps", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2], help="encoder_stride values.")
    parser.add_argument("--groups", type=int, default=16, help="XLSR-53's 16; must divide the width (1024).")
    parser.add_argument("--clips", type=float, nargs="+", default=[10.0, 60.0], help="Clip lengths, seconds.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help="Cap the ISA of every engine that can be capped.")
    parser.add_argument(
        "--no_peer", action="store_true", help="Leave out whisper-tiny (benchmarks/requirements-peers)."
    )
    parser.add_argument("--out", default="benchmarks/results/encoder_levers.json")
    args = parser.parse_args()
    cap_isa(args.isa)
    torch.set_num_threads(args.threads)
    root = tempfile.mkdtemp(prefix="encoder_levers_")
    paths = ["torch-fp32", *(["torch-bf16"] if native_bf16() else [])]
    whisper = None if args.no_peer else whisper_folder(root, "tiny", "int8")
    folders = {
        (taps, stride): ctc_student_folder(
            os.path.join(root, f"taps{taps}-stride{stride}"),
            feature_frontend="log_mel",
            pos_conv=(taps, args.groups),
            encoder_stride=stride,
        )  # fmt: skip
        for stride in args.strides
        for taps in args.taps
    }
    rng = np.random.default_rng(0)
    rows = []
    for seconds in args.clips:
        clips = [(rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)]
        reference = time_whisper(whisper, clips, args.threads, args.repeats) if whisper else None
        for path in paths:
            for (taps, stride), folder in folders.items():
                wall = time_ours(folder, path, clips, args.repeats)
                rows.append({"seconds": seconds, "path": path, "taps": taps, "groups": args.groups, "stride": stride,
                             "wall_s": wall, "whisper_tiny_int8_s": reference})  # fmt: skip
                print(rows[-1], flush=True)
    header = cpu_line(f"1 clip, median of {args.repeats}; whisper-tiny shapes on CTranslate2 int8 as in peers.py")
    print(table(rows, header))
    write_results(args.out, {"header": header, "rows": rows})


def table(rows: list[dict], header: str) -> str:
    """Each row's seconds, its speed-up over the first row of the same path and clip (the first `--taps` and
    `--strides`: XLSR-53's 128 taps at the full rate), and its multiple of whisper-tiny int8's speed on that clip."""
    lines = [
        header,
        "",
        "| clip | path | taps | stride | s | speed-up | x whisper-tiny int8 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        first = next(r for r in rows if r["seconds"] == row["seconds"] and r["path"] == row["path"])
        lines.append(
            f"| {row['seconds']:g} s | {row['path']} | {row['taps']} | {row['stride']} | {row['wall_s']:.3f} | "
            f"{first['wall_s'] / row['wall_s']:.2f}x | {peer_multiple(row)} |"
        )
    return "\n".join(lines)


def peer_multiple(row: dict) -> str:
    peer = row["whisper_tiny_int8_s"]
    return f"{peer / row['wall_s']:.1f}x" if peer else "-"


if __name__ == "__main__":
    main()

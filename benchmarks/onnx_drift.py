"""What ONNX export and int8 quantisation cost in accuracy, on a fine-tuned CTC model and real (synthetic) speech.

    python benchmarks/onnx_drift.py MODEL_DIR [--test_data CORPUS/test] [--calibration_data CORPUS/dev]

Exports MODEL_DIR to ONNX fp32, dynamic int8 and static int8 (calibrated on `--calibration_data`), then prints, for
each, the cosine similarity of its logits to the fp32 torch model's and the CER/WER on `--test_data` with greedy
decoding, next to the torch model's own CER.
"""

import argparse
import os
import tempfile

import torch

from modeling_distilxlsr.audio.decode import load_audio, normalize
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.export.onnx_export import drift, export_onnx, load_for_export, quantize_onnx
from modeling_distilxlsr.inference.onnx_runtime import onnx_session, run_onnx
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import normalize_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--test_data", default=None)
    parser.add_argument("--calibration_data", default=None)
    args = parser.parse_args()
    from transformers import Wav2Vec2CTCTokenizer

    from modeling_distilxlsr.corpus.synthesis import default_corpus_split

    test_data = args.test_data or default_corpus_split("test")
    calibration = args.calibration_data or default_corpus_split("dev")
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(args.model_dir)
    utterances = find_utterances(test_data, SkipCounter(), need_text=True)
    waves = [normalize(load_audio(u.source)) for u in utterances]
    references = [normalize_text(u.text) for u in utterances]

    model = load_for_export(args.model_dir)
    folder = tempfile.mkdtemp()
    fp32 = export_onnx(args.model_dir, folder)
    variants = {
        "ONNX fp32": fp32,
        "ONNX int8 dynamic": quantize_onnx(fp32, os.path.join(folder, "dynamic.onnx"), "dynamic"),
        "ONNX int8 dynamic, CNN fp32": quantize_onnx(
            fp32, os.path.join(folder, "dynamic_nocnn.onnx"), "dynamic", skip_cnn=True
        ),
        "ONNX int8 static": quantize_onnx(fp32, os.path.join(folder, "static.onnx"), "static", calibration),
        "ONNX int8 static, CNN fp32": quantize_onnx(
            fp32, os.path.join(folder, "static_nocnn.onnx"), "static", calibration, skip_cnn=True
        ),
    }

    def cer_of(logits_list):
        hypotheses = [tokenizer.decode(logits.argmax(-1)) for logits in logits_list]
        rates = error_rates(references, hypotheses)
        return rates["cer"], rates["wer"]

    with torch.no_grad():
        torch_logits = [model(torch.from_numpy(w)[None]).logits[0].numpy() for w in waves]
    torch_cer, torch_wer = cer_of(torch_logits)
    lines = [
        f"model: {args.model_dir}; test: {test_data} ({len(waves)} utterances); calibration: {calibration}",
        "",
        "| variant | size (MB) | logits cosine to torch fp32 | CER | WER | CER change (points) |",
        "|---|---|---|---|---|---|",
        f"| torch fp32 | - | 1.00000 | {torch_cer:.4f} | {torch_wer:.4f} | 0.00 |",
    ]
    for name, path in variants.items():
        session = onnx_session(path)
        logits = [run_onnx(session, [w])[0] for w in waves]
        cer, wer = cer_of(logits)
        cosine = drift(args.model_dir, path, calibration)["cosine"]
        size = os.path.getsize(path) / 2**20
        lines.append(f"| {name} | {size:.1f} | {cosine:.5f} | {cer:.4f} | {wer:.4f} | {100 * (cer - torch_cer):+.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

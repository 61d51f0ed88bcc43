"""`python -m modeling_distilxlsr.export MODEL_DIR OUT_DIR` (`distilxlsr-export`): a DistilXLSR folder as a plain
wav2vec2 one (no remote code). ONNX: `python -m modeling_distilxlsr.export.onnx_export` (`distilxlsr-onnx`)."""

import argparse

from .wav2vec2 import export_as_wav2vec2


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export a DistilXLSR folder as a plain wav2vec2 one (no remote code).")
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    print(export_as_wav2vec2(args.model_dir, args.out_dir))


if __name__ == "__main__":
    main()

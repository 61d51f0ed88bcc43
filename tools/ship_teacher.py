"""Copies a trained mini-lab CTC teacher into the package as the shipped default teacher (`corpus/teacher_pt_br/`).

    python tools/ship_teacher.py TEACHER_DIR [--fp32]

The weights are stored in fp16 (half the size; a 1.75M-parameter model is 3.5 MB) and the config says float32, so
that every loader (transformers' `from_pretrained` with its default dtype, the pipeline, ours) gets float32 weights:
transformers 5 otherwise keeps a checkpoint's fp16 and would run it in fp16 on CPU. Only what inference and
distillation read is copied (config, weights, tokenizer, feature extractor), with the card.
"""

import argparse
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(REPO, "modeling_distilxlsr", "corpus", "teacher_pt_br")
KEEP = ("config.json", "vocab.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json",
        "processor_config.json", "added_tokens.json")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teacher")
    parser.add_argument("--fp32", action="store_true", help="Store float32 weights (twice the size).")
    args = parser.parse_args()
    os.makedirs(TARGET, exist_ok=True)
    for name in os.listdir(TARGET):
        if name != "README.md":
            os.remove(os.path.join(TARGET, name))
    for name in KEEP:
        if os.path.exists(os.path.join(args.teacher, name)):
            shutil.copy(os.path.join(args.teacher, name), os.path.join(TARGET, name))
    weights = load_file(os.path.join(args.teacher, "model.safetensors"))
    dtype = torch.float32 if args.fp32 else torch.float16
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, os.path.join(TARGET, "model.safetensors"), metadata={"format": "pt"})
    config_path = os.path.join(TARGET, "config.json")
    config = json.load(open(config_path))
    config["dtype"] = "float32"  # what loaders give: float32 weights from the fp16 file
    config["_name_or_path"] = "distilxlsr-teacher-pt-br-mini"
    json.dump(config, open(config_path, "w"), indent=2)
    size = os.path.getsize(os.path.join(TARGET, "model.safetensors")) / 1e6
    print(f"{TARGET}: {len(weights)} tensors, {size:.1f} MB ({'fp32' if args.fp32 else 'fp16'})")


if __name__ == "__main__":
    main()

"""`python -m modeling_distilxlsr.corpus OUT_DIR` (`distilxlsr-corpus`): synthesise the offline pt-BR speech corpus."""

import argparse
import os

from .synthesis import make_corpus


def main(argv=None):
    parser = argparse.ArgumentParser(description="Synthesise the offline pt-BR speech corpus.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--utterances_per_sentence", type=int, default=2, help="Train voices per train sentence.")
    parser.add_argument("--num_sentences", type=int, default=None, help="Use only this many sentences (all: 757).")
    parser.add_argument("--dev_sentences", type=int, default=60)
    parser.add_argument("--test_sentences", type=int, default=100)
    parser.add_argument(
        "--voices",
        choices=["fixed", "wide", "mixed"],
        default="fixed",
        help="fixed: 12 voices (the default corpus); wide: every espeak-ng variant (~100 timbres; test: 12 unseen); "
        "mixed: half the training utterances from each.",
    )
    args = parser.parse_args(argv)
    make_corpus(
        args.out_dir,
        seed=args.seed,
        utterances_per_sentence=args.utterances_per_sentence,
        num_sentences=args.num_sentences,
        dev_sentences=args.dev_sentences,
        test_sentences=args.test_sentences,
        voices=args.voices,
    )
    for split in ("train", "dev", "test"):
        with open(os.path.join(args.out_dir, split, "metadata.csv"), encoding="utf-8") as f:
            print(f"{split}: {sum(1 for _ in f) - 1} utterances")


if __name__ == "__main__":
    main()

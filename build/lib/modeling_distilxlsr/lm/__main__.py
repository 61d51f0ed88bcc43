"""N-gram language models for CTC decoding: build a KenLM model from Brazilian Portuguese text, attach it to an ASR
folder the transformers way, tune its weights on a dev set.

    python -m modeling_distilxlsr.lm build TEXT... --out LM_DIR [--order 4] [--prune 0 0 1] [--binary]
    python -m modeling_distilxlsr.lm attach ASR_DIR LM_DIR [--alpha 0.5] [--beta 1.0]
    python -m modeling_distilxlsr.lm tune ASR_DIR --eval_data DEV [TEST...] [--beam_width 32]

`build` normalises the text with the same `TextNormalizer` as the CTC labels (so LM words and CTC characters agree)
and estimates a modified Kneser-Ney model with KenLM's `lmplz`. `attach` writes a `Wav2Vec2ProcessorWithLM`
(`language_model/`, `alphabet.json`, processor config) into the ASR folder, so that `AutoProcessor` and
`pipeline("automatic-speech-recognition", model=ASR_DIR)` decode with beam search and the LM in a fresh process.
`build` and `attach` are in `build.py`, `tune` in `tune.py`; `distilxlsr-lm` is the same command.
"""

import argparse
import json
import logging
import sys

from ..audio.sources import ManifestError
from ..inference.decoding import DEFAULT_BEAM_WIDTH, LanguageModelError
from ..text.normalizer import TextNormalizer
from .build import attach_lm, build_lm
from .tune import tune_lm


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="Estimate a KenLM n-gram from text.")
    build.add_argument("texts", nargs="+", help="Plain text (one sentence per line), .gz, or CSV/TSV/JSONL.")
    build.add_argument("--out", required=True)
    build.add_argument("--order", type=int, default=4)
    build.add_argument("--prune", type=int, nargs="+", help="lmplz --prune thresholds, e.g. 0 0 1 (big corpora).")
    build.add_argument("--binary", action="store_true", help="Binarise (build_binary trie): smaller, faster load.")
    build.add_argument("--text_column", help="Column of a CSV/TSV/JSONL source (default: transcription/sentence/text).")
    build.add_argument("--digits", choices=["spell", "drop"], default="spell")
    build.add_argument("--ambiguous_numbers", choices=["drop", "keep"], default="drop")
    build.add_argument("--keep_apostrophe", action="store_true")
    attach = commands.add_parser("attach", help="Ship an LM inside an ASR folder (Wav2Vec2ProcessorWithLM).")
    attach.add_argument("asr_dir")
    attach.add_argument("lm_dir")
    attach.add_argument("--alpha", type=float, default=0.5, help="LM weight.")
    attach.add_argument("--beta", type=float, default=1.0, help="Word insertion bonus.")
    tune = commands.add_parser("tune", help="Grid-search alpha/beta on a dev set; store the best; report WER/CER.")
    tune.add_argument("asr_dir")
    tune.add_argument("--eval_data", nargs="+", required=True, help="The first set tunes; every set is reported.")
    tune.add_argument("--beam_width", type=int, default=None)
    tune.add_argument("--alphas", type=float, nargs="+", default=None)
    tune.add_argument("--betas", type=float, nargs="+", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            normalizer = TextNormalizer(args.digits, args.keep_apostrophe, args.ambiguous_numbers)
            info = build_lm(args.texts, args.out, args.order, args.prune, args.binary, normalizer, args.text_column)
            print(json.dumps({k: v for k, v in info.items() if k != "characters"}, indent=2, ensure_ascii=False))
        elif args.command == "attach":
            print(attach_lm(args.asr_dir, args.lm_dir, args.alpha, args.beta))
        else:
            report = tune_lm(
                args.asr_dir, args.eval_data, args.beam_width or DEFAULT_BEAM_WIDTH, args.alphas, args.betas
            )
            print(json.dumps(report, indent=2))
    except (LanguageModelError, ManifestError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()

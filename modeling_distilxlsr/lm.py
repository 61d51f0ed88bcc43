"""N-gram language models for CTC decoding: build a KenLM model from Brazilian Portuguese text, attach it to an ASR
folder the transformers way, tune its weights on a dev set.

    python -m modeling_distilxlsr.lm build TEXT... --out LM_DIR [--order 4] [--prune 0 0 1] [--binary]
    python -m modeling_distilxlsr.lm attach ASR_DIR LM_DIR [--alpha 0.5] [--beta 1.0]
    python -m modeling_distilxlsr.lm tune ASR_DIR --eval_data DEV [TEST...] [--beam_width 32]

`build` normalises the text with the same `TextNormalizer` as the CTC labels (so LM words and CTC characters agree)
and estimates a modified Kneser-Ney model with KenLM's `lmplz`. `attach` writes a `Wav2Vec2ProcessorWithLM`
(`language_model/`, `alphabet.json`, processor config) into the ASR folder, so that `AutoProcessor` and
`pipeline("automatic-speech-recognition", model=ASR_DIR)` decode with beam search and the LM in a fresh process.
`tune` is in `lm_tune.py`.
"""

import argparse
import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

from .kenlm_tools import find_binary
from .sources import TEXT_COLUMNS, ManifestError, _pick_column, decode_utf8_lines, read_manifest_rows
from .text import APOSTROPHE, TextNormalizer

logger = logging.getLogger(__name__)

LM_INFO_FILE = "lm_info.json"
UNIGRAMS_FILE = "unigrams.txt"


class LanguageModelError(ValueError):
    pass


def read_text_lines(path: str, text_column: str | None = None):
    """Sentences of a text source: plain text (one per line), gzip'ed text, or a CSV/TSV/JSONL column (`text_column`,
    else the first of transcription/sentence/text, as for manifests)."""
    lower = path.lower().removesuffix(".gz")
    if lower.endswith((".csv", ".tsv", ".jsonl", ".json")):
        if path.endswith(".gz"):
            raise LanguageModelError(f"{path}: gzip'ed CSV/TSV/JSONL is not supported; decompress it first.")
        rows = read_manifest_rows(path)
        if not rows:
            return
        column = text_column or _pick_column(rows[0], TEXT_COLUMNS, path, "text", required=True)
        if column not in rows[0]:
            raise ManifestError(f"{path}: no column {column!r}; columns are {list(rows[0])}.")
        for row in rows:
            yield str(row.get(column) or "")
        return
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:  # streamed line by line: an LM corpus can be larger than memory
        yield from decode_utf8_lines(path, f)


def normalized_sentences(paths, normalizer: TextNormalizer, stats: Counter, text_column: str | None = None):
    """Normalised, non-empty sentences of every source; what was read, kept and dropped is counted in `stats`."""
    for path in paths:
        for line in read_text_lines(path, text_column):
            stats["lines"] += 1
            if not line.strip():
                stats["empty lines"] += 1
                continue
            text = normalizer(line)
            if not text:
                stats[f"dropped: {normalizer.last_drop_reason or 'nothing left after normalisation'}"] += 1
                continue
            stats["sentences"] += 1
            if stats["sentences"] % 100_000 == 0:
                logger.info("%d sentences normalised", stats["sentences"])
            yield text


def arpa_ngram_counts(arpa_path: str) -> dict[int, int]:
    """`ngram N=count` lines of an ARPA header; a file without them is not an ARPA model."""
    counts = {}
    with open(arpa_path, encoding="utf-8") as f:
        for line in f:
            if match := re.match(r"ngram (\d+)=(\d+)", line.strip()):
                counts[int(match.group(1))] = int(match.group(2))
            elif line.startswith("\\1-grams:"):
                break
    if not counts:
        raise LanguageModelError(f"{arpa_path}: no ARPA header (`\\data\\` with `ngram N=count` lines).")
    return counts


def run_lmplz(corpus: str, arpa: str, order: int, prune: list[int] | None, work_dir: str) -> None:
    command = [find_binary("lmplz"), "-o", str(order), "-S", "20%", "-T", work_dir, "--text", corpus]
    command += ["--arpa", arpa] + (["--prune", *map(str, prune)] if prune else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 and "discount" in result.stderr.lower():
        # Tiny corpora lack the counts-of-counts modified Kneser-Ney needs; KenLM's documented fallback.
        logger.warning("lmplz: too little text for estimated discounts, using --discount_fallback")
        result = subprocess.run([*command, "--discount_fallback"], capture_output=True, text=True)
    if result.returncode != 0:
        raise LanguageModelError(f"lmplz failed:\n{result.stderr[-3000:]}")


def build_lm(
    paths: list[str],
    out_dir: str,
    order: int = 4,
    prune: list[int] | None = None,
    binary: bool = False,
    normalizer: TextNormalizer | None = None,
    text_column: str | None = None,
) -> dict:
    """Writes `lm.arpa` (or `lm.bin` with `binary`), `unigrams.txt` and `lm_info.json` to `out_dir`; returns the
    info: sources, sentences, words, vocabulary, characters, n-gram counts, normaliser settings, what was dropped."""
    normalizer = normalizer or TextNormalizer()
    if order < 1:
        raise LanguageModelError(f"--order must be >= 1, got {order}.")
    os.makedirs(out_dir, exist_ok=True)
    stats, words = Counter(), Counter()
    with tempfile.TemporaryDirectory(dir=out_dir) as work_dir:
        corpus = os.path.join(work_dir, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            for sentence in normalized_sentences(paths, normalizer, stats, text_column):
                f.write(sentence + "\n")
                words.update(sentence.split())
        if not stats["sentences"]:
            raise LanguageModelError(
                f"No text left to build a language model from {', '.join(paths)} "
                f"({stats['lines']} lines read; {normalizer.report()})."
            )
        logger.info("Estimating a %d-gram model on %d sentences with KenLM", order, stats["sentences"])
        arpa = os.path.join(out_dir, "lm.arpa")
        run_lmplz(corpus, arpa, order, prune, work_dir)
    counts = arpa_ngram_counts(arpa)
    model_file = "lm.arpa"
    if binary:
        subprocess.run([find_binary("build_binary"), "trie", arpa, os.path.join(out_dir, "lm.bin")], check=True)
        os.remove(arpa)
        model_file = "lm.bin"
    with open(os.path.join(out_dir, UNIGRAMS_FILE), "w", encoding="utf-8") as f:
        f.writelines(f"{word}\n" for word, _ in words.most_common())
    info = {
        "model_file": model_file,
        "order": order,
        "prune": prune,
        "sources": [os.path.basename(p) for p in paths],
        "sentences": stats["sentences"],
        "words": sum(words.values()),
        "vocabulary": len(words),
        "characters": "".join(sorted({c for word in words for c in word})),
        "ngram_counts": counts,
        "lines_read": stats["lines"],
        "skipped": {k: v for k, v in stats.items() if k not in ("lines", "sentences")},
        "normalizer": normalizer.settings(),
        "normalizer_report": normalizer.report(),
    }
    with open(os.path.join(out_dir, LM_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
    return info


def ctc_labels(tokenizer) -> list[str]:
    """pyctcdecode's alphabet for a character CTC tokenizer: ids in order, the pad token (our CTC blank) as "", the
    word delimiter as " "."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return [
        " " if token == tokenizer.word_delimiter_token else "" if token == tokenizer.pad_token else token
        for token, _ in vocab
    ]


def check_alphabet(lm_characters: str, tokenizer) -> None:
    """Refuses an LM that spells words with characters the CTC model cannot emit: its words would never match."""
    emitted = {label for label in ctc_labels(tokenizer) if len(label) == 1}
    missing = sorted(set(lm_characters) - emitted - {" "})
    if missing:
        raise LanguageModelError(
            f"The language model's words use characters the CTC tokenizer does not have: {missing!r}. Rebuild the "
            "LM with the ASR model's text settings (e.g. --keep_apostrophe only if the tokenizer has "
            f"{APOSTROPHE!r})."
        )


def _loading(path: str, load):
    """Runs `load` (which reads the KenLM file at `path`), turning a missing or corrupt file into a clear error at
    load time rather than a crash at decode time."""
    if not os.path.isfile(path):
        raise LanguageModelError(f"No KenLM model at {path}.")
    try:
        return load()
    except (OSError, RuntimeError, ValueError) as err:
        raise LanguageModelError(f"{path} is not a valid KenLM model (ARPA or binary): {err}") from err


def build_decoder(tokenizer, lm_path: str, unigrams: list[str] | None = None, alpha: float = 0.5, beta: float = 1.0):
    """A pyctcdecode beam-search decoder over the tokenizer's characters with the KenLM model at `lm_path`."""
    from pyctcdecode import build_ctcdecoder

    labels = ctc_labels(tokenizer)
    return _loading(
        lm_path,
        lambda: build_ctcdecoder(labels, kenlm_model_path=lm_path, unigrams=unigrams, alpha=alpha, beta=beta),
    )


def attach_lm(asr_dir: str, lm_dir: str, alpha: float = 0.5, beta: float = 1.0) -> str:
    """Saves a `Wav2Vec2ProcessorWithLM` with the LM of `lm_dir` into the ASR folder (replacing any LM there)."""
    from transformers import Wav2Vec2Processor, Wav2Vec2ProcessorWithLM

    with open(os.path.join(lm_dir, LM_INFO_FILE), encoding="utf-8") as f:
        info = json.load(f)
    processor = Wav2Vec2Processor.from_pretrained(asr_dir)
    check_alphabet(info["characters"], processor.tokenizer)
    with open(os.path.join(lm_dir, UNIGRAMS_FILE), encoding="utf-8") as f:
        unigrams = [line.strip() for line in f if line.strip()]
    decoder = build_decoder(processor.tokenizer, os.path.join(lm_dir, info["model_file"]), unigrams, alpha, beta)
    with_lm = Wav2Vec2ProcessorWithLM(
        feature_extractor=processor.feature_extractor, tokenizer=processor.tokenizer, decoder=decoder
    )
    old = os.path.join(asr_dir, "language_model")
    if os.path.isdir(old):  # pyctcdecode refuses to save over a previous LM
        logger.info("Replacing the language model in %s", old)
        shutil.rmtree(old)
    with_lm.save_pretrained(asr_dir)
    declare_processor_with_lm(asr_dir)
    # Beside language_model/, not in it: pyctcdecode expects exactly its own three files there.
    with open(os.path.join(asr_dir, LM_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
    return asr_dir


def declare_processor_with_lm(asr_dir: str) -> None:
    """Marks the folder's feature extractor config with `processor_class: Wav2Vec2ProcessorWithLM`, where
    `pipeline()` looks for it before side-loading the decoder.

    Why by hand: transformers 5 saves the processor as one nested `processor_config.json` whose `feature_extractor`
    entry has no `processor_class`, and the pipeline reads that entry first, so a folder saved by
    `Wav2Vec2ProcessorWithLM.save_pretrained` alone is decoded greedily. The legacy `preprocessor_config.json` gets
    the same mark, for older transformers and other readers of the Hub convention."""
    from transformers import Wav2Vec2FeatureExtractor

    path = os.path.join(asr_dir, "processor_config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        if "feature_extractor" in config:
            config["feature_extractor"]["processor_class"] = "Wav2Vec2ProcessorWithLM"
            with open(path, "w", encoding="utf-8") as f:
                json.dump(config, f, indent=2)
    legacy = Wav2Vec2FeatureExtractor.from_pretrained(asr_dir).to_dict()
    legacy["processor_class"] = "Wav2Vec2ProcessorWithLM"
    with open(os.path.join(asr_dir, "preprocessor_config.json"), "w", encoding="utf-8") as f:
        json.dump(legacy, f, indent=2)


def has_lm(model_dir: str) -> bool:
    return os.path.isdir(os.path.join(str(model_dir), "language_model"))


def load_folder_decoder(model_dir: str):
    """The pyctcdecode decoder an ASR folder ships (`language_model/` + `alphabet.json`)."""
    from pyctcdecode import BeamSearchDecoderCTC

    folder = os.path.join(model_dir, "language_model")
    models = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith((".arpa", ".bin"))]
    if not models:
        raise LanguageModelError(f"{folder} holds no KenLM model (.arpa or .bin).")
    return _loading(models[0], lambda: BeamSearchDecoderCTC.load_from_dir(model_dir))


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
            from .lm_tune import DEFAULT_BEAM_WIDTH, tune_lm

            report = tune_lm(
                args.asr_dir, args.eval_data, args.beam_width or DEFAULT_BEAM_WIDTH, args.alphas, args.betas
            )
            print(json.dumps(report, indent=2))
    except (LanguageModelError, ManifestError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()

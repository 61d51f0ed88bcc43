"""Build a KenLM n-gram from Brazilian Portuguese text (normalised as the CTC labels are) and attach it to an ASR folder
the transformers way (`Wav2Vec2ProcessorWithLM`). The command line is `python -m modeling_distilxlsr.lm`."""

import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections import Counter

from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Processor, Wav2Vec2ProcessorWithLM

from ..audio.sources import TEXT_COLUMNS, ManifestError, decode_utf8_lines, pick_column, read_manifest_rows
from ..inference.decoding import (
    LM_INFO_FILE,
    LanguageModelError,
    build_decoder,
    ctc_labels,
    lm_file_digests,
    load_folder_decoder,
)
from ..text.normalizer import APOSTROPHE, TextCounts, TextNormalizer
from .kenlm_tools import find_binary

logger = logging.getLogger(__name__)

UNIGRAMS_FILE = "unigrams.txt"


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
        column = text_column or pick_column(rows[0], TEXT_COLUMNS, path, "text", required=True)
        if column not in rows[0]:
            raise ManifestError(f"{path}: no column {column!r}; columns are {list(rows[0])}.")
        for row in rows:
            yield str(row.get(column) or "")
        return
    opener = gzip.open if path.endswith(".gz") else open
    line = 0
    try:
        with opener(path, "rb") as f:  # streamed line by line: an LM corpus can be larger than memory
            for text in decode_utf8_lines(path, f):
                line += 1
                yield text
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; a cut .gz ends in EOFError
        raise LanguageModelError(
            f"{path}, line {line + 1}: not a readable {'gzip' if path.endswith('.gz') else 'text'} file "
            f"({type(err).__name__}: {err or 'the file ends too early'})."
        ) from err


def normalized_sentences(
    paths, normalizer: TextNormalizer, stats: Counter, text_counts: TextCounts, text_column: str | None = None
):
    """Normalised, non-empty sentences of every source; what was read, kept and dropped is counted in `stats`, what
    normalisation removed in `text_counts`."""
    for path in paths:
        for line in read_text_lines(path, text_column):
            stats["lines"] += 1
            if not line.strip():
                stats["empty lines"] += 1
                continue
            normalised = normalizer.normalize(line, text_counts)
            text = normalised.text
            if not text:
                stats[f"dropped: {normalised.drop_reason or 'nothing left after normalisation'}"] += 1
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
    stats, words, text_counts = Counter(), Counter(), TextCounts()
    with tempfile.TemporaryDirectory(dir=out_dir) as work_dir:
        corpus = os.path.join(work_dir, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            for sentence in normalized_sentences(paths, normalizer, stats, text_counts, text_column):
                f.write(sentence + "\n")
                words.update(sentence.split())
        if not stats["sentences"]:
            raise LanguageModelError(
                f"No text left to build a language model from {', '.join(paths)} "
                f"({stats['lines']} lines read; {text_counts.report()})."
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
        "normalizer_report": text_counts.report(),
    }
    with open(os.path.join(out_dir, LM_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
    return info


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


def attach_lm(asr_dir: str, lm_dir: str, alpha: float = 0.5, beta: float = 1.0) -> str:
    """Saves a `Wav2Vec2ProcessorWithLM` with the LM of `lm_dir` into the ASR folder (replacing any LM there)."""

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
    # Beside language_model/, not in it: pyctcdecode expects exactly its own three files there. With the digests of
    # those files, which every load through this package checks (`check_lm_files`).
    info["files"] = lm_file_digests(asr_dir)
    with open(os.path.join(asr_dir, LM_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
    load_folder_decoder(asr_dir)  # what was written loads: pyctcdecode's own save and load, end to end
    return asr_dir


def declare_processor_with_lm(asr_dir: str) -> None:
    """Marks the folder's feature extractor config with `processor_class: Wav2Vec2ProcessorWithLM`, where
    `pipeline()` looks for it before side-loading the decoder.

    Why by hand: transformers 5 saves the processor as one nested `processor_config.json` whose `feature_extractor`
    entry has no `processor_class`, and the pipeline reads that entry first, so a folder saved by
    `Wav2Vec2ProcessorWithLM.save_pretrained` alone is decoded greedily. The legacy `preprocessor_config.json` gets
    the same mark, for older transformers and other readers of the Hub convention."""

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

"""Speech with known word times, for the benchmarks that score *when* a word is found (forced alignment,
streaming latency): the synthetic corpus' test split and espeak-ng's own record of where it spoke each word
(`word_times.jsonl`), with the matching of a model's words to espeak-ng's."""

import csv
import difflib
import json
import os

from modeling_distilxlsr.corpus.synthesis import WORD_TIMES_FILE, make_corpus
from modeling_distilxlsr.text.normalizer import TextNormalizer


def timed_test_split(corpus: str | None, out: str) -> str:
    """The test split of `corpus`, or of a corpus made in `out` with the default seed (byte-identical to the
    default corpus, which was made before word times were written)."""
    corpus = corpus or os.path.join(out, "corpus")
    if not os.path.exists(os.path.join(corpus, "test", WORD_TIMES_FILE)):
        print(f"making the corpus with word times in {corpus} (about a minute)", flush=True)
        make_corpus(corpus, quiet=True)
    return os.path.join(corpus, "test")


def load_timed_split(split: str, limit: int | None = None) -> list[dict]:
    """`{"path", "text", "words": [[text, start, end], ...]}` for each file of a corpus split."""
    with open(os.path.join(split, "metadata.csv"), encoding="utf-8") as f:
        texts = {row["file_name"]: row["transcription"] for row in csv.DictReader(f)}
    with open(os.path.join(split, WORD_TIMES_FILE), encoding="utf-8") as f:
        timed = [json.loads(line) for line in f]
    files = [{"path": os.path.join(split, t["file_name"]), "text": texts[t["file_name"]], "words": t["words"]}
             for t in timed]  # fmt: skip
    return files[:limit] if limit else files


def spoken_tokens(words: list, normalizer: TextNormalizer) -> tuple[list[str], list[int]]:
    """espeak-ng's words normalised as the labels are, each tagged with its word's index; a word with a digit
    (espeak-ng reads a number as pieces of its own) gives a token that matches nothing."""
    tokens, owners = [], []
    for index, (text, _, _) in enumerate(words):
        parts = [f"<number {index}>"] if any(c.isdigit() for c in text) else normalizer.normalize(text).text.split()
        tokens += parts
        owners += [index] * len(parts)
    return tokens, owners


def match_words(reference: list, words: list[str], normalizer: TextNormalizer) -> dict[int, list[int]]:
    """For each espeak-ng word (index into `reference`) whose normalised words all match `words` in order (difflib's
    longest matching blocks), the indices of those words; words left unmatched (misheard, or numbers) are absent."""
    tokens, owners = spoken_tokens(reference, normalizer)
    matcher = difflib.SequenceMatcher(None, tokens, words, autojunk=False)
    matched: dict[int, list[int]] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            matched.setdefault(owners[block.a + k], []).append(block.b + k)
    return {index: spans for index, spans in matched.items() if len(spans) == owners.count(index)}

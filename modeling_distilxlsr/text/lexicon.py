"""A Brazilian Portuguese word list ranked by frequency, for word and transcript confidence: the punctuation
restorer's vocabulary (`punctuation_pt_br/tokenizer.json`, the 12,000 most frequent words of the Debian pt-BR prose
and the corpus' train and dev sentences it was trained on, most frequent first).

Why a lexicon at all: a CTC model that mishears writes words one or two characters off (`tardesera`, `veninis`), and
their posteriors look as sure as a right word's; whether the word exists is what tells them apart (word AUROC 0.83
without it, 0.98 with it, `benchmarks/confidence.py`). Why this list and not Debian's `wbrazilian` (274k words, no
ranks): it ships in the package already (no apt package, no licence of its own) and its ranks say how common a word
is; measured with `wbrazilian` instead, which never read the corpus, the word AUROC is 0.95 (benchmarks/README)."""

import json
from functools import lru_cache
from pathlib import Path

from .punctuation import SHIPPED_MODEL

SPECIAL_WORDS = ("[PAD]", "[UNK]")


@lru_cache(maxsize=4)
def word_ranks(model_dir: str | Path = SHIPPED_MODEL) -> dict[str, int]:
    """{word: frequency rank (0 = most frequent)} from a word-level `tokenizers` vocabulary (ids in frequency order,
    as `tools/train_punctuation.py` writes them); `ValueError` for a tokenizer that is not word-level."""
    path = Path(model_dir) / "tokenizer.json"
    with open(path, encoding="utf-8") as f:
        model = json.load(f)["model"]
    if model.get("type") != "WordLevel":
        raise ValueError(f"{path} is not a word-level vocabulary (type {model.get('type')!r})")
    ranked = sorted((i, w) for w, i in model["vocab"].items() if w not in SPECIAL_WORDS)
    return {word: rank for rank, (_, word) in enumerate(ranked)}

"""Brazilian Portuguese text for CTC: one normaliser for training labels, evaluation references and the vocabulary,
and the character tokenizer built on it.

One function everywhere matters: a reference normalised differently from the labels inflates WER for no reason, and
an NFD "ação" (a + combining tilde) would become unknown tokens if the vocabulary were NFC.
"""

import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor

from .numbers_pt_br import AmbiguousNumber, cardinal, spell_numbers, spell_unit_powers

BP_LETTERS = "abcdefghijklmnopqrstuvwxyzáàâãéêíóôõúüç"
APOSTROPHE = "'"
WORD_DELIMITER = "|"
PAD_TOKEN = "[PAD]"  # also the CTC blank
UNK_TOKEN = "[UNK]"

_DASHES = re.compile(r"[\-\u2010-\u2015\u2212\u2E3A\u2E3B]")  # hyphen, figure/en/em dashes, minus
_APOSTROPHES = re.compile(r"[\u2018\u2019\u02BC\u0060\u00B4]")  # typographic apostrophes -> '
_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")


@dataclass
class TextCounts:
    """What normalisation removed and dropped, summed over calls: one per run (or per text source), passed to each
    call, as `SkipCounter` counts skipped files. The normaliser itself keeps no state between calls."""

    out_of_alphabet: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

    def report(self) -> str:
        if not self.out_of_alphabet:
            report = "no characters outside the alphabet"
        else:
            chars = ", ".join(f"{c!r} x{n}" for c, n in self.out_of_alphabet.most_common(20))
            report = f"{sum(self.out_of_alphabet.values())} characters outside the alphabet removed: {chars}"
        if self.dropped:
            report += "; dropped: " + ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common(10))
        return report


@dataclass(frozen=True)
class NormalizedText:
    """The normalised text, or None and why the utterance must be dropped."""

    text: str | None
    drop_reason: str | None = None


class TextNormalizer:
    """NFC, lowercase, BP letters kept (a-z and á à â ã é ê í ó ô õ ú ü ç), punctuation and quotes removed (so a `|`
    in a transcript can never collide with the word delimiter), hyphens and dashes to spaces ("guarda-chuva" ->
    "guarda chuva"), whitespace collapsed.

    Numbers (`digits="spell"`) become the words a BP speaker says (`numbers_pt_br`: thousands dots, decimal commas,
    R$, %, º/ª, 14h30, dates); a number with no single reading ("3.5", "1/2") drops the utterance
    (`ambiguous_numbers="drop"`) or is read digit group by digit group (`"keep"`). `digits="drop"` drops every
    utterance with a digit. `normalize` says why an utterance was dropped; `counts` (a `TextCounts`) counts it.

    Letters outside the alphabet and symbols (emoji, ©, ...) are counted in `counts.out_of_alphabet`: accented
    foreign letters are reduced to their base letter ("ñ" -> "n"), anything else is removed.
    """

    def __init__(self, digits: str = "spell", keep_apostrophe: bool = False, ambiguous_numbers: str = "drop"):
        if digits not in ("spell", "drop"):
            raise ValueError(f"digits must be 'spell' or 'drop', got {digits!r}.")
        if ambiguous_numbers not in ("drop", "keep"):
            raise ValueError(f"ambiguous_numbers must be 'drop' or 'keep', got {ambiguous_numbers!r}.")
        self.digits = digits
        self.ambiguous_numbers = ambiguous_numbers
        self.keep_apostrophe = keep_apostrophe
        self.alphabet = set(BP_LETTERS) | ({APOSTROPHE} if keep_apostrophe else set())

    def settings(self) -> dict:
        """The constructor arguments: what `lm build`/`lm tune` and `ctc_results.json` record, so that LM text and
        references are normalised as the labels were."""
        return {
            "digits": self.digits,
            "keep_apostrophe": self.keep_apostrophe,
            "ambiguous_numbers": self.ambiguous_numbers,
        }

    def __call__(self, text: str, counts: TextCounts | None = None) -> str | None:
        """The normalised text; None when the utterance must be dropped (`normalize` says why)."""
        return self.normalize(text, counts).text

    def normalize(self, text: str, counts: TextCounts | None = None) -> NormalizedText:
        counts = counts if counts is not None else TextCounts()
        text = unicodedata.normalize("NFC", text).lower()
        text = _APOSTROPHES.sub(APOSTROPHE, text)
        if _DIGIT.search(text):
            if self.digits == "drop":
                return self._drop("transcript with digits (--digits drop)", counts)
            try:
                text = spell_numbers(text)
            except AmbiguousNumber as err:
                if self.ambiguous_numbers == "drop":
                    return self._drop(f"ambiguous number {err}", counts)
                text = _DIGIT_RUN.sub(lambda m: f" {cardinal(int(m.group()))} ", text)
        text = _DASHES.sub(" ", spell_unit_powers(text))  # after the numbers: a minus before a digit is "menos"
        kept = []
        for char in text:
            if char in self.alphabet or char.isspace():
                kept.append(char)
            elif char == APOSTROPHE:
                kept.append("")  # "d'água" -> "dágua"
            elif unicodedata.category(char)[0] in "PZC":
                kept.append(" ")  # punctuation, quotes, separators: a word boundary at most
            elif unicodedata.category(char)[0] == "S":  # emoji, ©, $...: removed, and counted
                counts.out_of_alphabet[char] += 1
                kept.append(" ")
            else:
                counts.out_of_alphabet[char] += 1
                base = unicodedata.normalize("NFD", char)[0]
                kept.append(base if base in self.alphabet else "")
        return NormalizedText(_SPACES.sub(" ", "".join(kept)).strip())

    @staticmethod
    def _drop(reason: str, counts: TextCounts) -> NormalizedText:
        counts.dropped[reason] += 1
        return NormalizedText(None, reason)


def normalize_text(
    text: str, digits: str = "spell", keep_apostrophe: bool = False, ambiguous_numbers: str = "drop"
) -> str | None:
    return TextNormalizer(digits, keep_apostrophe, ambiguous_numbers)(text)


def build_vocab(texts=None, keep_apostrophe: bool = True) -> dict[str, int]:
    """`[PAD]` (the CTC blank) = 0, `[UNK]` = 1, `|` = 2, then the characters. Without `texts`, the fixed BP alphabet,
    so that models trained on different corpora share one vocabulary; with `texts` (already normalised), the
    characters they use."""
    if texts is None:
        chars = list(BP_LETTERS) + ([APOSTROPHE] if keep_apostrophe else [])
    else:
        chars = sorted({c for text in texts for c in text if c != " "})
    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1, WORD_DELIMITER: 2}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    return vocab


def build_processor(vocab: dict[str, int], feature_extractor) -> Wav2Vec2Processor:
    """A `Wav2Vec2Processor` (feature extractor + character CTC tokenizer) for `vocab`."""
    with tempfile.TemporaryDirectory() as work_dir:  # the tokenizer reads its vocabulary from a file
        vocab_file = os.path.join(work_dir, "vocab.json")
        with open(vocab_file, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        tokenizer = Wav2Vec2CTCTokenizer(
            vocab_file,
            unk_token=UNK_TOKEN,
            pad_token=PAD_TOKEN,
            word_delimiter_token=WORD_DELIMITER,
            bos_token=None,
            eos_token=None,
            do_lower_case=False,
        )
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def ctc_min_frames(label_ids: list[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus a blank between each pair of equal neighbours."""
    repeats = sum(1 for a, b in zip(label_ids, label_ids[1:], strict=False) if a == b)
    return len(label_ids) + repeats

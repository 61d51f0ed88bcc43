"""Transcripts a person reads: a CTC model's normalised words (lowercase, numbers spelt out, no marks) written as BP
text, with the word timings kept.

A formatter is a function from text to text (`bp_formatter`: "você pode pagar mil e quinhentos reais" -> "Você pode
pagar R$ 1.500?": numbers written first, on the lowercase words NeMo's grammars expect, then marks and capitals).
It runs on each speech region's text on its own, so nothing it merges spans a pause, and its output is mapped back
onto the region's timed words by a word alignment (difflib, the standard library's sequence matcher, on words
lowercased and without marks): words it only capitalises or puts a mark after keep their times and confidences, and
each run of words it rewrites becomes the written tokens that replace it, spread over that run's time (the first
token starts where the run starts, the last ends where it ends; the run's lowest confidence). So text, segments,
word timestamps and subtitle cues all show the written form.
The raw CTC text, which WER scoring and the n-gram LM need, is what `--raw_text` keeps."""

import difflib
import logging
import re
from collections.abc import Callable

from ..text.punctuation import PunctuationRestorer
from ..text.written_numbers import WrittenNumbers, WrittenNumbersUnavailable

Formatter = Callable[[str], str]
logger = logging.getLogger(__name__)


def _key(token: str) -> str:
    """A word as the alignment compares it: lowercase, without marks ("Casa," and "casa" are one word)."""
    return re.sub(r"[^\w]", "", token.lower())


def formatted_chunks(chunks: list[dict], written: str) -> list[dict]:
    """Timed word chunks ({"text", "timestamp": (start, end), "confidence"?}) carrying the tokens of `written`, the
    formatter's output for those words."""
    tokens = written.split()
    out = []
    spoken_keys, written_keys = [_key(c["text"]) for c in chunks], [_key(t) for t in tokens]
    matcher = difflib.SequenceMatcher(a=spoken_keys, b=written_keys, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":  # the same word, perhaps capitalised or with a mark after it: its own times
            out += [{**chunk, "text": token} for chunk, token in zip(chunks[a0:a1], tokens[b0:b1], strict=True)]
            continue
        if b0 == b1:  # words the formatter dropped
            continue
        run = chunks[a0:a1] or chunks[max(a0 - 1, 0) : a0 + 1] or [{"timestamp": (0.0, 0.0)}]  # tokens it added
        start, end = run[0]["timestamp"][0], run[-1]["timestamp"][1]
        confidences = [c["confidence"] for c in run if c.get("confidence") is not None]
        step = (end - start) / (b1 - b0)
        for k, token in enumerate(tokens[b0:b1]):
            chunk = {"text": token, "timestamp": (round(start + k * step, 2), round(start + (k + 1) * step, 2))}
            if confidences:
                chunk["confidence"] = min(confidences)
            out.append(chunk)
    return out


def formatted_piece(piece: dict, formatter: Formatter) -> dict:
    """One region's decoder output ({"text", "chunks"?}) written by `formatter`; the raw text kept as "raw_text"."""
    try:
        written = formatter(piece["text"])
    except Exception as err:  # a formatter's failure costs the formatting, never the transcript
        logger.warning("formatting failed (%s: %s); the model's own text kept: %r", type(err).__name__, err,
                       piece["text"][:80])  # fmt: skip
        written = piece["text"]
    result = {**piece, "text": written, "raw_text": piece["text"]}
    if "chunks" in piece:
        result["chunks"] = formatted_chunks(piece["chunks"], written)
    return result


class FormatterChain:
    """Formatters applied in order (numbers, then marks and capitals)."""

    def __init__(self, steps: list[Formatter]):
        self.steps = steps

    def __call__(self, text: str) -> str:
        for step in self.steps:
            text = step(text)
        return text


def bp_formatter(raw_text: bool, log: Callable[[str], None]) -> Formatter | None:
    """What transcription applies by default: numbers written (`WrittenNumbers`, on the model's lowercase words, as
    NeMo's grammars expect), then punctuation and capitals (`PunctuationRestorer`, the model shipped in the package).
    None for the raw CTC text (`raw_text`). Without the `format` extra numbers stay spelt out, which `log` says once
    (never silently)."""
    if raw_text:
        return None
    steps: list[Formatter] = []
    try:
        steps.append(WrittenNumbers())
    except WrittenNumbersUnavailable as err:
        log(f"note: {err}; --raw_text silences this")
    steps.append(PunctuationRestorer())
    return FormatterChain(steps)

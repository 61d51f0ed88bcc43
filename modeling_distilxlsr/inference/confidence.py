"""Confidence that tells: calibrated word confidences and a transcript score that flags speech the model did not
understand, from the CTC posteriors alone.

Why not the raw mean probability of a word's frames (what a CTC decode gives): it is high even on gibberish. On the
main job's student it told right from wrong words at AUROC 0.75 over clean, corrupted and foreign-accented test
speech, and words of transcripts with CER 0.54 still averaged 0.84. What separates them (`benchmarks/confidence.py`):
- for a transcript, the entropy and the top-two margin of the frames that emit a character, and the mean
  log-probability of the emitted characters (each alone AUROC 0.99 for CER <= 0.2 against CER >= 0.5);
- for a word, its emitted characters' mean and lowest log-probability and margin, its length, the transcript's
  own entropy and margin (a word of a transcript the model did not follow is more often wrong), and whether the word
  is in a BP lexicon, how common it is there, and its length if it is (`text/lexicon.py`: a mishearing is a word one
  or two characters off, as sure in the posteriors as a right one; a long word that exists is rarely a mishearing,
  a short one often exists by chance). The lexicon took word AUROC from 0.83 to 0.98 and the in-domain expected
  calibration error from 0.14 to 0.03, and the transcript's share of lexicon words its score's AUROC from 0.986 to
  0.993 (the main job's student, `benchmarks/confidence.py`).
Each is combined by a logistic regression fitted on a dev split (`benchmarks/confidence.py --write_calibration`
writes `confidence.json` into the model folder): its output is a probability, so it is calibrated too (Platt
scaling, the logistic equivalent of temperature scaling), and the transcript score is the probability that the
transcript is within CER 0.2 of what was said. A folder without `confidence.json` gives the raw word confidences
and no transcript score.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from ..text.lexicon import word_ranks

CALIBRATION_FILE = "confidence.json"
WORD_FEATURES = ("emit_logprob", "emit_min_logprob", "emit_margin", "chars", "frames", "utt_entropy", "utt_margin",
                 "in_lexicon", "lexicon_rank", "lexicon_chars")  # fmt: skip
TRANSCRIPT_FEATURES = ("utt_logprob", "utt_entropy", "utt_margin", "utt_lexicon")
UNDERSTOOD_CER = 0.2  # the transcript score is P(CER <= this)


def emitting_frames(best: np.ndarray, blank_id: int, delimiter_id: int | None) -> np.ndarray:
    return (best != blank_id) & (best != (delimiter_id if delimiter_id is not None else -1))


def utterance_sums(log_probs: np.ndarray, blank_id: int, delimiter_id: int | None, words=()) -> np.ndarray:
    """[frames emitting, sum of their log-probability, entropy, top-two margin, words, words in the lexicon] of one
    region and its decoded `words`: summed, so that a file's regions add up before the means are taken."""
    in_lexicon = sum(word in word_ranks() for word in words)
    best = log_probs.argmax(-1)
    emitting = emitting_frames(best, blank_id, delimiter_id)
    if not emitting.any():
        return np.array([0.0, 0.0, 0.0, 0.0, len(words), in_lexicon])
    chosen = log_probs[emitting]
    top_two = np.sort(chosen, -1)[:, -2:]
    entropy = -(np.exp(chosen) * chosen).sum(-1)
    margin = (top_two[:, 1] - top_two[:, 0]).sum()
    return np.array([emitting.sum(), top_two[:, 1].sum(), entropy.sum(), margin, len(words), in_lexicon])


def transcript_features(sums: np.ndarray) -> dict:
    count = max(sums[0], 1.0)
    return {"utt_logprob": sums[1] / count, "utt_entropy": sums[2] / count, "utt_margin": sums[3] / count,
            "utt_lexicon": sums[5] / max(sums[4], 1.0)}  # fmt: skip


def lexicon_features(word: str) -> dict:
    """Whether `word` is in the BP lexicon, log(1 + its frequency rank) (the list's length when it is not), and its
    length when it is (0 when not)."""
    ranks = word_ranks()
    rank = ranks.get(word)
    known = rank is not None
    return {"in_lexicon": float(known), "lexicon_rank": float(np.log1p(rank if known else len(ranks))),
            "lexicon_chars": float(len(word)) if known else 0.0}  # fmt: skip


def word_features(log_probs: np.ndarray, start: int, end: int, chars: int, emitting: np.ndarray) -> dict:
    """A word's features from its frames [start, end) (those emitting a character; all of them if none does)."""
    frames = np.arange(start, max(end, start + 1))
    emitted = frames[emitting[frames]] if emitting[frames].any() else frames
    rows = log_probs[emitted]
    best = rows.max(-1)
    second = np.sort(rows, -1)[:, -2]
    return {"emit_logprob": float(best.mean()), "emit_min_logprob": float(best.min()),
            "emit_margin": float((best - second).mean()), "chars": chars, "frames": len(frames)}  # fmt: skip


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic regression: sigmoid(features . coef + intercept), the features in `names`' order."""

    names: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def __call__(self, features: dict) -> float:
        z = self.intercept + sum(c * float(features[n]) for n, c in zip(self.names, self.coef, strict=True))
        return float(1.0 / (1.0 + np.exp(-z)))

    @classmethod
    def fit(cls, names: tuple[str, ...], rows: list[dict], labels: list[bool]) -> "Logistic":
        from sklearn.linear_model import LogisticRegression  # lazy: fitting is the calibration step's (train extra)

        model = LogisticRegression(max_iter=2000).fit([[r[n] for n in names] for r in rows], labels)
        return cls(names, tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]))


@dataclass(frozen=True)
class ConfidenceCalibration:
    word: Logistic
    transcript: Logistic
    fitted_on: str = ""  # what the dev split was, for the card and the file's reader

    def save(self, model_dir: str) -> str:
        path = os.path.join(model_dir, CALIBRATION_FILE)
        data = {"fitted_on": self.fitted_on, "understood_cer": UNDERSTOOD_CER}
        for name in ("word", "transcript"):
            part = getattr(self, name)
            data[name] = {"features": list(part.names), "coef": list(part.coef), "intercept": part.intercept}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        return path

    @classmethod
    def load(cls, model_dir: str) -> "ConfidenceCalibration | None":
        """The folder's calibration, or None without one; `ValueError` naming a file that is not one."""
        path = os.path.join(str(model_dir), CALIBRATION_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            parts = {}
            for name, expected in (("word", WORD_FEATURES), ("transcript", TRANSCRIPT_FEATURES)):
                part = data[name]
                if tuple(part["features"]) != expected or len(part["coef"]) != len(expected):
                    raise ValueError(f"{name} features {part['features']} (this version reads {list(expected)})")
                parts[name] = Logistic(expected, tuple(map(float, part["coef"])), float(part["intercept"]))
            return cls(parts["word"], parts["transcript"], str(data.get("fitted_on", "")))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a confidence calibration: {err}") from err

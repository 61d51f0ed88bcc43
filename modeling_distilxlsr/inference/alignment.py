"""CTC forced alignment: the times of a *given* transcript's words and characters in an utterance, with scores; what
whisperX asks a Portuguese wav2vec2 model (XLSR-53, 315M) for, from a model 8x smaller.

The Viterbi path through the CTC trellis (blank, c1, blank, c2, ..., blank; stay, step, or skip a blank between two
different characters), as `torchaudio.functional.forced_align` computes it. Written here because torchaudio has no
build for this torch (2.13) and its forced_align is deprecated upstream; in numpy, one frame at a time, vectorised
over the trellis states: 10 s (500 frames) of a 100-character transcript is ~100k cells.
A word whose characters the tokenizer lacks is left out of the target and reported as unaligned; a transcript with
more characters than the audio has frames cannot be aligned at all and is reported so, never forced.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax

NEG_INF = -1e30


@dataclass
class AlignedUnit:
    text: str
    start: float
    end: float
    score: float  # mean probability of the unit's label over its frames


@dataclass
class Alignment:
    words: list[AlignedUnit] = field(default_factory=list)
    chars: list[AlignedUnit] = field(default_factory=list)
    unaligned: list[str] = field(default_factory=list)  # words left out, with the reason
    error: str | None = None


def viterbi_path(log_probs: np.ndarray, targets: list[int], blank: int) -> np.ndarray | None:
    """The trellis state (index into blank-interleaved `targets`) of every frame on the best path, or None when the
    targets cannot fit in the frames."""
    frames, labels = log_probs.shape[0], len(targets)
    states = np.full(2 * labels + 1, blank)
    states[1::2] = targets
    size = len(states)
    # skip a blank: allowed into a character state different from the character two states back
    can_skip = np.zeros(size, bool)
    can_skip[3::2] = np.asarray(targets[1:]) != np.asarray(targets[:-1])
    alpha = np.full(size, NEG_INF)
    alpha[0] = log_probs[0, blank]
    if size > 1:
        alpha[1] = log_probs[0, states[1]]
    back = np.zeros((frames, size), np.int8)
    for t in range(1, frames):
        stay = alpha
        step = np.concatenate([[NEG_INF], alpha[:-1]])
        skip = np.where(can_skip, np.concatenate([[NEG_INF, NEG_INF], alpha[:-2]]), NEG_INF)
        choices = np.stack([stay, step, skip])
        back[t] = choices.argmax(0)
        alpha = choices.max(0) + log_probs[t, states]
    ends = [size - 1] + ([size - 2] if size > 1 else [])
    last = max(ends, key=lambda s: alpha[s])
    if alpha[last] <= NEG_INF / 2:
        return None
    path = np.empty(frames, int)
    for t in range(frames - 1, -1, -1):
        path[t] = last
        last -= back[t, last]
    return path


def align(logits: np.ndarray, words: list[str], vocab: dict[str, int], blank: int, delimiter: int | None,
          frame_seconds: float) -> Alignment:  # fmt: skip
    """Word and character times of `words` (already normalised as the labels were) in `logits` (frames x vocab)."""
    result = Alignment()
    kept = []
    for word in words:
        missing = sorted({c for c in word if c not in vocab})
        if missing:
            result.unaligned.append(f"{word} (characters the model lacks: {''.join(missing)})")
        else:
            kept.append(word)
    if not kept:
        result.error = "nothing to align" if not words else "no word of the transcript can be spelt by the model"
        return result
    targets, owner = [], []  # each target's (word index, char index), None for a delimiter
    for w, word in enumerate(kept):
        if w and delimiter is not None:
            targets.append(delimiter)
            owner.append(None)
        for c, char in enumerate(word):
            targets.append(vocab[char])
            owner.append((w, c))
    log_probs = log_softmax(logits.astype(np.float64), axis=-1)
    path = viterbi_path(log_probs, targets, blank)
    if path is None:
        result.unaligned.extend(kept)
        result.error = f"the transcript needs more frames than the audio has ({len(log_probs)})"
        return result
    probs = np.exp(log_probs)
    spans: dict[int, list[int]] = {}  # target index -> its frames
    for t, state in enumerate(path):
        if state % 2:
            spans.setdefault(state // 2, []).append(t)
    word_frames: dict[int, list[int]] = {}
    word_scores: dict[int, list[float]] = {}
    for index, frames in spans.items():
        if owner[index] is None:
            continue
        w, c = owner[index]
        score = float(probs[frames, targets[index]].mean())
        result.chars.append(
            AlignedUnit(
                kept[w][c],
                round(frames[0] * frame_seconds, 3),
                round((frames[-1] + 1) * frame_seconds, 3),
                round(score, 4),
            )  # fmt: skip
        )
        word_frames.setdefault(w, []).extend(frames)
        word_scores.setdefault(w, []).extend(probs[frames, targets[index]].tolist())
    for w, word in enumerate(kept):
        frames = word_frames[w]
        result.words.append(
            AlignedUnit(
                word,
                round(min(frames) * frame_seconds, 3),
                round((max(frames) + 1) * frame_seconds, 3),
                round(float(np.mean(word_scores[w])), 4),
            )  # fmt: skip
        )
    return result

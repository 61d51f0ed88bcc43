"""CTC forced alignment: the times of a *given* transcript's words and characters in an utterance, with scores; what
whisperX asks a Portuguese wav2vec2 model (XLSR-53, 315M) for, from a model 8x smaller.

The Viterbi path through the CTC trellis (blank, c1, blank, c2, ..., blank; stay, step, or skip a blank between two
different characters), as `torchaudio.functional.forced_align` computes it. Written here because torchaudio has no
build for this torch (2.13) and its forced_align is deprecated upstream; in numpy, one frame at a time, vectorised
over the trellis states: 10 s (500 frames) of a 100-character transcript is ~100k cells.
A word whose characters the tokenizer lacks is left out of the target and reported as unaligned; a transcript with
more characters than the audio has frames cannot be aligned at all and is reported so, never forced.

Alignment can say no: `match_score` is the forced path's log-probability per frame minus the free (greedy) path's,
0 when the transcript is what the model hears and far below it when it is not (a wrong or shuffled transcript, text
on silence); `MISMATCH_BELOW` marks a result as a probable mismatch (`benchmarks/alignment_mismatch.py` measures
how well it separates right from shuffled transcripts). Words come back as the user wrote them: each written word
(`sexta-feira`, `25`, capitals) spans the label words it is spoken as, and every character no label can spell is
listed as unaligned.
"""

import itertools
import unicodedata
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax

from ..audio.decode import AudioDecodeError, read_for_transcription
from ..audio.vad import speech_regions
from .transcription import chunked_logits

NEG_INF = -1e30
MISMATCH_BELOW = -1.0  # match_score under this: probably not what was said (see the module docstring)


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
    match_score: float | None = None  # forced path log-probability per frame minus the free path's (<= 0)


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
        last -= int(back[t, last])  # an int8 would wrap: numpy 2 keeps int - int8 as int8
    return path


def align(logits: np.ndarray, words: list[str], vocab: dict[str, int], blank: int, delimiter: int | None,
          frame_seconds: float, boundary_gap_s: float = 0.2) -> Alignment:  # fmt: skip
    """Word and character times of `words` (already normalised as the labels were) in `logits` (frames x vocab).

    A CTC model's characters are spikes: between two words the path holds blanks and the delimiter, with no
    evidence of where one word stops and the next begins, so each word's own frames start late and end early. Two
    words at most `boundary_gap_s` apart (no pause between them) meet at the middle of that gap: on the corpus'
    test split 94% of word boundaries then fall within 40 ms of espeak-ng's own word timing, against 41% with the
    words' own frames (benchmarks/alignment.py). A longer gap is a pause: both words keep their own edges. Character
    times are always their own frames."""
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
    states = np.full(2 * len(targets) + 1, blank)
    states[1::2] = targets
    forced = log_probs[np.arange(len(path)), states[path]].sum()
    result.match_score = round(float((forced - log_probs.max(-1).sum()) / len(path)), 4)
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
    edges = [[min(word_frames[w]) * frame_seconds, (max(word_frames[w]) + 1) * frame_seconds] for w in range(len(kept))]
    for before, after in itertools.pairwise(edges):
        if after[0] - before[1] <= boundary_gap_s:
            before[1] = after[0] = (before[1] + after[0]) / 2
    for w, word in enumerate(kept):
        start, end = edges[w]
        result.words.append(AlignedUnit(word, round(start, 3), round(end, 3), round(float(np.mean(word_scores[w])), 4)))
    return result


@dataclass(frozen=True)
class WrittenWord:
    """A word as the user wrote it, and the label words it is spoken as (`25` -> vinte e cinco)."""

    text: str
    spoken: tuple[str, ...]


def written_words(text: str, normalizer) -> tuple[list[WrittenWord] | None, list[str]]:
    """The transcript's written words, each with its label words, and the characters no label spells (listed as
    unaligned). A word is normalised on its own; where that differs from the whole text's normalisation (a reading
    that spans words, `R$ 1.500`), words are taken together, up to 4 at a time, until they agree. None when no
    grouping agrees: the caller aligns the normalised words as they are."""
    whole = (normalizer.normalize(text).text or "").split()
    tokens = text.split()
    missing = [
        f"{c} (in {token!r}: not in the model's alphabet)"
        for token in tokens
        for c in dict.fromkeys(token)
        if unspellable(c, normalizer)
    ]
    written, at, i = [], 0, 0
    while i < len(tokens):
        for size in range(1, 5):
            spoken = (normalizer.normalize(" ".join(tokens[i : i + size])).text or "").split()
            if whole[at : at + len(spoken)] == spoken:
                break
        else:
            return None, missing
        if spoken:
            written.append(WrittenWord(" ".join(tokens[i : i + size]), tuple(spoken)))
        at, i = at + len(spoken), i + size
    return (written if at == len(whole) else None), missing


def unspellable(char: str, normalizer) -> bool:
    """A character the normaliser removes without a trace: not a letter of the alphabet (or one reduced to it), a
    digit (spelt out), a space or punctuation."""
    if char.isspace() or char.isdigit() or unicodedata.category(char)[0] in "PZ" or char in "$%ºª°":
        return False
    base = unicodedata.normalize("NFD", char.lower())[0]
    return base not in normalizer.alphabet


def written_alignment(result: Alignment, words: list[WrittenWord]) -> list[dict]:
    """The aligned label words of `result` grouped back into the user's words (start of the first, end of the last,
    the mean score); a written word any of whose label words the model cannot spell is left out (`result.unaligned`
    names that label word)."""
    aligned = iter(result.words)
    left_out = {entry.split(" (")[0] for entry in result.unaligned}
    rows = []
    for word in words:
        labels = [next(aligned) for label in word.spoken if label not in left_out]
        if len(labels) < len(word.spoken):
            continue
        rows.append({"text": word.text, "start": labels[0].start, "end": labels[-1].end,
                     "score": round(float(np.mean([u.score for u in labels])), 4),
                     "spoken": " ".join(word.spoken)})  # fmt: skip
    return rows


def align_audio_file(backend, normalizer, path: str, text: str, chunk_samples: int | None, with_chars: bool) -> dict:
    """`align.py`'s row for one file: the transcript normalised as the labels were (`normalizer`), word by written
    word, the audio decoded and run (in chunks of `chunk_samples`) as transcribe.py runs it, then `align`. `error`
    names what failed; `mismatch` is set when the match score says the text is probably not what was said."""
    row = {"path": path, "text": text}
    normalised = normalizer.normalize(text)
    if not normalised.text:
        return row | {"error": f"nothing to align: {normalised.drop_reason or 'empty after normalisation'}"}
    try:
        audio = read_for_transcription(path, backend.min_samples)
    except AudioDecodeError as err:
        return row | {"error": str(err)}
    if not speech_regions(audio):
        return row | {"error": "no speech in the audio (Silero VAD found none): nothing to align the text to"}
    logits = chunked_logits(backend, audio, chunk_samples)
    tokenizer = backend.tokenizer
    vocab = tokenizer.get_vocab()
    delimiter = vocab.get(getattr(tokenizer, "word_delimiter_token", None) or "|")
    words, unspelt = written_words(text, normalizer)
    labels = [label for word in words for label in word.spoken] if words else normalised.text.split()
    result = align(logits, labels, vocab, tokenizer.pad_token_id, delimiter, backend.frame_seconds)
    row["words"] = written_alignment(result, words) if words else [vars(w) for w in result.words]
    if with_chars:
        row["chars"] = [vars(c) for c in result.chars]
    row["unaligned"] = result.unaligned + unspelt
    row["match_score"] = result.match_score
    if result.match_score is not None and result.match_score < MISMATCH_BELOW:
        row["mismatch"] = True
    if result.error:
        row["error"] = result.error
    return row

"""Words with times -> cues -> SRT / WebVTT subtitles, for `transcribe.py --format srt|vtt` and the server.

A CTC model gives every word its frames (20 ms each), so no alignment pass is needed. Cues are cut as Netflix's
timed-text style guide (Brazilian Portuguese) asks of a subtitler, the rules in `CueRules`:
- a pause of `max_pause` s or more between two words always ends a cue (a cue never holds silence);
- a cue holds at most 2 lines of 42 characters and lasts at most 7 s; within those limits it ends at a sentence end
  (. ? !) once it is long enough, else before the word that would break a limit;
- a cue shorter than 5/6 s (20 frames at 24 fps) is merged with a neighbour when the two fit the limits and no
  pause of `max_pause` separates them, else shown longer: its end (then its start) moves into the silence around it,
  never closer than 2 frames to the next or previous cue; a cue is also held long enough to be read at 17
  characters a second where the silence allows;
- two lines are split at the space that balances them best.
Written by hand because the formats are a few lines each and the subtitle packages (srt, webvtt-py) cut no cues.
"""

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CueRules:
    max_pause: float = 0.5
    max_line_chars: int = 42
    max_lines: int = 2
    min_seconds: float = 5 / 6
    max_seconds: float = 7.0
    max_chars_per_second: float = 17.0
    min_gap_seconds: float = 2 / 24  # between two cues: 2 frames at 24 fps


NETFLIX = CueRules()
SENTENCE_ENDS = (".", "?", "!", "…")


@dataclass
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass
class Segment:
    """One cue: its words, and the time it is shown (which may reach past its words into the silence around)."""

    start: float
    end: float
    words: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    def lines(self, max_line_chars: int = NETFLIX.max_line_chars) -> list[str]:
        """The cue's text in one line, or two split at the space that balances them best (each within the limit
        where a split can do it)."""
        text = self.text
        if len(text) <= max_line_chars or len(self.words) < 2:
            return [text]
        splits = [len(" ".join(w.text for w in self.words[:k])) for k in range(1, len(self.words))]
        k = min(range(len(splits)), key=lambda i: (max(splits[i], len(text) - splits[i] - 1), i))
        return [text[: splits[k]], text[splits[k] + 1 :]]


def words_from_chunks(chunks: list[dict]) -> list[Word]:
    """`CTCDecoder` word chunks ({"text", "timestamp": (start, end), "confidence"?}) as `Word`s."""
    return [Word(c["text"], float(c["timestamp"][0]), float(c["timestamp"][1]), c.get("confidence")) for c in chunks]


def _fits(words: list[Word], rules: CueRules) -> bool:
    """Within the cue's time limit, and its lines within the line limit (one word longer than a line alone)."""
    if words[-1].end - words[0].start > rules.max_seconds:
        return False
    lines = (
        Segment(0.0, 0.0, words).lines(rules.max_line_chars)
        if rules.max_lines > 1
        else [" ".join(w.text for w in words)]
    )
    return len(words) == 1 or (
        len(lines) <= rules.max_lines and all(len(line) <= rules.max_line_chars for line in lines)
    )


def _blocks(words: list[Word], rules: CueRules) -> list[list[Word]]:
    """Runs of words with no pause of `max_pause` or more inside: no cue crosses from one to the next."""
    blocks: list[list[Word]] = []
    for word in words:
        if blocks and word.start - blocks[-1][-1].end < rules.max_pause:
            blocks[-1].append(word)
        else:
            blocks.append([word])
    return blocks


def _pack(block: list[Word], rules: CueRules) -> list[list[Word]]:
    """A block's words in cues: each grows until the next word would break a limit, or ends at a sentence end once
    it lasts the minimum."""
    cues: list[list[Word]] = []
    for word in block:
        current = cues[-1] if cues else None
        ended = current and current[-1].text.endswith(SENTENCE_ENDS)
        long_enough = current and current[-1].end - current[0].start >= rules.min_seconds
        if current is None or not _fits(current + [word], rules) or (ended and long_enough):
            cues.append([word])
        else:
            current.append(word)
    return cues


def _merge_short(cues: list[list[Word]], rules: CueRules) -> list[list[Word]]:
    """Cues shorter than the minimum merged with the shorter neighbour they fit with (repeated while one fits)."""
    merged = True
    while merged:
        merged = False
        for i, cue in enumerate(cues):
            if cue[-1].end - cue[0].start >= rules.min_seconds:
                continue
            options = [j for j in (i - 1, i + 1) if 0 <= j < len(cues)]
            options = [j for j in options if _fits(cues[min(i, j)] + cues[max(i, j)], rules)]
            if options:
                j = min(options, key=lambda j: cues[j][-1].end - cues[j][0].start)
                low = min(i, j)
                cues[low : low + 2] = [cues[low] + cues[low + 1]]
                merged = True
                break
    return cues


def _hold(segments: list[Segment], rules: CueRules) -> list[Segment]:
    """Each cue shown at least the minimum and long enough to read, where the silence around it allows: its end
    moves later, then its start earlier, never within `min_gap_seconds` of a neighbour (a cue whose last word runs
    into the next cue's gap ends that much earlier, as subtitlers close a gap to 2 frames)."""
    for i, segment in enumerate(segments):
        wanted = max(rules.min_seconds, len(segment.text) / rules.max_chars_per_second)
        later = segments[i + 1].start - rules.min_gap_seconds if i + 1 < len(segments) else float("inf")
        segment.end = max(segment.end, min(segment.start + wanted, later))
        segment.end = max(min(segment.end, later), segment.start + rules.min_gap_seconds)
        earlier = segments[i - 1].end + rules.min_gap_seconds if i > 0 else 0.0
        segment.start = min(segment.start, max(segment.end - wanted, earlier))
        segment.start, segment.end = round(segment.start, 3), round(segment.end, 3)
    return segments


def cues_from_words(words: list[Word], rules: CueRules = NETFLIX) -> list[Segment]:
    """The cues of a transcript's words, by `rules` (the module's docstring)."""
    cues = [cue for block in _blocks(words, rules) for cue in _merge_short(_pack(block, rules), rules)]
    return _hold([Segment(cue[0].start, cue[-1].end, cue) for cue in cues], rules)


def _clock(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"


def to_srt(segments: list[Segment]) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, their lines, a blank line after each."""
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n" + "\n".join(s.lines()) + "\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: list[Segment]) -> str:
    """WebVTT: the `WEBVTT` header, then `HH:MM:SS.mmm --> HH:MM:SS.mmm` cues and their lines."""
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n" + "\n".join(s.lines()) + "\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def subtitle_text(result: dict, fmt: str) -> str:
    """A transcription result with word chunks as the text of an .srt or .vtt file."""
    segments = cues_from_words(words_from_chunks(result.get("chunks", [])))
    return to_srt(segments) if fmt == "srt" else to_vtt(segments)


def subtitle_paths(files: list[str], out_dir: str, fmt: str) -> dict[str, str]:
    """{audio file: OUT_DIR/<its name>.<fmt>}; `ValueError` naming two inputs that would write the same file."""
    paths, taken = {}, {}
    for path in files:
        target = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + f".{fmt}")
        if target in taken:
            raise ValueError(f"{taken[target]} and {path} would both write {target}: give files with distinct names.")
        taken[target] = path
        paths[path] = target
    return paths

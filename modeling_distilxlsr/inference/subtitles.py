"""Words with times -> segments -> SRT / WebVTT subtitles, for `transcribe.py --format srt|vtt` and the server.

A CTC model gives every word its frames (20 ms each), so no alignment pass is needed: a segment (one subtitle cue)
ends at a pause of `max_pause` seconds or more between two words, or before the word that would make its line longer
than `max_chars` characters (42: the Netflix/BBC line-length guideline). Written by hand because the formats are a
few lines each and the subtitle packages (srt, webvtt-py) would only add a dependency for the formatting.
"""

import os
from dataclasses import dataclass, field

MAX_PAUSE_SECONDS = 0.6
MAX_LINE_CHARS = 42


@dataclass
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass
class Segment:
    start: float
    end: float
    words: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


def words_from_chunks(chunks: list[dict]) -> list[Word]:
    """`CTCDecoder` word chunks ({"text", "timestamp": (start, end), "confidence"?}) as `Word`s."""
    return [Word(c["text"], float(c["timestamp"][0]), float(c["timestamp"][1]), c.get("confidence")) for c in chunks]


def segments_from_words(
    words: list[Word], max_pause: float = MAX_PAUSE_SECONDS, max_chars: int = MAX_LINE_CHARS
) -> list[Segment]:
    """Consecutive words grouped into cues: a new cue at each pause of `max_pause` s or more, and before a word
    that would take the line past `max_chars` (a single longer word gets a cue of its own)."""
    segments: list[Segment] = []
    for word in words:
        current = segments[-1] if segments else None
        if (
            current is None
            or word.start - current.end >= max_pause
            or len(current.text) + 1 + len(word.text) > max_chars
        ):
            segments.append(Segment(word.start, word.end, [word]))
        else:
            current.words.append(word)
            current.end = word.end
    return segments


def _clock(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"


def to_srt(segments: list[Segment]) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each."""
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n" for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: list[Segment]) -> str:
    """WebVTT: the `WEBVTT` header, then `HH:MM:SS.mmm --> HH:MM:SS.mmm` cues."""
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def subtitle_text(result: dict, fmt: str) -> str:
    """A transcription result with word chunks as the text of an .srt or .vtt file."""
    segments = segments_from_words(words_from_chunks(result.get("chunks", [])))
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

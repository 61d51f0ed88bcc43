"""Where training audio comes from: find the utterances of a data source and read their lengths from file headers,
never decoding, with every input left out counted (`SkipCounter`) rather than crashing or vanishing.

Sources (`find_utterances`):
  - an audio folder, searched recursively (whatever libsndfile reads: wav, flac, ogg, mp3), with an optional
    `metadata.csv` in the Hugging Face audiofolder convention (`file_name,transcription,...`);
  - a CSV / TSV / JSONL manifest with a path column (`path`, `file_name` or `audio`), relative paths resolved against
    the manifest's folder, Common Voice's `validated.tsv` / `train.tsv` next to `clips/` included;
  - a Hugging Face dataset saved with `save_to_disk`, or a Hub dataset name (`name` or `name:config:split`).

`data.py` decodes and batches what this finds; `streaming.py` reads a Hugging Face dataset as a stream instead.
"""

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from accelerate.utils import gather_object

from ..errors import UserError
from ..models.audio_format import SAMPLING_RATE
from .header_cache import header_samples, read_header

logger = logging.getLogger(__name__)

# What libsndfile reads, then what only ffmpeg does (`decode.py` falls back to ffmpeg for them): a folder scan takes
# both, and names and counts every other file it leaves out.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
FFMPEG_EXTENSIONS = (".m4a", ".mp4", ".aac", ".webm", ".wma", ".amr", ".3gp", ".mka", ".mkv", ".oga", ".ac3", ".caf")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + FFMPEG_EXTENSIONS
# Beside audio, a data folder holds these by convention: never "left out"
# Files that belong beside the audio of a data folder, left out without a word: manifests, cards, and the corpus
# maker's word timings (`corpus.synthesis.WORD_TIMES_FILE`, which this lower room cannot import).
COMPANION_FILES = (
    "metadata.csv",
    "metadata.jsonl",
    "readme.md",
    ".gitattributes",
    "dataset_info.json",
    "word_times.jsonl",
)
PATH_COLUMNS = ("path", "file_name", "audio")
TEXT_COLUMNS = ("transcription", "sentence", "text")


@dataclass
class Utterance:
    """One audio file (or in-memory clip from a HF dataset) and what we know of it without decoding."""

    source: str | bytes  # a path, or encoded audio bytes from a HF dataset
    num_samples: int  # at 16 kHz, from the header
    text: str | None = None
    speaker: str | None = None
    name: str = ""

    @property
    def seconds(self) -> float:
        return self.num_samples / SAMPLING_RATE


@dataclass
class SkipCounter:
    """Counts inputs left out, by reason, for one summary line at the end of a run."""

    total: int = 0
    reasons: Counter = field(default_factory=Counter)
    seen: set = field(default_factory=set)  # (reason, name) of files that failed while decoding

    def skip(self, reason: str, name: str = "", detail: str = "", once: bool = False):
        """Counts one skip. `once`: for failures met while decoding, which come back every epoch and every
        evaluation: each file is counted the first time only."""
        if once:
            if (reason, name) in self.seen:
                return
            self.seen.add((reason, name))
        self.reasons[reason] += 1
        logger.info("skipping %s: %s %s", name, reason, detail)

    def state_dict(self) -> dict:
        return {"total": self.total, "reasons": dict(self.reasons), "seen": sorted(self.seen)}

    def load_state_dict(self, state: dict):
        self.total, self.reasons = state["total"], Counter(state["reasons"])
        self.seen = {tuple(entry) for entry in state["seen"]}

    def merge_ranks(self, sum_totals: bool = False):
        """Adds the decoding failures other DDP ranks met (each rank decodes its own share of the batches); the
        skips found while listing files are the same on every rank and stay counted once. `sum_totals`: each rank
        read its own part of a stream, so the totals add up."""

        if sum_totals:
            self.total = sum(gather_object([self.total]))
        for seen in gather_object([sorted(self.seen)]):
            for reason, name in seen:
                if (reason, name) not in self.seen:
                    self.seen.add((reason, name))
                    self.reasons[reason] += 1

    def summary(self, what: str = "files") -> str:
        skipped = sum(self.reasons.values())
        if not skipped:
            return f"skipped 0 of {self.total:,} {what}"
        ordered = sorted(self.reasons.items(), key=lambda item: (-item[1], item[0]))
        details = ", ".join(f"{n} {reason}" for reason, n in ordered)
        return f"skipped {skipped:,} of {self.total:,} {what}: {details}"


class ManifestError(UserError, ValueError):
    pass


class NoUsableAudioError(UserError, ValueError):
    """A data source in which no file can be used (each one counted with its reason in the message)."""


def decode_utf8_lines(path: str, raw_lines) -> Iterator[str]:
    """Decodes byte lines of a UTF-8 file (a BOM dropped); a byte sequence that is not UTF-8 is a `ManifestError`
    naming the file and line, not a UnicodeDecodeError from deep inside a reader."""
    for number, raw in enumerate(raw_lines, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise ManifestError(
                f"{path}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start}). Re-encode the file "
                "as UTF-8, e.g. `iconv -f latin1 -t utf-8`."
            ) from err


def _read_text_lines(path: str) -> list[str]:
    with open(path, "rb") as f:
        return list(decode_utf8_lines(path, f.read().splitlines()))


def read_manifest_rows(path: str) -> list[dict]:
    lines = _read_text_lines(path)
    if path.endswith(".jsonl") or path.endswith(".json"):
        rows = []
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ManifestError(f"{path}, line {number}: not valid JSON ({err.msg}).") from err
        return rows
    delimiter = "\t" if path.endswith(".tsv") else ","
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # Common Voice TSVs contain bare quotes
    records = list(csv.reader(lines, delimiter=delimiter, quoting=quoting))
    if not records:
        return []
    header = records[0]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # csv.DictReader would keep the last of them, silently
        raise ManifestError(f"{path}: column(s) {repeated} appear more than once in the header {header}: rename them.")
    # A header row again further down (files concatenated with `cat`): not a file to look for, and said so.
    headers_again = [number for number, record in enumerate(records[1:], start=2) if record == header]
    if headers_again:
        logger.warning(
            "%s: the header row is repeated at line(s) %s (concatenated files?): left out",
            path,
            ", ".join(map(str, headers_again[:10])) + (" ..." if len(headers_again) > 10 else ""),
        )
    return [
        dict(zip(header, record, strict=False)) | _extra(record, header)
        for record in records[1:]
        if record and record != header
    ]


def _extra(record: list[str], header: list[str]) -> dict:
    """What csv.DictReader gives a row longer or shorter than the header: missing fields None, extra ones under
    None (kept, so that a row with a stray delimiter is noticed where its columns are used)."""
    if len(record) == len(header):
        return {}
    if len(record) < len(header):
        return dict.fromkeys(header[len(record) :])
    return {None: record[len(header) :]}


def pick_column(row: dict, names, path: str, what: str, required: bool):
    for name in names:
        if name in row:
            return name
    if required:
        raise ManifestError(f"{path}: no {what} column; expected one of {', '.join(names)}, got {list(row)}.")
    return None


def resolve_manifest_path(manifest_dir: str, value: str) -> str:
    if os.path.isabs(value):
        return value
    candidate = os.path.join(manifest_dir, value)
    clips = os.path.join(manifest_dir, "clips", value)  # Common Voice: clips/ beside the TSV
    return clips if not os.path.exists(candidate) and os.path.exists(clips) else candidate


def _rows_to_entries(rows: list[dict], manifest_path: str) -> list[tuple[str, str | None, str | None]]:
    if not rows:
        return []
    path_column = pick_column(rows[0], PATH_COLUMNS, manifest_path, "audio path", required=True)
    text_column = pick_column(rows[0], TEXT_COLUMNS, manifest_path, "transcript", required=False)
    speaker_column = pick_column(rows[0], ("speaker", "client_id", "speaker_id"), manifest_path, "", False)
    manifest_dir = os.path.dirname(os.path.abspath(manifest_path))
    return [
        (
            resolve_manifest_path(manifest_dir, row[path_column]),
            row.get(text_column) if text_column else None,
            row.get(speaker_column) if speaker_column else None,
        )
        for row in rows
    ]


def _is_saved_dataset(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "dataset_info.json")) or os.path.isfile(
        os.path.join(path, "dataset_dict.json")
    )


def load_hf_audio_dataset(spec: str, streaming: bool = False):
    """A `save_to_disk` folder, or anything `datasets.load_dataset` takes (a Hub name as `name` or
    `name:config:split`, or a local folder of data files), with its audio column cast to `Audio(decode=False)`:
    we decode with soundfile ourselves. Returns (dataset, audio column, text column or None)."""
    import datasets  # lazy: optional dependency

    if os.path.isdir(spec) and _is_saved_dataset(spec):
        dataset = datasets.load_from_disk(spec)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        if streaming:  # shards let DDP ranks and DataLoader workers read disjoint parts
            dataset = dataset.to_iterable_dataset(num_shards=max(1, min(len(dataset), 64)))
    else:
        name, config, split = (spec.split(":") + [None, None])[:3]
        if not split:  # "train", or the only split there is (a local folder named dev/ is a "validation" split)
            splits = datasets.get_dataset_split_names(name, config or None)
            if "train" not in splits and len(splits) != 1:
                raise ManifestError(f"{spec}: no 'train' split; name one of {splits} as {name}:{config or ''}:SPLIT.")
            split = "train" if "train" in splits else splits[0]
        dataset = datasets.load_dataset(name, config or None, split=split, streaming=streaming)
    columns = dataset.column_names or list(dataset.features or {})
    audio_column = next((c for c in ("audio", "path", "file_name") if c in columns), None)
    if audio_column is None:
        raise ManifestError(f"{spec}: no audio column (audio, path or file_name) in {columns}.")
    if audio_column == "audio":
        dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
    return dataset, audio_column, text_column


def hf_row_entry(row: dict, audio_column: str, text_column: str | None) -> tuple:
    """(source, text, speaker, name) of one dataset row; the source is the encoded bytes, or a path."""
    audio = row[audio_column]
    source = (audio.get("bytes") or audio.get("path")) if isinstance(audio, dict) else audio
    path = audio.get("path") if isinstance(audio, dict) else audio if isinstance(audio, str) else None
    return source, row.get(text_column) if text_column else None, row.get("speaker"), path


def _entries_from_hf_dataset(spec: str):
    """(source, text, speaker) from a `save_to_disk` folder or a Hub dataset, audio kept encoded (decode=False)."""
    dataset, audio_column, text_column = load_hf_audio_dataset(spec)
    for row in dataset:
        yield hf_row_entry(row, audio_column, text_column)[:3]


def list_sources(spec: str) -> list[tuple[str | bytes, str | None, str | None]]:
    """(audio, transcript, speaker) entries of a data source, before any audio is opened."""
    if os.path.isfile(spec):
        return _rows_to_entries(read_manifest_rows(spec), spec)
    if os.path.isdir(spec):
        metadata = os.path.join(spec, "metadata.csv")
        if os.path.isfile(metadata):
            return _rows_to_entries(read_manifest_rows(metadata), metadata)
        if _is_saved_dataset(spec):
            return list(_entries_from_hf_dataset(spec))
        return [(path, None, None) for path in scan_audio_folder(spec)]
    try:
        return list(_entries_from_hf_dataset(spec))
    except Exception as err:  # any failure here means "not a dataset either"
        raise ManifestError(
            f"{spec!r} is not an audio folder, a manifest (.csv/.tsv/.jsonl) or a loadable Hugging Face dataset: {err}"
        ) from err


def find_utterances(spec: str, skips: SkipCounter, min_samples: int = 400, need_text: bool = False):
    """The usable utterances of a data source, lengths read from headers. Unreadable, empty and too-short files
    (and, with `need_text`, ones without a transcript) are counted in `skips` and left out, and so are the audio
    files of a folder that its metadata.csv does not list."""
    entries = list_sources(spec)
    count_unlisted_files(spec, entries, skips)
    utterances = usable_utterances(entries, skips, min_samples, need_text)
    if not utterances:
        raise NoUsableAudioError(f"No usable audio in {spec!r} ({skips.summary()}).")
    return utterances


def count_unlisted_files(spec: str, entries, skips: SkipCounter):
    """A folder's audio files that its metadata.csv leaves out are not used: said in the summary, never silently."""
    if not (os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "metadata.csv"))):
        return
    listed = {os.path.abspath(source) for source, _, _ in entries if isinstance(source, str)}
    for path in scan_audio_folder(spec):
        if os.path.abspath(path) not in listed:
            skips.total += 1
            skips.skip("not listed in metadata.csv", path)


def probe_audio(source, min_samples: int, header: tuple[int, str | None] | None = None) -> tuple[int, str | None, str]:
    """(samples at 16 kHz, skip reason or None, detail) from the file header alone, without decoding (`header`:
    what `header_cache.header_samples` already read)."""
    if isinstance(source, str) and not os.path.exists(source):
        return 0, "missing", ""
    if (isinstance(source, str) and os.path.getsize(source) == 0) or (isinstance(source, bytes) and not source):
        return 0, "empty (0 bytes)", ""
    num_samples, error = header or read_header(source)
    if error:
        return 0, "unreadable", error
    if num_samples < min_samples:
        return num_samples, "too short", f"{num_samples} samples at 16 kHz"
    return num_samples, None, ""


def usable_utterances(entries, skips: SkipCounter, min_samples: int = 400, need_text: bool = False, names=None):
    """`Utterance`s of the (source, text, speaker) entries that pass the header checks; the others are counted.
    Files' headers are read in parallel, once: `header_cache` keeps them for the next run."""
    headers = header_samples([source for source, _, _ in entries if isinstance(source, str)])
    utterances = []
    for index, (source, text, speaker) in enumerate(entries):
        name = names[index] if names else source if isinstance(source, str) else f"<bytes {len(source)}>"
        skips.total += 1
        header = headers.get(source) if isinstance(source, str) else None
        num_samples, reason, detail = probe_audio(source, min_samples, header)
        if reason:
            skips.skip(reason, name, detail)
            continue
        if need_text and not (text or "").strip():
            skips.skip("no transcript", name)
            continue
        utterances.append(Utterance(source, num_samples, text, speaker, name))
    return utterances


def scan_audio_folder(folder: str, log=None) -> list[str]:
    """The audio files under `folder` (recursively, sorted), by extension (`AUDIO_EXTENSIONS`): dangling symbolic
    links included, so that each is reported as missing rather than vanishing. Every other file is left out, and
    said so once, by count and name, through `log` (default: a warning), so that "3 files" for a folder of 5 always
    comes with the 2 it did not take."""
    audio, others = [], []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.lower().endswith(AUDIO_EXTENSIONS):
                audio.append(path)
            elif name.lower() not in COMPANION_FILES and not name.startswith("."):
                others.append(path)
    if others:
        kinds = Counter(os.path.splitext(p)[1].lower() or "(no extension)" for p in others)
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        (log or logger.warning)(
            f"{folder}: {len(others)} file(s) left out, not audio by their extension "
            f"({', '.join(f'{n} {kind}' for kind, n in kinds.most_common())}): {shown}"
        )
    return sorted(audio)


def list_audio_files(inputs: list[str], log=None) -> list[str]:
    """The files `transcribe.py` gets: each file given, and the audio files of each folder given."""
    files = []
    for path in inputs:
        if os.path.isdir(path):
            files.extend(scan_audio_folder(path, log))
        elif os.path.lexists(path):  # a dangling link given by name is a missing file, reported as such
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    return sorted(files)

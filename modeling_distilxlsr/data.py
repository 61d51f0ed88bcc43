"""Audio data shared by distillation and CTC fine-tuning: find utterances, read their lengths from file headers,
decode to 16 kHz mono float, normalise, crop, and batch by length, with every bad input counted rather than crashing.

Sources (`find_utterances`):
  - an audio folder, searched recursively (whatever libsndfile reads: wav, flac, ogg, mp3), with an optional
    `metadata.csv` in the Hugging Face audiofolder convention (`file_name,transcription,...`);
  - a CSV / TSV / JSONL manifest with a path column (`path`, `file_name` or `audio`), relative paths resolved against
    the manifest's folder, Common Voice's `validated.tsv` / `train.tsv` next to `clips/` included;
  - a Hugging Face dataset saved with `save_to_disk`, or a Hub dataset name (`name` or `name:config:split`).

`streaming.py` reads a Hugging Face dataset as a stream instead (`--streaming`); `ctc_data.py` turns utterances into
CTC training examples.

Decoding is done with soundfile + librosa rather than `datasets.Audio`, whose decoder (torchcodec) does not load with
every torch build; lengths come from headers (`soundfile.info`) so filtering and length grouping never decode audio.
"""

import csv
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import librosa
import numpy as np
import soundfile as sf
import torch
from transformers import Wav2Vec2FeatureExtractor
from transformers.trainer_pt_utils import get_length_grouped_indices

from .audio_format import SAMPLING_RATE, default_feature_extractor
from .header_cache import header_samples, read_header

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
PATH_COLUMNS = ("path", "file_name", "audio")
# A clip whose samples, once its mean (DC offset) is removed, have a standard deviation below this (-80 dBFS) holds
# no speech: all-zero and DC-only clips are skipped and counted as "silent or DC only" rather than trained on.
SILENCE_STD = 1e-4
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
        from accelerate.utils import gather_object

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


class ManifestError(ValueError):
    pass


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
    return list(csv.DictReader(lines, delimiter=delimiter, quoting=quoting))


def _pick_column(row: dict, names, path: str, what: str, required: bool):
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
    path_column = _pick_column(rows[0], PATH_COLUMNS, manifest_path, "audio path", required=True)
    text_column = _pick_column(rows[0], TEXT_COLUMNS, manifest_path, "transcript", required=False)
    speaker_column = _pick_column(rows[0], ("speaker", "client_id", "speaker_id"), manifest_path, "", False)
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
    import datasets

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
        files = []
        for root, _, names in os.walk(spec):
            files.extend(os.path.join(root, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS))
        return [(path, None, None) for path in sorted(files)]
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
        raise ValueError(f"No usable audio in {spec!r} ({skips.summary()}).")
    return utterances


def count_unlisted_files(spec: str, entries, skips: SkipCounter):
    """A folder's audio files that its metadata.csv leaves out are not used: said in the summary, never silently."""
    if not (os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "metadata.csv"))):
        return
    listed = {os.path.abspath(source) for source, _, _ in entries if isinstance(source, str)}
    for root, _, names in os.walk(spec):
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.lower().endswith(AUDIO_EXTENSIONS) and os.path.abspath(path) not in listed:
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


class AudioDecodeError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def load_audio(source) -> np.ndarray:
    """Decodes to float32 mono at 16 kHz (channels averaged, resampled with soxr through librosa)."""
    try:
        audio, sample_rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32")
    except Exception as err:
        raise AudioDecodeError("unreadable", str(err)) from err
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise AudioDecodeError("NaN/Inf samples")
    if sample_rate != SAMPLING_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLING_RATE, res_type="soxr_hq")
    return audio.astype(np.float32)


def normalize(audio: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: exactly what `Wav2Vec2FeatureExtractor(do_normalize=True)` does at inference."""
    return Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm([audio], attention_mask=None)[0]


def decode_item(
    utterance: Utterance,
    max_samples: int | None,
    random_crop: bool,
    rng: np.random.Generator,
    augmenter=None,
    paired: bool = False,
) -> dict:
    """A training item: decoded, cropped to `max_samples` (at random or from the start), normalised; or
    `{"skip": reason, "name": ...}` when the file fails to decode or is silent (`SILENCE_STD`), for the collator to
    report. With an `augmenter` (augment.py), corrupted on the fly from `rng`: `paired` (distillation) keeps what the
    teacher hears as `input_values` and adds what the student hears as `student_input_values`; otherwise the
    corrupted clip replaces the clean one."""
    try:
        audio = load_audio(utterance.source)
    except AudioDecodeError as err:
        return {"skip": err.reason, "name": utterance.name}
    if np.std(audio) < SILENCE_STD:  # the whole clip, before any crop
        return {"skip": "silent or DC only", "name": utterance.name}
    if max_samples and len(audio) > max_samples:
        start = int(rng.integers(0, len(audio) - max_samples + 1)) if random_crop else 0
        audio = audio[start : start + max_samples]
    if augmenter is None:
        item = {"input_values": normalize(audio)}
    else:
        teacher_audio, student_audio = augmenter(audio, rng)
        item = {"input_values": normalize(teacher_audio if paired else student_audio)}
        if paired:
            item["student_input_values"] = normalize(student_audio)
    if utterance.text is not None:
        item["text"] = utterance.text
    return item


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one example in one epoch (crop and corruptions): the same in every run with `seed`,
    resumed or not, whichever worker decodes it."""
    return np.random.default_rng([seed, epoch, index])


class AudioDataset(torch.utils.data.Dataset):
    """Decoded, cropped, normalised (and, with an `augmenter`, corrupted) utterances. A file that fails to decode
    yields `{"skip": reason}` instead of raising, so one bad file never kills a run; the collator drops it and
    reports the reason. Keys are indices, or `(index, epoch)` pairs from `LengthGroupedSampler`, which seed the
    example's random stream (`example_rng`)."""

    def __init__(
        self,
        utterances: list[Utterance],
        max_samples: int | None = None,
        random_crop: bool = True,
        augmenter=None,
        seed: int = 0,
        paired: bool = False,
    ):
        self.utterances = utterances
        self.max_samples = max_samples
        self.random_crop = random_crop
        self.augmenter, self.seed, self.paired = augmenter, seed, paired

    def __len__(self):
        return len(self.utterances)

    @property
    def lengths(self) -> list[int]:
        return [min(u.num_samples, self.max_samples or u.num_samples) for u in self.utterances]

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = example_rng(self.seed, epoch, index)
        return decode_item(self.utterances[index], self.max_samples, self.random_crop, rng, self.augmenter, self.paired)


class LengthGroupedSampler(torch.utils.data.Sampler):
    """transformers' length grouping (random mega-batches sorted by length, so a batch holds similar lengths and
    little padding), reshuffled per epoch from `seed` so that every DDP rank draws the same order."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        """(index, epoch) keys: the epoch reaches the dataset in the workers (persistent workers keep a copy made
        at the first epoch, so an attribute set later would not), and seeds each example's random stream."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        return iter([(index, self.epoch) for index in indices])


class AudioCollator:
    """Pads a batch with the feature extractor (attention mask included) and passes on what was skipped."""

    def __init__(self, feature_extractor: Wav2Vec2FeatureExtractor | None = None):
        self.feature_extractor = feature_extractor or default_feature_extractor()

    def __call__(self, items: list[dict]) -> dict:
        good = [item for item in items if "skip" not in item]
        batch = {"skipped": [(item["skip"], item["name"]) for item in items if "skip" in item], "num_items": len(items)}
        if good:
            batch.update(
                self.feature_extractor.pad(
                    {"input_values": [item["input_values"] for item in good]},
                    padding=True,
                    return_attention_mask=True,
                    return_tensors="pt",
                )
            )
            batch["attention_mask"] = batch["attention_mask"].long()
            if "student_input_values" in good[0]:  # same lengths as input_values: same mask
                batch["student_input_values"] = self.feature_extractor.pad(
                    {"input_values": [item["student_input_values"] for item in good]},
                    padding=True,
                    return_tensors="pt",
                )["input_values"]
        return batch

    def stand_in(self, num_samples: int = SAMPLING_RATE) -> dict:
        """The batch for a step whose clips all failed to decode: one silent clip (with a one-letter transcript for a
        CTC collator). Run with zero loss weight, it keeps DDP ranks in step: every rank must run forward and
        backward at every step, or the gradient all-reduce hangs. One second long, so that SpecAugment's time masks
        (10 frames by default) fit in it."""
        return self([{"input_values": np.zeros(num_samples, np.float32), "text": "a", "name": "stand-in"}])


def split_eval(utterances: list[Utterance], fraction: float, seed: int) -> tuple[list, list]:
    """A held-out fraction of `utterances` (at least one, and one left for training), drawn with `seed`."""
    order = np.random.default_rng(seed).permutation(len(utterances))
    n_eval = min(max(1, round(fraction * len(utterances))), len(utterances) - 1)
    if n_eval < 1:
        raise ValueError("Need at least 2 utterances to hold one out for evaluation; pass --eval_data.")
    eval_ids = set(order[:n_eval].tolist())
    train = [u for i, u in enumerate(utterances) if i not in eval_ids]
    held_out = [u for i, u in enumerate(utterances) if i in eval_ids]
    return train, held_out


def make_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, collator, num_workers: int = 0, shuffle_seed: int | None = None
):
    """A DataLoader over `dataset`: length-grouped and reshuffled per epoch when `shuffle_seed` is given (training),
    in order otherwise (evaluation). A `StreamingAudioDataset` orders itself."""
    sampler = LengthGroupedSampler(dataset.lengths, batch_size, seed=shuffle_seed) if shuffle_seed is not None else None
    # A generator of its own: a DataLoader draws a seed from its generator each time an iterator starts (every
    # evaluation, every epoch, the restart after a resume); drawn from the global RNG, that shifted the dropout
    # masks of every later step, and a resumed run drifted from the run it continues.
    generator = torch.Generator().manual_seed(shuffle_seed or 0)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
    )

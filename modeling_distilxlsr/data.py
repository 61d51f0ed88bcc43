"""Audio data shared by distillation and CTC fine-tuning: find utterances, read their lengths from file headers,
decode to 16 kHz mono float, normalise, crop, and batch by length, with every bad input counted rather than crashing.

Sources (`find_utterances`):
  - an audio folder, searched recursively (whatever libsndfile reads: wav, flac, ogg, mp3), with an optional
    `metadata.csv` in the Hugging Face audiofolder convention (`file_name,transcription,...`);
  - a CSV / TSV / JSONL manifest with a path column (`path`, `file_name` or `audio`), relative paths resolved against
    the manifest's folder, Common Voice's `validated.tsv` / `train.tsv` next to `clips/` included;
  - a Hugging Face dataset saved with `save_to_disk`, or a Hub dataset name (`name` or `name:config:split`).

Decoding is done with soundfile + librosa rather than `datasets.Audio`, whose decoder (torchcodec) does not load with
every torch build; lengths come from headers (`soundfile.info`) so filtering and length grouping never decode audio.
"""

import csv
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field

import librosa
import numpy as np
import soundfile as sf
import torch
from transformers import Wav2Vec2FeatureExtractor
from transformers.trainer_pt_utils import get_length_grouped_indices

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
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

    def merge_ranks(self):
        """Adds the decoding failures other DDP ranks met (each rank decodes its own share of the batches); the
        skips found while listing files are the same on every rank and stay counted once."""
        from accelerate.utils import gather_object

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


def _read_text_lines(path: str) -> list[str]:
    """Lines of a UTF-8 file; a byte sequence that is not UTF-8 is reported with its file and line number."""
    with open(path, "rb") as f:
        raw_lines = f.read().splitlines()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            raise ManifestError(
                f"{path}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start}). Re-encode the manifest "
                "as UTF-8, e.g. `iconv -f latin1 -t utf-8`."
            ) from err
    return lines


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


def _resolve(manifest_dir: str, value: str) -> str:
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
            _resolve(manifest_dir, row[path_column]),
            row.get(text_column) if text_column else None,
            row.get(speaker_column) if speaker_column else None,
        )
        for row in rows
    ]


def _header_num_samples(source) -> int:
    info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else source)
    if info.frames <= 0:
        raise sf.LibsndfileError(0, prefix="no audio frames ")
    return int(info.frames * SAMPLING_RATE / info.samplerate)


def _entries_from_hf_dataset(spec: str):
    """(source, text, speaker) from a `save_to_disk` folder or a Hub dataset, audio kept encoded (decode=False)."""
    import datasets

    if os.path.isdir(spec):
        dataset = datasets.load_from_disk(spec)
    else:
        name, config, split = (spec.split(":") + [None, None])[:3]
        dataset = datasets.load_dataset(name, config, split=split or "train")
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    audio_column = next((c for c in ("audio", "path", "file_name") if c in dataset.column_names), None)
    if audio_column is None:
        raise ManifestError(f"{spec}: no audio column (audio, path or file_name) in {dataset.column_names}.")
    if audio_column == "audio":
        dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    text_column = next((c for c in TEXT_COLUMNS if c in dataset.column_names), None)
    for row in dataset:
        audio = row[audio_column]
        if isinstance(audio, dict):
            source = audio.get("bytes") or audio.get("path")
        else:
            source = audio
        yield source, row.get(text_column) if text_column else None, row.get("speaker")


def list_sources(spec: str) -> list[tuple[str | bytes, str | None, str | None]]:
    """(audio, transcript, speaker) entries of a data source, before any audio is opened."""
    if os.path.isfile(spec):
        return _rows_to_entries(read_manifest_rows(spec), spec)
    if os.path.isdir(spec):
        metadata = os.path.join(spec, "metadata.csv")
        if os.path.isfile(metadata):
            return _rows_to_entries(read_manifest_rows(metadata), metadata)
        if os.path.isfile(os.path.join(spec, "dataset_info.json")) or os.path.isfile(
            os.path.join(spec, "dataset_dict.json")
        ):
            return list(_entries_from_hf_dataset(spec))
        files = []
        for root, _, names in os.walk(spec):
            files.extend(os.path.join(root, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS))
        return [(path, None, None) for path in sorted(files)]
    try:
        return list(_entries_from_hf_dataset(spec))
    except Exception as err:  # noqa: BLE001 - any failure here means "not a dataset either"
        raise ManifestError(
            f"{spec!r} is not an audio folder, a manifest (.csv/.tsv/.jsonl) or a loadable Hugging Face dataset: {err}"
        ) from err


def find_utterances(spec: str, skips: SkipCounter, min_samples: int = 400, need_text: bool = False):
    """The usable utterances of a data source, lengths read from headers. Unreadable, empty and too-short files
    (and, with `need_text`, ones without a transcript) are counted in `skips` and left out."""
    utterances = []
    for source, text, speaker in list_sources(spec):
        name = source if isinstance(source, str) else f"<bytes {len(source)}>"
        skips.total += 1
        if isinstance(source, str) and not os.path.exists(source):
            skips.skip("missing", name)
            continue
        if isinstance(source, str) and os.path.getsize(source) == 0:
            skips.skip("empty (0 bytes)", name)
            continue
        try:
            num_samples = _header_num_samples(source)
        except Exception as err:  # noqa: BLE001 - libsndfile raises several types for corrupt files
            skips.skip("unreadable", name, str(err))
            continue
        if num_samples < min_samples:
            skips.skip("too short", name, f"{num_samples} samples at 16 kHz")
            continue
        if need_text and not (text or "").strip():
            skips.skip("no transcript", name)
            continue
        utterances.append(Utterance(source, num_samples, text, speaker, name))
    if not utterances:
        raise ValueError(f"No usable audio in {spec!r} ({skips.summary()}).")
    return utterances


class AudioDecodeError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def load_audio(source) -> np.ndarray:
    """Decodes to float32 mono at 16 kHz (channels averaged, resampled with soxr through librosa)."""
    try:
        audio, sample_rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32")
    except Exception as err:  # noqa: BLE001
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


class AudioDataset(torch.utils.data.Dataset):
    """Decoded, cropped, normalised utterances. A file that fails to decode yields `{"skip": reason}` instead of
    raising, so one bad file never kills a run; the collator drops it and reports the reason."""

    def __init__(self, utterances: list[Utterance], max_samples: int | None = None, random_crop: bool = True):
        self.utterances = utterances
        self.max_samples = max_samples
        self.random_crop = random_crop

    def __len__(self):
        return len(self.utterances)

    @property
    def lengths(self) -> list[int]:
        return [min(u.num_samples, self.max_samples or u.num_samples) for u in self.utterances]

    def __getitem__(self, index):
        utterance = self.utterances[index]
        try:
            audio = load_audio(utterance.source)
        except AudioDecodeError as err:
            return {"skip": err.reason, "name": utterance.name}
        if self.max_samples and len(audio) > self.max_samples:
            start = int(torch.randint(0, len(audio) - self.max_samples + 1, ())) if self.random_crop else 0
            audio = audio[start : start + self.max_samples]
        item = {"input_values": normalize(audio), "index": index}
        if utterance.text is not None:
            item["text"] = utterance.text
        return item


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
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class AudioCollator:
    """Pads a batch with the feature extractor (attention mask included) and passes on what was skipped."""

    def __init__(self, feature_extractor: Wav2Vec2FeatureExtractor | None = None):
        self.feature_extractor = feature_extractor or Wav2Vec2FeatureExtractor(return_attention_mask=True)

    def __call__(self, items: list[dict]) -> dict:
        good = [item for item in items if "skip" not in item]
        batch = {"skipped": [(item["skip"], item["name"]) for item in items if "skip" in item]}
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
        return batch


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
    dataset: AudioDataset, batch_size: int, collator, num_workers: int = 0, shuffle_seed: int | None = None
):
    """A DataLoader over `dataset`: length-grouped and reshuffled per epoch when `shuffle_seed` is given (training),
    in order otherwise (evaluation)."""
    sampler = LengthGroupedSampler(dataset.lengths, batch_size, seed=shuffle_seed) if shuffle_seed is not None else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def prepare_ctc_utterances(
    utterances: list[Utterance],
    normalizer,
    tokenizer,
    frames_for_samples,
    skips: SkipCounter,
    max_samples: int | None = None,
) -> list[Utterance]:
    """Normalises transcripts and keeps the utterances CTC can learn from. Dropped and counted: transcripts that
    normalise to nothing (or contain digits with `digits="drop"`), clips longer than `max_samples`, and clips too
    short for their transcript (fewer frames than CTC needs: the loss would be infinite)."""
    from .text import ctc_min_frames

    kept = []
    for utterance in utterances:
        text = normalizer(utterance.text or "")
        if text is None:
            skips.skip("transcript with digits (--digits drop)", utterance.name)
            continue
        if not text:
            skips.skip("transcript empty after normalisation", utterance.name, repr(utterance.text))
            continue
        if max_samples and utterance.num_samples > max_samples:
            skips.skip("too long", utterance.name, f"{utterance.seconds:.1f} s")
            continue
        frames = int(frames_for_samples(utterance.num_samples))
        needed = ctc_min_frames(tokenizer(text).input_ids)
        if frames < needed:
            skips.skip("too short for its transcript", utterance.name, f"{frames} frames < {needed} needed")
            continue
        kept.append(Utterance(utterance.source, utterance.num_samples, text, utterance.speaker, utterance.name))
    return kept


class CTCCollator(AudioCollator):
    """Pads audio (with attention mask) and tokenised transcripts; label padding is -100 so the loss ignores it."""

    def __init__(self, processor):
        super().__init__(processor.feature_extractor)
        self.tokenizer = processor.tokenizer

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__(items)
        texts = [item["text"] for item in items if "skip" not in item]
        if texts:
            labels = self.tokenizer(texts, padding=True, return_tensors="pt", return_attention_mask=True)
            batch["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
            batch["texts"] = texts
        return batch

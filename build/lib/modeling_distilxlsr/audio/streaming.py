"""A Hugging Face dataset read as a stream (`--streaming`), for corpora larger than disk or memory: each DDP rank
reads its own part, rows are shuffled in a buffer and batched by header length within a window, nothing is listed up
front, and a resume re-reads the stream up to its saved position without decoding it."""

import hashlib
import os

import numpy as np
import torch

from .dataset import decode_item
from .sources import (
    AUDIO_EXTENSIONS,
    ManifestError,
    SkipCounter,
    Utterance,
    hf_row_entry,
    load_hf_audio_dataset,
    probe_audio,
    usable_utterances,
)


def _holds_audio_files(folder: str) -> bool:
    for _, _, names in os.walk(folder):
        if any(name.lower().endswith(AUDIO_EXTENSIONS) for name in names):
            return True
    return False


def _audio_key(source) -> str:
    return hashlib.blake2b(source, digest_size=16).hexdigest() if isinstance(source, bytes) else str(source)


def open_audio_stream(
    spec: str, rank: int, world_size: int, seed: int, shuffle_buffer: int, held_out: int, skips: SkipCounter
):
    """A Hugging Face dataset read as a stream for `StreamingAudioDataset`: shuffled with a fixed seed (every rank
    must draw the same shard order), its first `held_out` examples kept apart as the evaluation set (and filtered out
    of the training stream by content: `IterableDataset.skip` would be divided among the ranks), and split
    between DDP ranks with `datasets.distributed.split_dataset_by_node` (whole shards per rank when the shard count
    divides evenly, every world_size-th example otherwise). Returns (this rank's stream, held-out utterances,
    audio column, text column); an empty stream is an error here, before any training."""
    from datasets.distributed import split_dataset_by_node  # lazy: optional dependency

    if os.path.isfile(spec) or (os.path.isdir(spec) and _holds_audio_files(spec)):
        raise ManifestError(
            f"--streaming reads Hugging Face datasets (a Hub name, parquet/arrow files, a save_to_disk folder); "
            f"{spec!r} is an audio folder or manifest: drop --streaming, such sources are listed from file headers "
            "without decoding or loading any audio."
        )
    try:
        dataset, audio_column, text_column = load_hf_audio_dataset(spec, streaming=True)
        first = [hf_row_entry(row, audio_column, text_column) for row in dataset.take(max(held_out, 1))]
    except ImportError as err:  # datasets 5 imports torchcodec to pass even undecoded audio files through
        raise ManifestError(
            f"--streaming {spec!r}: datasets needs torchcodec to stream this dataset's audio files ({err}). Install "
            "torchcodec for your torch build, or convert the dataset to parquet with the audio as bytes."
        ) from err
    except Exception as err:  # datasets raises many types for "not a dataset"
        raise ManifestError(f"--streaming: cannot open {spec!r} as a Hugging Face dataset: {err}") from err
    if not first:
        raise ValueError(f"No usable audio in {spec!r}: the stream is empty.")
    held_out_rows = first[:held_out]
    eval_utterances = usable_utterances(
        [entry[:3] for entry in held_out_rows],
        skips if rank == 0 else SkipCounter(),  # every rank reads the same held-out rows: count them once
        names=[entry[3] or f"example {i}" for i, entry in enumerate(held_out_rows)],
    )
    stream = dataset
    if held_out:
        held_out_keys = {_audio_key(entry[0]) for entry in held_out_rows}
        stream = stream.filter(lambda row: _audio_key(hf_row_entry(row, audio_column, None)[0]) not in held_out_keys)
    stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer)
    stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
    return stream, eval_utterances, audio_column, text_column


class StreamingAudioDataset(torch.utils.data.IterableDataset):
    """An endless stream of training items from this rank's part of a Hugging Face dataset (`open_audio_stream`),
    pass after pass (reshuffled each pass with `set_epoch`), for corpora too large to list or hold.

    Length grouping without knowing every length: rows are read `sort_buffer` at a time, their lengths taken from the
    headers, sorted, and yielded in order, so consecutive items (one batch) have similar lengths; only then decoded.
    Bad rows become `{"skip": reason}` items, reported by the collator like the map-style dataset's.

    Resuming: `resume_after(batches)` skips, without decoding, the items of the batches already consumed. The stream
    is endless and DataLoader workers deliver batches in strict turn, so each worker knows how many of its own
    batches were used; the stream itself is re-read up to that point (what streaming allows). With one worker (or
    none) the batches that follow are exactly those of an uninterrupted run; with W workers the same batches come,
    possibly in another order within each turn of W (a new DataLoader always starts its turn at worker 0).
    """

    def __init__(
        self,
        stream,
        audio_column: str,
        text_column: str | None,
        batch_size: int,
        max_samples: int | None,
        min_samples: int,
        sort_buffer: int,
        random_crop: bool = True,
        augmenter=None,
        seed: int = 0,
    ):
        self.stream, self.audio_column, self.text_column = stream, audio_column, text_column
        self.batch_size, self.max_samples, self.min_samples = batch_size, max_samples, min_samples
        self.sort_buffer = max(sort_buffer // batch_size, 1) * batch_size
        self.random_crop = random_crop
        self.augmenter, self.seed = augmenter, seed  # paired (distillation) corruptions, seeded per row and pass
        self.skip_batches = 0

    def resume_after(self, batches: int):
        self.skip_batches = batches

    def _sorted_rows(self, worker_id: int):
        """(utterance or skip item, sort key, random stream) of every row, pass after pass, sorted within each
        buffer; the random stream is seeded by (seed, pass, worker, row), so a resumed run draws the same crops and
        corruptions."""
        epoch = 0
        while True:
            self.stream.set_epoch(epoch)
            buffer, rows_this_pass = [], 0
            for index, row in enumerate(self.stream):
                rows_this_pass += 1
                source, text, speaker, path = hf_row_entry(row, self.audio_column, self.text_column)
                name = path or f"example {index} of worker {worker_id}, pass {epoch}"
                num_samples, reason, detail = probe_audio(source, self.min_samples)
                if reason:
                    buffer.append(({"skip": reason, "name": name}, 0, None))
                else:
                    length = min(num_samples, self.max_samples or num_samples)
                    rng = np.random.default_rng([self.seed, epoch, worker_id, index])
                    buffer.append((Utterance(source, num_samples, text, speaker, name), length, rng))
                if len(buffer) == self.sort_buffer:
                    yield from sorted(buffer, key=lambda entry: entry[1])
                    buffer = []
            yield from sorted(buffer, key=lambda entry: entry[1])
            if rows_this_pass == 0:  # this worker's share of the stream is empty: stop rather than spin
                return
            epoch += 1

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        num_workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        own_batches = max(0, -(-(self.skip_batches - worker_id) // num_workers))  # batches w, w + W, ... < skip
        to_skip = own_batches * self.batch_size
        for entry, _, rng in self._sorted_rows(worker_id):
            if to_skip:
                to_skip -= 1
                continue
            if isinstance(entry, dict):
                yield entry
            else:
                yield decode_item(entry, self.max_samples, self.random_crop, rng, self.augmenter, paired=True)

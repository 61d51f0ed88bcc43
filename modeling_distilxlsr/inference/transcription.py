"""Transcription of audio files with any `Backend`: what `transcribe.py` runs, and what the benchmarks score models
with.

Every file is read and checked on its own before batching (unreadable, empty, NaN, shorter than the CNN's receptive
field), batched by length (`batching.py`), and cut into its speech regions (`audio/vad.py`: silence is never
decoded, and each region is normalised on its own, as the training clips were). Regions up to one chunk long go in
padded batches, each cut to its own frames; a longer one is cut into overlapping chunks whose overlaps (a sixth of a
chunk on each side, the transformers ASR pipeline's rule) are dropped before the logits are joined. A `CTCDecoder`
decodes each region and joins a file's regions into its transcript, one segment per region. A batch that fails is
retried piece by piece: each file gets its own result or its own error, never another file's.

Our own loop rather than the transformers pipeline's: the same loop then serves every backend (the pipeline runs
torch models only), and the decoding is the library's (the tokenizer's CTC decode and offsets, pyctcdecode's beams).
"""

import math

import numpy as np

from ..audio.decode import AudioDecodeError, read_for_transcription
from ..audio.vad import SpeechRegion, speech_regions
from ..models.audio_format import SAMPLING_RATE
from .backends import Backend
from .batching import length_sorted_batches, memory_budget
from .decoding import CTCDecoder

DEFAULT_CHUNK_SECONDS = 20.0
MAX_PIECES_PER_BATCH = 16  # regions of several files share a padded batch: this many at most


def chunked_logits(backend: Backend, audio: np.ndarray, chunk_samples: int | None) -> np.ndarray:
    """CTC logits of one utterance; longer than `chunk_samples`, in overlapping chunks whose overlaps (a sixth of a
    chunk on each side, in whole frames) are dropped before the logits are joined: one frame per frame of the whole."""
    if not chunk_samples or len(audio) <= chunk_samples:
        return backend.logits([audio])[0]
    ratio = math.prod(backend.config.conv_stride)  # samples per frame
    stride = (chunk_samples // 6) // ratio * ratio
    step = chunk_samples - 2 * stride
    pieces = []
    for start in range(0, len(audio), step):
        chunk = audio[max(0, start - stride) : start + step + stride]
        if len(chunk) < backend.min_samples:
            break
        logits = backend.logits([chunk])[0]
        left = (start - max(0, start - stride)) // ratio
        keep = logits[left : left + max(1, step // ratio)] if start + step < len(audio) else logits[left:]
        pieces.append(keep)
    return np.concatenate(pieces)


def batch_logits(backend: Backend, decoded: dict, chunk_samples: int | None, max_batch: int = MAX_PIECES_PER_BATCH):
    """(key, logits, error) for each piece of audio of `decoded` ({key: audio}): pieces up to one chunk long in
    padded batches of `max_batch` at most, longer ones alone, in chunks. A batch that fails is retried piece by
    piece."""
    short = [p for p, audio in decoded.items() if not chunk_samples or len(audio) <= chunk_samples]
    short.sort(key=lambda p: len(decoded[p]))  # a long file's regions: batched with their like, little padding
    groups = [short[i : i + max_batch] for i in range(0, len(short), max_batch)]
    batched = set(short)
    groups += [[p] for p in decoded if p not in batched]
    while groups:
        group = groups.pop(0)
        try:
            if len(group) == 1:
                logits = [chunked_logits(backend, decoded[group[0]], chunk_samples)]
            else:
                logits = backend.logits([decoded[p] for p in group])
        except Exception as err:  # isolate the file that fails
            if len(group) > 1:
                groups[:0] = [[p] for p in group]
                continue
            yield group[0], None, f"inference failed: {type(err).__name__}: {err}"
            continue
        yield from ((path, file_logits, None) for path, file_logits in zip(group, logits, strict=True))


def read_batch(paths: list[str], min_samples: int, outcomes: dict) -> dict[str, np.ndarray]:
    """The audio of each file of a batch that can be transcribed; the others get their error in `outcomes`."""
    decoded = {}
    for path in paths:
        try:
            decoded[path] = read_for_transcription(path, min_samples)
        except AudioDecodeError as err:
            outcomes[path] = (None, str(err))
    return decoded


def regions_of(audio: np.ndarray, vad: bool, min_samples: int) -> list[SpeechRegion]:
    """The pieces of a file to decode: its speech regions (each long enough for the CNN), or the whole file."""
    if not vad:
        return [SpeechRegion(0, len(audio), 1.0)]
    return [r for r in speech_regions(audio) if r.end - r.start >= min_samples]


def transcribe(
    backend: Backend,
    files: list[str],
    decoder: CTCDecoder | None = None,
    batch_size: int | None = None,
    chunk_length_s: float | None = DEFAULT_CHUNK_SECONDS,
    throughput=None,
    vad: bool = True,
):
    """Yields (path, result, None) for every file, or (path, None, error) for one that cannot be transcribed, in
    input order. Files are decoded a batch at a time (a folder of long recordings is never all in memory), batched by
    length: `batch_size` files, or as many as the memory allows when it is None (one at a time for a backend that
    cannot batch). `decoder`: greedy CTC by default. `vad`: decode each file's speech regions (a file without
    speech gets an empty text and no segments); False decodes whole files."""
    decoder = decoder or CTCDecoder(backend.tokenizer, frame_seconds=backend.frame_seconds)
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    device = str(getattr(backend, "device", "cpu"))
    budget = memory_budget(device) if batch_size is None else None
    size = batch_size if backend.batchable else 1
    pieces_per_batch = (batch_size or MAX_PIECES_PER_BATCH) if backend.batchable else 1
    for window, batches in length_sorted_batches(files, size, backend.config, chunk_samples, budget):
        outcomes: dict[str, tuple] = {}
        for group in batches:
            decoded = read_batch(group, backend.min_samples, outcomes)
            regions = {path: regions_of(audio, vad, backend.min_samples) for path, audio in decoded.items()}
            pieces = {(p, i): decoded[p][r.start : r.end] for p, rs in regions.items() for i, r in enumerate(rs)}
            logits: dict[str, dict] = {path: {} for path in decoded}
            errors: dict[str, str] = {}
            for (path, i), piece_logits, error in batch_logits(backend, pieces, chunk_samples, pieces_per_batch):
                if error is not None:
                    errors.setdefault(path, error)
                logits[path][i] = piece_logits
            for path, audio in decoded.items():
                error = errors.get(path)
                if error is None:
                    try:
                        ordered = [logits[path][i] for i in range(len(regions[path]))]
                        outcomes[path] = (decoder.decode_regions(regions[path], ordered, SAMPLING_RATE), None)
                    except Exception as err:  # one file's failure is that file's result
                        error = f"decoding failed: {type(err).__name__}: {err}"
                if error is not None:
                    outcomes[path] = (None, error)
                elif throughput is not None:
                    throughput.add(len(audio))
        for path in window:
            yield path, *outcomes[path]

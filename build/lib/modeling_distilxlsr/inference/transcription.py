"""Transcription of audio files with any `Backend`: what `transcribe.py` runs, and what the benchmarks score models
with.

Every file is read and checked on its own before batching (unreadable, empty, NaN, shorter than the CNN's receptive
field), batched by length (`batching.py`; files up to one chunk long in one padded batch, each cut to its own frames),
and a file longer than a chunk is cut into overlapping chunks whose overlaps (a sixth of a chunk on each side, the
transformers ASR pipeline's rule) are dropped before the logits are joined. A `CTCDecoder` turns each file's logits
into its transcript. A batch that fails is retried file by file: each file gets its own result or its own error,
never another file's.

Our own loop rather than the transformers pipeline's: the same loop then serves every backend (the pipeline runs
torch models only), and the decoding is the library's (the tokenizer's CTC decode and offsets, pyctcdecode's beams).
"""

import math

import numpy as np

from ..audio.decode import AudioDecodeError, read_for_transcription
from ..models.audio_format import SAMPLING_RATE
from .backends import Backend
from .batching import length_sorted_batches, memory_budget
from .decoding import CTCDecoder

DEFAULT_CHUNK_SECONDS = 20.0


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


def batch_logits(backend: Backend, decoded: dict[str, np.ndarray], chunk_samples: int | None):
    """(path, logits, error) for each file of a batch: files up to one chunk long in one padded batch, longer ones
    alone, in chunks. A batch that fails is retried file by file."""
    short = [p for p, audio in decoded.items() if not chunk_samples or len(audio) <= chunk_samples]
    groups = ([short] if short else []) + [[p] for p in decoded if p not in short]
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


def transcribe(
    backend: Backend,
    files: list[str],
    decoder: CTCDecoder | None = None,
    batch_size: int | None = None,
    chunk_length_s: float | None = DEFAULT_CHUNK_SECONDS,
    throughput=None,
):
    """Yields (path, result, None) for every file, or (path, None, error) for one that cannot be transcribed, in
    input order. Files are decoded a batch at a time (a folder of long recordings is never all in memory), batched by
    length: `batch_size` files, or as many as the memory allows when it is None (one at a time for a backend that
    cannot batch). `decoder`: greedy CTC by default."""
    decoder = decoder or CTCDecoder(backend.tokenizer, frame_seconds=backend.frame_seconds)
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    device = str(getattr(backend, "device", "cpu"))
    budget = memory_budget(device) if batch_size is None else None
    size = batch_size if backend.batchable else 1
    for window, batches in length_sorted_batches(files, size, backend.config, chunk_samples, budget):
        outcomes: dict[str, tuple] = {}
        for group in batches:
            decoded = read_batch(group, backend.min_samples, outcomes)
            for path, logits, error in batch_logits(backend, decoded, chunk_samples):
                if error is None:
                    try:
                        outcomes[path] = (decoder(logits), None)
                    except Exception as err:  # one file's failure is that file's result
                        error = f"decoding failed: {type(err).__name__}: {err}"
                if error is not None:
                    outcomes[path] = (None, error)
                elif throughput is not None:
                    throughput.add(len(decoded[path]))
        for path in window:
            yield path, *outcomes[path]

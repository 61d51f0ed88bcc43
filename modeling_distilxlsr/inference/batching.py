"""Batches for inference: files grouped by length (little padding), as many per batch as the memory allows.

Files are sorted by the duration their headers give, within windows of a few hundred files so that results can be
written in input order as the run goes; a batch takes files while its padded size fits the memory budget. The
per-item memory of a forward pass is estimated from the model's config (the first CNN layer's output dominates it:
512 channels at a fifth of the sample rate for XLSR-53's CNN), since measuring it would need a trial run per length.
"""

import math
import os
import time
from dataclasses import dataclass

import psutil
import torch

from ..audio.header_cache import header_samples
from ..models.audio_format import SAMPLING_RATE

WINDOW_FILES = 256
MAX_AUTO_BATCH = 64
MEMORY_FRACTION = 0.25  # of the memory available when the run starts, for one batch's activations


def header_seconds(paths: list[str]) -> dict[str, float]:
    """The duration each file's header gives (read once, `header_cache`), 0 when it has none: the file's own decode
    reports the problem."""

    headers = header_samples(paths)
    return {path: headers.get(path, (0, None))[0] / SAMPLING_RATE for path in paths}


def item_bytes(config, samples: int) -> int:
    """Estimated peak activation memory (fp32, no gradients) of one padded item of `samples` in a forward pass: the
    first CNN layer's output with its norm and activation alive together, then one transformer layer at a time
    (hidden states, feed-forward, and each head's attention matrix)."""
    first_layer = 3 * config.conv_dim[0] * (samples // config.conv_stride[0])
    frames = max(1, samples // math.prod(config.conv_stride))
    layer = frames * (6 * config.hidden_size + 2 * config.intermediate_size)
    attention = 2 * config.num_attention_heads * frames * frames
    return 4 * (first_layer + layer + attention)


def available_memory(device: str = "cpu") -> int:
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]

    return psutil.virtual_memory().available


def memory_budget(device: str = "cpu", fraction: float = MEMORY_FRACTION) -> int:
    return int(available_memory(device) * fraction)


def length_sorted_batches(
    files: list[str],
    batch_size: int | None,
    config=None,
    chunk_samples: int | None = None,
    budget_bytes: int | None = None,
    window: int = WINDOW_FILES,
):
    """Yields (window, batches) for consecutive windows of `files`: `window` in input order (write results in this
    order), `batches` its files sorted by duration and grouped. A fixed `batch_size` groups that many; `None` groups
    as many as fit `budget_bytes` at the longest item's padded length (items of long files are the pipeline's
    chunks, at most `chunk_samples`), at most MAX_AUTO_BATCH."""
    for start in range(0, len(files), window):
        paths = files[start : start + window]
        seconds = header_seconds(paths)
        ordered = sorted(paths, key=seconds.__getitem__)
        batches, batch = [], []
        for path in ordered:
            if batch_size is not None:
                full = len(batch) == batch_size
            else:
                samples = int(seconds[path] * SAMPLING_RATE)
                samples = min(samples, chunk_samples) if chunk_samples else samples
                full = len(batch) == MAX_AUTO_BATCH or (
                    batch and (len(batch) + 1) * item_bytes(config, max(samples, 400)) > budget_bytes
                )
            if full:
                batches.append(batch)
                batch = []
            batch.append(path)
        if batch:
            batches.append(batch)
        yield paths, batches


@dataclass
class Throughput:
    """Audio transcribed per wall-clock time, for the run's last line."""

    audio_seconds: float = 0.0
    files: int = 0
    started: float = 0.0

    def __post_init__(self):
        self.started = self.started or time.perf_counter()

    def add(self, samples: int):
        self.audio_seconds += samples / SAMPLING_RATE
        self.files += 1

    def summary(self) -> str:
        wall = max(time.perf_counter() - self.started, 1e-9)
        if not self.files:  # every file failed (or there was none): no speed to report, and none made up
            return f"throughput: no file transcribed ({wall:.1f} s)"
        return (
            f"throughput: {self.files} files, {self.audio_seconds / 3600:.4f} audio-hours in {wall:.1f} s: "
            f"{self.audio_seconds / wall:.1f} audio-hours per hour (RTF {wall / max(self.audio_seconds, 1e-9):.3f}, "
            f"{os.cpu_count()} logical cores)"
        )

"""Dynamic batching for the server: concurrent requests share one padded forward pass.

Requests wait in a bounded queue; one worker takes the first, then whatever else arrives within `window_ms` (up to
`max_batch` clips), and runs them through `transcription.batch_logits`, the code `transcribe.py` batches with
(short clips in one padded batch with attention masks, long ones alone in chunks; a batch that fails is retried
clip by clip, so one bad request never fails the others). The forward pass runs in a worker thread: torch releases
the GIL, so the event loop keeps accepting uploads and answering /health meanwhile. A full queue is refused at once
(`QueueFull`, a 503 with Retry-After) instead of growing without bound.

Written here because no maintained package batches arbitrary requests for an asyncio server without bringing its own
server (Ray Serve, Triton, TorchServe); it is one queue and one loop.
"""

import asyncio
import itertools
import time
from dataclasses import dataclass

import numpy as np

from ..inference.transcription import batch_logits


class QueueFull(RuntimeError):
    """The batcher already holds `max_queue` clips."""


@dataclass
class BatchStats:
    batches: int = 0
    clips: int = 0
    largest_batch: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0


class DynamicBatcher:
    def __init__(self, backend, chunk_samples: int | None, max_batch: int = 8, window_ms: float = 20.0,
                 max_queue: int = 16, sampling_rate: int = 16_000):  # fmt: skip
        self.backend, self.chunk_samples = backend, chunk_samples
        self.max_batch = max_batch if backend.batchable else 1
        self.window = window_ms / 1000
        self.max_queue, self.sampling_rate = max_queue, sampling_rate
        self.queue: asyncio.Queue | None = None
        self.stats = BatchStats()
        self._ids = itertools.count()
        self._worker: asyncio.Task | None = None
        self.on_batch = None  # called with each forward pass's clip count (the server's batch-size metric)

    def start(self) -> None:
        self.queue = asyncio.Queue(self.max_queue)
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    @property
    def waiting(self) -> int:
        return self.queue.qsize() if self.queue else 0

    def submit(self, audio: np.ndarray) -> asyncio.Future:
        """A future for the clip's logits; `QueueFull` when the queue is full. Cancelling the future (a client
        that went away) drops the clip if its batch has not started."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((next(self._ids), audio, future))
        except asyncio.QueueFull as err:
            raise QueueFull(f"{self.max_queue} requests are already waiting") from err
        return future

    async def _next_batch(self) -> list[tuple]:
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.window
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return [item for item in batch if not item[2].cancelled()]  # a client that left costs no compute

    def _forward(self, decoded: dict) -> list[tuple]:
        return list(batch_logits(self.backend, decoded, self.chunk_samples))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            decoded = {clip_id: audio for clip_id, audio, _ in batch}
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(None, self._forward, decoded)
            except Exception as err:  # never kill the worker: every waiting request gets the error
                results = [(clip_id, None, f"inference failed: {type(err).__name__}: {err}") for clip_id in decoded]
            self.stats.batches += 1
            self.stats.clips += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self.stats.audio_seconds += sum(len(a) for a in decoded.values()) / self.sampling_rate
            self.stats.busy_seconds += time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(len(batch))
            futures = {clip_id: future for clip_id, _, future in batch}
            for clip_id, logits, error in results:
                future = futures[clip_id]
                if future.done():
                    continue
                if error is None:
                    future.set_result(logits)
                else:
                    future.set_exception(RuntimeError(error))

"""Live streaming: how soon a spoken word appears in a partial, and whether the streamed transcript is the batch one.

    python benchmarks/stream_latency.py [MODEL_DIR] [--corpus DIR] [--files 20] [--chunk_ms 100]
                                        [--partial_every_s 0.5] [--out out/stream_latency]

Starts `distilxlsr-serve MODEL_DIR` (default: the shipped pt-BR teacher; any trained CTC folder) on a free
127.0.0.1 port. Each test file of the synthetic corpus (unseen sentences and voices; espeak-ng recorded where it spoke
each word) is streamed over the WebSocket in Vosk's protocol as a microphone would send it: 16-bit PCM in chunks of
`--chunk_ms`, each sent when its last sample would have been spoken (real time), then 1 s of silence and `{"eof": 1}`.
A word's latency is the time from its end in the audio to the first server message (partial or result) whose words
contain it (difflib in order over the normalised words); a word never seen is counted apart. The streamed transcript
(the results joined) and the batch transcript of the same file (`POST /v1/audio/transcriptions`) are scored against
the reference (CER, jiwer). One stream at a time; the run stops by itself. The CPU is named.
"""

import argparse
import asyncio
import json
import os
import statistics
import time

import httpx
import numpy as np
import soundfile as sf
import websockets
from harness import cpu_line, write_results
from serve_load import free_port, start_server
from timed_speech import load_timed_split, match_words, timed_test_split

from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextNormalizer

TAIL_SILENCE_S = 1.0


def message_words(message: dict) -> list[str]:
    return (message.get("partial") or message.get("text") or "").split()


async def stream_file(url: str, path: str, chunk_ms: float) -> tuple[list[tuple[float, dict]], str]:
    """Streams one file in real time; returns every server message with its arrival time (seconds from the first
    sample's moment) and the streamed transcript (the results joined)."""
    audio, rate = sf.read(path, dtype="int16")
    if rate != SAMPLING_RATE:
        raise SystemExit(f"{path}: {rate} Hz; the corpus is {SAMPLING_RATE} Hz")
    audio = np.concatenate([audio, np.zeros(int(TAIL_SILENCE_S * SAMPLING_RATE), np.int16)])
    step = int(chunk_ms / 1000 * SAMPLING_RATE)
    messages, results = [], []
    async with websockets.connect(url, max_size=None) as socket:
        await socket.send(json.dumps({"config": {"sample_rate": SAMPLING_RATE}}))
        started = time.perf_counter()
        for offset in range(0, len(audio), step):
            spoken_at = (offset + step) / SAMPLING_RATE  # the chunk's last sample
            await asyncio.sleep(max(0.0, started + spoken_at - time.perf_counter()))
            await socket.send(audio[offset : offset + step].tobytes())
            message = json.loads(await socket.recv())
            messages.append((time.perf_counter() - started, message))
            if "text" in message:
                results.append(message["text"])
        await socket.send(json.dumps({"eof": 1}))
        async for raw in socket:
            message = json.loads(raw)
            messages.append((time.perf_counter() - started, message))
            if "text" in message:
                results.append(message["text"])
    return messages, " ".join(t for t in results if t)


def word_latencies(reference: list, messages: list[tuple[float, dict]], normalizer) -> tuple[list[float], int]:
    """Seconds from each espeak-ng word's end to the first message that holds it, and how many never appeared. A
    result message's words are added to the words of the results before it (the stream's transcript so far)."""
    first_seen: dict[int, float] = {}
    final_words: list[str] = []
    for arrived, message in messages:
        words = final_words + message_words(message)
        for index in match_words(reference, words, normalizer):
            first_seen.setdefault(index, arrived)
        if "text" in message:
            final_words = words
    latencies = [first_seen[i] - end for i, (_, _, end) in enumerate(reference) if i in first_seen]
    return latencies, len(reference) - len(latencies)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="A trained CTC folder (default: the shipped pt-BR teacher).")
    parser.add_argument("--corpus", help="A corpus made by this version (with word_times.jsonl); default: made.")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--chunk_ms", type=float, default=100.0)
    parser.add_argument("--partial_every_s", type=float, default=0.5)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--out", default="out/stream_latency")
    args = parser.parse_args()
    args.max_batch = 8
    os.makedirs(args.out, exist_ok=True)
    model = args.model or shipped_teacher_dir()
    files = load_timed_split(timed_test_split(args.corpus, args.out), args.files)
    normalizer = TextNormalizer()
    port = free_port()
    server = start_server(model, port, args, ["--partial_every_s", str(args.partial_every_s)])
    latencies, unseen, references, streamed, batch = [], 0, [], [], []
    started = time.perf_counter()
    try:
        for file in files:
            messages, transcript = asyncio.run(
                stream_file(f"ws://127.0.0.1:{port}/v1/audio/stream", file["path"], args.chunk_ms)
            )
            file_latencies, file_unseen = word_latencies(file["words"], messages, normalizer)
            latencies += file_latencies
            unseen += file_unseen
            with open(file["path"], "rb") as f:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions", timeout=300,
                                      files={"file": (os.path.basename(file["path"]), f.read())})  # fmt: skip
            response.raise_for_status()
            references.append(normalizer(file["text"]))
            streamed.append(normalizer(transcript) or "")
            batch.append(normalizer(response.json()["text"]) or "")
    finally:
        server.terminate()
        server.wait(timeout=30)
    wall = time.perf_counter() - started
    streamed_cer = error_rates(references, streamed)["cer"]
    batch_cer = error_rates(references, batch)["cer"]
    quartiles = statistics.quantiles(latencies, n=4)
    summary = {
        "model": model,
        "files": len(files),
        "chunk_ms": args.chunk_ms,
        "partial_every_s": args.partial_every_s,
        "words_seen": len(latencies),
        "words_never_seen": unseen,
        "latency_median_s": statistics.median(latencies),
        "latency_p25_s": quartiles[0],
        "latency_p75_s": quartiles[2],
        "latency_p95_s": statistics.quantiles(latencies, n=20)[-1],
        "streamed_cer": streamed_cer,
        "batch_cer": batch_cer,
        "wall_seconds": wall,
        "transcripts": [
            {"file": f["path"], "reference": r, "streamed": s, "batch": b}
            for f, r, s, b in zip(files, references, streamed, batch, strict=True)
        ],  # fmt: skip
    }
    write_results(os.path.join(args.out, "stream_latency.json"), summary)
    print(cpu_line() + f"; model {model}; {len(files)} files streamed in real time, {args.chunk_ms:g} ms "
          f"chunks, a partial every {args.partial_every_s:g} s; {wall:.0f} s wall\n")  # fmt: skip
    print("| words seen (never) | median latency s | p25 | p75 | p95 | streamed CER | batch CER | difference |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(latencies)} ({unseen}) | {summary['latency_median_s']:.2f} | {quartiles[0]:.2f} | "
          f"{quartiles[2]:.2f} | {summary['latency_p95_s']:.2f} | {streamed_cer:.3f} | {batch_cer:.3f} | "
          f"{(streamed_cer - batch_cer) * 100:+.1f} points |")  # fmt: skip


if __name__ == "__main__":
    main()

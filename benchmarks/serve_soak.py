"""Memory over a long soak of the server: is resident memory a bounded cache or a leak?

    python benchmarks/serve_soak.py [MODEL_DIR] [--minutes 30] [--speed 4] [--stream_minutes 10]
                                    [--out benchmarks/results/serve_soak.json]

Starts `distilxlsr-serve MODEL_DIR` (default: the shipped pt-BR teacher) on a free 127.0.0.1 port and, until
`--minutes` of wall time have passed, repeats one round: a live stream of `--stream_minutes` of pt-BR speech (the
test fixture's three voices, tiled with 1 s pauses so utterances end at endpoints) sent over the Vosk WebSocket in
100 ms PCM chunks at `--speed` times real time, one frame of 50 MB that the server must refuse (larger than its
WebSocket frame limit), and 8 uploads of 30 s. The server's resident memory (VmRSS from /proc) is read every 2 s.
Reported: RSS after the first round (everything warmed: the model, oneDNN's kernels, the allocator's arenas), the
highest and the last reading after it, the growth against the first round's reading, the reading after each round
and a least-squares trend in MB per hour over every reading after the first round (a leak grows round after round;
a bounded cache stops). The CPU is named. Loopback only; stops by itself.
"""

import argparse
import asyncio
import io
import json
import os
import threading
import time

import httpx
import numpy as np
import soundfile as sf
import websockets
from harness import write_results
from serve_load import free_port, start_server

from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEECH = os.path.join(REPO, "tests", "fixtures", "speech_pt_br.flac")
OVERSIZED_FRAME = 50 * 1024 * 1024


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def speech_with_pauses(minutes: float) -> np.ndarray:
    """int16 pt-BR speech of `minutes`: the fixture, then 1 s of silence, again and again."""
    audio, rate = sf.read(SPEECH, dtype="int16")
    assert rate == SAMPLING_RATE, rate
    piece = np.concatenate([audio, np.zeros(SAMPLING_RATE, np.int16)])
    samples = int(minutes * 60 * SAMPLING_RATE)
    return np.tile(piece, samples // len(piece) + 1)[:samples]


async def stream(url: str, audio: np.ndarray, speed: float) -> int:
    """Streams `audio` in 100 ms chunks at `speed` times real time; returns the number of final results."""
    step, finals = SAMPLING_RATE // 10, 0
    async with websockets.connect(url, max_size=None) as socket:
        await socket.send(json.dumps({"config": {"sample_rate": SAMPLING_RATE}}))
        started = time.perf_counter()
        for offset in range(0, len(audio), step):
            await asyncio.sleep(max(0.0, started + (offset + step) / SAMPLING_RATE / speed - time.perf_counter()))
            await socket.send(audio[offset : offset + step].tobytes())
            finals += "result" in json.loads(await socket.recv())
        await socket.send(json.dumps({"eof": 1}))
        async for _ in socket:  # the last result, then the server closes
            finals += 1
    return finals


async def oversized_frame(url: str) -> str:
    """One 50 MB frame: the server must close the connection rather than take it in."""
    try:
        async with websockets.connect(url, max_size=None, open_timeout=30) as socket:
            await socket.send(json.dumps({"config": {"sample_rate": SAMPLING_RATE}}))
            await socket.send(bytes(OVERSIZED_FRAME))
            await asyncio.wait_for(socket.recv(), 60)
            return "answered (not refused)"
    except websockets.ConnectionClosed as closed:
        return f"closed {closed.rcvd.code if closed.rcvd else 'without a code'}"


def uploads(base: str, audio: np.ndarray, count: int = 8, seconds: float = 30.0) -> int:
    clip = io.BytesIO()
    sf.write(clip, audio[: int(seconds * SAMPLING_RATE)], SAMPLING_RATE, format="WAV")
    ok = 0
    for _ in range(count):
        response = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("clip.wav", clip.getvalue())},
                              data={"response_format": "verbose_json"}, timeout=300)  # fmt: skip
        ok += response.status_code == 200
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--stream_minutes", type=float, default=10.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--max_batch", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "serve_soak.json"))
    args = parser.parse_args()
    model = args.model or shipped_teacher_dir()
    port = free_port()
    server = start_server(model, port, args)
    samples, stop = [], threading.Event()
    started = time.perf_counter()

    def sample():
        while not stop.is_set():
            samples.append((round(time.perf_counter() - started, 1), round(resident_mb(server.pid), 1)))
            stop.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    audio = speech_with_pauses(args.stream_minutes)
    rounds = []
    try:
        at_start = resident_mb(server.pid)
        while time.perf_counter() - started < args.minutes * 60:
            finals = asyncio.run(stream(f"ws://127.0.0.1:{port}/", audio, args.speed))
            refused = asyncio.run(oversized_frame(f"ws://127.0.0.1:{port}/"))
            ok = uploads(f"http://127.0.0.1:{port}", audio)
            at, rss = round(time.perf_counter() - started, 1), round(resident_mb(server.pid), 1)
            rounds.append({"after_s": at, "rss_mb": rss, "stream_finals": finals, "oversized_frame": refused,
                           "uploads_ok": ok})  # fmt: skip
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        stop.set()
        sampler.join()
        server.kill()
        server.wait()
    if not rounds:
        raise SystemExit("no round finished")
    warm = rounds[0]["rss_mb"]
    after_warm = [(at, rss) for at, rss in samples if at >= rounds[0]["after_s"]]
    times, readings = np.array(after_warm).T
    slope = np.polyfit(times / 3600, readings, 1)[0] if len(after_warm) > 2 else float("nan")
    result = {
        "model": os.path.basename(os.path.normpath(model)),
        "wall_minutes": round((time.perf_counter() - started) / 60, 1),
        "audio_minutes_streamed": round(len(rounds) * args.stream_minutes, 1),
        "rss_mb_at_start": round(at_start, 1),
        "rss_mb_after_first_round": warm,
        "rss_mb_max_after_first_round": float(readings.max()),
        "rss_mb_last": float(readings[-1]),
        "growth_after_first_round": round(float(readings.max()) / warm - 1, 3),
        "rounds_growth": round(max(r["rss_mb"] for r in rounds) / warm - 1, 3),
        "trend_mb_per_hour": round(float(slope), 1),
        "rounds": rounds,
        "samples": samples,
    }
    write_results(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("rounds", "samples")}, indent=1))


if __name__ == "__main__":
    main()

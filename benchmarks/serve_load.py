"""Load on the transcription server: throughput and latency by number of concurrent clients.

    python benchmarks/serve_load.py [MODEL_DIR] [--clients 1 4 8 16] [--seconds 10] [--requests_per_client 3]
                                    [--max_batch 8] [--backend torch]

Starts `distilxlsr-serve` on a free 127.0.0.1 port (MODEL_DIR, or the default student shape with random weights and
the BP vocabulary: speed does not depend on the weights), then, for each client count N, N asyncio clients (httpx)
each send `--requests_per_client` WAV clips of `--seconds` one after the other; every run stops by itself. Reports
audio-hours per hour of wall time, p50/p95 latency and the largest batch the server formed, with the ratio against
one client in the same run, and the CPU. Loopback only: nothing leaves the machine.
"""

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
import soundfile as sf
from harness import cpu_line
from shapes import ctc_student_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, args, extra: list[str] = ()) -> subprocess.Popen:
    command = [sys.executable, "-m", "modeling_distilxlsr.serve", model, "--port", str(port), "--backend", args.backend]
    command += ["--max_batch", str(args.max_batch), "--max_queue", "64", "--log_level", "warning", *extra]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not start within 300 s")


def clip_bytes(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    sf.write(buffer, (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


async def run_clients(url: str, clients: int, requests_per_client: int, clip: bytes) -> tuple[float, list[float]]:
    latencies = []

    async def client(session: httpx.AsyncClient):
        for _ in range(requests_per_client):
            started = time.perf_counter()
            response = await session.post(url, files={"file": ("clip.wav", clip, "audio/wav")})
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=600) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="A CTC folder (default: the default student, random weights).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests_per_client", type=int, default=3)
    parser.add_argument("--max_batch", type=int, default=8)
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args()
    model = args.model or ctc_student_folder(tempfile.mkdtemp(prefix="serve_load_"))
    port = free_port()
    server = start_server(model, port, args)
    url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
    clip = clip_bytes(args.seconds, 0)
    rows = []
    try:
        asyncio.run(run_clients(url, 1, 2, clip))  # warm-up: first-call allocations, thread pools
        for clients in args.clients:
            before = httpx.get(f"http://127.0.0.1:{port}/health").json()
            wall, latencies = asyncio.run(run_clients(url, clients, args.requests_per_client, clip))
            after = httpx.get(f"http://127.0.0.1:{port}/health").json()
            audio_hours = len(latencies) * args.seconds / 3600
            p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]
            batches = after["batches"] - before["batches"]
            rows.append((clients, len(latencies), wall, audio_hours * 3600 / wall, statistics.median(latencies), p95,
                         len(latencies) / max(batches, 1)))  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        cpu_line(
            f"model: {args.model or 'default student, random weights'}",
            f"backend {args.backend}",
            f"{args.seconds:g} s clips",
            f"--max_batch {args.max_batch}",
        )
        + "\n"
    )
    columns = ["clients", "requests", "wall s", "audio-hours per hour", "vs 1 client", "p50 latency s", "p95 latency s"]
    print("| " + " | ".join([*columns, "clips per batch"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for clients, requests, wall, rate, p50, p95, per_batch in rows:
        print(
            f"| {clients} | {requests} | {wall:.1f} | {rate:.0f} | {rate / rows[0][3]:.2f}x | {p50:.2f} | {p95:.2f} "
            f"| {per_batch:.1f} |"
        )


if __name__ == "__main__":
    main()

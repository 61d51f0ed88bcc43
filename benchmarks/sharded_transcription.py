"""Transcription throughput by number of processes: `accelerate launch transcribe.py ... --output OUT`.

    python benchmarks/sharded_transcription.py MODEL AUDIO_DIR [--processes 1 2] [--backend torch]

Runs transcribe.py once per process count (CPU ranks: ACCELERATE_USE_CPU=1; on a GPU machine each process takes a
GPU) and prints files/s and audio-hours per hour of wall-clock time, model loading included, with the check that
every run wrote the same transcripts.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import soundfile as sf
from harness import cpu_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("audio")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args()
    from modeling_distilxlsr.audio.sources import list_audio_files

    files = list_audio_files([args.audio])
    hours = sum(sf.info(p).duration for p in files) / 3600
    folder = tempfile.mkdtemp()
    rows, outputs = [], []
    for count in args.processes:
        out = os.path.join(folder, f"out_{count}.jsonl")
        launch = [sys.executable, "transcribe.py"]
        if count > 1:
            launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(count), "--num_machines", "1"]
            launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "transcribe.py"]
        command = [*launch, args.model, args.audio, "--format", "jsonl", "--output", out, "--backend", args.backend]
        env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS=str(max(1, os.cpu_count() // count)))
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - started
        outputs.append([json.loads(line)["text"] for line in open(out, encoding="utf-8")])
        rows.append((count, wall))
    same = all(o == outputs[0] for o in outputs)
    print(
        cpu_line() + f"; {len(files)} files, {hours * 60:.1f} audio minutes; backend {args.backend}; "
        f"transcripts identical across runs: {same}\n"
    )
    print("| processes | wall s (model loading included) | files / s | audio-hours per hour | speed-up |")
    print("|---|---|---|---|---|")
    for count, wall in rows:
        print(
            f"| {count} | {wall:.1f} | {len(files) / wall:.2f} | {hours * 3600 / wall:.0f} | {rows[0][1] / wall:.2f}x |"
        )


if __name__ == "__main__":
    main()

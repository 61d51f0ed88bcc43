"""Listing a large audio folder: sequential header reads vs `header_cache` (parallel reads, then cache hits).

    python benchmarks/header_listing.py [--files 100000] [--dir /tmp/headers_bench]

Writes `--files` tiny WAV files (50 ms at 8 kHz; the header is what is read), then times, each on a cold start of
the listing: `soundfile.info` file by file (what the data layer did before), `header_samples` with an empty cache
(a process per core), and `header_samples` again (every file a cache hit), in files per second.
"""

import argparse
import os
import tempfile

import numpy as np
import soundfile as sf
from harness import cpu_line, seconds_of

from modeling_distilxlsr.audio.header_cache import header_samples, read_header

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_files(folder: str, count: int) -> list[str]:
    clip = (np.random.default_rng(0).standard_normal(400) * 0.1).astype(np.float32)
    paths = []
    for i in range(count):
        sub = os.path.join(folder, f"{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, f"{i:07d}.wav")
        if not os.path.exists(path):
            sf.write(path, clip, 8000, subtype="PCM_16")
        paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "distilxlsr_header_bench"))
    args = parser.parse_args()
    paths, seconds = seconds_of(lambda: make_files(args.dir, args.files))
    print(f"{len(paths)} files ready in {seconds:.0f} s; {cpu_line()}\n", flush=True)
    cache = os.path.join(args.dir, "headers.sqlite")
    if os.path.exists(cache):
        os.remove(cache)

    rows = []
    sequential, seconds = seconds_of(lambda: [read_header(p) for p in paths])
    rows.append(("soundfile.info, file by file (before)", seconds))
    cold, seconds = seconds_of(lambda: header_samples(paths, cache))
    rows.append(("header_samples, empty cache (a process per core, then written)", seconds))
    warm, seconds = seconds_of(lambda: header_samples(paths, cache))
    rows.append(("header_samples, every file cached (a restart)", seconds))
    assert [cold[p] for p in paths] == [warm[p] for p in paths] == sequential
    baseline = rows[0][1]
    print("| listing | seconds | files / s | speed-up |\n|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {len(paths) / seconds:,.0f} | {baseline / seconds:.2f}x |")


if __name__ == "__main__":
    main()

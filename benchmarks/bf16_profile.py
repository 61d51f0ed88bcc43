"""Where a student's forward pass spends its time in fp32 and under bf16 autocast, by batch size (issue 36: on the
Xeon, the default student's 4 x 10 s bf16 row was no faster than fp32).

    python benchmarks/bf16_profile.py [--students default log-mel] [--batch 1 4] [--seconds 10] [--top 8]

Each student (`shapes.ctc_student_folder`, XLSR-53 shapes, random weights: the cost does not depend on them) is loaded
through the path `transcribe.py` takes (`load_backend(folder, "torch-fp32" | "torch-bf16")`, the same autocast),
timed on `--batch` clips of `--seconds` in one padded batch (median of `--repeats` after a warm-up), then profiled
once with `torch.profiler`: the `--top` operators by self CPU time, each with its share of the pass, so a bf16 row
that does not pay names the operators that did not get faster (or got slower: casts, bf16 convolutions without a
fast kernel). The CPU is named; `--isa avx2` caps torch and oneDNN as the other benchmarks do.
"""

import argparse
import json
import os
import tempfile
from collections import defaultdict

import numpy as np
import torch
from harness import ISA_CAPS, cap_isa, cpu_line, median_seconds, run_record
from peers import STUDENTS
from shapes import ctc_student_folder

from modeling_distilxlsr.inference.backends import load_backend

PATHS = ("torch-fp32", "torch-bf16")


def operator_times(backend, clips: list[np.ndarray]) -> dict[str, float]:
    """Self CPU seconds per operator name over one pass (the profiler's own accounting, children excluded)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        backend.logits(clips)
    totals = defaultdict(float)
    for event in prof.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1e6
    return dict(totals)


def profile_student(folder: str, batch: int, seconds: float, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1 for _ in range(batch)]
    result = {}
    for path in PATHS:
        backend = load_backend(folder, path)
        wall = median_seconds(lambda backend=backend: backend.logits(clips), repeats)
        result[path] = {"wall_s": wall, "operators": operator_times(backend, clips)}
    return result


def table(name: str, batch: int, seconds: float, result: dict, top: int) -> str:
    fp32, bf16 = result["torch-fp32"], result["torch-bf16"]
    ops = sorted(set(fp32["operators"]) | set(bf16["operators"]),
                 key=lambda op: -max(fp32["operators"].get(op, 0.0), bf16["operators"].get(op, 0.0)))[:top]  # fmt: skip
    total32, total16 = sum(fp32["operators"].values()), sum(bf16["operators"].values())
    lines = [
        f"### {name} student, {batch} x {seconds:g} s: fp32 {fp32['wall_s']:.3f} s, bf16 {bf16['wall_s']:.3f} s "
        f"({fp32['wall_s'] / bf16['wall_s']:.2f}x)\n",
        "| operator | fp32 self ms (share) | bf16 self ms (share) | bf16 / fp32 |",
        "|---|---|---|---|",
    ]
    for op in ops:
        a, b = fp32["operators"].get(op, 0.0), bf16["operators"].get(op, 0.0)
        ratio = f"{b / a:.2f}" if a > 0 else "new"
        lines.append(f"| `{op}` | {a * 1e3:.1f} ({a / total32:.0%}) | {b * 1e3:.1f} ({b / total16:.0%}) | {ratio} |")
    lines.append(f"| all operators | {total32 * 1e3:.1f} | {total16 * 1e3:.1f} | {total16 / total32:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", nargs="+", choices=sorted(STUDENTS), default=["default", "log-mel"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--isa", choices=sorted(ISA_CAPS))
    parser.add_argument("--json", help="Write every operator's times here.")
    args = parser.parse_args()
    cap_isa(args.isa)
    print(cpu_line(f"median of {args.repeats}; profiler: self CPU time per operator, one pass") + "\n")
    record = {"run": run_record(), "rows": []}
    with tempfile.TemporaryDirectory() as root:
        for name in args.students:
            slim, frontend = STUDENTS[name]
            folder = ctc_student_folder(os.path.join(root, name), slim, frontend)
            for batch in args.batch:
                result = profile_student(folder, batch, args.seconds, args.repeats)
                print(table(name, batch, args.seconds, result, args.top))
                record["rows"].append({"student": name, "batch": batch, "seconds": args.seconds, **result})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()

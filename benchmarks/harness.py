"""The benchmarks' one harness: how a call is timed, the CPU line every table names, and how a results file is
written, so that no two scripts do these differently and every raw file says which machine and command made it.

Timing: one warm-up run (first-call allocations, thread pools), then the median of `repeats` (robust to the odd slow
run on a shared 2-core machine). Imports nothing heavy at its top: scripts that run rows under capped ISAs or thread
counts (workers.py) set those variables before torch loads, and they import this module first."""

import datetime
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What `--isa avx2` sets: torch's own kernels (ATen), oneDNN's (torch's convolutions and matmuls) and CTranslate2's
# each read one variable, once, when they load. ONNX Runtime has none (MLAS picks its kernels from CPUID) and
# whisper.cpp is compiled for the machine it was built on: their rows are not capped, and the tables say so.
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "CT2_FORCE_CPU_ISA": "AVX2"}}
NOT_CAPPED = "ONNX Runtime and whisper.cpp rows are not capped (no variable caps them)"


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def seconds_of(run):
    """(run's result, its wall seconds) for one call that is timed once (a whole stage, not a kernel)."""
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def cpu_name() -> str:
    """The CPU as every table names it (model, cores, ISA)."""
    from modeling_distilxlsr.inference.cpu_features import describe_cpu  # here, not at the top: see above

    return describe_cpu()


def cap_isa(isa: str | None) -> None:
    """Runs this script again with `ISA_CAPS[isa]` in its environment (the engines read them once, at load, and this
    process may have loaded them), unless they are already set; every row's worker process inherits them."""
    if isa is None:
        return
    wanted = ISA_CAPS[isa]
    if any(os.environ.get(name) != value for name, value in wanted.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})


def isa_caps() -> dict:
    return {name: os.environ[name] for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "CT2_FORCE_CPU_ISA")
            if name in os.environ}  # fmt: skip


def cpu_line(*details: str) -> str:
    """`CPU: <model, cores, ISA>; torch <version>, <n> threads; <details>`: the first line of every table (with the
    ISA caps, when a run has them)."""
    import torch  # here, not at the top: see the module docstring

    caps = isa_caps()
    capped = [f"ISA capped: {', '.join(f'{k}={v}' for k, v in caps.items())}; {NOT_CAPPED}"] if caps else []
    return "; ".join([f"CPU: {cpu_name()}", f"torch {torch.__version__}, {torch.get_num_threads()} threads", *capped,
                      *details])  # fmt: skip


def run_record() -> dict:
    """The machine, versions, command and date of this run, as every results file carries them under "run"."""
    import torch

    from modeling_distilxlsr.inference.cpu_features import describe_cpu

    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO) if sys.argv and sys.argv[0] else "?"
    return {
        "cpu": describe_cpu(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "isa_caps": isa_caps(),
        "command": " ".join(["python", script, *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
    }


def write_results(path: str, report: dict) -> str:
    """Writes `report` (a JSON object) to `path` with this run's record under "run" (and "cpu" where the report
    names none, as the README's renderers read it); returns the path."""
    if not isinstance(report, dict):
        raise TypeError(f"a results file holds an object, got {type(report).__name__}: put rows under a key")
    record = run_record()
    report = {"cpu": record["cpu"], **report, "run": record}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    return path

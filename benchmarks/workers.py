"""A benchmark row in a fresh process: its own peak memory, no caches or allocator pools warmed by the row before. With
`DISTILXLSR_BENCH_SAME_PROCESS=1` (the tiny-shape CPU test of gpu_check.sh, where the figures are not the point) the
same worker function runs in this process instead, saving a torch + transformers import (about 10 s on 2 cores) per
row; the row's spec still goes through JSON, as it does to a fresh process."""

import json
import os
import subprocess
import sys

SAME_PROCESS = "DISTILXLSR_BENCH_SAME_PROCESS"


def run_worker(script: str, worker, spec: dict) -> tuple[dict | None, str]:
    """(the row's result, "") or (None, the end of its error output)."""
    if os.environ.get(SAME_PROCESS) == "1":
        try:
            return worker(json.loads(json.dumps(spec))), ""
        except Exception as err:  # a failed row is reported as a fresh process's failure is
            return None, f"{type(err).__name__}: {err}"
    out = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), ""

"""The benchmark scripts that no CPU test would otherwise run."""

import json

from conftest import run_script


def test_gpu_check_runs_on_cpu_with_tiny_shapes(tmp_path):
    """benchmarks/gpu_check.sh, the one script a session with a GPU runs, on tiny shapes on the CPU: every step runs
    and writes its figures, so it cannot rot between GPU sessions."""
    out = tmp_path / "gpu_check"
    run_script(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny"], env_extra={"OUT": str(out)})
    parity = json.loads((out / "parity.json").read_text())
    assert parity["fp32"]["predictions"] > 0.9999 and parity["train_step"]["gradients_finite"]
    tables = (out / "tables.md").read_text()
    for section in ("## distillation throughput", "## inference, bf16", "## inference, fp32"):
        assert section in tables
    assert tables.count("| XLSR-53 (teacher arch) |") == 2 and "slim student backbone" in tables
    distill = json.loads((out / "distill_bf16.json").read_text())
    assert distill and all(row["audio_seconds_per_second"] > 0 for row in distill.values())

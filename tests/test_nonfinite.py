"""NaN never trains and never ships: a NaN/Inf update is skipped and counted, too many in a row stop the run naming
the step, a checkpoint with NaN weights is passed over like a truncated one, no folder is saved with NaN weights,
and every JSON file a run writes is valid JSON."""

import json
import math
import os
import shutil
import struct

import pytest
import safetensors.torch
import torch
from accelerate import Accelerator
from conftest import FINISHED_RUN_ARGS, copy_run, distill

from modeling_distilxlsr.models.folder import save_for_hub
from modeling_distilxlsr.training.checkpoints import check_finite_safetensors
from modeling_distilxlsr.training.loop import TrainingState, nonfinite_summary
from modeling_distilxlsr.training.results import write_json
from modeling_distilxlsr.training.train_loop import (
    NonFiniteLossError,
    backward_and_step_optimizer_and_scheduler,
    count_nonfinite_step,
)

COMMON = FINISHED_RUN_ARGS


def _strict_json(path):
    """json.loads that refuses the NaN/Infinity tokens Python's json writes by default."""

    def refuse(token):
        raise ValueError(f"{path} holds {token}: not JSON")

    return json.loads(open(path, encoding="utf-8").read(), parse_constant=refuse)


def test_results_json_writes_non_finite_numbers_as_null(tmp_path):
    path = tmp_path / "results.json"
    write_json(str(path), {"loss": float("nan"), "history": [{"l": float("inf")}, {"l": 1.5}], "steps": (1, 2)})
    assert _strict_json(path) == {"loss": None, "history": [{"l": None}, {"l": 1.5}], "steps": [1, 2]}


def _model_and_optimizer():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return accelerator, *accelerator.prepare(model, optimizer, scheduler)


def test_a_nan_loss_skips_the_update_and_leaves_weights_and_schedule_as_they_were():
    accelerator, model, optimizer, scheduler = _model_and_optimizer()
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.ones(2, 3)).sum() * float("nan")
    assert not backward_and_step_optimizer_and_scheduler(accelerator, model, loss, False, optimizer, scheduler, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # the NaN gradients are dropped
    # the next finite batch trains as usual
    loss = model(torch.ones(2, 3)).sum()
    assert backward_and_step_optimizer_and_scheduler(accelerator, model, loss, False, optimizer, scheduler, 1.0)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skipped_updates_are_counted_and_too_many_in_a_row_stop_the_run_naming_the_step():
    state = TrainingState()
    for step, stepped in enumerate([False, True, False, False], start=1):
        state.step = step
        count_nonfinite_step(state, stepped, limit=3)
    assert state.nonfinite_steps == [1, 3, 4] and state.nonfinite_in_a_row == 2
    assert nonfinite_summary(state) == "3 update(s) skipped for a non-finite loss (steps 1, 3, 4)"
    state.step = 5
    with pytest.raises(NonFiniteLossError, match="step 5: .* 3 steps in a row"):
        count_nonfinite_step(state, False, limit=3)


def test_a_model_with_nan_weights_is_never_saved(tmp_path):
    from conftest import tiny_student_config

    from modeling_distilxlsr import DistilXLSRForCTC

    model = DistilXLSRForCTC(tiny_student_config(vocab_size=8))
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite .* lm_head.weight"):
        save_for_hub(model, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def _bit_rot(path):
    """Same-size damage: bytes of the first tensor's data set to 0xFF (a NaN in float32), header untouched."""
    raw = bytearray(open(path, "rb").read())
    data_start = 8 + struct.unpack("<Q", raw[:8])[0]
    raw[data_start : data_start + 64] = b"\xff" * 64
    open(path, "wb").write(bytes(raw))


def test_same_size_bit_rot_in_a_safetensors_file_is_found(tmp_path):
    path = str(tmp_path / "w.safetensors")
    safetensors.torch.save_file({"a": torch.ones(64), "b": torch.arange(4)}, path)
    check_finite_safetensors(path)
    size = os.path.getsize(path)
    _bit_rot(path)
    assert os.path.getsize(path) == size
    with pytest.raises(ValueError, match="tensor 'a' holds NaN/Inf"):
        check_finite_safetensors(path)


@pytest.mark.slow
def test_a_resume_passes_over_a_checkpoint_with_nan_weights_and_writes_valid_json(
    tiny_teacher_dir, small_corpus, finished_run, tmp_path
):
    out = copy_run(finished_run, tmp_path)
    newest = out / "checkpoints" / "step_4"
    _bit_rot(newest / "model.safetensors")
    result = distill(
        tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", str(newest), check=False
    )
    assert result.returncode != 0 and "holds NaN/Inf" in result.stderr and "Traceback" not in result.stderr
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", "latest")
    assert f"skipping checkpoint {newest}" in result.stderr and "NaN/Inf" in result.stderr
    assert "at step 2" in result.stderr and "loss=nan" not in result.stderr
    weights = safetensors.torch.load_file(out / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    results = _strict_json(out / "distill_results.json")
    assert results["steps"] == 4 and math.isfinite(results["final_eval"]["eval/loss"])
    assert results["nonfinite"] == "0 updates skipped for a non-finite loss"


@pytest.mark.slow
def test_a_run_that_only_gives_nan_stops_naming_the_step_and_saves_no_model(tiny_teacher_dir, small_corpus, tmp_path):
    teacher = tmp_path / "nan_teacher"
    shutil.copytree(tiny_teacher_dir, teacher)
    weights = safetensors.torch.load_file(teacher / "model.safetensors")
    weights = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in weights.items()}
    safetensors.torch.save_file(weights, teacher / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "run"
    result = distill(teacher, small_corpus / "train", out, *COMMON, "--max_nonfinite_steps", 2, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "step 2: the loss or its gradients were NaN/Inf at 2 steps in a row" in result.stderr
    assert "step 1: non-finite (NaN/Inf) loss or gradients: update skipped" in result.stderr
    assert not (out / "model.safetensors").exists() and not (out / "checkpoints" / "step_2").exists()

"""Two "machines" on localhost (`accelerate launch --num_machines 2 --machine_rank 0|1`, one gloo CPU process each):
the distillation and CTC scripts write one output, log from the main process only, and resume exactly after both are
killed."""

import json
import os
import shutil
import socket
import subprocess
import time

import psutil
import pytest
import torch
from conftest import REPO_ROOT, TINY_RUN, TWO_CPU_RANKS_ENV, TWO_PROCESS_GROUP

pytestmark = pytest.mark.slow  # every test here is an end-to-end run

FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "distilled_student")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_two_machines(script_args: list[str], port: int) -> list[subprocess.Popen]:
    """Machine 0 and machine 1, each `accelerate launch` with one process, as two hosts would start them."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", **TWO_CPU_RANKS_ENV)
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "2"]
    launch += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no"]
    return [
        subprocess.Popen(
            [*launch, "--machine_rank", str(rank), *script_args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]


def run_two_machines(script_args: list[str], timeout=400) -> list[str]:
    """Both machines to the end; their stderr, machine 0 first."""
    machines = start_two_machines(script_args, free_port())
    outputs = [m.communicate(timeout=timeout) for m in machines]
    for machine, (stdout, stderr) in zip(machines, outputs, strict=True):
        assert machine.returncode == 0, f"{script_args[0]} failed on a machine:\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return [stderr for _, stderr in outputs]


def optimizer_and_scheduler(checkpoint):
    optimizer = torch.load(os.path.join(checkpoint, "optimizer.bin"), weights_only=True)
    scheduler = torch.load(os.path.join(checkpoint, "scheduler.bin"), weights_only=True)
    return {float(s["step"]) for s in optimizer["state"].values()}, scheduler["last_epoch"], scheduler["_last_lr"]


def max_weight_difference(checkpoint_a, checkpoint_b) -> float:
    from safetensors.torch import load_file

    a, b = (load_file(os.path.join(c, "model.safetensors")) for c in (checkpoint_a, checkpoint_b))
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def distill_args(teacher_dir, train_data, out, *extra) -> list[str]:
    args = ["train_distill.py", "--teacher", teacher_dir, "--train_data", str(train_data), "--output_dir", str(out)]
    return [*args, *TINY_RUN, *map(str, extra)]


@TWO_PROCESS_GROUP
def test_distillation_on_two_machines_writes_once_and_resumes_exactly_after_both_are_killed(
    tiny_teacher_dir, small_corpus, tmp_path
):
    common = ["--max_steps", 24, "--eval_steps", 100, "--save_steps", 4, "--logging_steps", 2, "--seed", 5]
    straight = tmp_path / "straight"
    main_log, other_log = run_two_machines(distill_args(tiny_teacher_dir, small_corpus / "train", straight, *common))
    assert "MULTI_CPU, 2 process(es)" in main_log and main_log.count("done: 24 steps") == 1
    assert "done:" not in other_log and "MULTI_CPU" not in other_log  # logs and progress from the main process only
    assert "step_24" in os.listdir(straight / "checkpoints")
    first = json.loads((straight / "distill_results.json").read_text())
    assert first["num_processes"] == 2 and first["steps"] == 24

    killed = tmp_path / "killed"
    machines = start_two_machines(distill_args(tiny_teacher_dir, small_corpus / "train", killed, *common), free_port())

    def checkpoints():
        folder = killed / "checkpoints"
        return [c for c in os.listdir(folder) if not c.endswith(".partial")] if folder.exists() else []

    deadline = time.time() + 300
    while not checkpoints() and time.time() < deadline:
        time.sleep(0.02)
    # Both machines die at once: launcher, elastic agent and worker (torch's agent starts its workers in sessions
    # of their own, so the launcher's process group does not reach them).
    processes = [p for m in machines for p in [psutil.Process(m.pid), *psutil.Process(m.pid).children(recursive=True)]]
    for process in processes:
        process.kill()
    for machine in machines:
        machine.communicate()
    assert checkpoints() and not (killed / "distill_results.json").exists(), "the run ended before it was killed"

    resumed = distill_args(
        tiny_teacher_dir, small_corpus / "train", killed, *common, "--resume_from_checkpoint", "latest"
    )
    main_log, _ = run_two_machines(resumed)
    assert "at step " in main_log
    assert optimizer_and_scheduler(killed / "checkpoints" / "step_24") == optimizer_and_scheduler(
        straight / "checkpoints" / "step_24"
    )
    assert max_weight_difference(killed / "checkpoints" / "step_24", straight / "checkpoints" / "step_24") == 0.0
    second = json.loads((killed / "distill_results.json").read_text())
    assert second["steps"] == 24 and second["audio_hours"] == pytest.approx(first["audio_hours"], rel=1e-6)


@TWO_PROCESS_GROUP
def test_finetuning_on_two_machines_writes_once_and_resumes_from_a_checkpoint(small_corpus, tmp_path):
    out = tmp_path / "asr"
    args = ["finetune_ctc.py", "--model", FIXTURE, "--train_data", str(small_corpus / "train")]
    args += ["--eval_data", str(small_corpus / "dev"), "--output_dir", str(out), "--max_steps", "6"]
    args += ["--eval_steps", "3", "--save_steps", "3", "--per_device_batch_size", "4", "--num_workers", "0"]
    args += ["--report_to", "none", "--seed", "2"]  # SpecAugment on, as users run it
    main_log, other_log = run_two_machines(args)
    assert "MULTI_CPU, 2 process(es)" in main_log and "MULTI_CPU" not in other_log
    first = json.loads((out / "ctc_results.json").read_text())
    assert first["steps"] == 6 and first["num_processes"] == 2
    state_at_6 = optimizer_and_scheduler(out / "checkpoints" / "step_6")
    shutil.copytree(out / "checkpoints" / "step_6", tmp_path / "straight_step_6")
    run_two_machines([*args, "--resume_from_checkpoint", str(out / "checkpoints" / "step_3")])
    second = json.loads((out / "ctc_results.json").read_text())
    assert second["steps"] == 6 and second["audio_hours"] == pytest.approx(first["audio_hours"], rel=1e-6)
    assert optimizer_and_scheduler(out / "checkpoints" / "step_6") == state_at_6
    # the same weights: dropout and SpecAugment ran after the resume as in the straight run
    assert max_weight_difference(out / "checkpoints" / "step_6", tmp_path / "straight_step_6") == 0.0
    scores = [
        {(name, m): r[m] for name, r in run["best_eval"].items() for m in ("cer", "wer")} for run in (first, second)
    ]
    assert scores[1] == pytest.approx(scores[0], rel=1e-4)


@TWO_PROCESS_GROUP
def test_a_machine_that_dies_stops_the_other_with_an_error_instead_of_a_hang(tiny_teacher_dir, small_corpus, tmp_path):
    out = tmp_path / "out"
    args = [
        "--max_steps",
        100000,
        "--eval_steps",
        100000,
        "--save_steps",
        4,
        "--ddp_timeout",
        15,
    ]  # short: a healthy collective here takes well under 1 s
    machines = start_two_machines(distill_args(tiny_teacher_dir, small_corpus / "train", out, *args), free_port())
    deadline = time.time() + 300
    while not (out / "checkpoints").exists() and time.time() < deadline:
        time.sleep(0.05)
    dead = psutil.Process(machines[1].pid)
    for process in [dead, *dead.children(recursive=True)]:  # machine 1 is gone, launcher and worker
        process.kill()
    started = time.time()
    _, stderr = machines[0].communicate(timeout=240)
    assert machines[0].returncode != 0, "machine 0 went on alone"
    assert time.time() - started < 200
    assert "Traceback" in stderr or "failed" in stderr.lower()

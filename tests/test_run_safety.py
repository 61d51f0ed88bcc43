"""Runs that cannot lose or mix work: output folders never clobbered, one run per folder, resume refuses changed
settings, damaged checkpoints passed over, nothing loaded runs code, the Hub checked before training."""

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys

import pytest
import safetensors.torch
import torch
from conftest import FINISHED_RUN_ARGS, copy_run, distill, run_script

COMMON = FINISHED_RUN_ARGS


@pytest.mark.slow
def test_a_new_run_never_overwrites_a_finished_one(tiny_teacher_dir, small_corpus, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    weights = (out / "model.safetensors").read_bytes()
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON, check=False)
    assert result.returncode != 0 and "already holds files" in result.stderr
    assert "--overwrite_output_dir" in result.stderr and (out / "model.safetensors").read_bytes() == weights
    # `latest` in a folder without checkpoints is a fresh start, and refused the same way
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    result = distill(
        tiny_teacher_dir, small_corpus / "train", tmp_path / "other", "--resume_from_checkpoint", "latest", check=False
    )
    assert result.returncode != 0 and "already holds files" in result.stderr

    # --overwrite_output_dir: the old run's checkpoints go, so `latest` and rotation can only see the new run's
    (out / "checkpoints" / "step_7.partial").mkdir()
    result = distill(
        tiny_teacher_dir, small_corpus / "train", out, "--max_steps", 2, "--save_steps", 1, "--overwrite_output_dir"
    )
    assert "removing the previous run's checkpoints" in result.stderr
    assert sorted(os.listdir(out / "checkpoints")) == ["step_1", "step_2"]
    assert json.loads((out / "distill_results.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_a_second_run_on_a_locked_folder_fails_naming_the_holder_and_a_stale_lock_is_taken_over(
    tiny_teacher_dir, small_corpus, tmp_path
):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"host": socket.gethostname(), "pid": holder.pid, "started": "2026-01-01 00:00:00"}
        (out / ".distilxlsr.lock").write_text(json.dumps(lock))
        result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON, check=False)
        assert result.returncode != 0 and f"in use by another run (pid {holder.pid}" in result.stderr
        assert not (out / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON)  # the holder is gone: stale
    assert "removing a stale lock" in result.stderr and not (out / ".distilxlsr.lock").exists()


def test_rotation_removes_only_this_runs_checkpoints(tmp_path):
    from accelerate import Accelerator

    from modeling_distilxlsr.audio.sources import SkipCounter
    from modeling_distilxlsr.training.checkpoints import list_checkpoints, save_checkpoint
    from modeling_distilxlsr.training.loop import TrainingState

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    checkpoint_dir = tmp_path / "checkpoints"
    foreign = checkpoint_dir / "step_50"
    foreign.mkdir(parents=True)
    (foreign / "training_state.json").write_text(json.dumps({"run_id": "another-run"}))
    state = TrainingState()
    for step in (1, 2, 3):
        state.step = step
        save_checkpoint(accelerator, str(checkpoint_dir), state, SkipCounter(), 2, {})
    assert [os.path.basename(c) for c in list_checkpoints(str(checkpoint_dir))] == ["step_2", "step_3", "step_50"]
    saved = safetensors.torch.load_file(checkpoint_dir / "step_3" / "model.safetensors")  # the prepared model's
    assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, fields",
    [
        (["--learning_rate", "1e-3"], ["learning_rate: 0.0002 -> 0.001"]),
        (["--pred_layer_ids", "1", "4"], ["pred_layer_ids: [2, 4] -> [1, 4]"]),
        (["--normalize_targets", "no", "--max_steps", "6"], ["normalize_targets: 'auto' -> 'no'", "max_steps: 4 -> 6"]),
    ],
)
def test_resume_refuses_changed_settings_naming_each(
    tiny_teacher_dir, small_corpus, finished_run, tmp_path, change, fields
):
    out = copy_run(finished_run, tmp_path)
    args_before = (out / "training_args.json").read_text()
    result = distill(
        tiny_teacher_dir,
        small_corpus / "train",
        out,
        *COMMON,
        *change,
        "--resume_from_checkpoint",
        "latest",
        check=False,
    )
    assert result.returncode != 0 and "other settings than it was trained with" in result.stderr
    assert "error: Cannot resume from" in result.stderr and "Traceback" not in result.stderr  # one clear line
    for field in fields:
        assert field in result.stderr
    assert (out / "training_args.json").read_text() == args_before  # nothing recorded for a run that did not happen


@pytest.mark.slow
def test_damaged_latest_falls_back_and_a_damaged_explicit_checkpoint_names_the_file(
    tiny_teacher_dir, small_corpus, finished_run, tmp_path
):
    out = copy_run(finished_run, tmp_path)
    weights = out / "checkpoints" / "step_4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    explicit = str(out / "checkpoints" / "step_4")
    result = distill(
        tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", explicit, check=False
    )
    assert result.returncode != 0 and f"{weights} is damaged" in result.stderr
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", "latest")
    assert f"skipping checkpoint {out / 'checkpoints' / 'step_4'}" in result.stderr and str(weights) in result.stderr
    assert "resumed from" in result.stderr and "at step 2" in result.stderr
    recorded = json.loads((out / "training_args.json").read_text())
    assert recorded["_resumes"] == [{"checkpoint": str(out / "checkpoints" / "step_2"), "step": 2}]
    assert json.loads((out / "distill_results.json").read_text())["steps"] == 4


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_no_pickle_in_a_checkpoint_runs_code(tiny_teacher_dir, small_corpus, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    marker_rng, marker_custom = tmp_path / "ran_rng_state", tmp_path / "ran_custom_checkpoint"
    step_4 = out / "checkpoints" / "step_4"
    assert not list(step_4.glob("custom_checkpoint_*.pkl"))  # our loop state is JSON
    # accelerate's RNG file (a torch zip archive) carrying a payload: loaded with weights_only, refused, passed over
    torch.save(_Payload(marker_rng), step_4 / "random_states_0.pkl")
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", "latest")
    assert not marker_rng.exists()
    assert f"skipping checkpoint {step_4}" in result.stderr and "at step 2" in result.stderr
    # a custom_checkpoint pickle (what accelerate unpickles with weights_only=False): never loaded, named
    with open(step_4 / "custom_checkpoint_0.pkl", "wb") as f:
        pickle.dump(_Payload(marker_custom), f)
    result = distill(
        tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", step_4, check=False
    )
    assert result.returncode != 0 and "custom_checkpoint_0.pkl is damaged: a pickled" in result.stderr
    assert not marker_custom.exists()


@pytest.mark.slow
def test_transcribe_never_runs_a_model_folders_code(tiny_ctc_dir, tmp_path):
    import soundfile as sf

    model_dir, _ = tiny_ctc_dir
    trapped = tmp_path / "trapped"
    shutil.copytree(model_dir, trapped)
    marker = tmp_path / "ran_model_code"
    trap = f"open({str(marker)!r}, 'w').close()\n"
    for name in ("modeling_distilxlsr.py", "configuration_distilxlsr.py"):
        (trapped / name).write_text(trap + (trapped / name).read_text())
    audio = tmp_path / "a.wav"
    sf.write(audio, torch.randn(16000).numpy() * 0.1, 16000)
    result = run_script([sys.executable, "transcribe.py", str(trapped), str(audio), "--format", "jsonl"])
    assert json.loads(result.stdout)["status"] == "ok" and not marker.exists()

    # a folder of another model type with code of its own: refused without --trust_remote_code
    foreign = tmp_path / "foreign"
    shutil.copytree(trapped, foreign)
    config = json.loads((foreign / "config.json").read_text())
    config["model_type"] = "not_distilxlsr"
    (foreign / "config.json").write_text(json.dumps(config))
    result = run_script([sys.executable, "transcribe.py", str(foreign), str(audio)], check=False)
    assert result.returncode != 0 and "trust_remote_code" in result.stderr and not marker.exists()


@pytest.mark.slow
def test_push_to_hub_fails_before_training_when_the_hub_is_unreachable(tiny_teacher_dir, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = distill(
        tiny_teacher_dir,
        small_corpus / "train",
        out,
        *COMMON,
        "--push_to_hub",
        "--hub_model_id",
        "someone/model",
        check=False,
        env_extra={"HF_TOKEN": "hf_not_a_real_token"},  # run_script sets HF_HUB_OFFLINE=1
    )
    assert result.returncode != 0 and "cannot reach the Hugging Face Hub" in result.stderr
    assert not out.exists()


def test_checkpoints_of_fsdp_and_deepspeed_layouts(tmp_path, monkeypatch):
    """What accelerate writes under FSDP (full state dict) validates like ours; DeepSpeed's and sharded FSDP's files,
    which their own loaders unpickle, need the user's explicit trust."""
    from modeling_distilxlsr.training.checkpoints import (
        ARGS_FILE,
        STATE_FILE,
        TRUST_ENV,
        CheckpointError,
        validate_checkpoint,
    )

    def checkpoint(name, files):
        folder = tmp_path / name
        folder.mkdir()
        (folder / STATE_FILE).write_text("{}")
        (folder / ARGS_FILE).write_text("{}")
        for relative in files:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"w": torch.zeros(2)}, folder / relative)
        return str(folder)

    monkeypatch.delenv(TRUST_ENV, raising=False)
    validate_checkpoint(checkpoint("fsdp_full", ["pytorch_model_fsdp.bin", "optimizer.bin", "scheduler.bin"]))
    deepspeed = checkpoint("deepspeed", ["pytorch_model/mp_rank_00_model_states.pt", "scheduler.bin"])
    sharded = checkpoint("fsdp_sharded", ["pytorch_model_fsdp_0/__0_0.distcp", "optimizer_0/__0_0.distcp"])
    for folder in (deepspeed, sharded):
        with pytest.raises(CheckpointError, match=TRUST_ENV):
            validate_checkpoint(folder)
    monkeypatch.setenv(TRUST_ENV, "1")
    validate_checkpoint(deepspeed)
    validate_checkpoint(sharded)
    with pytest.raises(CheckpointError, match="no model weights"):
        validate_checkpoint(checkpoint("empty", ["scheduler.bin"]))


@pytest.mark.slow
def test_a_resume_on_changed_data_is_refused_or_with_allow_data_change_recorded_and_counted_anew(
    tiny_teacher_dir, small_corpus, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    clips = sorted(small_corpus.glob("train/*.flac"))[:12]
    for clip in clips:
        shutil.copy(clip, data / clip.name)
    out = tmp_path / "run"
    distill(tiny_teacher_dir, data, out, *COMMON, "--eval_fraction", 0.25)
    shutil.rmtree(out / "checkpoints" / "step_4")  # as if killed after step 3
    for clip in clips[::2]:
        os.remove(data / clip.name)
    result = distill(
        tiny_teacher_dir, data, out, *COMMON, "--eval_fraction", 0.25, "--resume_from_checkpoint", "latest", check=False
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error: The data changed since" in result.stderr and "--allow_data_change" in result.stderr
    assert "train: 9 -> 4 utterances" in result.stderr and "eval: 3 -> 2 utterances" in result.stderr

    result = distill(
        tiny_teacher_dir,
        data,
        out,
        *COMMON,
        "--eval_fraction",
        0.25,
        "--resume_from_checkpoint",
        "latest",
        "--allow_data_change",
    )
    assert "--allow_data_change: The data changed since" in result.stderr and "at step 2" in result.stderr
    resume = json.loads((out / "training_args.json").read_text())["_resumes"][-1]
    assert resume["data_changed"]["before"]["train"]["utterances"] == 9
    assert resume["data_changed"]["now"]["train"]["utterances"] == 4
    assert json.loads((out / "distill_results.json").read_text())["skipped"] == "skipped 0 of 6 files"


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs; needs root, as CI and this project's machines have): a full disk, not a mock."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_save_names_the_folder_and_keeps_the_older_checkpoints(
    tiny_teacher_dir, small_corpus, small_disk
):
    from modeling_distilxlsr.training.checkpoints import list_checkpoints, validate_checkpoint

    out = small_disk / "run"
    common = ["--max_steps", 12, "--save_steps", 1, "--eval_steps", 100, "--save_total_limit", 20]
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *common, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"error: Could not write checkpoint {out / 'checkpoints'}/step_" in result.stderr
    assert "MB free in" in result.stderr and "a checkpoint of this run takes" in result.stderr
    kept = list_checkpoints(str(out / "checkpoints"))
    assert kept and f"kept, whole: {', '.join(os.path.basename(c) for c in kept)}" in result.stderr
    for checkpoint in kept:
        validate_checkpoint(checkpoint)  # the older ones are whole
    assert not [n for n in os.listdir(out / "checkpoints") if n.endswith(".partial")]
    # the resume, still without space, says the same and loses nothing more
    result = distill(
        tiny_teacher_dir, small_corpus / "train", out, *common, "--resume_from_checkpoint", "latest", check=False
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr and "Could not write" in result.stderr
    assert list_checkpoints(str(out / "checkpoints"))[: len(kept)] == kept


@pytest.mark.slow
def test_resuming_a_finished_run_says_it_had_nothing_left_to_do(tiny_teacher_dir, small_corpus, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *COMMON, "--resume_from_checkpoint", "latest")
    assert "nothing left to train (step 4 was reached before this start)" in result.stderr
    assert "audio s/s" not in result.stderr

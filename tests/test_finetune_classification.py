"""finetune_classification.py as users run it: class sub-folders or a labelled manifest, the frozen-encoder probe,
2 DDP ranks, and labels that cannot work stopped before training."""

import csv
import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO_ROOT, TWO_CPU_RANKS, TWO_CPU_RANKS_ENV, TWO_PROCESS_GROUP, run_script
from safetensors.torch import load_file

FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "distilled_student")
PITCHES = {"grave": 200, "medio": 800, "agudo": 3200}


def tone_folder(root, per_class: int, seed: int):
    """Class sub-folders of 0.5 s tones at three pitches, random phase, level and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(8000) / 16000
    for label, pitch in PITCHES.items():
        os.makedirs(root / label, exist_ok=True)
        for i in range(per_class):
            wave = np.sin(2 * np.pi * pitch * t + rng.uniform(0, 6.3)) * rng.uniform(0.2, 0.8)
            sf.write(root / label / f"{i}.wav", (wave + 0.05 * rng.standard_normal(8000)).astype(np.float32), 16000)
    return root


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return tone_folder(root / "train", 16, 0), tone_folder(root / "dev", 6, 1)


def classify(train, dev, out, *extra, launcher=(sys.executable,), **kwargs):
    args = [*launcher, "finetune_classification.py", "--model", FIXTURE, "--train_data", str(train)]
    args += ["--eval_data", str(dev), "--output_dir", str(out), "--per_device_batch_size", "8", "--num_workers", "0"]
    args += ["--report_to", "none", *map(str, extra)]
    return run_script(args, **kwargs)


@pytest.mark.slow
def test_a_frozen_probe_learns_the_classes_and_the_folder_classifies(tones, tmp_path):
    train, dev = tones
    out = tmp_path / "probe"
    classify(train, dev, out, "--freeze_encoder", "--learning_rate", "0.01", "--max_steps", 40, "--eval_steps", 20)
    results = json.loads((out / "classification_results.json").read_text())
    best = results["best_eval"][str(dev)]
    assert results["classes"] == ["agudo", "grave", "medio"] and best["clips"] == 18
    assert best["accuracy"] >= 0.6 and best["accuracy"] > results["initial_eval"][str(dev)]["accuracy"]
    assert 0 < best["macro_f1"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "agudo", "1": "grave", "2": "medio"}
    assert config["architectures"] == ["DistilXLSRForSequenceClassification"]
    assert "macro-F1" in (out / "README.md").read_text()


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_two_ddp_ranks_and_class_weights(tones, tmp_path):
    train, dev = tones
    out = tmp_path / "ddp"
    result = classify(
        train, dev, out, "--max_steps", 6, "--eval_steps", 3, "--save_steps", 3, "--class_weights", "balanced",
        launcher=TWO_CPU_RANKS, env_extra=TWO_CPU_RANKS_ENV,
    )  # fmt: skip
    assert "MULTI_CPU, 2 process(es)" in result.stderr
    results = json.loads((out / "classification_results.json").read_text())
    assert results["num_processes"] == 2 and results["steps"] == 6
    assert results["best_eval"][str(dev)]["clips"] == 18  # every eval clip scored once across the two ranks
    # a resume from step 3 reaches the same weights at step 6
    shutil.copytree(out / "checkpoints" / "step_6", tmp_path / "straight_6")
    classify(
        train, dev, out, "--max_steps", 6, "--eval_steps", 3, "--save_steps", 3, "--class_weights", "balanced",
        "--resume_from_checkpoint", out / "checkpoints" / "step_3", launcher=TWO_CPU_RANKS, env_extra=TWO_CPU_RANKS_ENV,
    )  # fmt: skip
    straight, resumed = (
        load_file(d / "model.safetensors") for d in (tmp_path / "straight_6", out / "checkpoints" / "step_6")
    )
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.slow
def test_labels_that_cannot_work_stop_before_training(tones, tmp_path):
    train, dev = tones
    # a manifest with an empty label (a counted skip) and an eval label training never saw (an error)
    rows = [{"file_name": f"grave/{i}.wav", "label": "grave"} for i in range(4)]
    rows += [{"file_name": f"agudo/{i}.wav", "label": "agudo"} for i in range(4)] + [
        {"file_name": "medio/0.wav", "label": ""}
    ]
    with open(train / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file_name", "label"])
        writer.writeheader()
        writer.writerows(rows)
    try:
        result = classify(train, dev, tmp_path / "a", "--max_steps", 2, check=False)
        assert result.returncode != 0 and "never appear in the training data" in result.stderr
        assert "'medio': 6" in result.stderr and "Traceback" not in result.stderr
        result = classify(
            train, train, tmp_path / "b", "--max_steps", 2, "--labels", "grave", "agudo", "medio", check=False
        )
        assert result.returncode != 0 and "['medio'] have no training example" in result.stderr
        result = classify(train, train, tmp_path / "c", "--max_steps", 2)
        assert "2 empty label" in result.stderr  # once as training data, once as eval data
        assert "not listed in metadata.csv" in result.stderr  # the folder's other clips: counted, not lost
    finally:
        os.remove(train / "metadata.csv")
    # a --model folder with no model in it
    (tmp_path / "empty").mkdir()
    args = ["finetune_classification.py", "--model", str(tmp_path / "empty"), "--train_data", str(train)]
    result = run_script(
        [sys.executable, *args, "--eval_data", str(dev), "--output_dir", str(tmp_path / "d")], check=False
    )
    assert result.returncode != 0 and "no config.json" in result.stderr and "Traceback" not in result.stderr

"""`pip install .` with no extras, in a fresh virtual environment, is enough to load a model and run the transcription
command, and brings none of the extras' packages: a user who only wants the model does not install onnxruntime,
espeak-ng or the augmentation libraries."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow
EXTRAS_ONLY = ("onnxruntime", "espeakng_loader", "audiomentations", "pyroomacoustics", "datasets", "pyctcdecode")


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_base_install_loads_a_saved_model_and_runs_the_transcribe_command(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python, scripts = str(venv / "bin" / "python"), venv / "bin"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "torch==2.13.0"])  # first, as the README says: the CPU build, never a second torch
    run([*pip, REPO_ROOT])  # a regular (not editable) install, no extras
    fixture = os.path.join(REPO_ROOT, "tests", "fixtures", "ctc_before_rooms")
    code = f"""
import importlib.util, json
import modeling_distilxlsr
from transformers import AutoModel
model = AutoModel.from_pretrained({fixture!r})
print(json.dumps({{
    "class": type(model).__name__,
    "package": modeling_distilxlsr.__file__,
    "extras": [name for name in {EXTRAS_ONLY!r} if importlib.util.find_spec(name)],
}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    result = json.loads(run([python, "-c", code], cwd=tmp_path, env=env).stdout.strip().splitlines()[-1])
    assert result["class"] == "DistilXLSRModel" and str(venv) in result["package"]
    assert result["extras"] == []
    usage = run([str(scripts / "distilxlsr-transcribe"), "--help"], cwd=tmp_path, env=env).stdout
    assert "--backend" in usage and "--return_timestamps" in usage

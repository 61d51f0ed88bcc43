"""`pip install .` with no extras, in a fresh virtual environment, is enough to load a model and run the transcription
command, and brings none of the extras' packages: a user who only wants the model does not install onnxruntime,
espeak-ng or the augmentation libraries; the recipes install inside the package, not as top-level modules."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow
PACKAGED = "modeling_distilxlsr.recipes"
RECIPES = ("train_distill", "finetune_ctc", "finetune_classification", "transcribe", "align")
EXTRAS_ONLY = ("onnxruntime", "espeakng_loader", "audiomentations", "pyroomacoustics", "datasets", "pyctcdecode")


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def share_the_active_torch(venv, folder) -> None:
    """Makes the active environment's torch, and only torch, importable and installed in `venv`: its packages and
    its dist-info linked into `folder`, which a .pth file puts on the venv's path. pip then finds torch installed,
    as after the README's `pip install torch==2.13.0` (unpacking the CPU wheel again took most of this test), and
    nothing else of the active environment shows (`--system-site-packages` would show every extra)."""
    dist = importlib.metadata.distribution("torch")
    top_level = {Path(str(f)).parts[0] for f in dist.files}
    folder.mkdir()
    for name in sorted(top_level):
        source = Path(dist.locate_file(name))
        if source.exists() and not name.endswith(".pth") and name != "..":
            (folder / name).symlink_to(source)
    site = run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(site.stdout.strip()) / "_active_torch.pth").write_text(f"{folder}\n")


def test_the_base_install_loads_a_saved_model_and_runs_the_transcribe_command(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python, scripts = str(venv / "bin" / "python"), venv / "bin"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    share_the_active_torch(venv, tmp_path / "torch_only")  # installed first, as the README says: never a second
    run([*pip, REPO_ROOT])  # a regular (not editable) install, no extras
    listed = run([python, "-m", "pip", "list", "--format", "json"]).stdout
    assert [p["version"] for p in json.loads(listed) if p["name"] == "torch"] == [torch.__version__]
    fixture = os.path.join(REPO_ROOT, "tests", "fixtures", "ctc_before_rooms")
    code = f"""
import importlib.util, json
import modeling_distilxlsr
from transformers import AutoModel
model = AutoModel.from_pretrained({fixture!r})
print(json.dumps({{
    "class": type(model).__name__,
    "package": modeling_distilxlsr.__file__,
    "torch": __import__("torch").__file__,
    "extras": [name for name in {EXTRAS_ONLY!r} if importlib.util.find_spec(name)],
    "top_level_recipes": [name for name in {RECIPES!r} if importlib.util.find_spec(name)],
    "packaged_recipes": [name for name in {RECIPES!r} if importlib.util.find_spec(f"{PACKAGED}.{{name}}")],
}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    result = json.loads(run([python, "-c", code], cwd=tmp_path, env=env).stdout.strip().splitlines()[-1])
    assert result["class"] == "DistilXLSRModel" and str(venv) in result["package"]
    assert result["torch"].startswith(str(tmp_path / "torch_only"))  # the one torch, not a second
    assert result["extras"] == []
    # the console scripts' recipes come from inside the package: no top-level `transcribe` or `align` to clash with
    assert result["top_level_recipes"] == [] and result["packaged_recipes"] == list(RECIPES)
    usage = run([str(scripts / "distilxlsr-transcribe"), "--help"], cwd=tmp_path, env=env).stdout
    assert "--backend" in usage and "--return_timestamps" in usage

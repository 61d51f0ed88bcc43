"""Model folders keep loading across the project's own changes, and transcribe.py decodes as the transformers pipeline
does.

`tests/fixtures/ctc_before_rooms/` was written by the flat package (before it moved into rooms): weights, a config
whose `auto_map` names the three code files in the folder, those files, and the processor.
`ctc_before_rooms_reference.safetensors` holds a wave and the logits that code gave for it."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO_ROOT, run_fresh_python, run_script
from safetensors.torch import load_file
from transformers import AutoModelForCTC, pipeline

from modeling_distilxlsr import DistilXLSRForCTC
from modeling_distilxlsr.models.configuration_distilxlsr import AUTO_MAP
from modeling_distilxlsr.models.folder import save_for_hub

FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "ctc_before_rooms")
REFERENCE = os.path.join(REPO_ROOT, "tests", "fixtures", "ctc_before_rooms_reference.safetensors")


def test_a_folder_saved_before_the_move_loads_with_the_package_and_gives_the_same_logits():
    reference = load_file(REFERENCE)
    model = AutoModelForCTC.from_pretrained(FIXTURE).eval()  # no remote code: this package's classes
    assert type(model) is DistilXLSRForCTC
    with torch.no_grad():
        logits = model(reference["wave"]).logits
    torch.testing.assert_close(logits, reference["logits"], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_folder_saved_before_the_move_loads_from_its_own_files_without_the_package(tmp_path):
    """A Hub user's path: `trust_remote_code=True` runs the (old) files in the folder, and the pipeline works."""
    out = run_fresh_python(
        f"""
        import json, torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCTC, pipeline
        reference = load_file({REFERENCE!r})
        model = AutoModelForCTC.from_pretrained({FIXTURE!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            diff = (model(reference["wave"]).logits - reference["logits"]).abs().max().item()
        asr = pipeline("automatic-speech-recognition", model={FIXTURE!r}, trust_remote_code=True)
        text = asr(reference["wave"][0].numpy())["text"]
        print(json.dumps({{"module": type(model).__module__, "diff": diff, "text": text}}))
        """,
        tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules.") and result["diff"] < 1e-5
    assert isinstance(result["text"], str)


def _speechlike_clips(folder, seconds=(1.2, 2.5, 0.6)):
    """Random-weight models turn noise into characters too: distinct clips give distinct transcripts to compare."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) * (
            1 + np.sin(2 * np.pi * 3 * t)
        ) + 0.05 * rng.standard_normal(len(t))
        paths.append(str(folder / f"clip{i}.wav"))
        sf.write(paths[-1], wave.astype(np.float32), 16000)
    return paths


@pytest.mark.slow
def test_transcribe_decodes_as_the_transformers_pipeline_text_and_word_times(tiny_ctc_dir, tmp_path):
    """transcribe.py runs its own loop over the backend's logits; decoding a file whole (`--no_vad`: the pipeline
    takes no speech regions) and unwritten (`--raw_text`: the pipeline writes the model's own words), greedy text and
    word timestamps are the pipeline's."""
    model_dir, _ = tiny_ctc_dir
    paths = _speechlike_clips(tmp_path / "audio")
    command = [sys.executable, "transcribe.py", str(model_dir), str(tmp_path / "audio"), "--format", "jsonl"]
    command += ["--backend", "torch", "--dtype", "fp32", "--return_timestamps", "word", "--no_vad", "--raw_text"]
    rows = [json.loads(line) for line in run_script(command).stdout.splitlines()]
    asr = pipeline("automatic-speech-recognition", model=str(model_dir))
    assert [row["path"] for row in rows] == sorted(paths)
    for row in rows:
        audio, _ = sf.read(row["path"], dtype="float32")
        expected = asr({"raw": audio, "sampling_rate": 16000}, return_timestamps="word")
        assert row["text"] == expected["text"]
        assert [(c["text"], tuple(c["timestamp"])) for c in row["chunks"]] == [
            (c["text"], tuple(c["timestamp"])) for c in expected["chunks"]
        ]


def test_a_foreign_auto_map_is_not_carried_into_a_saved_folder(tmp_path):
    folder = tmp_path / "foreign"
    AutoModelForCTC.from_pretrained(FIXTURE).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "modeling_evil.Evil"
    config["auto_map"]["AutoFeatureExtractor"] = "feature_extraction_evil.Evil"
    (folder / "config.json").write_text(json.dumps(config))
    model = AutoModelForCTC.from_pretrained(folder)
    save_for_hub(model, str(tmp_path / "saved"))
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"] == AUTO_MAP


def test_with_the_package_imported_the_pipeline_needs_no_remote_code_and_runs_none(tmp_path):
    """A folder whose tokenizer config names code of its own: loaded the documented way, that code never runs."""
    folder = tmp_path / "evil"
    shutil.copytree(FIXTURE, folder)
    marker = tmp_path / "evil_ran"
    (folder / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.Evil", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    out = run_fresh_python(
        f"""
        import json
        import numpy as np
        import modeling_distilxlsr
        from transformers import pipeline
        asr = pipeline("automatic-speech-recognition", model={str(folder)!r})
        print(json.dumps({{"model": type(asr.model).__module__, "text": asr(np.full(16000, 0.1, np.float32))["text"]}}))
        """,
        tmp_path,
        with_package=True,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["model"].startswith("modeling_distilxlsr.") and isinstance(result["text"], str)
    assert not marker.exists()

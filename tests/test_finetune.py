import csv
import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, run_script, tiny_student_config

from modeling_distilxlsr import DistilXLSRForDistillation
from modeling_distilxlsr.export import save_for_hub

FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "distilled_student")
QUICK = ["--report_to", "none", "--num_workers", "0", "--per_device_batch_size", "4", "--mask_time_prob", "0.0"]


def finetune(model, train, eval_sets, output_dir, *extra, **kwargs):
    args = [
        sys.executable,
        "finetune_ctc.py",
        "--model",
        str(model),
        "--train_data",
        str(train),
        "--eval_data",
        *map(str, eval_sets),
        "--output_dir",
        str(output_dir),
        *QUICK,
        *map(str, extra),
    ]
    return run_script(args, **kwargs)


@pytest.fixture(scope="module")
def tiny_distilled(tmp_path_factory):
    path = tmp_path_factory.mktemp("distilled")
    save_for_hub(DistilXLSRForDistillation(tiny_student_config()), str(path))
    return path


def test_bad_transcripts_and_audio_are_skipped_and_counted(tiny_distilled, small_corpus, tmp_path):
    data = tmp_path / "messy"
    data.mkdir()
    rows = list(csv.DictReader(open(small_corpus / "dev" / "metadata.csv", encoding="utf-8")))[:6]
    for row in rows:
        shutil.copy(small_corpus / "dev" / row["file_name"], data / row["file_name"])
    sf.write(data / "short.wav", np.random.randn(1600).astype("float32") * 0.1, 16000)  # 0.1 s, 4 frames
    (data / "broken.wav").write_bytes(b"not audio at all")
    rows += [
        {"file_name": "short.wav", "transcription": "uma frase longa demais para um décimo de segundo"},
        {"file_name": rows[0]["file_name"], "transcription": ""},
        {"file_name": rows[1]["file_name"], "transcription": "?!... — «»"},
        {"file_name": "broken.wav", "transcription": "nada"},
    ]
    with open(data / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file_name", "transcription", "speaker"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    result = finetune(tiny_distilled, data, [data], out, "--max_steps", 4, "--eval_steps", 4, "--save_steps", 4)
    # Each of the 4 bad rows is met twice: once as training data, once as evaluation data.
    summary = (
        "skipped 8 of 20 utterances: 2 no transcript, 2 too short for its transcript, "
        "2 transcript empty after normalisation, 2 unreadable"
    )
    results = json.loads((out / "ctc_results.json").read_text())
    assert results["skipped"] == summary and summary in result.stderr
    assert np.isfinite(results["best_eval"][str(data)]["cer"])


def test_non_utf8_manifest_is_a_clear_error(tiny_distilled, tmp_path):
    manifest = tmp_path / "train.csv"
    manifest.write_bytes("path,sentence\na.wav,ol\xe1\n".encode("latin-1"))
    result = finetune(tiny_distilled, manifest, [manifest], tmp_path / "o", "--max_steps", 1, check=False)
    assert result.returncode != 0 and "train.csv, line 2: not valid UTF-8" in result.stderr

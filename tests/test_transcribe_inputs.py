"""transcribe.py on bad inputs: every file gets its own result or its own counted, reported failure.

One table: a file maker -> the expected status. Extend it with one line."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script


def noise(seconds, seed, sample_rate=16_000):
    return (np.random.default_rng(seed).standard_normal(int(seconds * sample_rate)) * 0.1).astype("float32")


def write(path, audio, sample_rate=16_000, subtype=None):
    sf.write(path, audio, sample_rate, subtype=subtype)


# (file name, maker, expected status, reason the error must start with)
TRANSCRIBE_CASES = [
    ("a_good.wav", lambda p: write(p, noise(1.0, 1)), "ok", None),
    ("b_zero_frames.wav", lambda p: write(p, np.zeros(0, "float32")), "failed", "empty (no audio frames)"),
    ("c_good.wav", lambda p: write(p, noise(0.7, 2)), "ok", None),
    ("d_under_receptive_field.wav", lambda p: write(p, noise(0.01, 3)), "failed", "too short"),
    ("e_good_8k_stereo.wav", lambda p: write(p, np.stack([noise(0.9, 4, 8000)] * 2, 1), 8000), "ok", None),
    ("f_zero_bytes.wav", lambda p: open(p, "wb").close(), "failed", "unreadable"),
    ("g_corrupt.flac", lambda p: open(p, "wb").write(b"fLaC" + os.urandom(300)), "failed", "unreadable"),
    ("h_nan.wav", lambda p: write(p, np.full(16000, np.nan, "float32"), subtype="FLOAT"), "failed", "NaN/Inf"),
    ("i_silence.wav", lambda p: write(p, np.zeros(16000, "float32")), "ok", None),
    ("j_good_last.wav", lambda p: write(p, noise(1.3, 5)), "ok", None),
]


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    for name, make, _, _ in TRANSCRIBE_CASES:
        make(str(folder / name))
    return folder


@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
def test_every_file_keeps_its_own_result_or_failure(tiny_ctc_dir, bad_folder, tmp_path, output_format):
    model_dir, _ = tiny_ctc_dir
    out = tmp_path / f"out.{output_format}"
    result = run_script(
        [sys.executable, "transcribe.py", str(model_dir), str(bad_folder), "--batch_size", "4"]
        + ["--format", output_format, "--output", str(out)]
    )
    if output_format == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        import csv

        rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [os.path.basename(r["path"]) for r in rows] == [case[0] for case in TRANSCRIBE_CASES]
    for row, (name, _, status, reason) in zip(rows, TRANSCRIBE_CASES, strict=True):
        assert row["status"] == status, (name, row)
        if reason:
            assert row["error"].startswith(reason), (name, row)
    failed = sum(case[2] == "failed" for case in TRANSCRIBE_CASES)
    assert f"skipped {failed} of {len(TRANSCRIBE_CASES)} files" in result.stderr

    if output_format == "csv":
        return
    # No shift: the good files alone (no bad file between them) get the same transcripts.
    good = [str(bad_folder / name) for name, _, status, _ in TRANSCRIBE_CASES if status == "ok"]
    alone = run_script([sys.executable, "transcribe.py", str(model_dir), *good, "--format", "jsonl"])
    alone_texts = {os.path.basename(r["path"]): r["text"] for r in map(json.loads, alone.stdout.splitlines())}
    assert alone_texts == {os.path.basename(r["path"]): r["text"] for r in rows if r["status"] == "ok"}
    assert len(set(alone_texts.values())) > 2  # distinct transcripts, so a shift could not go unseen

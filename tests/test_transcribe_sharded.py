"""`accelerate launch transcribe.py ... --output OUT`: files split across processes by length, one shard each, merged
in input order; `--resume` after a kill keeps what was written, redoes a torn line, refuses other settings."""

import json
import os
import shutil
import sys

import pytest
import soundfile as sf
from conftest import TWO_CPU_RANKS, TWO_CPU_RANKS_ENV, TWO_PROCESS_GROUP, run_script, speech

from modeling_distilxlsr.inference.transcript_files import shard_path, split_by_length

SECONDS = (2.0, 0.4, 3.1, 1.2, 0.7, 2.6, 0.9, 1.6)


def _audio_folder(folder) -> list[str]:
    os.makedirs(folder / "sub", exist_ok=True)
    paths = []
    for i, seconds in enumerate(SECONDS):
        path = str(folder / ("sub" if i % 3 == 0 else "") / f"clip{i}.wav")
        sf.write(path, speech(seconds, i), 16000)
        paths.append(path)
    (folder / "broken.wav").write_bytes(b"RIFF0000WAVEfmt ")  # fails alone, wherever it lands
    return sorted([*paths, str(folder / "broken.wav")])


def _finished_reference_and_an_output_to_resume(model_dir, tmp_path):
    """The audio files, a finished one-process run's rows (the reference), and an output beside it with the same
    settings, for a test to leave what a killed run would have."""
    files = _audio_folder(tmp_path / "audio")
    reference = tmp_path / "reference.jsonl"
    _transcribe(model_dir, tmp_path / "audio", reference)
    out = tmp_path / "out.jsonl"
    shutil.copy(f"{reference}.settings.json", f"{out}.settings.json")
    return files, reference, out


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _transcribe(model_dir, inputs, output, *extra, launcher=(sys.executable,), check=True):
    command = [*launcher, "transcribe.py", str(model_dir), str(inputs), "--format", "jsonl", "--output", str(output)]
    return run_script([*command, "--backend", "torch", *extra], env_extra=TWO_CPU_RANKS_ENV, check=check)


def test_split_by_length_gives_every_file_once_and_balances_the_audio(tmp_path):
    files = _audio_folder(tmp_path)
    parts = split_by_length(files, 2)
    assert sorted(p for part in parts for p in part) == files
    loads = [sum(sf.info(p).duration for p in part if not p.endswith("broken.wav")) for part in parts]
    assert abs(loads[0] - loads[1]) <= max(SECONDS)


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    files = _audio_folder(tmp_path / "audio")
    one = tmp_path / "one.jsonl"
    _transcribe(model_dir, tmp_path / "audio", one)
    two = tmp_path / "two.jsonl"
    result = _transcribe(model_dir, tmp_path / "audio", two, launcher=TWO_CPU_RANKS)
    assert [r["path"] for r in _rows(two)] == files  # input order, every file once
    assert _rows(two) == _rows(one)
    assert [r["status"] for r in _rows(two)].count("failed") == 1
    assert "process 0:" in result.stderr and "process 1:" in result.stderr
    assert "by 2 process(es)" in result.stderr
    assert not [name for name in os.listdir(tmp_path) if ".shard-" in name]  # merged, then removed


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_resume_keeps_written_rows_redoes_a_torn_line_and_refuses_other_settings(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    files, reference, out = _finished_reference_and_an_output_to_resume(model_dir, tmp_path)
    # What a kill leaves: process 1's shard with two whole rows (one marked, to see it is kept, not redone) and a
    # third row cut in the middle.
    kept = [*_rows(reference)[:2]]
    kept[0] = dict(kept[0], text="KEPT FROM THE KILLED RUN")
    with open(shard_path(str(out), 1, 2), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in kept)
        f.write(json.dumps(_rows(reference)[2])[:25])
    result = _transcribe(model_dir, tmp_path / "audio", out, "--resume", launcher=TWO_CPU_RANKS)
    assert "1 line(s) torn by a kill" in result.stderr and "2 kept from the earlier run" in result.stderr
    rows = _rows(out)
    assert [r["path"] for r in rows] == files
    assert rows[0]["text"] == "KEPT FROM THE KILLED RUN" and rows[1:] == _rows(reference)[1:]

    # the same output with another model setting: refused, nothing overwritten
    refused = _transcribe(model_dir, tmp_path / "audio", out, "--resume", "--chunk_length_s", "5", check=False)
    assert refused.returncode != 0 and "other settings" in refused.stderr and "chunk_length_s" in refused.stderr
    assert "Traceback" not in refused.stderr and _rows(out) == rows


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_several_processes_need_an_output_file(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    _audio_folder(tmp_path / "audio")
    command = [*TWO_CPU_RANKS, "transcribe.py", str(model_dir), str(tmp_path / "audio"), "--backend", "torch"]
    result = run_script(command, env_extra=TWO_CPU_RANKS_ENV, check=False)
    assert result.returncode != 0 and "several processes need --output" in result.stderr


@pytest.mark.slow
def test_resume_on_other_files_keeps_every_earlier_row_in_place_and_appends_the_new_ones(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    files = _audio_folder(tmp_path / "audio")
    first, later = files[:6], files[6:]
    os.makedirs(tmp_path / "later")
    moved = [shutil.move(path, tmp_path / "later" / os.path.basename(path)) for path in later]
    out = tmp_path / "out.jsonl"
    _transcribe(model_dir, tmp_path / "audio", out)
    before = _rows(out)
    assert [r["path"] for r in before] == first
    result = _transcribe(model_dir, tmp_path / "later", out, "--resume")
    rows = _rows(out)
    assert rows[: len(before)] == before  # nothing dropped, nothing moved
    assert [r["path"] for r in rows] == first + sorted(str(p) for p in moved)
    assert "6 row(s) kept" in result.stderr and "3 input file(s) to transcribe" in result.stderr


@pytest.mark.slow
def test_a_resume_after_a_kill_ends_in_input_order_and_another_format_is_refused_in_one_line(tiny_ctc_dir, tmp_path):
    """The killed run had written the 2nd and 4th files (a sharded run writes by length, not input order): the resume
    puts every row in input order. A resume that asks for csv where the run wrote jsonl is one `error:` line."""
    model_dir, _ = tiny_ctc_dir
    files, reference, out = _finished_reference_and_an_output_to_resume(model_dir, tmp_path)
    with open(shard_path(str(out), 0, 1), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(_rows(reference)[i]) + "\n" for i in (3, 1))
    _transcribe(model_dir, tmp_path / "audio", out, "--resume")
    assert [r["path"] for r in _rows(out)] == files and _rows(out) == _rows(reference)
    other = [sys.executable, "transcribe.py", str(model_dir), str(tmp_path / "audio"), "--format", "csv"]
    refused = run_script([*other, "--output", str(out), "--resume", "--backend", "torch"], check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "format: 'jsonl' -> 'csv'" in refused.stderr and _rows(out) == _rows(reference)

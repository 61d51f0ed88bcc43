"""The benchmark scripts that no CPU test would otherwise run."""

import json

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow  # every test here is an end-to-end run


def test_gpu_check_runs_on_cpu_with_tiny_shapes(tmp_path):
    """benchmarks/gpu_check.sh, the one script a session with a GPU runs, on tiny shapes on the CPU: every step runs
    and writes its figures, so it cannot rot between GPU sessions (each benchmark's rows in its own process, not one
    process per row: the figures are not the point here, and a fresh import per row cost most of the test's time)."""
    out = tmp_path / "gpu_check"
    env = {"OUT": str(out), "DISTILXLSR_BENCH_SAME_PROCESS": "1"}
    run_script(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny"], env_extra=env)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["fp32"]["predictions"] > 0.9999 and parity["train_step"]["gradients_finite"]
    tables = (out / "tables.md").read_text()
    for section in ("## distillation throughput", "## inference, bf16", "## inference, fp32"):
        assert section in tables
    assert tables.count("| XLSR-53 (teacher arch) |") == 2 and "slim student backbone" in tables
    distill_file = json.loads((out / "distill_bf16.json").read_text())
    command = distill_file["run"]["command"]
    assert distill_file["run"]["cpu"] and command.startswith("python benchmarks/distill_throughput.py")
    distill = distill_file["rows"]  # every results file: the rows, and the machine and command that made them
    assert distill and all(row["audio_seconds_per_second"] > 0 for row in distill.values())
    sweep = json.loads((out / "distill_sweep.json").read_text())["rows"]  # the batch that fills the device, per student
    assert set(sweep) == {
        f"{row} x {n}" for row in ("ours (8/16/24)", "ours, log-mel front-end (8/16/24)") for n in (1, 2)
    }
    assert all(
        r["audio_seconds_per_second"] > 0 and 0 < r["peak_memory_mb"] < r["device_memory_mb"] for r in sweep.values()
    )
    assert "## distillation: the batch that fills the device" in tables and "log-mel student CTC" in tables


def test_probe_runs_every_task_and_writes_one_table(small_corpus, tmp_path):
    """benchmarks/probe.py end to end on a tiny corpus (two steps per probe, one model to keep it short: the
    fixture's architecture with random weights, made from `random:DIR`): the speaker, keyword and phoneme probes run
    through the real scripts, and the table has one row per task with the score against the first model's."""
    import os
    import sys

    from conftest import REPO_ROOT

    fixture = os.path.join(REPO_ROOT, "tests", "fixtures", "distilled_student")
    out = tmp_path / "probe"
    command = [sys.executable, "benchmarks/probe.py", "--models", f"scratch=random:{fixture}", "--out", str(out)]
    command += ["--corpus", str(small_corpus), "--speaker_clips", "3", "--keyword_clips", "2", "1"]
    result = run_script([*command, "--steps", "2", "--phoneme_steps", "2"])
    results = json.loads((out / "probe_results.json").read_text())["rows"]
    assert len(results) == 3 and (out / "scratch_model" / "model.safetensors").exists()
    # keyword clips are made once per setting (counts and seed in the folder name): 8 classes x 2 train, x 1 test
    keywords = out / "keywords_2x1_seed0"
    assert [len((keywords / f"{split}.csv").read_text().splitlines()) for split in ("train", "test")] == [17, 9]
    for name, row in results.items():
        score = row["per"] if "phoneme" in name else row["accuracy"]
        assert 0 <= score <= (10 if "phoneme" in name else 1) and row["seconds"] > 0
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| task | scratch |" and len(table) == 4
    for row in table[2:]:  # the first model against itself
        assert row.endswith(("(100%) |", "(1.00x the teacher's) |", "(teacher at 0) |"))
    assert table[3].startswith("| phoneme recognition") and "PER (" in table[3]


def test_alignment_benchmark_scores_words_against_espeaks_timing_and_times_an_xlsr_shape(small_corpus, tmp_path):
    """benchmarks/alignment.py on 3 files of a corpus made by this version (it has word_times.jsonl), with the
    shipped teacher (a trained model: its boundaries are real) and the tiny shapes for the speed rows (XLSR-53's
    stand-in; the student of it, in torch and exported to ONNX int8)."""
    import sys

    out = tmp_path / "alignment"
    command = [sys.executable, "benchmarks/alignment.py", "--corpus", str(small_corpus), "--limit", "3"]
    run_script([*command, "--out", str(out)], env_extra={"DISTILXLSR_BENCH_TINY": "1"})
    results = json.loads((out / "alignment.json").read_text())["results"]
    names = [r["name"].split(" (")[0] for r in results]
    assert names == ["XLSR-53 shape", "default student shape, torch-fp32", "default student shape, onnx-int8",
                     "shipped pt-BR teacher"]  # fmt: skip
    teacher = results[-1]
    assert teacher["failed"] == 0 and teacher["scored_words"] + teacher["unscored_words"] > 10
    within = sum(abs(start) <= 0.04 and abs(end) <= 0.04 for start, end in teacher["errors"]) / len(teacher["errors"])
    assert within > 0.6  # 94% on the whole test split; unseen voices, 3 files
    table = (out / "alignment.md").read_text()
    assert "| shipped pt-BR teacher | 20 ms |" in table and "x |" in table


def test_stream_latency_benchmark_streams_in_real_time_and_finds_the_words(small_corpus, tmp_path):
    """benchmarks/stream_latency.py on 2 files with the shipped teacher: a real server, real-time WebSocket
    streams; each word is found in a partial or result, and the streamed transcript is the batch one."""
    import sys

    out = tmp_path / "stream"
    command = [sys.executable, "benchmarks/stream_latency.py", "--corpus", str(small_corpus), "--files", "2"]
    result = run_script([*command, "--out", str(out)])
    summary = json.loads((out / "stream_latency.json").read_text())
    # about half the words of 2 unseen-voice files are spelt right by the 1.75M teacher (its WER is ~0.4)
    assert summary["words_seen"] >= 5 and summary["words_seen"] + summary["words_never_seen"] > 10
    assert abs(summary["streamed_cer"] - summary["batch_cer"]) < 0.05
    assert "| words seen (never) |" in result.stdout


def test_cnn_profile_gives_every_layer_and_the_cnns_share_of_the_forward_pass(tmp_path):
    """benchmarks/cnn_profile.py on tiny shapes: a row per CNN layer with its MACs, the whole CNN, the whole pass."""
    import sys

    result = run_script([sys.executable, "benchmarks/cnn_profile.py", "--seconds", "1", "--repeats", "1"],
                        env_extra={"DISTILXLSR_BENCH_TINY": "1"})  # fmt: skip
    for student in ("default", "slim"):
        assert f"### {student} student" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| conv ")]
    assert len(rows) == 14 and rows[0].startswith("| conv 1 (1->")  # 7 layers, two students
    assert result.stdout.count("| whole forward pass") == 2 and "| 100% |" in result.stdout


def test_silence_benchmark_finds_padded_clips_decode_by_regions_as_the_clips_alone(small_corpus, tmp_path):
    """benchmarks/silence.py on 6 unseen-voice clips with the shipped teacher (a trained model): padded with 1 s and
    2 s of silence, the clips decode by regions as they do alone; no word or cue spans the long file's pauses; the
    table renders from the results file."""
    import sys

    from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir

    out = tmp_path / "silence.json"
    command = [sys.executable, "benchmarks/silence.py", shipped_teacher_dir(), "--test", str(small_corpus / "test")]
    result = run_script([*command, "--clips", "6", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["clips"] == 6
    assert abs(report["regions/padded_1s_2s"]["cer"] - report["regions/trimmed"]["cer"]) < 0.01
    long_file = report["regions/long_file"]
    assert long_file["words"] > 10 and long_file["words_across_0.3s_pause"] == long_file["cues_across_0.5s_pause"] == 0
    assert "| speech regions (default) |" in result.stdout  # the table render_tables.py writes into the README


def test_the_benchmark_readmes_tables_are_what_their_results_files_render():
    """A table between `<!-- table: results/... -->` markers is rewritten from its file by render_tables.py: the
    README in the repository is that rendering (run `python benchmarks/render_tables.py` after a benchmark)."""
    import sys

    result = run_script([sys.executable, "benchmarks/render_tables.py", "--check"], check=False)
    assert result.returncode == 0, result.stderr
    assert open("benchmarks/README.md", encoding="utf-8").read().count("<!-- table: results/") >= 2


def test_alignment_mismatch_benchmark_tells_right_from_shuffled_transcripts(small_corpus, tmp_path):
    """benchmarks/alignment_mismatch.py on 4 unseen-voice clips with the shipped teacher: each clip's own transcript
    scores above every other clip's."""
    import sys

    from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir

    out = tmp_path / "mismatch.json"
    command = [sys.executable, "benchmarks/alignment_mismatch.py", shipped_teacher_dir(), "--test"]
    result = run_script([*command, str(small_corpus / "test"), "--clips", "4", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["clips"] == 4 and report["auroc"] == 1.0 and report["wrong_marked"] == 1.0
    assert "| teacher_pt_br | 4 | 1.000 |" in result.stdout


def test_confidence_benchmark_fits_on_dev_scores_on_test_and_writes_a_calibration_that_loads(small_corpus, tmp_path):
    """benchmarks/confidence.py on 4 clips per split and condition (clean, corrupted, foreign-accented), with the
    shipped teacher copied: the report's figures, the reliability diagram, and a confidence.json transcribe.py reads."""
    import shutil
    import sys

    from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
    from modeling_distilxlsr.inference.confidence import ConfidenceCalibration

    teacher = shutil.copytree(shipped_teacher_dir(), tmp_path / "teacher")
    out, plot = tmp_path / "confidence.json", tmp_path / "reliability.png"
    command = [sys.executable, "benchmarks/confidence.py", str(teacher), "--corpus", str(small_corpus), "--clips", "4"]
    run_script([*command, "--out", str(out), "--plot", str(plot), "--write_calibration"])
    report = json.loads(out.read_text())
    assert set(report["cer"]) == {"clean", "corrupted", "foreign"} and report["words"] > 20
    assert 0 <= report["word_auroc"] <= 1 and 0 <= report["ece_all"] <= 1  # a word AUROC: right and wrong words
    assert report["transcript_auroc"] is None or 0 <= report["transcript_auroc"] <= 1  # 4 clips may all pass
    assert plot.stat().st_size > 5_000 and ConfidenceCalibration.load(str(teacher)) is not None


def test_inference_benchmark_caps_the_isa_of_every_engine_that_can_be_capped(tmp_path):
    """`inference.py --isa avx2` (tiny shapes): the script runs again with the ISA variables set, every row's worker
    process runs torch's AVX2 kernels (also on an AVX-512 machine), and the table and results file say what was
    capped and what was not (ONNX Runtime)."""
    import sys

    out = tmp_path / "capped.json"
    command = [sys.executable, "benchmarks/inference.py", "--isa", "avx2", "--models", "student", "--backends", "eager",
               "onnx", "--durations", "1", "--batch_sizes", "1", "--repeats", "1", "--json", str(out)]  # fmt: skip
    result = run_script(command, env_extra={"DISTILXLSR_BENCH_TINY": "1"}, fresh_process=True)  # it re-executes
    report = json.loads(out.read_text())
    assert report["run"]["isa_caps"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                         "CT2_FORCE_CPU_ISA": "AVX2"}  # fmt: skip
    rows = report["rows"]
    assert set(rows) == {"student backbone / eager", "student backbone / onnx"}
    assert {row["cpu_capability"] for row in rows.values()} == {"AVX2"}
    assert "ISA capped: ATEN_CPU_CAPABILITY=avx2" in result.stdout and "ONNX Runtime" in result.stdout


def test_onnx_attention_benchmark_times_both_opsets_and_checks_they_agree(tmp_path):
    """benchmarks/onnx_attention.py on tiny shapes: a row per path and student, both opsets' logits the same."""
    import sys

    out = tmp_path / "attention.json"
    command = [sys.executable, "benchmarks/onnx_attention.py", "--students", "default", "log-mel", "--clips", "1",
               "--repeats", "1", "--json", str(out)]  # fmt: skip
    result = run_script(command, env_extra={"DISTILXLSR_BENCH_TINY": "1"})
    rows = json.loads(out.read_text())["rows"]
    paths = {"torch-fp32", "onnx-fp32 opset 18", "onnx-fp32 opset 23", "onnx-int8 opset 18", "onnx-int8 opset 23"}
    for student in ("default", "log-mel"):
        assert paths <= {r["path"] for r in rows if r["student"] == student}
    assert all(r["max_diff_to_opset18"] < 1e-3 for r in rows if r["path"] == "onnx-fp32 opset 23")
    assert all(r["wall_s"] > 0 and r["vs_best_torch"] > 0 for r in rows)
    assert "| default | 1 s | onnx-int8 opset 23 |" in result.stdout


def test_bf16_profile_times_both_paths_and_names_each_ones_operators(tmp_path):
    """benchmarks/bf16_profile.py on tiny shapes: per student and batch, fp32 and bf16 timed and profiled, the
    operators' self times adding up to a pass, the table rendered."""
    import sys

    out = tmp_path / "profile.json"
    command = [sys.executable, "benchmarks/bf16_profile.py", "--students", "default", "log-mel", "--batch", "1", "2",
               "--seconds", "1", "--repeats", "1", "--json", str(out)]  # fmt: skip
    result = run_script(command, env_extra={"DISTILXLSR_BENCH_TINY": "1"})
    rows = json.loads(out.read_text())["rows"]
    assert {(r["student"], r["batch"]) for r in rows} == {(s, b) for s in ("default", "log-mel") for b in (1, 2)}
    for row in rows:
        for path in ("torch-fp32", "torch-bf16"):
            operators = row[path]["operators"]
            assert row[path]["wall_s"] > 0 and sum(operators.values()) > 0
            assert any(name.startswith("aten::") for name in operators)
    assert "### log-mel student, 2 x 1 s: fp32" in result.stdout and "| all operators |" in result.stdout


def test_page_microphone_benchmark_records_through_the_page_with_the_browsers_processing_off_and_on(
    small_corpus, tmp_path
):
    """benchmarks/page_microphone.py with the shipped teacher on 2 unseen-voice sentences: the page records the fake
    microphone in real Chromium twice; the track reports the page's constraints (processing off) the first time and
    the browser defaults the second; both live words and the recording's transcript are scored."""
    import sys

    out = tmp_path / "microphone.json"
    command = [sys.executable, "benchmarks/page_microphone.py", "--test", str(small_corpus / "test"), "--sentences",
               "2", "--pause", "0.5", "--json", str(out)]  # fmt: skip
    result = run_script(command)
    off, on = json.loads(out.read_text())["rows"]
    processing = ("echoCancellation", "noiseSuppression", "autoGainControl")
    assert [off["track_settings"].get(name) for name in processing] == [False, False, False]
    assert [on["track_settings"].get(name) for name in processing] == [True, True, True]
    for row in (off, on):
        assert row["recording"].strip() and 0 <= row["recording_cer"] <= 1.5 and 0 <= row["live_cer"] <= 1.5
    assert off["recording_cer"] < 0.6  # a trained model heard its words: the recording reached it whole
    assert "| off (the page's constraints) | false, false, false |" in result.stdout


def test_formatting_benchmark_times_each_step_against_the_transcription_and_scores_the_written_output(
    small_corpus, tmp_path
):
    """benchmarks/formatting.py on 6 unseen-voice clips with the shipped teacher: both inputs timed, each step's
    seconds a part of the whole, the written output scored against the cased, punctuated references."""
    import sys

    from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir

    out = tmp_path / "formatting.json"
    command = [sys.executable, "benchmarks/formatting.py", shipped_teacher_dir(), "--test", str(small_corpus / "test")]
    result = run_script([*command, "--clips", "6", "--out", str(out)], env_extra={"DISTILXLSR_BENCH_TINY": "1"})
    report = json.loads(out.read_text())
    for name in ("clips_10s", "long_file"):
        steps = report[name]
        assert steps["regions"] >= 1 and 0 < steps["share"] < 1 and steps["transcription_s"] > 0
        assert steps["default_student_transcription_s"] > 0 and steps["default_student_share"] > 0  # tiny shape here
    assert report["long_file"]["files"] == 1 and report["long_file"]["audio_s"] >= report["clips_10s"]["audio_s"]
    e2e = report["corpus_test"]
    assert e2e["punctuation"]["words_scored"] > 10 and e2e["examples"][0]["output"][0].isupper()
    assert e2e["written"]["cer"] >= e2e["normalised"]["cer"]  # case and marks can only add errors
    assert "| the clips as one file, 1 s pauses (1 files" in result.stdout
    assert "Against the default student's shape" in result.stdout


def test_encoder_levers_benchmark_times_a_student_for_each_convolution_length_and_stride(tmp_path):
    """benchmarks/encoder_levers.py on tiny shapes: one row per clip, path, taps and stride, each student built as
    asked (taps in the rows, the speed-up over the first row rendered)."""
    import sys

    out = tmp_path / "levers.json"
    command = [sys.executable, "benchmarks/encoder_levers.py", "--taps", "32", "8", "--strides", "1", "2", "--groups",
               "4", "--clips", "1", "--repeats", "1", "--no_peer", "--out", str(out)]  # fmt: skip
    result = run_script(command, env_extra={"DISTILXLSR_BENCH_TINY": "1"})
    rows = json.loads(out.read_text())["rows"]
    assert [(r["taps"], r["stride"]) for r in rows if r["path"] == "torch-fp32"] == [(32, 1), (8, 1), (32, 2), (8, 2)]
    assert all(r["wall_s"] > 0 and r["groups"] == 4 for r in rows)
    assert "| 1 s | torch-fp32 | 8 | 2 |" in result.stdout and "1.00x" in result.stdout

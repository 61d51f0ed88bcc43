"""`--backend auto` (pick the fastest path within the accuracy budget, cached per model and CPU) and length-batched
inference with a memory-sized batch."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script, speech

from modeling_distilxlsr.inference.backend_choice import (
    BackendTiming,
    auto_backend,
    cache_key,
    cached_timings,
    choose_backend,
    load_cached_choice,
    save_choice,
)
from modeling_distilxlsr.inference.backends import candidate_backends
from modeling_distilxlsr.inference.batching import item_bytes, length_sorted_batches

# A fake timing table as one machine could measure it: int8 fastest but too far from fp32's transcripts.
FAKE_TABLE = [
    BackendTiming("torch-fp32", 0.42, 0.0),
    BackendTiming("torch-bf16", 0.21, 0.004),
    BackendTiming("onnx-fp32", 0.33, 0.0),
    BackendTiming("onnx-int8", 0.19, 0.03),
]


def test_auto_picks_the_fastest_path_within_the_accuracy_budget():
    assert choose_backend(FAKE_TABLE, max_cer_change=0.01) == "torch-bf16"
    assert choose_backend(FAKE_TABLE, max_cer_change=0.05) == "onnx-int8"
    assert choose_backend(FAKE_TABLE, max_cer_change=0.0) == "onnx-fp32"
    # a path that failed is never chosen, however fast it would be
    failed = [*FAKE_TABLE[:1], BackendTiming("torch-bf16", error="RuntimeError: no kernel")]
    assert choose_backend(failed) == "torch-fp32"
    # fp32 is the reference: it qualifies without a CER of its own
    assert (
        choose_backend([BackendTiming("torch-fp32", 1.0, None), BackendTiming("onnx-int8", 0.5, 0.5)]) == "torch-fp32"
    )
    # within 5% of each other: timing noise; the one closer to fp32 is kept
    noise = [BackendTiming("onnx-fp32", 0.200, 0.0), BackendTiming("onnx-int8", 0.195, 0.009)]
    assert choose_backend([BackendTiming("torch-fp32", 0.4, 0.0), *noise]) == "onnx-fp32"
    with pytest.raises(RuntimeError, match="no backend could run"):
        choose_backend([BackendTiming("torch-fp32", error="OSError: gone")])


@pytest.mark.parametrize("seed", range(20))
def test_auto_is_never_more_than_10_percent_slower_than_the_fastest_qualifying_path(seed):
    rng = np.random.default_rng(seed)
    names = ["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8"]
    table = [
        BackendTiming(name, float(rng.uniform(0.05, 1.0)), 0.0 if name == "torch-fp32" else float(rng.uniform(0, 0.02)))
        for name in names
    ]
    chosen = next(t for t in table if t.name == choose_backend(table))
    qualifying = [t.seconds for t in table if t.name == "torch-fp32" or t.cer_to_fp32 <= 0.01]
    assert chosen.seconds <= 1.1 * min(qualifying)


def test_candidates_follow_the_folder_and_the_cpu(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    assert candidate_backends(str(model_dir), flags={"avx2", "avx512f"}) == ["torch-fp32"]
    assert candidate_backends(str(model_dir), flags={"avx512_bf16"}) == ["torch-fp32", "torch-bf16"]
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "model_int8.onnx").write_bytes(b"")
    assert candidate_backends(str(folder), flags={"amx_bf16"}) == ["torch-fp32", "torch-bf16", "onnx-int8"]


def test_the_cache_is_keyed_by_model_and_cpu(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    cpu_a, cpu_b = "Xeon, 2 cores, flags: avx512_vnni amx_bf16", "EPYC, 2 cores, flags: avx2"
    key = cache_key(str(folder), cpu=cpu_a)
    assert key == cache_key(str(folder), cpu=cpu_a)
    assert key != cache_key(str(folder), cpu=cpu_b)
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    assert key != cache_key(str(other), cpu=cpu_a)  # another model folder
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert key != cache_key(str(folder), cpu=cpu_a)  # the same folder with new weights

    cache = tmp_path / "choices.json"
    save_choice("k1", {"choice": "torch-bf16"}, str(cache))
    save_choice("k2", {"choice": "onnx-int8"}, str(cache))
    assert load_cached_choice("k1", str(cache))["choice"] == "torch-bf16"
    assert load_cached_choice("k3", str(cache)) is None
    cache.write_text("{not json")  # a corrupt cache is only a miss, and is rewritten
    assert load_cached_choice("k1", str(cache)) is None
    save_choice("k1", {"choice": "torch-fp32"}, str(cache))
    assert json.loads(cache.read_text()) == {"k1": {"choice": "torch-fp32"}}


def _clips(folder, seconds=(2.0, 0.4, 3.1, 1.2, 0.7)):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, s in enumerate(seconds):
        path = os.path.join(folder, f"clip{i}.wav")
        sf.write(path, speech(s, i), 16000)
        paths.append(path)
    return paths


def _entry(timings, choice):
    names = [t["name"] for t in timings if isinstance(t, dict)]
    return {"choice": choice, "candidates": names, "max_cer_change": 0.01, "timings": timings, "cpu": "x"}


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda rows: rows[0].update(speedup=3.0), "unexpected timing fields ['speedup']"),
        (lambda rows: rows[3].update(cer_to_fp32=0.117, seconds=0.01), "it chose onnx-int8, but its own figures"),
        (lambda rows: rows[1].update(seconds="fast"), "'fast' is not a time"),
        (lambda rows: rows.append("garbage"), "unexpected timing fields 'garbage'"),
    ],
    ids=["unknown field", "choice over the CER budget", "not a number", "not a row"],
)
def test_a_cached_choice_that_is_malformed_or_breaks_the_budget_is_not_used(edit, problem):
    from dataclasses import asdict

    rows = [asdict(t) for t in FAKE_TABLE]
    assert cached_timings(_entry(rows, "torch-bf16"), [r["name"] for r in rows], 0.01) == (FAKE_TABLE, None)
    edit(rows)
    choice = "onnx-int8" if "CER" in problem or "chose" in problem else "torch-bf16"
    names = [t.name for t in FAKE_TABLE]
    timings, said = cached_timings(_entry(rows, choice) | {"candidates": names}, names, 0.01)
    assert timings is None and problem in said


@pytest.mark.slow
def test_auto_measures_once_then_reads_the_cache(tiny_ctc_dir, tmp_path):
    """A real measurement of every path of a folder holding torch weights and its ONNX graphs (exported in place),
    then the cached choice, without touching the audio again."""
    from modeling_distilxlsr.audio.decode import load_audio
    from modeling_distilxlsr.export.onnx_export import export_onnx

    model_dir, _ = tiny_ctc_dir
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    export_onnx(str(folder), str(folder), quantize="dynamic")
    waves = [load_audio(p) for p in _clips(tmp_path / "audio")]
    cache, logs = str(tmp_path / "choices.json"), []
    choice = auto_backend(str(folder), lambda: waves, cache_path=cache, log=logs.append)
    entry = next(iter(json.loads(open(cache).read()).values()))
    assert entry["choice"] == choice and {t["name"] for t in entry["timings"]} >= {"torch-fp32", "onnx-fp32"}
    assert all(t["seconds"] > 0 and t["error"] is None for t in entry["timings"])
    assert choice == choose_backend([BackendTiming(**t) for t in entry["timings"]])
    assert "chosen" in logs[-1]

    def must_not_measure():
        raise AssertionError("measured again")

    assert auto_backend(str(folder), must_not_measure, cache_path=cache, log=logs.append) == choice
    assert "cached" in logs[-1]

    # A hand-edited entry (another path chosen, its error rate 11.7%, over the 1% budget): measured again, with a
    # warning; and one with a field this version does not know: the same, no crash.
    entries = json.loads(open(cache).read())
    key = next(iter(entries))
    for timing in entries[key]["timings"]:
        if timing["name"] == "onnx-int8":
            timing.update(cer_to_fp32=0.117, seconds=1e-4)
    entries[key]["choice"] = "onnx-int8"
    open(cache, "w").write(json.dumps(entries))
    asked = []
    choice_again = auto_backend(str(folder), lambda: asked.append(1) or waves, cache_path=cache, log=logs.append)
    assert asked and choice_again != "onnx-int8" and "not usable (it chose onnx-int8" in "\n".join(logs)
    entries = json.loads(open(cache).read())
    entries[key]["timings"][0]["speedup"] = 2.0
    open(cache, "w").write(json.dumps(entries))
    asked.clear()
    auto_backend(str(folder), lambda: asked.append(1) or waves, cache_path=cache, log=logs.append)
    assert asked and "unexpected timing fields ['speedup']" in "\n".join(logs)


def test_length_batches_keep_every_file_once_and_the_window_in_input_order(tiny_ctc_dir, tmp_path):
    _, model = tiny_ctc_dir
    paths = _clips(tmp_path, seconds=(2.0, 0.4, 3.1, 1.2, 0.7))
    (tmp_path / "broken.wav").write_bytes(b"RIFF....")  # no readable header: duration 0, still batched
    paths.append(str(tmp_path / "broken.wav"))
    window, batches = next(length_sorted_batches(paths, 2))
    assert window == paths and sorted(p for b in batches for p in b) == sorted(paths)
    assert [len(b) for b in batches] == [2, 2, 2]
    assert batches[-1] == [paths[0], paths[2]]  # the two longest together
    # memory-sized: a budget for about two 3 s items -> small batches; a large one -> everything at once
    tight = item_bytes(model.config, 3 * 16000) * 2
    (_, small), (_, large) = (next(length_sorted_batches(paths, None, model.config, None, b)) for b in (tight, 10**12))
    assert max(map(len, small)) <= 4 and len(small) > 1 and len(large) == 1
    assert sorted(p for b in small for p in b) == sorted(paths)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_batched_transcription_equals_one_file_at_a_time(tiny_ctc_dir, tmp_path, backend):
    """Padding masks: a file's transcript does not depend on what it is batched with; the run reports throughput."""
    model_dir, _ = tiny_ctc_dir
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    if backend == "onnx":
        from modeling_distilxlsr.export.onnx_export import export_onnx

        export_onnx(str(folder), str(folder))
    audio = _clips(tmp_path / "audio")
    command = [sys.executable, "transcribe.py", str(folder), str(tmp_path / "audio"), "--format", "jsonl"]
    command += ["--backend", backend, "--dtype", "fp32"]
    batched = run_script(command)  # default: memory-sized batches (all five clips in one)
    single = run_script([*command, "--batch_size", "1"])
    rows = [json.loads(line) for line in batched.stdout.splitlines()]
    assert [r["path"] for r in rows] == sorted(audio) and all(r["status"] == "ok" for r in rows)
    assert batched.stdout == single.stdout
    assert len({r["text"] for r in rows}) == len(rows)  # distinct transcripts: a shift could not go unseen
    assert "audio-hours per hour" in batched.stderr.splitlines()[-1]


@pytest.mark.slow
def test_transcribe_auto_uses_the_path_it_chose(tiny_ctc_dir, tmp_path):
    """The default backend measures, logs and caches its choice, and the transcripts are those of that path."""
    from modeling_distilxlsr.export.onnx_export import export_onnx

    model_dir, _ = tiny_ctc_dir
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    export_onnx(str(folder), str(folder), quantize="dynamic")
    _clips(tmp_path / "audio")
    env = {"DISTILXLSR_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "transcribe.py", str(folder), str(tmp_path / "audio"), "--format", "jsonl"]
    first = run_script(command, env_extra=env)
    choice = next(line for line in first.stderr.splitlines() if line.startswith("backend: ")).split()[1]
    assert "<- chosen" in first.stderr and (tmp_path / "cache" / "backend_choices.json").exists()
    second = run_script(command, env_extra=env)
    assert "cached" in second.stderr and second.stdout == first.stdout
    backend, dtype = choice.split("-")
    by_hand = run_script([*command, "--backend", backend, "--dtype", dtype], env_extra=env)
    assert by_hand.stdout == first.stdout
    fp32 = run_script([*command, "--dtype", "fp32"], env_extra=env)  # a dtype alone: that path, nothing timed
    assert "backend" not in fp32.stderr and len(fp32.stdout.splitlines()) == 5


def test_the_transcription_loop_gives_each_file_its_own_result_whatever_the_batch(tiny_ctc_dir, tmp_path):
    """In process: one `Backend`, the one loop; a broken file gets its own error, never another file's text."""
    from modeling_distilxlsr.inference.backends import load_backend
    from modeling_distilxlsr.inference.batching import Throughput
    from modeling_distilxlsr.inference.transcription import transcribe

    model_dir, _ = tiny_ctc_dir
    paths = _clips(tmp_path / "audio", seconds=(1.5, 0.3, 2.2, 0.9))
    (tmp_path / "audio" / "clip1b.wav").write_bytes(b"RIFF not audio")
    files = sorted([*paths, str(tmp_path / "audio" / "clip1b.wav")])
    backend = load_backend(str(model_dir), "torch-fp32")
    throughput = Throughput()
    batched = list(transcribe(backend, files, throughput=throughput))
    single = list(transcribe(backend, files, batch_size=1, chunk_length_s=1.0))  # and chunked
    assert [path for path, *_ in batched] == files
    errors = {path: error for path, _, error in batched if error}
    assert list(errors) == [str(tmp_path / "audio" / "clip1b.wav")] and errors[files[2]].startswith("unreadable")
    assert throughput.files == 4
    texts = {path: result["text"] for path, result, _ in batched if result}
    assert {path: result["text"] for path, result, _ in single if result and path in (paths[1], paths[3])} == {
        p: texts[p]
        for p in (paths[1], paths[3])  # shorter than a chunk: the same text batched or alone
    }


def test_the_throughput_line_makes_up_no_speed_when_nothing_was_transcribed():
    from modeling_distilxlsr.inference.batching import Throughput

    assert Throughput().summary().startswith("throughput: no file transcribed")
    done = Throughput()
    done.add(16000)
    assert "1 files, 0.0003 audio-hours" in done.summary() and "RTF" in done.summary()

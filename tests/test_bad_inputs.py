"""Bad inputs, as tables: an input maker -> the expected outcome. Extend a table with one line.

- `TRAINING_INPUTS`: audio files given to training (distillation and fine-tuning share the data layer): used
  ("ok") or skipped and counted with a reason; never a crash, never a silent loss.
- `TRANSCRIBE_INPUTS`: files given to transcribe.py: each gets its own result or its own reported failure.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script, speech


def noise(seconds, seed, sample_rate=16_000):
    return (np.random.default_rng(seed).standard_normal(int(seconds * sample_rate)) * 0.1).astype("float32")


def write(path, audio, sample_rate=16_000, subtype=None, format=None):
    sf.write(path, audio, sample_rate, subtype=subtype, format=format)


def zero_frame_header(path):
    write(path, np.zeros(0, "float32"))


def ffmpeg_encoded(seconds, seed, *codec):
    """A clip in a format only ffmpeg reads (m4a/AAC, WebM/Opus, WMA): encoded from a WAV by the ffmpeg program."""

    def make(path):
        wav = path + ".source.wav"
        write(wav, speech(seconds, seed))
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", wav, *codec, path], check=True)
        os.remove(wav)

    return make


def cut_to_a_third(seconds, seed, fmt):
    """A FLAC or MP3 of speech with its last two thirds of bytes gone: decoders stop at the cut without an error."""

    def make(path):
        whole = path + f".whole.{fmt}"
        if fmt == "mp3":
            ffmpeg_encoded(seconds, seed)(whole)
        else:
            write(whole, speech(seconds, seed))
        data = open(whole, "rb").read()
        open(path, "wb").write(data[: len(data) // 3])
        os.remove(whole)

    return make


def dangling_link(path):
    os.symlink(path + ".moved-away", path)


# (file name, maker, expected: "ok" or the skip reason counted in the run's summary)
TRAINING_INPUTS = [
    ("good.wav", lambda p: write(p, noise(1.0, 1)), "ok"),
    ("aac.m4a", ffmpeg_encoded(1.0, 7, "-c:a", "aac"), "ok"),
    ("opus.webm", ffmpeg_encoded(1.0, 8), "ok"),
    ("dangling_link.wav", dangling_link, "missing"),
    ("stereo_8k.wav", lambda p: write(p, np.stack([noise(1.0, 2, 8000)] * 2, 1), 8000), "ok"),
    ("pcm24.flac", lambda p: write(p, noise(1.0, 3), subtype="PCM_24"), "ok"),
    ("vorbis.ogg", lambda p: write(p, noise(1.0, 4), format="OGG", subtype="VORBIS"), "ok"),
    ("zero_bytes.wav", lambda p: open(p, "wb").close(), "empty (0 bytes)"),
    ("zero_frames.wav", zero_frame_header, "unreadable"),
    ("5ms.wav", lambda p: write(p, noise(0.005, 5)), "too short"),
    ("garbage.flac", lambda p: open(p, "wb").write(b"fLaC" + os.urandom(300)), "unreadable"),
    ("nan.wav", lambda p: write(p, np.full(16000, np.nan, "float32"), subtype="FLOAT"), "NaN/Inf samples"),
    ("all_zero.wav", lambda p: write(p, np.zeros(16000, "float32")), "silent or DC only"),
    ("dc_only.wav", lambda p: write(p, np.full(16000, 0.25, "float32")), "silent or DC only"),
    ("cut.flac", cut_to_a_third(3.0, 9, "flac"), "truncated"),
    ("cut.mp3", cut_to_a_third(3.0, 10, "mp3"), "truncated"),
    (
        "dc_and_-90dB_noise.wav",
        lambda p: write(p, 0.25 + noise(1.0, 6) * 1e-4, subtype="FLOAT"),
        "silent or DC only",
    ),
]


@pytest.mark.parametrize("name, make, expected", TRAINING_INPUTS, ids=[case[0] for case in TRAINING_INPUTS])
def test_training_input(tmp_path, name, make, expected):
    from modeling_distilxlsr.audio.dataset import AudioCollator, AudioDataset
    from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances

    write(str(tmp_path / "another_good.wav"), noise(1.0, 99))  # a source with no usable file at all is an error
    make(str(tmp_path / name))
    skips = SkipCounter()
    utterances = find_utterances(str(tmp_path), skips)
    dataset = AudioDataset(utterances)
    batch = AudioCollator()([dataset[i] for i in range(len(dataset))])
    for reason, file in batch["skipped"]:
        skips.skip(reason, file, once=True)
    if expected == "ok":
        assert skips.summary() == "skipped 0 of 2 files" and batch["input_values"].shape[0] == 2
    else:
        assert skips.summary() == f"skipped 1 of 2 files: 1 {expected}"
        assert batch["input_values"].shape[0] == 1


def test_a_folder_scan_names_and_counts_every_file_it_leaves_out(tmp_path):
    from modeling_distilxlsr.audio.sources import scan_audio_folder

    for name in ("a.wav", "b.m4a", "c.webm", "d.AAC", "notes.txt", "labels.json", "metadata.csv"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "gone.wav", tmp_path / "e_dangling.wav")
    said = []
    files = scan_audio_folder(str(tmp_path), log=said.append)
    assert [os.path.basename(f) for f in files] == ["a.wav", "b.m4a", "c.webm", "d.AAC", "e_dangling.wav"]
    assert said == [
        f"{tmp_path}: 2 file(s) left out, not audio by their extension (1 .json, 1 .txt): "
        f"{tmp_path / 'labels.json'}, {tmp_path / 'notes.txt'}"
    ]


def test_audio_files_a_metadata_csv_leaves_out_are_counted(tmp_path):
    from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances

    for i in range(5):
        write(str(tmp_path / f"{i}.wav"), noise(0.5, i))
    (tmp_path / "metadata.csv").write_text("file_name,transcription\n0.wav,zero\n1.wav,um\n")
    skips = SkipCounter()
    assert len(find_utterances(str(tmp_path), skips, need_text=True)) == 2
    assert skips.summary() == "skipped 3 of 5 files: 3 not listed in metadata.csv"


# (file name, maker, expected status, reason the error must start with)
TRANSCRIBE_INPUTS = [
    ("a_good.wav", lambda p: write(p, speech(1.0, 1)), "ok", None),
    ("b_zero_frames.wav", lambda p: write(p, np.zeros(0, "float32")), "failed", "empty (no audio frames)"),
    ("c_good.wav", lambda p: write(p, speech(0.7, 2)), "ok", None),
    ("d_under_receptive_field.wav", lambda p: write(p, noise(0.01, 3)), "failed", "too short"),
    ("e_good_8k_stereo.wav", lambda p: write(p, np.stack([speech(0.9, 4, 8000)] * 2, 1), 8000), "ok", None),
    ("f_zero_bytes.wav", lambda p: open(p, "wb").close(), "failed", "unreadable"),
    ("g_corrupt.flac", lambda p: open(p, "wb").write(b"fLaC" + os.urandom(300)), "failed", "unreadable"),
    ("h_nan.wav", lambda p: write(p, np.full(16000, np.nan, "float32"), subtype="FLOAT"), "failed", "NaN/Inf"),
    ("i_silence.wav", lambda p: write(p, np.zeros(16000, "float32")), "ok", None),
    ("j_good_last.wav", lambda p: write(p, speech(1.3, 5)), "ok", None),
    ("k_aac.m4a", ffmpeg_encoded(1.1, 6, "-c:a", "aac"), "ok", None),
    ("l_dangling_link.wav", dangling_link, "failed", "missing: no such file (a symbolic link to"),
    ("m_wma.wma", ffmpeg_encoded(0.8, 7), "ok", None),
    ("n_cut.flac", cut_to_a_third(3.0, 9, "flac"), "failed", "truncated"),
    ("o_cut.mp3", cut_to_a_third(3.0, 10, "mp3"), "failed", "truncated"),
]


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    for name, make, _, _ in TRANSCRIBE_INPUTS:
        make(str(folder / name))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("output_format, model", [("jsonl", "distilxlsr"), ("csv", "distilxlsr"), ("jsonl", "plain")])
def test_every_file_keeps_its_own_result_or_failure(tiny_ctc_dir, bad_folder, tmp_path, output_format, model):
    model_dir, _ = tiny_ctc_dir
    if model == "plain":  # a plain Wav2Vec2ForCTC (our export): the pipeline does not blank its padded frames
        from modeling_distilxlsr.export.wav2vec2 import export_as_wav2vec2

        model_dir = export_as_wav2vec2(str(model_dir), str(tmp_path / "plain"))
    out = tmp_path / f"out.{output_format}"
    result = run_script(
        [sys.executable, "transcribe.py", str(model_dir), str(bad_folder), "--batch_size", "4", "--backend", "torch"]
        + ["--format", output_format, "--output", str(out)]
    )
    if output_format == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        import csv

        rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [os.path.basename(r["path"]) for r in rows] == [case[0] for case in TRANSCRIBE_INPUTS]
    for row, (name, _, status, reason) in zip(rows, TRANSCRIBE_INPUTS, strict=True):
        assert row["status"] == status, (name, row)
        if reason:
            assert row["error"].startswith(reason), (name, row)
    failed = sum(case[2] == "failed" for case in TRANSCRIBE_INPUTS)
    assert f"skipped {failed} of {len(TRANSCRIBE_INPUTS)} files" in result.stderr

    if output_format == "csv":
        return
    # No shift: the good files alone (no bad file between them) get the same transcripts.
    good = [str(bad_folder / name) for name, _, status, _ in TRANSCRIBE_INPUTS if status == "ok"]
    alone = run_script(
        [sys.executable, "transcribe.py", str(model_dir), *good, "--format", "jsonl", "--backend", "torch"]
    )
    alone_texts = {os.path.basename(r["path"]): r["text"] for r in map(json.loads, alone.stdout.splitlines())}
    assert alone_texts == {os.path.basename(r["path"]): r["text"] for r in rows if r["status"] == "ok"}
    assert len(set(alone_texts.values())) > 2  # distinct transcripts, so a shift could not go unseen


def _without_pad_token(folder):
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab.pop("[PAD]")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {
        k: v for k, v in config["added_tokens_decoder"].items() if v["content"] != "[PAD]"
    }
    config.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def test_a_folder_whose_tokenizer_has_no_pad_token_is_refused_at_load_naming_it(tmp_path):
    import shutil

    from conftest import REPO_ROOT

    from modeling_distilxlsr.inference.backends import load_backend

    folder = tmp_path / "no_pad"
    shutil.copytree(os.path.join(REPO_ROOT, "tests", "fixtures", "ctc_before_rooms"), folder)
    load_backend(str(folder), "torch-fp32")  # whole: loads
    _without_pad_token(folder)
    with pytest.raises(ValueError, match=r"pad token \(the CTC blank\) '<pad>' is not in its vocabulary"):
        load_backend(str(folder), "torch-fp32")
    write(str(tmp_path / "a.wav"), noise(1.0, 1))
    result = run_script([sys.executable, "transcribe.py", str(folder), str(tmp_path / "a.wav")], check=False)
    assert (
        result.returncode != 0
        and "Traceback" not in result.stderr
        and "'<pad>' is not in its vocabulary" in result.stderr
    )


def test_a_manifest_with_a_column_named_twice_is_refused_naming_it(tmp_path):
    from modeling_distilxlsr.audio.sources import ManifestError, SkipCounter, find_utterances

    write(str(tmp_path / "a.wav"), noise(1.0, 1))
    (tmp_path / "m.csv").write_text("path,sentence,sentence\na.wav,olá,\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"column\(s\) \['sentence'\] appear more than once"):
        find_utterances(str(tmp_path / "m.csv"), SkipCounter(), need_text=True)


def test_a_header_row_repeated_mid_manifest_is_left_out_and_said_not_counted_as_a_missing_file(tmp_path, caplog):
    from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances

    for name in ("a.wav", "b.wav"):
        write(str(tmp_path / name), noise(1.0, 1))
    (tmp_path / "m.csv").write_text("path,sentence\na.wav,olá\npath,sentence\nb.wav,tchau\n", encoding="utf-8")
    skips = SkipCounter()
    with caplog.at_level("WARNING"):
        utterances = find_utterances(str(tmp_path / "m.csv"), skips, need_text=True)
    assert [u.text for u in utterances] == ["olá", "tchau"] and skips.summary() == "skipped 0 of 2 files"
    assert "the header row is repeated at line(s) 3" in caplog.text


def test_class_labels_that_differ_only_in_case_or_spacing_are_refused_naming_them():
    from modeling_distilxlsr.audio.sources import Utterance
    from modeling_distilxlsr.training.classification_data import class_names

    train = [Utterance("a.wav", 16000, label) for label in ("Sim", "sim", "não", "não ")]
    with pytest.raises(ValueError, match=r"differ only in case or spacing: \[\['Sim', 'sim'\], \['não', 'não '\]\]"):
        class_names(train, {})
    assert class_names([Utterance("a.wav", 16000, label) for label in ("sim", "não")], {}) == ["não", "sim"]

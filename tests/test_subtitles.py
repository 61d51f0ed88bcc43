"""Subtitles from CTC word times: cues cut at pauses and at the line length, SRT and WebVTT as players read them,
and `transcribe.py --format srt|vtt` writing one file per input."""

import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script

from modeling_distilxlsr.inference.subtitles import (
    Word,
    segments_from_words,
    subtitle_paths,
    to_srt,
    to_vtt,
    words_from_chunks,
)

WORDS = [Word("o", 0.10, 0.20), Word("gato", 0.24, 0.60), Word("bebe", 0.64, 0.98), Word("leite", 2.10, 2.50)]


def test_a_cue_ends_at_a_pause_and_before_the_line_gets_too_long():
    segments = segments_from_words(WORDS, max_pause=0.6)
    assert [s.text for s in segments] == ["o gato bebe", "leite"]  # 1.12 s of silence before "leite"
    assert (segments[0].start, segments[0].end) == (0.10, 0.98)
    assert [s.text for s in segments_from_words(WORDS, max_pause=5, max_chars=8)] == ["o gato", "bebe", "leite"]
    long_word = [Word("inconstitucionalissimamente", 0.0, 1.0), Word("sim", 1.1, 1.2)]
    assert [s.text for s in segments_from_words(long_word, max_chars=10)] == [long_word[0].text, "sim"]


def test_srt_and_vtt_are_written_as_players_read_them():
    segments = segments_from_words(WORDS)
    assert (
        to_srt(segments) == "1\n00:00:00,100 --> 00:00:00,980\no gato bebe\n\n2\n00:00:02,100 --> 00:00:02,500\nleite\n"
    )
    assert (
        to_vtt(segments)
        == "WEBVTT\n\n00:00:00.100 --> 00:00:00.980\no gato bebe\n\n00:00:02.100 --> 00:00:02.500\nleite\n"
    )
    hour = segments_from_words([Word("fim", 3725.5, 3726.25)])
    assert to_srt(hour).splitlines()[1] == "01:02:05,500 --> 01:02:06,250"


def test_words_come_from_decoder_chunks_and_names_that_would_collide_are_refused(tmp_path):
    chunks = [{"text": "olá", "timestamp": (0.5, 0.9), "confidence": 0.8}]
    assert words_from_chunks(chunks) == [Word("olá", 0.5, 0.9, 0.8)]
    paths = subtitle_paths(["a/x.wav", "b/y.flac"], str(tmp_path), "srt")
    assert paths == {"a/x.wav": str(tmp_path / "x.srt"), "b/y.flac": str(tmp_path / "y.srt")}
    with pytest.raises(ValueError, match="would both write"):
        subtitle_paths(["a/x.wav", "b/x.flac"], str(tmp_path), "vtt")


@pytest.mark.slow
def test_transcribe_writes_one_subtitle_file_per_input_with_the_word_times(tiny_ctc_dir, tmp_path):
    import json

    model_dir, _ = tiny_ctc_dir
    rng = np.random.default_rng(0)
    for name, seconds in (("a.wav", 1.5), ("b.wav", 2.0)):
        sf.write(tmp_path / name, (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....")
    files = [str(tmp_path / n) for n in ("a.wav", "b.wav", "broken.wav")]
    out = tmp_path / "subs"
    common = ["--backend", "torch"]
    result = run_script(
        [sys.executable, "transcribe.py", str(model_dir), *files, "--format", "vtt", "--output", str(out), *common]
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.vtt", "b.vtt"] and "skipped 1 of 3 files" in result.stderr
    words = run_script(
        [
            sys.executable,
            "transcribe.py",
            str(model_dir),
            files[0],
            "--format",
            "jsonl",
            "--return_timestamps",
            "word",
            *common,
        ]
    )
    chunks = json.loads(words.stdout.splitlines()[-1])["chunks"]
    expected = to_vtt(segments_from_words(words_from_chunks(chunks)))
    assert (out / "a.vtt").read_text() == expected and expected.count(" --> ") >= 1
    single = run_script([sys.executable, "transcribe.py", str(model_dir), files[0], "--format", "srt", *common])
    assert single.stdout == to_srt(segments_from_words(words_from_chunks(chunks)))
    refused = run_script([sys.executable, "transcribe.py", str(model_dir), *files[:2], "--format", "srt"], check=False)
    assert refused.returncode != 0 and "needs --output DIR" in refused.stderr

"""Subtitles from CTC word times: cues cut as Netflix's timed-text guide asks (pauses, sentence ends, 2 x 42
characters, 5/6 s to 7 s), SRT and WebVTT as players read them, and `transcribe.py --format srt|vtt` writing one file
per input."""

import sys

import pytest
import soundfile as sf
from conftest import run_script, speech

from modeling_distilxlsr.inference.subtitles import (
    NETFLIX,
    CueRules,
    Word,
    cues_from_words,
    subtitle_paths,
    to_srt,
    to_vtt,
    words_from_chunks,
)

WORDS = [Word("o", 0.10, 0.20), Word("gato", 0.24, 0.60), Word("bebe", 0.64, 0.98), Word("leite", 2.10, 2.50)]


def _sentence_words(text: str, start: float, seconds_per_word: float = 0.3, gap: float = 0.05) -> list[Word]:
    words, at = [], start
    for token in text.split():
        words.append(Word(token, round(at, 3), round(at + seconds_per_word, 3)))
        at += seconds_per_word + gap
    return words


def test_a_pause_of_half_a_second_always_ends_a_cue_and_a_short_cue_is_held_in_the_silence():
    cues = cues_from_words(WORDS)
    assert [c.text for c in cues] == ["o gato bebe", "leite"]  # 1.12 s of silence before "leite"
    assert (cues[0].start, cues[0].end) == (0.10, 0.98)  # 0.88 s: long enough, and readable at 17 characters/s
    assert cues[1].start == 2.10 and cues[1].end == pytest.approx(2.10 + 5 / 6, abs=1e-3)
    # the failing case of before: "feira" alone for 0.36 s after a cue cut at 42 characters
    words = _sentence_words("na sexta-feira a gente vai ao mercado comprar", 0.0) + [Word("feira", 3.20, 3.56)]
    cues = cues_from_words(words)
    assert all(c.end - c.start >= NETFLIX.min_seconds - 1e-6 for c in cues), [(c.text, c.start, c.end) for c in cues]
    assert cues[-1].text.endswith("feira")  # merged with its neighbour: no orphan


def test_cues_hold_two_balanced_lines_of_42_at_most_and_last_7_seconds_at_most():
    text = " ".join(["palavra"] * 40)
    cues = cues_from_words(_sentence_words(text, 0.0, 0.25, 0.02))
    assert len(cues) > 1
    for cue in cues:
        lines = cue.lines()
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
        assert cue.words[-1].end - cue.words[0].start <= 7.0
        if len(lines) == 2:
            assert abs(len(lines[0]) - len(lines[1])) <= len("palavra") + 1
    for first, second in zip(cues, cues[1:], strict=False):
        assert second.start - first.end >= NETFLIX.min_gap_seconds - 1e-3  # 2 frames between cues (to the ms)
    long_word = [Word("inconstitucionalissimamente", 0.0, 1.0), Word("sim", 1.1, 1.2)]
    assert [c.text for c in cues_from_words(long_word, CueRules(max_line_chars=10, max_lines=1))] == [
        long_word[0].text,
        "sim",
    ]


def test_a_sentence_end_ends_a_cue_once_it_is_long_enough():
    words = _sentence_words("Você já almoçou? Ainda não.", 0.0, 0.4)
    assert [c.text for c in cues_from_words(words)] == ["Você já almoçou?", "Ainda não."]
    brief = [Word("Sim.", 0.0, 0.2), Word("Claro.", 0.25, 0.5)]
    assert [c.text for c in cues_from_words(brief)] == ["Sim. Claro."]  # "Sim." alone would be under 5/6 s


def test_srt_and_vtt_are_written_as_players_read_them():
    cues = cues_from_words(WORDS)
    assert to_srt(cues) == (
        "1\n00:00:00,100 --> 00:00:00,980\no gato bebe\n\n2\n00:00:02,100 --> 00:00:02,933\nleite\n"
    )
    assert to_vtt(cues) == (
        "WEBVTT\n\n00:00:00.100 --> 00:00:00.980\no gato bebe\n\n00:00:02.100 --> 00:00:02.933\nleite\n"
    )
    hour = cues_from_words([Word("fim", 3725.5, 3726.25)])
    assert to_srt(hour).splitlines()[1] == "01:02:05,500 --> 01:02:06,333"
    two_lines = cues_from_words(_sentence_words("uma frase comprida que precisa de duas linhas na tela", 0.0))
    assert to_srt(two_lines).splitlines()[2:4] == ["uma frase comprida que", "precisa de duas linhas na tela"]


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
    for name, seconds in (("a.wav", 1.5), ("b.wav", 2.0)):
        sf.write(tmp_path / name, speech(seconds, int(seconds * 10)), 16000)
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
    expected = to_vtt(cues_from_words(words_from_chunks(chunks)))
    assert (out / "a.vtt").read_text() == expected and expected.count(" --> ") >= 1
    single = run_script([sys.executable, "transcribe.py", str(model_dir), files[0], "--format", "srt", *common])
    assert single.stdout == to_srt(cues_from_words(words_from_chunks(chunks)))
    refused = run_script([sys.executable, "transcribe.py", str(model_dir), *files[:2], "--format", "srt"], check=False)
    assert refused.returncode != 0 and "needs --output DIR" in refused.stderr

"""CTC forced alignment: the Viterbi path finds the frames a known transcript occupies, words the model cannot spell
are reported, a transcript longer than the audio is an error, and `align.py` runs on files and manifests."""

import json
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script, speech

from modeling_distilxlsr.inference.alignment import MISMATCH_BELOW, align, viterbi_path, written_words
from modeling_distilxlsr.text.normalizer import TextNormalizer

VOCAB = {"[PAD]": 0, "|": 1, "a": 2, "b": 3, "c": 4}


def _logits(frame_labels: list[int]) -> np.ndarray:
    """Frames whose most likely label is the given one (5 nats above the others)."""
    logits = np.zeros((len(frame_labels), len(VOCAB)), np.float32)
    logits[np.arange(len(frame_labels)), frame_labels] = 5.0
    return logits


def test_the_viterbi_path_gives_each_word_and_character_its_frames():
    #         0  1  2  3  4  5  6  7  8  9 10 11 12 13 14
    frames = [0, 0, 0, 2, 2, 3, 3, 0, 1, 3, 3, 3, 2, 0, 0]  # "ab" at 3-6, "|" at 8, "ba" at 9-12
    result = align(_logits(frames), ["ab", "ba"], VOCAB, blank=0, delimiter=1, frame_seconds=0.02)
    assert result.error is None and result.unaligned == []
    # words with no pause between meet at the middle of the gap (blanks and "|"); characters keep their own frames
    assert [(w.text, w.start, w.end) for w in result.words] == [("ab", 0.06, 0.16), ("ba", 0.16, 0.26)]
    assert [(c.text, c.start, c.end) for c in result.chars][:2] == [("a", 0.06, 0.1), ("b", 0.1, 0.14)]
    assert all(0.9 < w.score <= 1 for w in result.words)
    own_edges = align(_logits(frames), ["ab", "ba"], VOCAB, 0, 1, 0.02, boundary_gap_s=0.02)  # a 40 ms gap: a pause
    assert [(w.start, w.end) for w in own_edges.words] == [(0.06, 0.14), (0.18, 0.26)]


def test_a_transcript_of_hundreds_of_characters_is_aligned():
    """The trellis has 2 x characters + 1 states: past 127 the back-pointers' int8 once wrapped (OverflowError)."""
    word_frames = [0, 2, 3, 0, 1]  # "ab" then "|"
    frames = word_frames * 80 + [0]
    result = align(_logits(frames), ["ab"] * 80, VOCAB, 0, 1, 0.02)
    assert result.error is None and len(result.words) == 80
    assert result.words[-1].end == pytest.approx((len(frames) - 3) * 0.02, abs=0.001)


def test_a_repeated_character_needs_a_blank_between_and_gets_two_spans():
    frames = [0, 2, 2, 0, 2, 0]
    path = viterbi_path(np.log(np.exp(_logits(frames)) / np.exp(_logits(frames)).sum(-1, keepdims=True)), [2, 2], 0)
    assert list(path) == [0, 1, 1, 2, 3, 4]  # a, blank, a
    result = align(_logits(frames), ["aa"], VOCAB, 0, 1, 0.02)
    assert [(c.start, c.end) for c in result.chars] == [(0.02, 0.06), (0.08, 0.1)]


def test_words_the_model_cannot_spell_and_transcripts_longer_than_the_audio_are_reported():
    frames = [0, 2, 2, 3, 0, 1, 4, 4, 0]
    result = align(_logits(frames), ["ab", "xyz", "c"], VOCAB, 0, 1, 0.02)
    assert result.unaligned == ["xyz (characters the model lacks: xyz)"]
    assert [w.text for w in result.words] == ["ab", "c"] and result.words[1].start == 0.1  # met "ab" mid-gap
    too_long = align(_logits([0, 2, 0]), ["abcabc"], VOCAB, 0, 1, 0.02)
    assert too_long.words == [] and "more frames than the audio has" in too_long.error
    assert too_long.unaligned == ["abcabc"]


def test_the_match_score_is_zero_for_what_is_said_and_far_below_the_threshold_for_other_text():
    frames = [0, 0, 2, 2, 3, 3, 0, 1, 3, 3, 2, 0, 0]  # "ab ba"
    right = align(_logits(frames), ["ab", "ba"], VOCAB, 0, 1, 0.02)
    wrong = align(_logits(frames), ["cc", "c"], VOCAB, 0, 1, 0.02)
    assert -0.2 < right.match_score <= 0 and wrong.match_score < MISMATCH_BELOW < right.match_score


def test_written_words_keep_the_users_spelling_and_list_what_no_label_spells():
    normalizer = TextNormalizer()
    words, unspelt = written_words("Na sexta-feira, o João pagou R$ 1.500 em 東京.", normalizer)
    assert [w.text for w in words] == ["Na", "sexta-feira,", "o", "João", "pagou", "R$ 1.500", "em"]
    assert words[1].spoken == ("sexta", "feira") and words[3].spoken == ("joão",)
    assert " ".join(s for w in words for s in w.spoken) == normalizer("Na sexta-feira, o João pagou R$ 1.500 em")
    assert unspelt == ["東 (in '東京.': not in the model's alphabet)", "京 (in '東京.': not in the model's alphabet)"]
    assert written_words("25 reais", normalizer)[0][0].spoken == ("vinte", "e", "cinco")


@pytest.mark.slow
def test_align_command_on_a_file_and_a_manifest(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    sf.write(tmp_path / "a.wav", speech(2.0, 0), 16000)
    sf.write(tmp_path / "b.wav", speech(0.3, 1), 16000)
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    result = run_script(
        [sys.executable, "align.py", str(model_dir), str(tmp_path / "a.wav"), "O gato, 2 vezes!", "--chars"]
    )
    row = json.loads(result.stdout)
    assert [w["text"] for w in row["words"]] == ["O", "gato,", "2", "vezes!"]  # as written, one row per word
    assert [w["spoken"] for w in row["words"]] == ["o", "gato", "dois", "vezes"]  # what the labels align
    starts = [w["start"] for w in row["words"]]
    assert starts == sorted(starts) and row["words"][-1]["end"] <= 2.0 and len(row["chars"]) == 14
    assert row["match_score"] <= 0  # a random-weight model: whether it is marked a mismatch is not the point here
    (tmp_path / "pairs.csv").write_text(
        "path,text\na.wav,o gato\nb.wav,uma frase longa demais para um décimo de segundo\nmissing.wav,oi\n"
        "silence.wav,nada foi dito\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = run_script(
        [sys.executable, "align.py", str(model_dir), "--manifest", str(tmp_path / "pairs.csv"), "--output", str(out)]
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["words"]) if "words" in r else None for r in rows][0] == 2
    assert "more frames than the audio has" in rows[1]["error"] and "missing" in rows[2]["error"]
    assert "no speech in the audio" in rows[3]["error"]  # text on silence is never aligned to it
    assert "aligned 1 of 4 files" in result.stderr


@pytest.mark.slow
def test_align_says_what_is_wrong_with_an_empty_or_missing_transcript_in_one_line(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    sf.write(tmp_path / "a.wav", speech(1.0, 0), 16000)
    command = [sys.executable, "align.py", str(model_dir), str(tmp_path / "a.wav")]
    empty = run_script([*command, ""], check=False)
    assert "nothing to align" in json.loads(empty.stdout)["error"] and "Traceback" not in empty.stderr
    missing = run_script([*command, f"@{tmp_path / 'missing.txt'}"], check=False)
    assert missing.returncode == 2 and "cannot read the transcript" in missing.stderr
    assert "Traceback" not in missing.stderr

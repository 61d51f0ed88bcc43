import csv
import logging
import os
import re
import sys
import unicodedata

import pytest
import soundfile as sf
from conftest import run_fresh_python, run_script

from modeling_distilxlsr.corpus.synthesis import (
    NUM_TEST_VOICES,
    VOICES,
    WORD_TIMES_FILE,
    add_phonemes,
    load_sentences,
    plan_corpus,
)
from modeling_distilxlsr.text.normalizer import TextNormalizer
from modeling_distilxlsr.text.phonemes import PT_BR_PHONES, PhonemeTargets, Phonemizer

BP_DIACRITICS = "áàâãéêíóôõúüç"


# espeak-ng's pt-br phones (IPA, stress dropped) in the full corpus' phonemes column, made in a fresh process
def read_split(corpus, split):
    with open(corpus / split / "metadata.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_sentence_list_is_varied_and_covers_every_bp_letter():
    sentences = load_sentences()
    assert len(sentences) >= 600 and len(set(sentences)) == len(sentences)
    assert all(3 <= len(s.split()) <= 20 for s in sentences)
    assert sum(s.endswith("?") for s in sentences) >= 50
    text = " ".join(sentences).lower()
    for letter in "abcdefghijklmnopqrstuvwxyz":
        assert letter in text, letter
    for mark in BP_DIACRITICS:
        assert text.count(mark) >= 20, mark


def test_plan_splits_are_disjoint_in_sentences_and_test_voices_are_unseen():
    plan = plan_corpus(seed=0)
    by_split = {s: [(text, voice) for split, text, voice in plan if split == s] for s in ("train", "dev", "test")}
    sentences = {s: {text for text, _ in rows} for s, rows in by_split.items()}
    voices = {s: {voice.variant for _, voice in rows} for s, rows in by_split.items()}  # a variant is a timbre
    assert not sentences["train"] & sentences["test"] and not sentences["train"] & sentences["dev"]
    assert not sentences["dev"] & sentences["test"]
    assert not voices["train"] & voices["test"] and not voices["dev"] & voices["test"]
    assert len(voices["train"]) >= 8 and len(VOICES) - NUM_TEST_VOICES >= 8
    # every utterance varies its voice: one voice speaks at many rates and pitches
    first = [voice for split, _, voice in plan if voice.name == VOICES[0].name]
    assert len({(v.rate, v.pitch, v.pitch_range) for v in first}) > 0.9 * len(first)
    assert min(v.rate for v in first) < VOICES[0].rate < max(v.rate for v in first)


def test_corpus_files_and_metadata(small_corpus, tmp_path):
    import json

    rows = {split: read_split(small_corpus, split) for split in ("train", "dev", "test")}
    texts = [row["transcription"] for split_rows in rows.values() for row in split_rows]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    # finetune_ctc.py --target phonemes' labels, from a process that synthesised nothing (the corpus was made in this
    # one: espeak-ng state shared between synthesis and phonemes once garbled every stored phone)
    code = f"""
        import json, sys
        from modeling_distilxlsr.text.phonemes import PhonemeTargets
        from modeling_distilxlsr.text.normalizer import TextNormalizer
        to_phones = PhonemeTargets(TextNormalizer())
        print(json.dumps([to_phones(t) for t in json.load(open({str(tmp_path / "texts.json")!r}))]))
    """
    expected = iter(json.loads(run_fresh_python(code, tmp_path, with_package=True)))
    for split, split_rows in rows.items():
        assert split_rows and set(split_rows[0]) == {"file_name", "transcription", "speaker", "phonemes"}
        for row in split_rows:
            phones = {unicodedata.normalize("NFC", phone) for phone in row["phonemes"].split()}
            assert row["phonemes"] == next(expected) and phones <= PT_BR_PHONES, row
            info = sf.info(small_corpus / split / row["file_name"])
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
            assert 0.5 < info.duration < 15


def test_each_file_has_espeaks_own_word_times_in_order_and_inside_the_audio(small_corpus):
    import json

    for split in ("train", "dev", "test"):
        rows = {row["file_name"]: row for row in read_split(small_corpus, split)}
        timed = [json.loads(line) for line in (small_corpus / split / WORD_TIMES_FILE).read_text().splitlines()]
        assert [t["file_name"] for t in timed] == list(rows)
        for entry in timed:
            duration = sf.info(small_corpus / split / entry["file_name"]).duration
            starts = [start for _, start, _ in entry["words"]]
            assert starts == sorted(starts) and all(0 <= s < e <= duration + 0.01 for _, s, e in entry["words"])
            sentence = rows[entry["file_name"]]["transcription"]
            if not any(c.isdigit() for c in sentence):  # espeak-ng reads a number as words of its own
                spoken = [part for text, _, _ in entry["words"] for part in re.findall(r"\w+", text)]
                assert spoken == re.findall(r"\w+", sentence), (sentence, entry["words"])


def make_with_command(out_dir, seed=0):
    args = ["--seed", seed, "--num_sentences", 120, "--dev_sentences", 10, "--test_sentences", 10]
    # each in a fresh process, as a user runs the command twice: espeak-ng keeps state between syntheses inside one
    # process (a second corpus made in the same process differs: see tests/test_corpus.py's phonemes note)
    run_script([sys.executable, "-m", "modeling_distilxlsr.corpus", str(out_dir), *map(str, args)], fresh_process=True)


@pytest.mark.slow
def test_corpus_command_is_deterministic_for_a_seed(tmp_path):
    make_with_command(tmp_path / "a")
    make_with_command(tmp_path / "b")
    utterances = 0
    for split in ("train", "dev", "test"):
        rows = read_split(tmp_path / "a", split)
        assert rows == read_split(tmp_path / "b", split)
        for row in rows:
            a = (tmp_path / "a" / split / row["file_name"]).read_bytes()
            assert a == (tmp_path / "b" / split / row["file_name"]).read_bytes(), row["file_name"]
        utterances += len(rows)
    assert utterances == 200 + 10 + 10  # 100 train sentences x 2 voices, 10 dev, 10 test
    make_with_command(tmp_path / "c", seed=1)
    assert read_split(tmp_path / "c", "test") != read_split(tmp_path / "a", "test")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".corpus-")]  # no half-made work folders left


def test_a_corpus_made_before_the_phonemes_column_gains_it_with_its_audio_untouched(small_corpus, tmp_path):
    import shutil

    from modeling_distilxlsr.corpus.synthesis import ensure_corpus

    old = tmp_path / "old"
    shutil.copytree(small_corpus, old)
    expected = {split: read_split(small_corpus, split) for split in ("train", "dev", "test")}
    for split, rows in expected.items():  # rewrite the metadata as the corpus maker wrote it before the column
        with open(old / split / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "transcription", "speaker"])
            writer.writeheader()
            writer.writerows({k: v for k, v in row.items() if k != "phonemes"} for row in rows)
    audio_before = {p: p.read_bytes() for p in old.rglob("*.flac")}
    ensure_corpus(str(old), quiet=True)
    assert {split: read_split(old, split) for split in expected} == expected
    assert {p: p.read_bytes() for p in old.rglob("*.flac")} == audio_before
    assert not list(old.rglob("*.partial"))


def test_wide_and_mixed_voices_give_every_espeak_variant_a_speaker_and_keep_test_timbres_unseen():
    from modeling_distilxlsr.corpus.synthesis import WIDE_TEST_VARIANTS
    from modeling_distilxlsr.text.espeak import espeak_variants

    plan = plan_corpus(seed=0, voices="wide")
    variants = {s: {voice.variant for split, _, voice in plan if split == s} for s in ("train", "dev", "test")}
    assert len(variants["train"]) >= 80 and not (variants["train"] | variants["dev"]) & variants["test"]
    assert variants["test"] == set(WIDE_TEST_VARIANTS) | {v.variant for v in VOICES[-NUM_TEST_VOICES:]}
    assert variants["train"] | variants["test"] == set(espeak_variants())
    assert all(" " not in voice.name for _, _, voice in plan)  # names go into file names
    assert plan_corpus(seed=0, voices="wide") == plan  # seeded
    sentences = {s: {text for split, text, _ in plan if split == s} for s in ("train", "test")}
    assert sentences["test"] == {text for split, text, _ in plan_corpus(seed=0) if split == "test"}
    mixed = plan_corpus(seed=0, voices="mixed")  # half the training utterances from the 9 fixed voices
    fixed_names = {voice.name for voice in VOICES[:-NUM_TEST_VOICES]}
    train = [voice for split, _, voice in mixed if split == "train"]
    share = sum(voice.name in fixed_names for voice in train) / len(train)
    assert 0.4 < share < 0.6 and len({voice.variant for voice in train}) >= 80
    assert {voice.variant for split, _, voice in mixed if split == "test"} == variants["test"]
    with pytest.raises(ValueError, match="voices must be"):
        plan_corpus(voices="many")


def test_phonemes_outside_the_pt_br_phone_set_are_never_written_but_counted(caplog):
    """An answer with phones outside the set (here: English rules, asked to give pt-BR phones) is asked for again,
    then refused: the row keeps its audio and text, its phonemes stay empty, and the corpus says how many."""
    before = Phonemizer()("o gato")
    rows = [{"file_name": "a.flac", "transcription": "the thin thorn"}, {"file_name": "b.flac", "transcription": "sim"}]
    english = PhonemeTargets(TextNormalizer(), Phonemizer("en-us", PT_BR_PHONES))
    with caplog.at_level("WARNING"):
        written = add_phonemes(rows, english)
    assert written[0]["phonemes"] == "" and written[0]["transcription"] == "the thin thorn"
    assert (
        written[1]["phonemes"]
        and {unicodedata.normalize("NFC", p) for p in written[1]["phonemes"].split()} <= PT_BR_PHONES
    )
    assert "reloading the voice, asking again" in caplog.text and "'θ'" in caplog.text
    assert "1 of 2 rows left without phonemes: phonemes outside the pt-BR phone set" in caplog.text
    assert Phonemizer()("o gato") == before == "ʊ ɡ a t ʊ"  # the shared espeak-ng is pt-BR again for the next caller


def test_every_sentence_of_the_corpus_phonemises_inside_the_phone_set():
    to_phones = PhonemeTargets(TextNormalizer())
    phonemised = [to_phones(sentence) for sentence in load_sentences()]
    assert all(phonemised)
    assert {unicodedata.normalize("NFC", phone) for phone in " ".join(phonemised).split()} <= PT_BR_PHONES


def test_a_corpus_split_lists_its_audio_without_warning_about_its_own_word_times(small_corpus, tmp_path, caplog):
    import shutil

    from modeling_distilxlsr.audio.sources import scan_audio_folder

    caplog.set_level(logging.WARNING)
    split = tmp_path / "train"
    shutil.copytree(small_corpus / "train", split)  # a copy: the session's corpus is shared and read-only
    files = scan_audio_folder(str(split))
    assert files and all(f.endswith((".wav", ".flac")) for f in files)
    assert (split / WORD_TIMES_FILE).exists()
    assert "left out" not in caplog.text  # metadata.csv and word_times.jsonl are the split's own companions
    (split / "notes.txt").write_text("mine")
    scan_audio_folder(str(split))
    assert "1 file(s) left out" in caplog.text and "notes.txt" in caplog.text  # anything else is still said


def test_a_missing_corpus_is_made_on_first_use_saying_so_and_reused_silently_after(tmp_path, capsys):
    from modeling_distilxlsr.corpus.synthesis import ensure_corpus

    corpus = tmp_path / "cache" / "corpus"
    small = dict(num_sentences=12, dev_sentences=2, test_sentences=2, utterances_per_sentence=1)
    ensure_corpus(str(corpus), **small)
    assert "making the synthetic pt-BR corpus" in capsys.readouterr().out
    assert (corpus / "test" / "metadata.csv").exists()
    before = sorted(os.listdir(corpus / "train"))
    ensure_corpus(str(corpus), **small)
    assert "making" not in capsys.readouterr().out and sorted(os.listdir(corpus / "train")) == before

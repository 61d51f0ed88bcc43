"""Punctuation and capitals: the labels read from written text, the shipped restorer on sentences none of its
training used, long text, the folder as plain transformers loads it, the training tool, and transcripts written by
default (raw with --raw_text)."""

import json
import os

import pytest
import torch
from conftest import REPO_ROOT, run_in_process
from test_written_numbers import spelled
from transformers import BertForTokenClassification, PreTrainedTokenizerFast, Wav2Vec2CTCTokenizer

from modeling_distilxlsr.audio.vad import SpeechRegion
from modeling_distilxlsr.corpus.synthesis import load_sentences, sentence_split
from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.inference.decoding import CTCDecoder
from modeling_distilxlsr.inference.text_format import bp_formatter, formatted_piece
from modeling_distilxlsr.text.punctuation import LABELS, SHIPPED_MODEL, PunctuationRestorer, WordLabel, labelled_words
from modeling_distilxlsr.text.punctuation_scores import punctuation_scores


@pytest.fixture(scope="module")
def restorer():
    return PunctuationRestorer()


def test_written_text_gives_lowercase_words_with_their_case_and_the_mark_after_them():
    words = labelled_words('Custa R$ 1.500, não é? Sim! O "Debian" usa APT; na sexta-feira: ...')
    assert words[:3] == [WordLabel("custa", "cap", ""), WordLabel("r$", "cap", ""), WordLabel("1.500", "lower", ",")]
    assert words[3:6] == [WordLabel("não", "lower", ""), WordLabel("é", "lower", "?"), WordLabel("sim", "cap", "!")]
    assert [w.word for w in words[6:]] == ["o", "debian", "usa", "apt", "na", "sexta", "feira"]
    assert words[9] == WordLabel("apt", "upper", ",")  # a semicolon is written as a comma
    assert words[-1].mark == "."  # a lone ellipsis after a space ends the word before it


def test_the_shipped_restorer_writes_sentences_it_never_read(restorer):
    """Sentences from the corpus' test split, which its training left out: a wh-question gets its question mark,
    sentences their capitals and periods; the words themselves never change."""
    test, _, _ = sentence_split()
    sentences = load_sentences()
    held_out = [sentences[i] for i in test]
    assert "Onde fica a farmácia mais próxima daqui?" not in held_out + sentences  # really unseen
    assert restorer("onde fica a farmácia mais próxima daqui") == "Onde fica a farmácia mais próxima daqui?"
    two = restorer("eu moro em são paulo há dez anos quando você vem me visitar")
    assert two.startswith("Eu moro") and ". Quando você" in two  # two sentences, the second with its capital
    assert [
        w.strip(".,?!").lower() for w in two.split()
    ] == "eu moro em são paulo há dez anos quando você vem me visitar".split()
    scores = punctuation_scores(held_out, restorer)  # the card's corpus-test row: . 0.92, ? 0.75, initials 1.0
    assert scores["sentence_initial_capitals"] >= 0.95 and scores["."]["f1"] >= 0.85 and scores["?"]["f1"] >= 0.6


def test_text_longer_than_one_window_is_punctuated_all_along(restorer):
    sentence = "o trem para o rio de janeiro sai às nove horas da manhã"
    text = " ".join([sentence] * 24)  # 288 words: five overlapping windows
    written = restorer(text)
    assert written.split() and [w.lower().strip(".,?!") for w in written.split()] == text.split()
    assert written.count("O trem") == 24 and written.count("manhã.") >= 20  # each sentence as a sentence


def test_the_restorer_folder_loads_with_plain_transformers_and_holds_no_code():
    names = ["README.md", "config.json", "model.safetensors", "scores.json", "tokenizer.json", "tokenizer_config.json",
             "training_args.json"]  # fmt: skip
    assert sorted(os.listdir(SHIPPED_MODEL)) == names
    model = BertForTokenClassification.from_pretrained(SHIPPED_MODEL)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(SHIPPED_MODEL)
    words = ["você", "já", "arquivo", "xyzzyq"]
    ids = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and ids[-1] == tokenizer.unk_token_id and tokenizer.unk_token_id not in ids[:3]
    assert model(input_ids=torch.tensor([ids])).logits.shape == (1, len(ids), len(LABELS))
    assert tuple(model.config.id2label[i] for i in range(len(LABELS))) == LABELS


def test_transcripts_are_punctuated_by_default_and_raw_with_raw_text():
    """Two speech regions through the decoder with the default formatter: each region written on its own, the
    question's words keep their frames' times, and `--raw_text` (no formatter) keeps the model's own words."""
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(shipped_teacher_dir())
    formatter = bp_formatter(raw_text=False, log=print)
    assert bp_formatter(raw_text=True, log=print) is None
    texts = ["bom dia", "onde fica a farmácia mais próxima daqui"]
    regions = [SpeechRegion(0, 16_000, 0.9), SpeechRegion(48_000, 96_000, 0.9)]
    logits = [spelled(t, tokenizer) for t in texts]
    raw = CTCDecoder(tokenizer, timestamps="word").decode_regions(regions, logits, 16_000)
    written = CTCDecoder(tokenizer, timestamps="word", formatter=formatter).decode_regions(regions, logits, 16_000)
    assert raw["text"] == "bom dia onde fica a farmácia mais próxima daqui"
    assert written["text"] == "Bom dia. Onde fica a farmácia mais próxima daqui?"  # each region on its own
    assert [s["text"] for s in written["segments"]] == ["Bom dia.", "Onde fica a farmácia mais próxima daqui?"]
    assert written["raw_text"] == raw["text"]
    assert [c["timestamp"] for c in written["chunks"]] == [c["timestamp"] for c in raw["chunks"]]
    assert formatted_piece({"text": ""}, formatter)["text"] == ""


def test_the_training_tool_writes_a_folder_the_restorer_loads(tmp_path):
    """A few steps of `tools/train_punctuation.py` (the Debian text it finds here, the corpus' always): the folder
    loads, its labels are the restorer's, and it scores itself on the held-out text it names."""
    out = tmp_path / "punctuation"
    result = run_in_process([os.path.join(REPO_ROOT, "tools", "train_punctuation.py"), "--output_dir", str(out),
                             "--max_steps", "3", "--batch_size", "4", "--hidden_size", "32", "--num_hidden_layers",
                             "1", "--num_attention_heads", "2", "--intermediate_size", "64"])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "corpus-train:" in result.stdout
    scores = json.loads((out / "scores.json").read_text())
    assert scores["corpus-test"]["words_scored"] > 500
    assert [w.strip(".,?!").lower() for w in PunctuationRestorer(out)("bom dia").split()] == ["bom", "dia"]

import unicodedata

import pytest

from modeling_distilxlsr.export import default_feature_extractor
from modeling_distilxlsr.text import (
    BP_LETTERS,
    TextNormalizer,
    build_processor,
    build_vocab,
    ctc_min_frames,
    normalize_text,
)


def test_nfd_input_becomes_the_same_nfc_text_and_known_tokens():
    nfc = "ação à tarde, pão e lingüiça"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc and normalize_text(nfd) == normalize_text(nfc) == "ação à tarde pão e lingüiça"
    processor = build_processor(build_vocab(), default_feature_extractor())
    ids = processor.tokenizer(normalize_text(nfd)).input_ids
    assert processor.tokenizer.unk_token_id not in ids
    assert processor.tokenizer.decode(ids) == nfc.replace(",", "")


@pytest.mark.parametrize("letter", list("áàâãéêíóôõúüç"))
def test_every_bp_accent_is_kept_in_upper_and_lower_case(letter):
    assert normalize_text(f"x{letter.upper()}y {letter}") == f"x{letter}y {letter}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("guarda-chuva", "guarda chuva"),
        ("Ele disse — e saiu–correndo", "ele disse e saiu correndo"),
        ("“Olá!”, disse ela; (baixinho)...", "olá disse ela baixinho"),
        ("A|B  C", "a b c"),  # a pipe can never reach the tokenizer as a word delimiter
        ("caixa d’água", "caixa dágua"),
        ("  muitos   espaços\t\n", "muitos espaços"),
    ],
)
def test_punctuation_hyphens_and_whitespace(raw, expected):
    assert normalize_text(raw) == expected


def test_digits_are_spelled_out_or_the_utterance_dropped():
    assert normalize_text("Tenho 25 anos") == "tenho vinte e cinco anos"
    assert normalize_text("1.000 pessoas") == "mil pessoas"
    assert normalize_text("3,5 litros") == "três vírgula cinco litros"
    assert normalize_text("50% de desconto") == "cinquenta por cento de desconto"
    assert normalize_text("Tenho 25 anos", digits="drop") is None
    assert normalize_text("sem números", digits="drop") == "sem números"


def test_apostrophe_can_be_kept_and_foreign_letters_are_counted():
    assert normalize_text("caixa d'água", keep_apostrophe=True) == "caixa d'água"
    normalizer = TextNormalizer()
    assert normalizer("Señor Müller, 日本") == "senor müller"
    assert normalizer.out_of_alphabet == {"ñ": 1, "日": 1, "本": 1}
    assert "3 characters outside the alphabet" in normalizer.report()


def test_fixed_and_corpus_vocabularies():
    fixed = build_vocab()
    assert list(fixed)[:3] == ["[PAD]", "[UNK]", "|"] and fixed["[PAD]"] == 0
    assert set(BP_LETTERS) <= set(fixed) and "'" in fixed
    assert build_vocab() == fixed  # the same on every corpus
    corpus = build_vocab(["olá mundo", "ação"])
    assert set(corpus) == {"[PAD]", "[UNK]", "|", "o", "l", "á", "m", "u", "n", "d", "a", "ç", "ã"}


def test_tokenizer_uses_pipe_as_delimiter_and_pad_as_blank():
    tokenizer = build_processor(build_vocab(), default_feature_extractor()).tokenizer
    assert tokenizer.pad_token_id == 0 and tokenizer.word_delimiter_token == "|"
    ids = tokenizer("aa b").input_ids
    assert ids == [tokenizer.convert_tokens_to_ids(c) for c in ["a", "a", "|", "b"]]
    a, b = ids[0], ids[-1]
    assert tokenizer.decode([a, a, 0, a, 2, 2, b]) == "aa b"  # CTC grouping: blank separates repeats
    assert ctc_min_frames(ids) == 5  # "aa" needs a blank between the two a's

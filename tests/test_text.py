import unicodedata

import pytest

from modeling_distilxlsr.models.audio_format import default_feature_extractor
from modeling_distilxlsr.text.normalizer import (
    BP_LETTERS,
    TextCounts,
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


# Written Brazilian numbers -> what a speaker says; None: no single reading, the utterance is dropped and counted.
BP_NUMBERS = [
    ("R$ 1.000,00", "mil reais"),
    ("R$ 2,50 por dia", "dois reais e cinquenta centavos por dia"),
    ("R$ 0,99", "noventa e nove centavos"),
    ("R$ 1,00", "um real"),
    ("R$ 3 milhões", "três milhões de reais"),
    ("R$ 1.000.000,00", "um milhão de reais"),
    ("2.500,75 metros", "dois mil e quinhentos vírgula setenta e cinco metros"),
    ("3,05 m", "três vírgula zero cinco m"),
    ("25% de desconto", "vinte e cinco por cento de desconto"),
    ("2,5 %", "dois vírgula cinco por cento"),
    ("o 1º lugar e a 2ª vez", "o primeiro lugar e a segunda vez"),
    ("a 21ª edição", "a vigésima primeira edição"),
    ("às 14h30 ou às 9h", "às catorze horas e trinta minutos ou às nove horas"),
    ("à 1h", "à uma hora"),
    ("às 22:15", "às vinte e duas horas e quinze minutos"),
    ("em 1999.", "em mil novecentos e noventa e nove"),
    ("em 2024", "em dois mil e vinte e quatro"),
    ("dia 1/5/2024", "dia primeiro de maio de dois mil e vinte e quatro"),
    ("agente 007", "agente zero zero sete"),
    ("faz 30 °C", "faz trinta graus celsius"),
    ("US$ 5", "cinco dólares"),
    ("US$ 1.000,50", "mil dólares e cinquenta centavos"),
    ("US$ 3 milhões", "três milhões de dólares"),
    ("€ 20 ou 1 €", "vinte euros ou um euro"),
    ("-5 graus", "menos cinco graus"),
    ("de −3,5 °C", "de menos três vírgula cinco graus celsius"),
    ("a covid-19", "a covid dezenove"),
    ("nº 5 e n.º 7", "número cinco e número sete"),
    ("no 5º andar", "no quinto andar"),
    ("100 m² e 1 m³", "cem metros quadrados e um metro cúbico"),
    ("o preço por m²", "o preço por metro quadrado"),
    ("$ 5", None),
    ("3.5 litros", None),
    ("1/2 xícara", None),
    ("1° lugar", None),
    ("192.168.0.1", None),
    ("às 25:99", None),
    ("R$ 1,999", None),
]


@pytest.mark.parametrize("written, spoken", BP_NUMBERS)
def test_brazilian_numbers_become_the_words_a_speaker_says(written, spoken):
    normalizer, counts = TextNormalizer(), TextCounts()
    assert normalizer(written, counts) == spoken
    if spoken is None:
        assert normalizer.normalize(written).drop_reason.startswith("ambiguous number")
        assert "dropped: 1 ambiguous" in counts.report()


def test_ambiguous_numbers_can_be_kept_digit_group_by_digit_group():
    assert normalize_text("3.5 litros", ambiguous_numbers="keep") == "três cinco litros"


def test_emoji_and_symbols_are_removed_and_counted():
    normalizer, counts = TextNormalizer(), TextCounts()
    assert normalizer("olá 👋 mundo © sim", counts) == "olá mundo sim"
    assert counts.out_of_alphabet == {"👋": 1, "©": 1}
    assert "2 characters outside the alphabet removed" in counts.report()


def test_apostrophe_can_be_kept_and_foreign_letters_are_counted():
    assert normalize_text("caixa d'água", keep_apostrophe=True) == "caixa d'água"
    normalizer, counts = TextNormalizer(), TextCounts()
    assert normalizer("Señor Müller, 日本", counts) == "senor müller"
    assert counts.out_of_alphabet == {"ñ": 1, "日": 1, "本": 1}
    assert "3 characters outside the alphabet" in counts.report()


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


def test_a_dropped_ambiguous_number_is_logged_once_with_the_number(caplog):
    from modeling_distilxlsr.audio.sources import SkipCounter, Utterance
    from modeling_distilxlsr.training.ctc_data import prepare_ctc_utterances

    skips = SkipCounter()
    with caplog.at_level("INFO", logger="modeling_distilxlsr"):
        kept = prepare_ctc_utterances(
            [Utterance("a.wav", 16000, "3.5 litros", name="a.wav")],
            TextNormalizer(),
            None,
            lambda n: n,
            skips,
            TextCounts(),
        )
    assert kept == [] and skips.summary() == "skipped 1 of 0 files: 1 ambiguous number"
    assert "skipping a.wav: ambiguous number 3.5" in caplog.text and "ambiguous number ambiguous" not in caplog.text

"""Phoneme transcriptions from espeak-ng (the building block of the phoneme-recognition target) and the phone
vocabulary, tokenizer and error rate."""

import torch
from conftest import tiny_student_config

from modeling_distilxlsr import DistilXLSRForCTC
from modeling_distilxlsr.phonemes import STRESS_MARKS, Phonemizer, build_phoneme_processor, phone_error_rate

SENTENCES = ["O técnico encontrou uma carteira na calçada.", "Sim, não.", "Vai chover amanhã?", "ligar e desligar"]


def test_espeak_gives_bp_phones_and_a_vocabulary_with_one_token_per_phone(tmp_path):
    phonemize = Phonemizer()
    transcriptions = [phonemize(text) for text in SENTENCES]
    assert all(t and not set(t) & set(STRESS_MARKS) for t in transcriptions)
    assert "ʃ" in transcriptions[2].split() and "ɐ̃ʊ̃" in transcriptions[1].split()  # "ch", the nasal diphthong of "não"
    assert transcriptions == [phonemize(text) for text in SENTENCES]  # deterministic
    processor = build_phoneme_processor(transcriptions, str(tmp_path))
    tokenizer = processor.tokenizer
    phones = {p for t in transcriptions for p in t.split()}
    assert len(tokenizer) == len(phones) + 2 and tokenizer.pad_token_id == 0
    for text in transcriptions:
        ids = tokenizer(text).input_ids
        assert len(ids) == len(text.split()) and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text

    # a CTC model sized to the phone vocabulary trains on phone labels
    model = DistilXLSRForCTC(tiny_student_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    labels = torch.tensor([tokenizer(transcriptions[1]).input_ids])
    loss = model(torch.randn(1, 16000), labels=labels).loss
    assert torch.isfinite(loss) and loss > 0


def test_phone_error_rate_counts_phones():
    reference = "n ɐ̃ʊ̃ s i ŋ"
    assert phone_error_rate([reference], [reference]) == 0.0
    assert phone_error_rate([reference], ["n a s i ŋ"]) == 1 / 5  # one substituted phone of five

"""Phoneme transcriptions from espeak-ng (the building block of the phoneme-recognition target) and the phone
vocabulary, tokenizer and error rate."""

import pytest
import torch
from conftest import tiny_student_config

from modeling_distilxlsr import DistilXLSRForCTC
from modeling_distilxlsr.text.phonemes import (
    STRESS_MARKS,
    Phonemizer,
    build_phoneme_processor,
    phone_error_rate,
)

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


@pytest.mark.slow
def test_finetune_ctc_with_phoneme_targets(small_corpus, tmp_path):
    """`finetune_ctc.py --target phonemes --freeze_encoder` (the probe's phoneme recognition): labels are espeak-ng's
    phones of the normalised transcripts, the folder ships a phone tokenizer, WER in the results is the phone error
    rate, and only the CTC head trains."""
    import json
    import os
    import sys

    from conftest import REPO_ROOT, run_script
    from transformers import AutoTokenizer

    out = tmp_path / "pr"
    args = [
        sys.executable,
        "finetune_ctc.py",
        "--model",
        os.path.join(REPO_ROOT, "tests", "fixtures", "distilled_student"),
    ]
    args += [
        "--train_data",
        str(small_corpus / "train"),
        "--eval_data",
        str(small_corpus / "dev"),
        "--output_dir",
        str(out),
    ]
    args += ["--target", "phonemes", "--freeze_encoder", "--learning_rate", "1e-2", "--max_steps", "4"]
    args += ["--eval_steps", "4", "--save_steps", "4", "--num_workers", "0"]
    run_script([*args, "--per_device_batch_size", "4", "--report_to", "none"])
    results = json.loads((out / "ctc_results.json").read_text())
    assert results["target"] == "phonemes" and 0 < results["best_eval"][str(small_corpus / "dev")]["per"] <= 10
    reference = results["best_eval"][str(small_corpus / "dev")]["examples"][0]["reference"]
    vocab = json.loads((out / "vocab.json").read_text())
    assert all(phone in vocab for phone in reference.split())  # references are phone strings of the vocabulary
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (
        type(tokenizer).__name__ == "Wav2Vec2PhonemeCTCTokenizer"
        and tokenizer.decode(tokenizer(reference).input_ids) == reference
    )
    assert "phone error rate" in (out / "README.md").read_text()
    from safetensors.torch import load_file

    before = load_file(os.path.join(REPO_ROOT, "tests", "fixtures", "distilled_student", "model.safetensors"))
    after = load_file(out / "model.safetensors")
    encoder = {name: name.removeprefix("distilxlsr.") for name in after if not name.startswith("lm_head.")}
    assert set(encoder.values()) <= set(before) and len(encoder) > 20
    assert all(torch.equal(after[name], before[old]) for name, old in encoder.items())  # the encoder stayed frozen
    assert after["lm_head.weight"].shape[0] == len(vocab)


@pytest.mark.slow
def test_phonemes_stay_right_while_the_same_process_synthesises_every_voice(tmp_path):
    """espeak-ng is one state per process: synthesis (any variant, the corpus maker) and phonemes share it. Two
    instances once meant a freed callback: the interpreter crashed mid-corpus or every stored phone came out garbled."""
    import json

    from conftest import run_fresh_python

    from modeling_distilxlsr.text.espeak import Espeak, Voice, espeak_variants

    code = f"""
        import json, sys
        from modeling_distilxlsr.text.phonemes import Phonemizer
        print(json.dumps([Phonemizer()(text) for text in {SENTENCES!r}]))
    """
    expected = json.loads(run_fresh_python(code, tmp_path, with_package=True))  # a process that synthesised nothing
    phonemize = Phonemizer()
    assert phonemize.espeak is Espeak.shared()
    for round_ in range(3):
        for variant in espeak_variants():
            audio = Espeak.shared().synthesize("Sim e não.", Voice(variant, variant, 170, 50, 50), seed=round_)
            assert len(audio) > 1000
        assert [phonemize(text) for text in SENTENCES] == expected
        assert [Phonemizer()(text) for text in SENTENCES] == expected

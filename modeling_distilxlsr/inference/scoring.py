"""The one scoring path of a saved ASR folder: its transcripts through the transformers pipeline, as a user runs
it, against the normalised references, as CER/WER."""

from transformers import pipeline

from ..audio.decode import load_audio
from ..audio.sources import SkipCounter, find_utterances
from ..text.error_rates import error_rates
from ..text.normalizer import TextNormalizer
from .decoding import check_lm_files, has_lm


def score_asr_folder(model_dir: str, test_source: str, batch_size: int) -> dict:
    """Test CER/WER of a saved ASR folder through the transformers pipeline, as a user runs it: transcripts of
    decoded 16 kHz audio against the normalised references (utterances without one are left out)."""
    if has_lm(model_dir):  # the pipeline loads language_model/ unchecked: a damaged file is named here instead
        check_lm_files(model_dir)
    utterances = [u for u in find_utterances(test_source, SkipCounter(), need_text=True)]
    normalizer = TextNormalizer()
    recognizer = pipeline("automatic-speech-recognition", model=model_dir, device="cpu")
    references, predictions = [], []
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        waves = [load_audio(u.source) for u in chunk]
        outputs = recognizer(waves, batch_size=batch_size)
        for utterance, output in zip(chunk, outputs, strict=True):
            reference = normalizer(utterance.text)
            if reference:
                references.append(reference)
                predictions.append(output["text"].strip())
    return {
        **error_rates(references, predictions),
        "utterances": len(references),
        "examples": [{"reference": r, "prediction": p} for r, p in list(zip(references, predictions, strict=True))[:3]],
    }

"""Live partials as chunked CTC with left context (`serve/streaming.StreamSession`), with the shipped pt-BR teacher
(a trained model: its partials spell words) and speech espeak-ng makes in the test: a partial's window stays bounded
however long the utterance grows (the settled frames are kept, only the new audio and its left context run), and the
last partial reads what one pass over the whole utterance reads."""

import jiwer
import numpy as np
import pytest
import soxr

from modeling_distilxlsr.corpus.synthesis import VOICES
from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.decoding import CTCDecoder
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.serve.streaming import StreamSession
from modeling_distilxlsr.text.espeak import Espeak

SENTENCE = (
    "o pescador vendeu dois peixes grandes na feira de domingo e depois voltou para casa "
    "com a rede nova que comprou em santos para a filha mais velha"
)


@pytest.fixture(scope="module")
def teacher():
    return load_backend(shipped_teacher_dir(), "torch-fp32")


@pytest.fixture(scope="module")
def long_utterance():
    """About 8 s of one unbroken utterance (a voice the teacher never heard), as 16-bit PCM."""
    espeak = Espeak.shared()
    audio = soxr.resample(espeak.synthesize(SENTENCE, VOICES[-1], seed=3), espeak.sample_rate, SAMPLING_RATE)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2")


def stream(session: StreamSession, pcm: np.ndarray, backend) -> list[tuple[int, int, str]]:
    """(window samples, utterance samples so far, partial text) of every partial, 100 ms chunks, the windows run
    through the model."""
    partials = []
    for start in range(0, len(pcm), 1600):
        kind, audio = session.feed(pcm[start : start + 1600].tobytes())
        if kind == "partial":
            logits = backend.logits([audio])[0] if len(audio) >= backend.min_samples else None
            partials.append((len(audio), len(session.utterance), session.partial(logits)["partial"]))
    return partials


def test_a_partials_window_stays_bounded_and_it_reads_what_the_whole_utterance_reads(teacher, long_utterance):
    decoder = CTCDecoder(teacher.tokenizer)
    session = StreamSession(decoder, endpoint_silence_s=2.0, left_context_s=2.0, right_margin_s=0.3)
    partials = stream(session, long_utterance, teacher)
    assert len(long_utterance) / SAMPLING_RATE > 7 and len(partials) >= 12
    # 2 s of left context + 0.5 s new (a VAD frame more, at most) + the 0.3 s margin recomputed + the CNN's last
    # partial frame: about 2.9 s, never the whole utterance
    assert max(window for window, _, _ in partials) <= 3.0 * SAMPLING_RATE
    _, heard, last = partials[-1]
    whole = decoder(teacher.logits([session.utterance[:heard]])[0])["text"]  # one pass over the same audio
    # partials settle frames heard with 0.3 s of right context (here 6% of characters differ); the result at the
    # endpoint is the one pass itself
    assert jiwer.cer(whole, last) < 0.1, (whole, last)
    assert jiwer.cer(SENTENCE[: len(whole)], whole) < 0.3  # the teacher hears this unseen voice: real words

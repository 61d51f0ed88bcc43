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


def test_a_ten_minute_stream_holds_no_more_than_one_utterance(teacher):
    """What a stream keeps between messages stays bounded however long it runs (the soak in
    benchmarks/serve_soak.py measures the whole server): 10 minutes of speech with pauses, and 25 s with none,
    leave the session holding at most one utterance (`max_utterance_s`), its settled frames, the pre-roll and less than
    one message of audio not yet through the VAD, and every utterance is handed over at an endpoint."""
    from conftest import speech

    from modeling_distilxlsr.serve.streaming import VAD_FRAME

    decoder = CTCDecoder(teacher.tokenizer)
    session = StreamSession(decoder, max_utterance_s=20.0, partial_every_s=5.0)  # fewer model passes, same bounds
    piece = np.concatenate([speech(11.8, 0), np.zeros(SAMPLING_RATE, np.float32)])  # the fixture's voices, a pause
    pcm = (np.clip(np.concatenate([np.tile(piece, 47), speech(25.0, 1)]), -1, 1) * 32767).astype("<i2")
    assert len(pcm) / SAMPLING_RATE > 600
    most = {"utterance": 0, "settled": 0, "recent": 0, "pending": 0}
    finals = 0
    for start in range(0, len(pcm), 1600):  # 100 ms frames, as a microphone sends them
        kind, audio = session.feed(pcm[start : start + 1600].tobytes())
        if kind == "partial":  # the model's frames for the window: what the server's batcher returns
            session.partial(teacher.logits([audio])[0] if len(audio) >= teacher.min_samples else None)
        finals += kind == "final"
        sizes = {"utterance": len(session.utterance), "recent": len(session.recent), "pending": len(session.pending)}
        sizes["settled"] = 0 if session.settled is None else len(session.settled)
        most = {key: max(most[key], sizes[key]) for key in most}
    assert most["utterance"] <= 20 * SAMPLING_RATE + VAD_FRAME  # never more than max_utterance_s of audio
    assert most["settled"] <= 20 * SAMPLING_RATE // 320 + 1  # the frames of that audio, at 20 ms a frame
    # pending: under a VAD frame, plus the rest of the message an endpoint came in (read at the next message)
    assert most["recent"] <= session.preroll_frames and most["pending"] < VAD_FRAME + 1600
    assert finals >= 47  # each sentence group ends at its pause; the 25 s run is cut at 20 s

"""Decoding one audio file to what every model takes: 16 kHz mono float32, checked (unreadable, NaN, empty, too short)
before anything is batched, so that a bad file fails alone.

Decoding is done with soundfile + librosa rather than `datasets.Audio`, whose decoder (torchcodec) does not load with
every torch build."""

import io

import librosa
import numpy as np
import soundfile as sf
from transformers import Wav2Vec2FeatureExtractor

from ..models.audio_format import SAMPLING_RATE


class AudioDecodeError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def load_audio(source) -> np.ndarray:
    """Decodes to float32 mono at 16 kHz (channels averaged, resampled with soxr through librosa)."""
    try:
        audio, sample_rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32")
    except Exception as err:
        raise AudioDecodeError("unreadable", str(err)) from err
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise AudioDecodeError("NaN/Inf samples")
    if sample_rate != SAMPLING_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLING_RATE, res_type="soxr_hq")
    return audio.astype(np.float32)


def normalize(audio: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: exactly what `Wav2Vec2FeatureExtractor(do_normalize=True)` does at inference."""
    return Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm([audio], attention_mask=None)[0]


def read_for_transcription(path: str, min_samples: int) -> np.ndarray:
    """16 kHz mono float audio of one file, or `AudioDecodeError` saying why it cannot be transcribed (unreadable,
    no audio frames, NaN, shorter than the CNN's receptive field). Checked per file, before batching, so that a bad
    file fails alone and never shifts another file's result."""
    audio = load_audio(path)
    if len(audio) == 0:
        raise AudioDecodeError("empty (no audio frames)")
    if len(audio) < min_samples:
        raise AudioDecodeError("too short", f"{len(audio)} samples at 16 kHz, the model needs {min_samples}")
    return audio

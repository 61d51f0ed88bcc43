"""Decoding one audio file to what every model takes: 16 kHz mono float32, checked (unreadable, NaN, empty, too short)
before anything is batched, so that a bad file fails alone.

Decoding is done with soundfile + librosa rather than `datasets.Audio`, whose decoder (torchcodec) does not load with
every torch build. What libsndfile cannot read (m4a/AAC, WebM, WMA, AMR...) is decoded by the ffmpeg program when it is
on PATH, as transformers' ASR pipeline does with its inputs."""

import io
import os
import shutil
import subprocess

import librosa
import numpy as np
import soundfile as sf
from transformers import Wav2Vec2FeatureExtractor

from ..models.audio_format import SAMPLING_RATE


class AudioDecodeError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def ffmpeg_decode(source) -> np.ndarray:
    """float32 mono 16 kHz samples of `source` (a path or encoded bytes) decoded by the ffmpeg program.

    transformers' `ffmpeg_read` pipes the bytes in, and ffmpeg cannot seek a pipe: an MP4/M4A whose index (`moov`)
    comes after the audio (ffmpeg's own default when writing) fails that way. So a path is given to ffmpeg as a path;
    only bytes go through the pipe."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioDecodeError(
            "unreadable", "not a format libsndfile reads, and ffmpeg (for the others) is not on PATH"
        )
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", "pipe:0" if isinstance(source, bytes) else source]
    command += ["-vn", "-ac", "1", "-ar", str(SAMPLING_RATE), "-f", "f32le", "pipe:1"]
    result = subprocess.run(command, input=source if isinstance(source, bytes) else None, capture_output=True)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioDecodeError("unreadable", f"ffmpeg: {message[-1] if message else 'no audio stream decoded'}")
    return np.frombuffer(result.stdout, np.float32).copy()


def audio_seconds(path: str) -> float | None:
    """The duration a file's header declares, without decoding it (libsndfile's header, else ffprobe's); None when
    neither says. What a server checks before it decodes: a 2-hour FLAC of a few MB is 460 MB once decoded."""
    try:
        return sf.info(path).duration
    except Exception:  # not a libsndfile format (or not audio): ask ffprobe
        pass
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    command = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path]
    result = subprocess.run(command, capture_output=True, text=True)
    try:
        return float(result.stdout.strip())
    except ValueError:  # "N/A", nothing, or not audio: decoding will say why
        return None


def load_audio(source) -> np.ndarray:
    """Decodes to float32 mono at 16 kHz (channels averaged, resampled with soxr through librosa); with ffmpeg when
    libsndfile cannot read the format."""
    if isinstance(source, str) and not os.path.exists(source):
        link = f" (a symbolic link to {os.readlink(source)}, which does not exist)" if os.path.islink(source) else ""
        raise AudioDecodeError("missing", f"no such file{link}")
    try:
        audio, sample_rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32")
    except Exception as err:
        try:
            audio, sample_rate = ffmpeg_decode(source), SAMPLING_RATE
        except AudioDecodeError as ffmpeg_error:
            raise AudioDecodeError("unreadable", f"{err}; {ffmpeg_error.detail}") from err
    if isinstance(source, str):
        check_complete(source, len(audio) / sample_rate)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise AudioDecodeError("NaN/Inf samples")
    if sample_rate != SAMPLING_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLING_RATE, res_type="soxr_hq")
    return audio.astype(np.float32)


def check_complete(path: str, decoded_seconds: float) -> None:
    """`AudioDecodeError("truncated")` when a file decodes to less than its header declares: a FLAC or MP3 cut to a
    third of its bytes decodes (libsndfile or ffmpeg, which both stop at the cut without an error) to a third of its
    audio, which would otherwise be transcribed as if it were all of it. 2% and 0.1 s of slack: an MP3's declared
    length is an estimate from its bitrate or Xing header."""
    declared = audio_seconds(path)
    if declared is not None and decoded_seconds < declared * 0.98 - 0.1:
        raise AudioDecodeError(
            "truncated",
            f"decoded {decoded_seconds:.2f} s of the {declared:.2f} s its header declares (a cut or damaged file)",
        )


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

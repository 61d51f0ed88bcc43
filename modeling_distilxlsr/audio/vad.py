"""Speech regions of a recording, found with Silero VAD: what every transcription path decodes, region by region,
instead of a whole file whose silences the model never heard in training (a student trained on tightly trimmed clips
loses 7.5 CER points when 1 s of silence goes before a clip and 2 s after: the per-utterance normalisation and the
attention take the silence in).

Why Silero rather than webrtcvad (which the live stream's endpoint detector uses): webrtcvad is an energy and
spectral-shape GMM that calls stationary noise speech at every aggressiveness; Silero is a small trained network
(an STFT, four convolutions, an LSTM; 309K parameters) that separates speech from noise and music, and its wheel
ships its weights (`benchmarks/vad_choice.py` measures both on the corpus' word times, clean and in noise).

Why not `silero_vad.get_speech_timestamps`: importing the `silero_vad` package sets torch's global thread count to
1 (`torch.set_num_threads(1)` in its `model.py`), which would slow every model in the process, and its loaders read
TorchScript (code) or ONNX (onnxruntime is an extra here). So the weights are read from the wheel's safetensors file
(no code runs), found without importing the package, into the module below; its encoder runs on all 32 ms windows
of a file in one batch and the LSTM in one call, where the reference loop calls the network once per window.
"""

import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ..models.audio_format import SAMPLING_RATE

WINDOW_SAMPLES = 512  # 32 ms at 16 kHz: one speech probability per window
CONTEXT_SAMPLES = 64  # each window also sees the 64 samples before it
WEIGHTS_FILE = "silero_vad_16k.safetensors"
ENCODER_BLOCK_WINDOWS = 1024


class VADUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class RegionRules:
    """How speech probabilities become regions. A region starts where the probability reaches `threshold` and ends
    where it stays under `neg_threshold` (Silero's hysteresis: 0.5 / 0.35); gaps shorter than `min_silence_s` are
    bridged (a breath or a comma is not the end of a stretch of speech) and regions shorter than `min_speech_s`
    dropped (a click). Silero's windows are 32 ms and it lags at onsets, so each region is first widened by
    `search_s` on either side (never past the middle of the gap to its neighbour), then cut in to its first and
    last sample within `edge_db` of its loud samples (the 99.9th percentile of their magnitude, so one click does not
    set the scale). Why so tight: the students are trained on clips cut at the first and last sound, and measured
    on the main job's student, 0.1 s of leading silence costs 1.8 CER points and 10 ms 0.4 (`benchmarks/silence.py`);
    a cut made from the samples themselves also cuts a padded clip exactly where it cuts the clip alone."""

    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_silence_s: float = 0.5
    min_speech_s: float = 0.1
    search_s: float = 0.3
    edge_db: float = 40.0


@dataclass(frozen=True)
class SpeechRegion:
    """Samples [start, end) of the recording, and the mean speech probability of its windows."""

    start: int
    end: int
    speech_prob: float


class SileroVAD(nn.Module):
    """Silero VAD v5/v6 (16 kHz) in plain torch: a learned STFT (a 256-tap convolution giving real and imaginary
    parts), magnitude, four convolutions down to one 128-vector per window, an LSTM across windows, a sigmoid."""

    def __init__(self):
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.final_conv = nn.Conv1d(128, 1, 1)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(windows, 64 + 512) samples -> (windows, 128)."""
        x = nn.functional.pad(windows, (0, CONTEXT_SAMPLES), mode="reflect")
        # the STFT convolution as one matrix product over every frame (1 input channel, 256 taps, stride 128):
        # the same numbers, 1.7x faster than conv1d here (0.066 s against 0.110 s for 7 minutes, 2-core Xeon)
        frames = x.unfold(-1, self.stft_conv.kernel_size[0], self.stft_conv.stride[0])
        x = (frames @ self.stft_conv.weight[:, 0].T).transpose(1, 2)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        return x.squeeze(-1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Mono 16 kHz audio (samples,) -> the speech probability of each 32 ms window (windows,)."""
        padded = nn.functional.pad(audio, (CONTEXT_SAMPLES, (-len(audio)) % WINDOW_SAMPLES))
        windows = padded.unfold(0, WINDOW_SAMPLES + CONTEXT_SAMPLES, WINDOW_SAMPLES)
        # the encoder in blocks of windows: one batch of a 7-minute file's 13,000 windows is 5x slower (memory)
        encoded = torch.cat([self.encode(block) for block in windows.split(ENCODER_BLOCK_WINDOWS)])
        hidden, _ = self.lstm(encoded.unsqueeze(0))
        return torch.sigmoid(self.final_conv(torch.relu(hidden).transpose(1, 2)))[0, 0]


def silero_weights_path() -> str:
    """The safetensors file the `silero-vad` wheel ships, found without importing the package (see above)."""
    spec = importlib.util.find_spec("silero_vad")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "data", WEIGHTS_FILE)
        if os.path.isfile(path):
            return path
    raise VADUnavailableError(
        "Speech regions need the silero-vad package (`pip install silero-vad`), whose wheel ships the VAD's "
        f"weights ({WEIGHTS_FILE}); or transcribe whole files without regions (--no_vad)."
    )


def load_silero_vad() -> SileroVAD:
    state = load_file(silero_weights_path())
    lstm = {f"lstm.{name.split('.')[-1]}_l0": state.pop(name) for name in list(state) if name.startswith("lstm_cell")}
    model = SileroVAD()
    model.load_state_dict({**state, **lstm})
    return model.eval()


_LOADED: dict[str, SileroVAD] = {}


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """One speech probability per 32 ms window of 16 kHz mono audio (the model is loaded once per process)."""
    if "model" not in _LOADED:
        _LOADED["model"] = load_silero_vad()
    with torch.inference_mode():
        return _LOADED["model"](torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))).numpy()


def regions_from_probabilities(probs: np.ndarray, num_samples: int, rules: RegionRules = RegionRules()):
    """Speech regions (samples) from per-window probabilities, by `rules`."""
    spans, start, quiet_since = [], None, None
    min_silence_windows = rules.min_silence_s * SAMPLING_RATE / WINDOW_SAMPLES
    for i, p in enumerate(probs):
        if start is None:
            start = i if p >= rules.threshold else None
            continue
        if p >= rules.threshold:
            quiet_since = None
        elif p < rules.neg_threshold and quiet_since is None:
            quiet_since = i
        if quiet_since is not None and i + 1 - quiet_since >= min_silence_windows:
            spans.append((start, quiet_since))
            start, quiet_since = None, None
    if start is not None:
        spans.append((start, quiet_since if quiet_since is not None else len(probs)))
    spans = [(s, e) for s, e in spans if (e - s) * WINDOW_SAMPLES >= rules.min_speech_s * SAMPLING_RATE]
    margin = round(rules.search_s * SAMPLING_RATE)
    regions = []
    for k, (s, e) in enumerate(spans):
        first, last = s * WINDOW_SAMPLES, min(e * WINDOW_SAMPLES, num_samples)
        low = 0 if k == 0 else (spans[k - 1][1] * WINDOW_SAMPLES + first) // 2
        high = num_samples if k == len(spans) - 1 else (last + spans[k + 1][0] * WINDOW_SAMPLES) // 2
        regions.append(
            SpeechRegion(max(low, first - margin), min(high, last + margin), round(float(probs[s:e].mean()), 4))
        )
    return regions


def cut_to_sound(audio: np.ndarray, region: SpeechRegion, edge_db: float) -> SpeechRegion:
    """`region` cut in to its first and last sample within `edge_db` of its loud samples (`RegionRules`)."""
    magnitude = np.abs(audio[region.start : region.end])
    loud = np.flatnonzero(magnitude >= np.percentile(magnitude, 99.9) * 10 ** (-edge_db / 20))
    if len(loud) == 0:
        return region
    return SpeechRegion(region.start + int(loud[0]), region.start + int(loud[-1]) + 1, region.speech_prob)


def speech_regions(audio: np.ndarray, rules: RegionRules = RegionRules()) -> list[SpeechRegion]:
    """The speech regions of 16 kHz mono audio, in order, not overlapping; [] when no window reaches the
    threshold (silence, or noise the VAD does not take for speech)."""
    if len(audio) == 0:
        return []
    regions = regions_from_probabilities(speech_probabilities(audio), len(audio), rules)
    return [cut_to_sound(audio, region, rules.edge_db) for region in regions]

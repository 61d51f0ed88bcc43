"""The log-mel front-end of a DistilXLSR student (`feature_frontend="log_mel"`), in place of the waveform CNN.

This file travels to the Hugging Face Hub with the weights (``trust_remote_code=True``), like modeling_distilxlsr.py:
torch and public transformers names only.
"""

import math

import torch
from torch import nn
from transformers.activations import ACT2FN

from .configuration_distilxlsr import DistilXLSRConfig
from .modeling_distilxlsr_parts import sample_span_mask

DYNAMIC_RANGE = 10.0  # natural-log units: about 43 dB
SAMPLING_RATE = 16_000  # stated here on its own, as every Hub file does (models/audio_format.py is the project's)


def _hz_to_slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    """The Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above."""
    log_step = math.log(6.4) / 27.0
    return torch.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + torch.log(hz.clamp(min=1e-10) / 1000.0) / log_step)


def _slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    log_step = math.log(6.4) / 27.0
    return torch.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * torch.exp(log_step * (mel - 15.0)))


def slaney_mel_filters(bins: int, bands: int, sampling_rate: int, **tensor_options) -> torch.Tensor:
    """`(bins, bands)` triangular mel filters, Slaney scale and area normalisation from 0 Hz to Nyquist: librosa's
    `filters.mel(htk=False, norm="slaney")`, which tests/test_log_mel_frontend.py checks against. Written here
    because this file travels to the Hub with public transformers names only (its `audio_utils` are documented as
    internal helpers) and librosa is not a transformers dependency."""
    frequencies = torch.linspace(0.0, sampling_rate / 2, bins, **tensor_options)
    top = _hz_to_slaney_mel(torch.tensor(sampling_rate / 2, **tensor_options))
    edges = _slaney_mel_to_hz(torch.linspace(0.0, float(top), bands + 2, **tensor_options))
    widths = edges.diff()
    rising = (frequencies[:, None] - edges[None, :-2]) / widths[None, :-1]
    falling = (edges[None, 2:] - frequencies[:, None]) / widths[None, 1:]
    weights = torch.minimum(rising, falling).clamp(min=0.0)
    return weights * (2.0 / (edges[2:] - edges[:-2]))[None, :]


class DistilXLSRLogMelFeatureEncoder(nn.Module):
    """The `"log_mel"` front-end, in place of the waveform CNN: per frame (a Hann window of `conv_kernel[0]` samples
    every `conv_stride[0]`), the log power of `num_mel_bins` slaney mel bands, then Linear -> LayerNorm -> GELU twice
    to `conv_dim[0]` channels, the layout of a CNN layer, so that it can learn the teacher's CNN output frame by
    frame (each teacher CNN frame sees exactly those samples). Returns `(batch, channels, frames)` like the CNN.

    The spectrum is a matmul of the windowed frames with a fixed real-DFT basis rather than `torch.stft`: the same
    numbers, it runs on any backend (ONNX MatMul, int8 or bf16 like the rest) and never pads or centres, so frame
    counts stay the CNN's. The basis and the mel filters (`slaney_mel_filters`) are saved with the weights,
    so a loaded model computes exactly what was trained."""

    def __init__(self, config: DistilXLSRConfig):
        super().__init__()
        window, self.hop = config.conv_kernel[0], config.conv_stride[0]
        bins = window // 2 + 1
        # on the CPU by name: from_pretrained builds models under a meta-device context, then loads these buffers
        cpu = dict(dtype=torch.float64, device="cpu")
        angle = 2 * torch.pi * torch.arange(bins, **cpu)[:, None] * torch.arange(window, **cpu)[None] / window
        hann = torch.hann_window(window, periodic=True, **cpu)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * hann  # (2 * bins, window)
        mel = slaney_mel_filters(bins, config.num_mel_bins, SAMPLING_RATE, **cpu)
        self.register_buffer("fourier_basis", basis.t().float().contiguous())
        self.register_buffer("mel_filters", mel.float())
        width = config.conv_dim[0]
        self.projection = nn.Linear(config.num_mel_bins, width)
        self.projection_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.output = nn.Linear(width, width)
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.activation = ACT2FN[config.feat_extract_activation]
        self.band_mask = (config.mel_band_mask_prob, config.mel_band_mask_length)
        self.gradient_checkpointing = False
        self._requires_grad = True

    def _freeze_parameters(self):  # what Wav2Vec2Model.freeze_feature_encoder calls
        for param in self.parameters():
            param.requires_grad = False
        self._requires_grad = False

    def log_mel(self, input_values: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` -> `(batch, frames, num_mel_bins)` natural-log mel power (floor 1e-6)."""
        spectrum = input_values.unfold(1, self.fourier_basis.shape[0], self.hop) @ self.fourier_basis
        real, imaginary = spectrum.chunk(2, dim=-1)
        return torch.log((real.square() + imaginary.square()) @ self.mel_filters + 1e-6)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        log_mel = self.log_mel(input_values)
        # Each frame's bands floored DYNAMIC_RANGE below its loudest (whisper floors 80 dB below the utterance's; per
        # frame here, so that padding changes nothing): a band-limited channel (telephone, low-pass) otherwise leaves
        # its empty bands at log(1e-6), far outside anything distillation on wideband audio showed the MLP.
        floor = log_mel.amax(dim=-1, keepdim=True) - DYNAMIC_RANGE
        log_mel = torch.maximum(log_mel, floor)
        if self.training and self.band_mask[0] > 0:
            # SpecAugment's frequency masks, set to the floor: what the empty bands of a band-limited channel read as
            bands = sample_span_mask((log_mel.shape[0], log_mel.shape[-1]), *self.band_mask, device=log_mel.device)
            log_mel = torch.where(bands[:, None, :], floor, log_mel)
        hidden = self.activation(self.projection_norm(self.projection(log_mel)))
        return self.activation(self.output_norm(self.output(hidden))).transpose(1, 2)

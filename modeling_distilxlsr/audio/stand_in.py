"""Seeded, speech-like stand-in signals: what a drift check or a backend timing runs on when no audio is at hand."""

import numpy as np

from ..models.audio_format import SAMPLING_RATE
from .decode import normalize


def stand_in_signals(count: int = 3, seconds: float = 4.0) -> list[np.ndarray]:
    """Seeded, speech-like stand-ins for a drift check with no data at hand: harmonic sweeps with a syllable-rate
    envelope, plus noise. Not speech, so the figure is a sanity check; --calibration_data gives the real one."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    waves = []
    for _ in range(count):
        pitch = rng.uniform(90, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLING_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
        waves.append(normalize((voiced + 0.05 * rng.standard_normal(t.size)).astype(np.float32)))
    return waves

"""espeak-ng through ctypes: one synthesiser per process, for the synthetic corpus (speech) and the IPA phone targets
(text). The library comes from the `espeakng-loader` wheel, or a system libespeak-ng when the wheel is absent."""

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Voice:
    """An espeak-ng speaker setting: variant, words per minute, base pitch (0-100) and pitch range (0-100)."""

    name: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int


class Espeak:
    """The few espeak-ng C calls we need, through ctypes: synchronous synthesis into a numpy buffer.

    Use `Espeak.shared()`: espeak-ng is one global state per process. A second instance re-initialises it and
    registers its own callback; when either instance is freed, espeak-ng keeps calling freed memory (it corrupted
    the interpreter and garbled the phonemes of a corpus made in one process)."""

    _shared = None

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    RATE, PITCH, RANGE = 1, 3, 4  # espeak_PARAMETER values

    def __init__(self):
        try:
            import espeakng_loader  # lazy: optional dependency

            library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        except ImportError:
            library, data = ctypes.util.find_library("espeak-ng"), None
        if not library:
            raise RuntimeError("espeak-ng not found: `pip install espeakng-loader` (or `apt install espeak-ng`).")
        self.lib = ctypes.cdll.LoadLibrary(library)
        self.sample_rate = self.lib.espeak_Initialize(0x02, 0, data.encode() if data else None, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data folder {data}).")
        self._chunks: list[np.ndarray] = []
        self._callback = self._CALLBACK(self._collect)  # keep a reference: espeak calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def shared(cls) -> "Espeak":
        """The process' one espeak-ng, initialised on first use."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def set_voice(self, name: str) -> None:
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {name}.")

    def _collect(self, wav, num_samples, events):
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """float32 audio at `self.sample_rate`. espeak-ng jitters its voices with its own random generator: seeding it
        per utterance (and synthesising in a fixed order) makes the output reproducible."""
        self.lib.espeak_ng_SetRandSeed(seed)
        self.set_voice(f"pt-br+{voice.variant}")
        for parameter, value in ((self.RATE, voice.rate), (self.PITCH, voice.pitch), (self.RANGE, voice.pitch_range)):
            self.lib.espeak_SetParameter(parameter, value, 0)
        self._chunks = []
        encoded = text.encode("utf-8")
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0


def espeak_variants() -> list[str]:
    """The voice variants (timbres) in espeak-ng's data folder, sorted: `pt-br+<variant>` speaks with each."""
    import espeakng_loader  # lazy: optional dependency

    return sorted(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))

"""espeak-ng through ctypes: one synthesiser per process, for the synthetic corpus (speech) and the IPA phone targets
(text). The library comes from the `espeakng-loader` wheel, or a system libespeak-ng when the wheel is absent."""

import ctypes
import ctypes.util
import os
import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WordTime:
    """A word as espeak-ng spoke it: its text in the input and where it starts and ends in the audio (seconds)."""

    text: str
    start: float
    end: float


class _Event(ctypes.Structure):
    """espeak-ng's `espeak_EVENT` (speak_lib.h): the synthesiser reports each word and phoneme it speaks, at the
    sample where it starts."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),  # of a word, in characters
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index in the output
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # a phoneme's name
    ]


EVENT_END_OF_LIST, EVENT_WORD, EVENT_END, EVENT_PHONEME = 0, 1, 5, 7
HYPHENATED = re.compile(r"\w+(?:-\w+)+")


def word_times(text: str, events: list[tuple[int, int, int, int, bytes]], sample_rate: int) -> list[WordTime]:
    """Each word event's span: from its sample to the next word's, the next pause phoneme's (`_...`) or the end of
    the sentence, whichever comes first. `events`: (type, text_position, length, sample, phoneme name)."""
    words = []
    for index, (kind, position, length, sample, _) in enumerate(events):
        if kind != EVENT_WORD:
            continue
        end = next(
            (s for k, _, _, s, name in events[index + 1 :]
             if s > sample and (k in (EVENT_WORD, EVENT_END) or (k == EVENT_PHONEME and name.startswith(b"_")))),
            sample,
        )  # fmt: skip
        spoken = text[position - 1 : position - 1 + length]
        compound = HYPHENATED.match(text, position - 1)  # "guarda-chuva" is one word event of the first part's length
        if compound and len(compound.group()) > length:
            spoken = compound.group()
        words.append(WordTime(spoken, sample / sample_rate, end / sample_rate))
    return words


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

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
    RATE, PITCH, RANGE = 1, 3, 4  # espeak_PARAMETER values
    PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS: the audio is the same with or without them

    def __init__(self):
        try:
            import espeakng_loader  # lazy: optional dependency

            library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        except ImportError:
            library, data = ctypes.util.find_library("espeak-ng"), None
        if not library:
            raise RuntimeError("espeak-ng not found: `pip install espeakng-loader` (or `apt install espeak-ng`).")
        self.lib = ctypes.cdll.LoadLibrary(library)
        self.sample_rate = self.lib.espeak_Initialize(0x02, 0, data.encode() if data else None, self.PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data folder {data}).")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
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
        index = 0
        while events and events[index].type != EVENT_END_OF_LIST:
            event = events[index]
            self._events.append((event.type, event.text_position, event.length, event.sample, bytes(event.id)))
            index += 1
        return 0

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """float32 audio at `self.sample_rate`. espeak-ng jitters its voices with its own random generator: seeding it
        per utterance (and synthesising in a fixed order) makes the output reproducible."""
        return self.synthesize_timed(text, voice, seed)[0]

    def synthesize_timed(self, text: str, voice: Voice, seed: int = 0, language: str = "pt-br"):
        """`synthesize`'s audio and where espeak-ng spoke each word: the reference timing for forced alignment and
        for streaming latency (`word_times`). `language`: the voice's language (another one reads the Portuguese
        text with its own phonology: an accent no pt-BR model has heard, for the confidence benchmark)."""
        self.lib.espeak_ng_SetRandSeed(seed)
        self.set_voice(f"{language}+{voice.variant}")
        for parameter, value in ((self.RATE, voice.rate), (self.PITCH, voice.pitch), (self.RANGE, voice.pitch_range)):
            self.lib.espeak_SetParameter(parameter, value, 0)
        self._chunks, self._events = [], []
        encoded = text.encode("utf-8")
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0, word_times(text, self._events, self.sample_rate)


def espeak_variants() -> list[str]:
    """The voice variants (timbres) in espeak-ng's data folder, sorted: `pt-br+<variant>` speaks with each."""
    import espeakng_loader  # lazy: optional dependency

    return sorted(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))

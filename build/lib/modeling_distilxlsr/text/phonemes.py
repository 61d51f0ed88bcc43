"""IPA phoneme transcriptions from espeak-ng, for phoneme recognition (SUPERB's PR task) on Brazilian Portuguese.

espeak-ng is already what speaks the corpus (`corpus.Espeak`, the library bundled in espeakng-loader): its
`espeak_TextToPhonemes` gives the IPA of a text with the pt-br voice's rules. A transcription here is the phones
separated by spaces, stress marks dropped (PR scores phones, not stress), words not marked. The tokenizer is
transformers' `Wav2Vec2PhonemeCTCTokenizer` with `do_phonemize=False`: one token per space-separated phone, so
multi-character phones ("tʃ", "ɐ̃ʊ̃") stay one symbol. The phone error rate is jiwer's WER over those tokens.
"""

import ctypes
import json
import os

import jiwer
from transformers import Wav2Vec2PhonemeCTCTokenizer, Wav2Vec2Processor

from ..models.audio_format import default_feature_extractor
from .espeak import Espeak
from .normalizer import NormalizedText

STRESS_MARKS = "ˈˌ"
PHONE_SEPARATOR = "_"
IPA = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8


class Phonemizer:
    """Text -> "p h o n e s" with espeak-ng's rules for `voice` (pt-br by default)."""

    def __init__(self, voice: str = "pt-br"):

        self.espeak, self.voice = Espeak.shared(), voice  # shared with synthesis: espeak-ng is one state a process
        self.lib = self.espeak.lib
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        self.espeak.set_voice(voice)

    def __call__(self, text: str) -> str:
        self.espeak.set_voice(self.voice)  # synthesis in between may have switched it to another variant
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        mode = IPA | (ord(PHONE_SEPARATOR) << 8)
        clauses = []
        while pointer.value:  # one clause per call; espeak-ng moves the pointer on (NULL at the end)
            clause = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), 1, mode)  # 1: espeakCHARS_UTF8
            if clause:
                clauses.append(clause.decode("utf-8"))
        phones = []
        for word in " ".join(clauses).split():
            phones += [p.strip(STRESS_MARKS) for p in word.split(PHONE_SEPARATOR) if p.strip(STRESS_MARKS)]
        return " ".join(phones)


class PhonemeTargets:
    """A `TextNormalizer` followed by the phonemizer: what finetune_ctc.py applies to transcripts with
    `--target phonemes` (numbers spelled out first, so "2" becomes the phones of "dois")."""

    def __init__(self, normalizer):
        self.normalizer, self.phonemize = normalizer, Phonemizer()

    def __call__(self, text: str, counts=None) -> str | None:
        return self.normalize(text, counts).text

    def normalize(self, text: str, counts=None) -> NormalizedText:
        """The phones of the normalised text, or the normaliser's drop (counted in `counts`, a `TextCounts`)."""
        normalised = self.normalizer.normalize(text, counts)
        return NormalizedText(self.phonemize(normalised.text)) if normalised.text else normalised

    def settings(self) -> dict:
        return self.normalizer.settings()


def phoneme_vocabulary(transcriptions: list[str]) -> dict[str, int]:
    """`<pad>` (the CTC blank) and `<unk>`, then every phone of `transcriptions`, sorted."""
    phones = sorted({phone for text in transcriptions for phone in text.split()})
    return {"<pad>": 0, "<unk>": 1, **{phone: i + 2 for i, phone in enumerate(phones)}}


def build_phoneme_processor(transcriptions: list[str], out_dir: str, feature_extractor=None):
    """A `Wav2Vec2Processor` whose tokenizer has one token per phone of `transcriptions` (saved in `out_dir`)."""

    os.makedirs(out_dir, exist_ok=True)
    vocab_file = os.path.join(out_dir, "vocab.json")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(phoneme_vocabulary(transcriptions), f, ensure_ascii=False, indent=1)
    tokenizer = Wav2Vec2PhonemeCTCTokenizer(
        vocab_file,
        do_phonemize=False,
        word_delimiter_token=None,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token=None,
        eos_token=None,
    )
    return Wav2Vec2Processor(feature_extractor=feature_extractor or default_feature_extractor(), tokenizer=tokenizer)


def phone_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Edit distance over phones / reference phones: jiwer's WER on space-separated phone strings."""

    return float(jiwer.wer(references, hypotheses))

"""IPA phoneme transcriptions from espeak-ng, for phoneme recognition (SUPERB's PR task) on Brazilian Portuguese.

espeak-ng is already what speaks the corpus (`corpus.Espeak`, the library bundled in espeakng-loader): its
`espeak_TextToPhonemes` gives the IPA of a text with the pt-br voice's rules. A transcription here is the phones
separated by spaces, stress marks dropped (PR scores phones, not stress), words not marked. The tokenizer is
transformers' `Wav2Vec2PhonemeCTCTokenizer` with `do_phonemize=False`: one token per space-separated phone, so
multi-character phones ("tʃ", "ɐ̃ʊ̃") stay one symbol. The phone error rate is jiwer's WER over those tokens.
"""

import ctypes
import json
import logging
import os
import unicodedata

import jiwer
from transformers import Wav2Vec2PhonemeCTCTokenizer, Wav2Vec2Processor

from ..models.audio_format import default_feature_extractor
from .espeak import Espeak
from .normalizer import NormalizedText

logger = logging.getLogger(__name__)
OUTSIDE_PHONE_SET = "phonemes outside the pt-BR phone set"


class PhonemeError(RuntimeError):
    """espeak-ng gave phones that are not pt-BR phones (twice, the voice reloaded in between)."""


STRESS_MARKS = "ˈˌ"
# Every phone espeak-ng 1.52's pt-br rules give: the phones of the corpus' 757 sentences and of all 59,319 three-letter
# strings of the BP alphabet. A string with any other phone is not a pt-BR phonemisation (espeak-ng once returned
# another phoneme table's symbols, "(base)" markers included) and is never stored as a label.
PT_BR_PHONES = frozenset(
    unicodedata.normalize("NFC", phone)
    for phone in (
        "a aɪ aʊ aː b d dʒ e eɪ eʊ f i iʊ j k l m n o oɪ õ p r s t ts tʃ u uɪ ũ v w x y z æ ŋ ɐ̃ ɐ̃ʊ̃ ɔ ɔɪ ə ɛ ɛɪ ɛʊ ɡ ɪ "
        "ɲ ɾ ʃ ʊ ʎ ʒ"
    ).split()
)
PHONE_SEPARATOR = "_"
IPA = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8


class Phonemizer:
    """Text -> "p h o n e s" with espeak-ng's rules for `voice` (pt-br by default)."""

    def __init__(self, voice: str = "pt-br", phones: frozenset | None = PT_BR_PHONES):

        self.espeak, self.voice = Espeak.shared(), voice  # shared with synthesis: espeak-ng is one state a process
        self.phones = phones  # the phone set every answer is checked against (None: unchecked)
        self.lib = self.espeak.lib
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        self.espeak.set_voice(voice)

    def __call__(self, text: str) -> str:
        """The phones of `text`; `PhonemeError` when espeak-ng's answer holds a phone outside the phone set twice
        (after the first, the voice is loaded again): an answer is checked, never trusted."""
        phones = self._phonemize(text)
        outside = self._outside(phones)
        if outside:
            logger.warning(
                "espeak-ng gave phones %s outside the set for %r: reloading the voice, asking again", outside, text
            )
            self.espeak.set_voice(self.voice)
            phones = self._phonemize(text)
            outside = self._outside(phones)
            if outside:
                raise PhonemeError(f"{OUTSIDE_PHONE_SET}: {outside} for {text!r}")
        return phones

    def _outside(self, phones: str) -> list[str]:
        if self.phones is None:
            return []
        return sorted({p for p in phones.split() if unicodedata.normalize("NFC", p) not in self.phones})

    def _phonemize(self, text: str) -> str:
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

    def __init__(self, normalizer, phonemizer: Phonemizer | None = None):
        self.normalizer, self.phonemize = normalizer, phonemizer or Phonemizer()

    def __call__(self, text: str, counts=None) -> str | None:
        return self.normalize(text, counts).text

    def normalize(self, text: str, counts=None) -> NormalizedText:
        """The phones of the normalised text, or the normaliser's drop (counted in `counts`, a `TextCounts`)."""
        normalised = self.normalizer.normalize(text, counts)
        if not normalised.text:
            return normalised
        try:
            return NormalizedText(self.phonemize(normalised.text))
        except PhonemeError as err:  # dropped and counted, as an ambiguous number is: a wrong label is data loss
            logger.warning("%s", err)
            if counts is not None:
                counts.dropped[OUTSIDE_PHONE_SET] += 1
            return NormalizedText(None, OUTSIDE_PHONE_SET)

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

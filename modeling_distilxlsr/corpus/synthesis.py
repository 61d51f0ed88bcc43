"""An offline Brazilian Portuguese speech corpus: the project's own sentences spoken by espeak-ng.

    python -m modeling_distilxlsr.corpus OUT_DIR [--seed 0] [--utterances_per_sentence 2]

Writes 16 kHz FLAC in the Hugging Face audiofolder layout, `OUT_DIR/{train,dev,test}/metadata.csv` with
`file_name,transcription,speaker,phonemes` (`phonemes`: espeak-ng's IPA phones of the normalised transcription,
space-separated, the labels of `finetune_ctc.py --target phonemes`), and `word_times.jsonl`: where espeak-ng spoke
each word. Test uses sentences *and* voices that train does
not; dev uses unseen sentences with the training voices. Deterministic for a seed: the same command gives byte-identical
files (espeak-ng keeps some state between utterances inside one process, so two corpora made in the *same* process
differ slightly). Synthesis goes through the espeak-ng library bundled in the `espeakng-loader` wheel (ctypes, no binary
needed), or a system libespeak-ng when the wheel is absent.

Not real speech: one synthesiser, clean prosody. It exists so that tests, CI and a laptop can run the whole pipeline
in minutes, and so that the mini-lab can show distillation transferring what a teacher knows.
"""

import csv
import json
import logging
import os
import shutil
import tempfile

import numpy as np
import soundfile as sf
import soxr
from tqdm.auto import tqdm

from ..cache import cache_dir
from ..models.audio_format import SAMPLING_RATE
from ..text.espeak import Espeak, Voice, espeak_variants
from ..text.normalizer import TextCounts, TextNormalizer
from ..text.phonemes import OUTSIDE_PHONE_SET, PhonemeTargets

logger = logging.getLogger(__name__)

SENTENCES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentences_pt_br.txt")
CORPUS_VERSION = "v2"  # v2: every utterance varies its voice's rate, pitch and pitch range
METADATA_COLUMNS = ["file_name", "transcription", "speaker", "phonemes"]
# Where espeak-ng spoke each word of each file, `{"file_name", "words": [[text, start s, end s], ...]}` per line: the
# reference for forced alignment (benchmarks/alignment.py) and streaming latency (benchmarks/serve_load.py). The
# words are espeak-ng's (a number is one or more of its words, as it reads it), in the written sentence's spelling.
WORD_TIMES_FILE = "word_times.jsonl"


# Twelve voices: test takes the last three, which train and dev never hear.
VOICES = (
    Voice("m1_slow", "m1", 140, 40, 50),
    Voice("f2_mid", "f2", 165, 60, 60),
    Voice("m3_fast", "m3", 190, 35, 40),
    Voice("f1_low", "f1", 155, 45, 70),
    Voice("m2_high", "m2", 175, 65, 55),
    Voice("f4_calm", "f4", 150, 55, 30),
    Voice("m5_mid", "m5", 170, 50, 60),
    Voice("f3_fast", "f3", 185, 70, 65),
    Voice("m4_deep", "m4", 160, 25, 45),
    Voice("f5_test", "f5", 160, 58, 50),
    Voice("m6_test", "m6", 150, 42, 60),
    Voice("m7_test", "m7", 180, 52, 40),
)
NUM_TEST_VOICES = 3
# `voices="wide"`: every espeak-ng voice variant is a speaker (about 100 timbres, from whispered to robotic: the most
# voice variety espeak-ng alone can give, for models that must meet voices they never heard). These variants, with
# the three test voices above, speak only the test split, so the test has 12 unseen timbres.
WIDE_TEST_VARIANTS = ("Andy", "Gene2", "grandpa", "iven4", "klatt4", "linda", "norbert", "robosoft5", "steph3")


def wide_voices(seed: int) -> tuple[tuple[Voice, ...], tuple[Voice, ...]]:
    """(train voices, test voices) of the wide pool: one speaker per espeak-ng variant, each with its own base rate
    (140-190 wpm), pitch (25-70) and pitch range (30-70), drawn once per seed."""
    rng = np.random.default_rng(seed + 7)
    test_variants = {v.variant for v in VOICES[-NUM_TEST_VOICES:]} | set(WIDE_TEST_VARIANTS)
    voices = [
        Voice(
            variant.replace(" ", "_"),
            variant,
            int(rng.integers(140, 191)),
            int(rng.integers(25, 71)),
            int(rng.integers(30, 71)),
        )
        for variant in espeak_variants()
    ]
    train = tuple(v for v in voices if v.variant not in test_variants)
    return train, (*VOICES[-NUM_TEST_VOICES:], *(v for v in voices if v.variant in WIDE_TEST_VARIANTS))


def load_sentences() -> list[str]:
    with open(SENTENCES_FILE, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def sentence_split(seed: int = 0, dev_sentences: int = 60, test_sentences: int = 100, num_sentences: int | None = None,
                   rng: np.random.Generator | None = None):  # fmt: skip
    """(test, dev, train) indices into `load_sentences()`: disjoint, the corpus' own split for `seed` (anything
    trained on the corpus text, the punctuation tagger too, leaves the test sentences out)."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    order = rng.permutation(len(load_sentences()))[:num_sentences]
    return (
        order[:test_sentences],
        order[test_sentences : test_sentences + dev_sentences],
        order[test_sentences + dev_sentences :],
    )


def plan_corpus(
    seed: int = 0,
    utterances_per_sentence: int = 2,
    dev_sentences: int = 60,
    test_sentences: int = 100,
    num_sentences: int | None = None,
    voices: str = "fixed",
):
    """(split, sentence, voice) for every utterance: disjoint sentences across splits, test voices unseen, every
    utterance's voice varied (`vary_voice`). `num_sentences` uses a subset of the sentence list (small corpora for
    tests). `voices`: "fixed", the 12 voices of `VOICES`; "wide", every espeak-ng variant (`wide_voices`); "mixed",
    half of the training utterances from each (test as "wide")."""
    rng = np.random.default_rng(seed)
    sentences = load_sentences()
    test_ids, dev_ids, train_ids = sentence_split(seed, dev_sentences, test_sentences, num_sentences, rng)
    weights = None  # every training voice equally likely
    if voices == "fixed":
        train_voices, test_voices = VOICES[:-NUM_TEST_VOICES], VOICES[-NUM_TEST_VOICES:]
    elif voices == "wide":
        train_voices, test_voices = wide_voices(seed)
    elif voices == "mixed":  # half the training utterances from the 9 fixed voices, half from the wide pool
        wide_train, test_voices = wide_voices(seed)
        fixed_train = VOICES[:-NUM_TEST_VOICES]
        train_voices = (*fixed_train, *wide_train)
        weights = np.array([0.5 / len(fixed_train)] * len(fixed_train) + [0.5 / len(wide_train)] * len(wide_train))
    else:
        raise ValueError(f"voices must be 'fixed', 'wide' or 'mixed', got {voices!r}.")
    plan = []
    for i in train_ids:
        for voice_id in rng.choice(len(train_voices), size=utterances_per_sentence, replace=False, p=weights):
            plan.append(("train", sentences[i], train_voices[voice_id]))
    plan += [("dev", sentences[i], train_voices[rng.integers(len(train_voices))]) for i in dev_ids]
    plan += [("test", sentences[i], test_voices[k % len(test_voices)]) for k, i in enumerate(test_ids)]
    return [(split, sentence, vary_voice(voice, rng)) for split, sentence, voice in plan]


def vary_voice(voice: Voice, rng: np.random.Generator) -> Voice:
    """The voice with this utterance's own rate (x0.85-1.2), base pitch (+-12) and pitch range (+-20): a speaker
    never says two sentences alike, and a corpus of 12 voice settings would teach a model 12 points, not voices.
    The espeak-ng variant (the voice's timbre) and the name stay: test voices remain unseen in training."""
    return Voice(
        voice.name,
        voice.variant,
        int(round(voice.rate * rng.uniform(0.85, 1.2))),
        int(np.clip(voice.pitch + rng.integers(-12, 13), 0, 100)),
        int(np.clip(voice.pitch_range + rng.integers(-20, 21), 0, 100)),
    )


def make_corpus(out_dir: str, seed: int = 0, quiet: bool = False, **plan_options) -> str:
    """Synthesises the corpus into `out_dir` (built in a temporary folder and moved in place at the end, so an
    interrupted run never leaves a half corpus behind). `plan_options` go to `plan_corpus`."""
    espeak = Espeak.shared()
    plan = plan_corpus(seed, **plan_options)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix=".corpus-", dir=parent)
    rows = {"train": [], "dev": [], "test": []}
    timings = {"train": [], "dev": [], "test": []}
    rng = np.random.default_rng(seed + 1)
    for index, (split, sentence, voice) in enumerate(tqdm(plan, desc="synthesising pt-BR", disable=quiet)):
        audio, words = espeak.synthesize_timed(sentence, voice, seed=seed * 1_000_003 + index)
        audio = soxr.resample(audio, espeak.sample_rate, SAMPLING_RATE)
        # Light, seeded variation so clips are not bit-identical renditions: gain and a little background noise.
        audio = audio * rng.uniform(0.5, 1.0) + rng.normal(0.0, rng.uniform(0.0005, 0.004), len(audio))
        audio = np.clip(audio, -1.0, 1.0)
        file_name = f"{split}_{index:05d}_{voice.name}.flac"
        os.makedirs(os.path.join(work_dir, split), exist_ok=True)
        sf.write(os.path.join(work_dir, split, file_name), audio, SAMPLING_RATE, subtype="PCM_16")
        rows[split].append({"file_name": file_name, "transcription": sentence, "speaker": voice.name})
        timings[split].append({"file_name": file_name, "words": [[w.text, round(w.start, 4), round(w.end, 4)]
                                                                for w in words]})  # fmt: skip
    for split, split_rows in rows.items():
        write_metadata(os.path.join(work_dir, split, "metadata.csv"), add_phonemes(split_rows))
        with open(os.path.join(work_dir, split, WORD_TIMES_FILE), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in timings[split])
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(work_dir, out_dir)
    return out_dir


def add_phonemes(rows: list[dict], to_phones: PhonemeTargets | None = None) -> list[dict]:
    """Each row with `phonemes`: the phones of its transcription as `finetune_ctc.py --target phonemes` makes them
    (default `TextNormalizer`, then `Phonemizer`). Run after all synthesis, so the audio stays byte-identical to a
    corpus made before the column existed."""

    to_phones, counts = to_phones or PhonemeTargets(TextNormalizer()), TextCounts()
    rows = [{**row, "phonemes": to_phones(row["transcription"], counts) or ""} for row in rows]
    refused = counts.dropped[OUTSIDE_PHONE_SET]
    if refused:  # never a wrong label: the row keeps its audio and transcript, its phonemes stay empty
        logger.warning("%d of %d rows left without phonemes: %s (see the warnings above)", refused, len(rows),
                       OUTSIDE_PHONE_SET)  # fmt: skip
    return rows


def write_metadata(path: str, rows: list[dict]) -> None:
    """metadata.csv, written to a temporary file and moved in place (a killed run leaves the old file whole)."""
    partial = path + ".partial"
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def default_corpus_dir() -> str:
    """`$DISTILXLSR_CACHE/corpus-pt-br-<CORPUS_VERSION>`."""
    return os.path.join(cache_dir(), f"corpus-pt-br-{CORPUS_VERSION}")


def ensure_corpus(corpus_dir: str, quiet: bool = False, **plan_options) -> str:
    """Makes the corpus on first use (saying so), reuses it afterwards. `plan_options` go to `plan_corpus` (the
    default corpus takes none)."""
    if not os.path.isfile(os.path.join(corpus_dir, "test", "metadata.csv")):
        if not quiet:
            print(f"No data given: making the synthetic pt-BR corpus in {corpus_dir} (once, about a minute).")
        make_corpus(corpus_dir, quiet=quiet, **plan_options)
    for split in ("train", "dev", "test"):  # a corpus made before the phonemes column gains it (audio unchanged)
        path = os.path.join(corpus_dir, split, "metadata.csv")
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and "phonemes" not in rows[0]:
            write_metadata(path, add_phonemes(rows))
    return corpus_dir


def default_corpus_split(split: str, accelerator=None) -> str:
    """The project's synthetic pt-BR corpus, made on first use in the cache folder (by the main process; the others
    wait): what the scripts train on when no data is given."""

    corpus_dir = default_corpus_dir()
    if accelerator is None:
        ensure_corpus(corpus_dir)
    else:
        with accelerator.main_process_first():
            ensure_corpus(corpus_dir, quiet=not accelerator.is_main_process)
    return os.path.join(corpus_dir, split)

"""On-the-fly corruption of training audio, for students (and teachers) that hear more than clean speech.

Runs inside the DataLoader workers, per example, from a generator seeded with (run seed, epoch, example index): the
same step gets the same corrupted batch in every run, resumed runs included, whatever the number of workers.

The transforms, in the order the world applies them (speaker -> room -> noise -> channel):
  speed        Kaldi-style speed perturbation (resampling: tempo and pitch together), factors like 0.9 / 1.1. It
               changes length and timing, so it is applied *before* the clean / corrupted split: the teacher
               hears the same sped-up clip, and their frames stay aligned.
  pitch        pitch shift in semitones, duration kept (audiomentations / librosa).
  reverb       measured room impulse responses from `--rir_dir`, else rooms simulated with pyroomacoustics (random
               size, absorption, source and microphone positions). Each RIR is cut to start at its direct path and
               the reverberant clip to the clean clip's length, so no frame shifts: the reverb tail stays inside.
  noise        additive noise at an SNR drawn from `--snr_range`: files from `--noise_dir` (recursive, any format or
               sample rate, MUSAN layout as is; looped when shorter than the clip, cropped at random when longer),
               and built-in kinds needing no files: coloured noise (white to brown, audiomentations), babble (a mix
               of other training utterances) and mains hum (50/60 Hz and harmonics).
  bandlimit    a low-pass microphone or channel (audiomentations' LowPassFilter, zero-phase so no frame shifts, cutoff
               from `--bandlimit_cutoff_range`, 24-48 dB per octave): the muffled wideband recordings a telephone
               channel does not cover.
  telephone    8 kHz channel: down to 8 kHz, a codec round trip (G.711 mu-law / A-law, GSM 6.10, Opus, MP3, all
               written and read by libsndfile through soundfile), back to 16 kHz.
  clipping     a gain pushing part of the clip past full scale, then hard clipping (audiomentations).

No level (gain) transform: every recipe's feature extractor normalises each clip to zero mean and unit variance
(`do_normalize`), so a gain alone changes nothing a model sees; level against noise is the SNR, level against full
scale is the clipping.

What is written here rather than taken from a library, and why: SNR mixing and the file/babble noise sources
(audiomentations' AddBackgroundNoise cannot skip and count a bad file, and babble needs the training set), the hum,
the codec round trip (no library chains resampling and libsndfile's codecs), and the RIR alignment.
"""

import contextlib
import io
import logging
import os
import random
from dataclasses import dataclass, field, fields

import librosa
import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from ..errors import UserError
from ..models.audio_format import SAMPLING_RATE
from .decode import AudioDecodeError, load_audio
from .sources import SkipCounter, probe_audio, scan_audio_folder

logger = logging.getLogger(__name__)


class AugmentationError(UserError, ValueError):
    """Augmentation settings that cannot work (a bad range, an unknown kind, a folder with no usable audio)."""


NOISE_KINDS = ("file", "color", "babble", "hum")
CODECS = {  # name -> (soundfile format, subtype)
    "mulaw": ("WAV", "ULAW"),
    "alaw": ("WAV", "ALAW"),
    "gsm": ("WAV", "GSM610"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass(kw_only=True)
class AugmentArguments:
    """Augmentation settings, shared by the three training recipes (flags or YAML)."""

    augment: bool = field(default=False, metadata={"help": "Corrupt training audio on the fly (see augment.py)."})
    augment_target: str = field(
        default="student",
        metadata={
            "help": "Distillation: student = the teacher hears the clean clip and the student the corrupted one "
            "(robust distillation); both = both hear the corrupted clip.",
            "choices": ["student", "both"],
        },
    )
    noise_prob: float = field(default=0.6, metadata={"help": "Probability of additive noise."})
    snr_range: list[float] = field(default_factory=lambda: [0.0, 20.0], metadata={"help": "SNR range in dB."})
    noise_dir: str | None = field(default=None, metadata={"help": "Folder of noise recordings (recursive)."})
    noise_kinds: list[str] = field(
        default_factory=lambda: list(NOISE_KINDS),
        metadata={"help": f"Noise kinds to draw from: {', '.join(NOISE_KINDS)} (file needs --noise_dir)."},
    )
    reverb_prob: float = field(default=0.3, metadata={"help": "Probability of reverberation."})
    rir_dir: str | None = field(default=None, metadata={"help": "Folder of measured RIRs; default: simulated rooms."})
    rt60_range: list[float] = field(
        default_factory=lambda: [0.2, 0.8], metadata={"help": "Reverberation time (s) of simulated rooms."}
    )
    speed_prob: float = field(default=0.3, metadata={"help": "Probability of speed perturbation."})
    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.1], metadata={"help": "Speed factors."})
    pitch_prob: float = field(default=0.0, metadata={"help": "Probability of a pitch shift (costly on CPU)."})
    pitch_range: list[float] = field(default_factory=lambda: [-2.0, 2.0], metadata={"help": "Semitones."})
    telephone_prob: float = field(default=0.2, metadata={"help": "Probability of an 8 kHz telephone channel."})
    telephone_codecs: list[str] = field(
        default_factory=lambda: ["mulaw", "alaw", "gsm", "opus"],
        metadata={"help": f"Codecs of the telephone channel: {', '.join(CODECS)}."},
    )
    bandlimit_prob: float = field(default=0.0, metadata={"help": "Probability of a low-pass channel (off by default)."})
    bandlimit_cutoff_range: list[float] = field(
        default_factory=lambda: [3000.0, 7000.0], metadata={"help": "Low-pass cutoff range in Hz."}
    )
    clip_prob: float = field(default=0.1, metadata={"help": "Probability of gain + hard clipping."})

    def augment_settings(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(AugmentArguments)}


def validate_augment_settings(settings: dict):
    """Clear errors, before any training, for settings that cannot work."""
    for name, value in settings.items():
        if name.endswith("_prob") and not 0.0 <= value <= 1.0:
            raise AugmentationError(f"--{name} must be a probability in [0, 1], got {value}.")
    for name in ("snr_range", "rt60_range", "pitch_range", "bandlimit_cutoff_range"):
        low, high = _range(settings[name], name)
        if name == "rt60_range" and low <= 0:
            raise AugmentationError(f"--rt60_range must be positive seconds, got {settings[name]}.")
        if name == "bandlimit_cutoff_range" and not 0 < low <= high < SAMPLING_RATE / 2:
            raise AugmentationError(
                f"--bandlimit_cutoff_range must lie between 0 and {SAMPLING_RATE // 2} Hz, got {settings[name]}."
            )
    if not settings["speed_factors"] or any(f <= 0 for f in settings["speed_factors"]):
        raise AugmentationError(f"--speed_factors must be positive, got {settings['speed_factors']}.")
    unknown = set(settings["noise_kinds"]) - set(NOISE_KINDS)
    if unknown or not settings["noise_kinds"]:
        raise AugmentationError(f"--noise_kinds: unknown {sorted(unknown)}; choose from {', '.join(NOISE_KINDS)}.")
    unknown = set(settings["telephone_codecs"]) - set(CODECS)
    if unknown or not settings["telephone_codecs"]:
        raise AugmentationError(f"--telephone_codecs: unknown {sorted(unknown)}; choose from {', '.join(CODECS)}.")
    for name in ("noise_dir", "rir_dir"):
        folder = settings[name]
        if folder is not None and not os.path.isdir(folder):
            raise AugmentationError(f"--{name} {folder}: no such folder.")
    if settings["noise_kinds"] == ["file"] and settings["noise_dir"] is None:
        raise AugmentationError("--noise_kinds file needs --noise_dir.")


def _range(values, name) -> tuple[float, float]:
    if len(values) != 2 or values[0] > values[1]:
        raise AugmentationError(f"--{name} must be two numbers, low then high, got {values}.")
    return float(values[0]), float(values[1])


def _list_audio_files(folder: str, what: str, skips) -> list[str]:
    """Audio files of `folder` whose headers read; the others are counted in `skips`. None usable: an error."""

    usable = []
    for path in scan_audio_folder(folder):
        skips.total += 1
        _, reason, detail = probe_audio(path, min_samples=1)
        if reason:
            skips.skip(f"{what} {reason}", path, detail)
        else:
            usable.append(path)
    if not usable:
        raise AugmentationError(f"{folder}: no usable {what} audio file ({skips.summary()}).")
    return usable


@contextlib.contextmanager
def seeded_global_rngs(rng: np.random.Generator):
    """audiomentations draws from `random` and `np.random`: seed both from `rng` and put them back afterwards, so a
    transform is reproducible and the caller's random streams are untouched."""
    state_random, state_numpy = random.getstate(), np.random.get_state()
    seed = int(rng.integers(2**31))
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state_random)
        np.random.set_state(state_numpy)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)) + 1e-20))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`signal + noise`, the noise scaled so that 20 log10(rms(signal) / rms(noise)) = snr_db."""
    scale = rms(signal) / (rms(noise) * 10 ** (snr_db / 20))
    return (signal + scale * noise).astype(np.float32)


def fit_length(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Looped when shorter than `length`, a random crop when longer."""
    if len(noise) < length:
        noise = np.tile(noise, -(-length // len(noise)))
    start = int(rng.integers(0, len(noise) - length + 1))
    return noise[start : start + length]


def hum(length: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: a 50 or 60 Hz fundamental and odd/even harmonics with decaying, random amplitudes and phases."""
    t = np.arange(length) / SAMPLING_RATE
    base = rng.choice([50.0, 60.0])
    wave = np.zeros(length)
    for k in range(1, 8):
        wave += rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
    return wave.astype(np.float32)


def simulated_rirs(count: int, rt60_range, seed: int) -> list[np.ndarray]:
    """`count` impulse responses of random shoebox rooms (pyroomacoustics' image source method), made once per run
    (a few ms each) and drawn from per example."""
    import pyroomacoustics as pra  # lazy: optional dependency

    rng = np.random.default_rng(seed)
    rirs = []
    while len(rirs) < count:
        dims = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
        rt60 = rng.uniform(*rt60_range)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # this room cannot have that RT60: draw another
            continue
        room = pra.ShoeBox(dims, fs=SAMPLING_RATE, materials=pra.Material(absorption), max_order=min(max_order, 20))
        room.add_source(rng.uniform(0.5, dims - 0.5))
        room.add_microphone(rng.uniform(0.5, dims - 0.5))
        room.compute_rir()
        rirs.append(np.asarray(room.rir[0][0], dtype=np.float32))
    return rirs


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolution with `rir` cut at its direct path (the strongest peak), kept to the clip's length: the clip's
    timing is unchanged, the tail past its end is dropped."""
    rir = rir[int(np.argmax(np.abs(rir))) :]
    wet = fftconvolve(audio, rir / (np.sqrt(np.sum(rir**2)) + 1e-12))[: len(audio)]
    return wet.astype(np.float32)


def telephone(audio: np.ndarray, codec: str) -> np.ndarray:
    """Down to 8 kHz (the band limit), a round trip through `codec`, back to 16 kHz at the same length."""
    narrow = librosa.resample(audio, orig_sr=SAMPLING_RATE, target_sr=8000, res_type="soxr_hq")
    peak = float(np.max(np.abs(narrow))) or 1.0
    buffer = io.BytesIO()
    file_format, subtype = CODECS[codec]
    sf.write(buffer, narrow / peak * 0.9, 8000, format=file_format, subtype=subtype)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    wide = librosa.resample(decoded * peak / 0.9, orig_sr=8000, target_sr=SAMPLING_RATE, res_type="soxr_hq")
    out = np.zeros(len(audio), np.float32)
    out[: min(len(wide), len(audio))] = wide[: len(audio)]
    return out


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi's speed perturbation: the clip played `factor` times faster (length / factor, pitch x factor)."""
    if factor == 1.0:
        return audio
    return librosa.resample(audio, orig_sr=SAMPLING_RATE * factor, target_sr=SAMPLING_RATE, res_type="soxr_hq")


class Augmenter:
    """Draws and applies the corruptions of one example. Built once per run in the main process (noise and RIR
    files listed and checked there, simulated rooms made there) and copied into the DataLoader workers."""

    def __init__(self, settings: dict, seed: int, skips, babble_sources: list | None = None):
        validate_augment_settings(settings)
        self.settings = settings
        self.target = settings["augment_target"]
        self.noise_files = _list_audio_files(settings["noise_dir"], "noise", skips) if settings["noise_dir"] else []
        self.babble_sources = list(babble_sources or [])
        kinds = [k for k in settings["noise_kinds"] if k != "file" or self.noise_files]
        self.noise_kinds = [k for k in kinds if k != "babble" or len(self.babble_sources) >= 3]
        if settings["rir_dir"]:
            self.rirs = [load_audio(path) for path in _list_audio_files(settings["rir_dir"], "RIR", skips)]
        else:
            self.rirs = simulated_rirs(64, settings["rt60_range"], seed) if settings["reverb_prob"] > 0 else []

        self.bad_noise = SkipCounter()  # files whose header read but whose audio fails to decode, met in workers

    def speed(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The length-changing part, applied to the clip both teacher and student hear."""
        if rng.random() < self.settings["speed_prob"]:
            return speed_perturb(audio, float(rng.choice(self.settings["speed_factors"])))
        return audio

    def corrupt(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The length-keeping corruptions, in the order the world applies them."""
        s = self.settings
        out = audio
        if rng.random() < s["pitch_prob"]:
            from audiomentations import PitchShift  # lazy: optional dependency

            with seeded_global_rngs(rng):
                shift = PitchShift(min_semitones=s["pitch_range"][0], max_semitones=s["pitch_range"][1], p=1.0)
                out = shift(out, SAMPLING_RATE)
        if self.rirs and rng.random() < s["reverb_prob"]:
            out = reverberate(out, self.rirs[int(rng.integers(len(self.rirs)))])
        if self.noise_kinds and rng.random() < s["noise_prob"]:
            out = self.add_noise(out, str(rng.choice(self.noise_kinds)), float(rng.uniform(*s["snr_range"])), rng)
        if rng.random() < s["bandlimit_prob"]:
            from audiomentations import LowPassFilter  # lazy: optional dependency

            low, high = s["bandlimit_cutoff_range"]
            with seeded_global_rngs(rng):
                out = LowPassFilter(min_cutoff_freq=low, max_cutoff_freq=high, zero_phase=True, p=1.0)(
                    out, SAMPLING_RATE
                )
        if rng.random() < s["telephone_prob"]:
            out = telephone(out, str(rng.choice(s["telephone_codecs"])))
        if rng.random() < s["clip_prob"]:
            from audiomentations import ClippingDistortion  # lazy: optional dependency

            with seeded_global_rngs(rng):
                out = ClippingDistortion(min_percentile_threshold=5, max_percentile_threshold=30, p=1.0)(
                    out, SAMPLING_RATE
                )
        return out.astype(np.float32)

    def add_noise(self, audio: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
        if kind == "color":
            from audiomentations import AddColorNoise  # lazy: optional dependency

            with seeded_global_rngs(rng):
                noisy = AddColorNoise(min_snr_db=snr_db, max_snr_db=snr_db, p=1.0)(audio, SAMPLING_RATE)
            return noisy.astype(np.float32)
        noise = self.noise_signal(kind, len(audio), rng)
        return mix_at_snr(audio, noise, snr_db) if noise is not None else audio

    def noise_signal(self, kind: str, length: int, rng: np.random.Generator) -> np.ndarray | None:

        if kind == "hum":
            return hum(length, rng)
        if kind == "file":
            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            try:
                return fit_length(load_audio(path), length, rng)
            except AudioDecodeError as err:
                if (err.reason, path) not in self.bad_noise.seen:
                    logger.warning("noise file %s does not decode (%s): not used", path, err)
                self.bad_noise.skip(f"noise {err.reason}", path, once=True)
                return None
        # babble: 3 to 6 other training utterances, each at the same level, summed
        voices = []
        talkers = min(int(rng.integers(3, 7)), len(self.babble_sources))
        for index in rng.choice(len(self.babble_sources), size=talkers, replace=False):
            try:
                voice = load_audio(self.babble_sources[int(index)].source)
            except AudioDecodeError:
                continue
            voices.append(fit_length(voice, length, rng) / rms(voice))
        return np.sum(voices, axis=0) if voices else None

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(what the teacher hears, what the student hears): same length, same timing."""
        audio = self.speed(audio, rng)
        corrupted = self.corrupt(audio, rng)
        return (corrupted if self.target == "both" else audio), corrupted


def make_augmenter(args: AugmentArguments, seed: int, utterances: list, distilling: bool) -> Augmenter | None:
    """The on-the-fly corruptions of a script's `--augment` (None without it), drawn from the run's `seed`; babble is
    made of other training utterances. Bad noise/RIR files are counted and said in the log."""
    if not args.augment:
        return None

    file_skips = SkipCounter()
    augmenter = Augmenter(args.augment_settings(), seed, file_skips, babble_sources=utterances)
    heard_by = "student" if args.augment_target == "student" else "teacher and the student"
    where = f"heard by the {heard_by}" if distilling else "training clips"
    described = describe_augmentation(args, distilling=False, noise_kinds=augmenter.noise_kinds)
    logger.info("augment (%s): %s; noise/RIR files: %s", where, described, file_skips.summary())
    return augmenter


def describe_augmentation(args: AugmentArguments, distilling: bool, noise_kinds: list[str] | None = None) -> str:
    """One line for the model card and the run's log (`noise_kinds`: the kinds in use, where some were unavailable)."""
    if not args.augment:
        return "none (clean audio only)"
    who = ""
    if distilling:
        who = (
            "the student hears corrupted clips, the teacher clean ones; "
            if args.augment_target == "student"
            else ("teacher and student hear the same corrupted clips; ")
        )
    return (
        f"{who}noise p={args.noise_prob} (SNR {args.snr_range[0]:g}-{args.snr_range[1]:g} dB: "
        f"{', '.join(noise_kinds or args.noise_kinds)}), reverberation p={args.reverb_prob} "
        f"({'measured RIRs' if args.rir_dir else 'simulated rooms'}), speed p={args.speed_prob}, pitch "
        f"p={args.pitch_prob}, low-pass p={args.bandlimit_prob} ({args.bandlimit_cutoff_range[0]:g}-"
        f"{args.bandlimit_cutoff_range[1]:g} Hz), telephone p={args.telephone_prob} "
        f"({', '.join(args.telephone_codecs)}), clipping "
        f"p={args.clip_prob}"
    )

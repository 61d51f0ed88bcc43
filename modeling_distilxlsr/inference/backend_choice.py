"""`transcribe.py --backend auto`: the fastest inference path for this model on this machine, measured once.

Which path is fastest depends on the CPU (bf16 pays only with AVX512-BF16 or AMX; ONNX int8 was faster than fp32 on
one AVX-512 CPU and slower on another), so it is not guessed: on first use, each path the folder and the machine
offer (torch fp32, torch bf16 autocast, ONNX fp32, ONNX int8) runs the same 10 s of the user's own audio, its greedy
transcripts are compared with torch fp32's, and the fastest path whose transcripts stay within the accuracy budget is
kept. The figures are cached per model files + CPU + library versions + thread count, so the next run starts at once.
"""

import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, fields

import jiwer
import numpy as np
import torch
import transformers
from huggingface_hub import snapshot_download

from ..audio.decode import AudioDecodeError, read_for_transcription
from ..cache import cache_dir
from ..errors import OptionsError
from ..models.audio_format import SAMPLING_RATE
from ..models.folder import CONFIG_FILE, ONNX_FILES, WEIGHTS_FILE
from .backends import BACKENDS, REFERENCE, candidate_backends, load_backend
from .cpu_features import describe_cpu
from .decoding import CTCDecoder
from .onnx_runtime import onnx_version

CACHE_FILE = "backend_choices.json"
MAX_CACHE_ENTRIES = 64
CALIBRATION_SECONDS = 10.0
TIMING_FILES, TIMING_SECONDS = 4, 10.0  # what `--backend auto` measures on: the first 4 files, each cut to 10 s
# The model files whose change invalidates a cached choice.
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, *ONNX_FILES.values())
# Part of the cache key: a change to how paths are measured or chosen measures again (3: every path is timed through
# its `Backend.logits`, the code the run itself executes).
SELECTION_RULE = 3


@dataclass
class BackendTiming:
    """One path's figures: median seconds for the calibration clip, and how far its greedy transcripts are from
    torch fp32's (character error rate against them), or why it could not run."""

    name: str
    seconds: float | None = None
    cer_to_fp32: float | None = None
    error: str | None = None


def cache_file() -> str:

    return os.path.join(cache_dir(), CACHE_FILE)


def cache_key(model_dir: str, device: str = "cpu", cpu: str | None = None) -> str:
    """Model (path, size and modification time of each model file) + machine (CPU model and ISA flags, threads, device)
    + library versions: a change to any of them measures again."""

    files = {}
    for name in MODEL_FILES:
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            stat = os.stat(path)
            files[name] = [stat.st_size, stat.st_mtime_ns]
    identity = {
        "model": os.path.realpath(model_dir),
        "files": files,
        "cpu": describe_cpu() if cpu is None else cpu,
        "threads": torch.get_num_threads(),
        "device": device,
        "versions": [torch.__version__, transformers.__version__, onnx_version()],
        "rule": SELECTION_RULE,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def load_cached_choice(key: str, path: str | None = None) -> dict | None:
    """The cached entry for `key`, or None. A corrupt cache file is treated as empty (it is only a cache)."""
    try:
        with open(path or cache_file(), encoding="utf-8") as f:
            entry = json.load(f).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and entry.get("choice") in BACKENDS else None


def save_choice(key: str, entry: dict, path: str | None = None) -> None:
    """Adds `entry` under `key`, keeping the newest MAX_CACHE_ENTRIES; written atomically (rename)."""
    path = path or cache_file()
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries.pop(key, None)
    entries[key] = entry
    entries = dict(list(entries.items())[-MAX_CACHE_ENTRIES:])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
    os.replace(tmp, path)


def choose_backend(timings: list[BackendTiming], max_cer_change: float = 0.01, tie: float = 0.05) -> str:
    """The fastest path whose transcripts differ from torch fp32's by at most `max_cer_change` (character error rate
    against fp32's transcripts; the reference itself always qualifies). Paths within `tie` (5%) of the fastest are
    timing noise apart on a busy machine: of those, the one closest to fp32 is kept. So the choice is never more than
    5% slower than the fastest path measured. Raises if nothing ran."""
    usable = [
        t
        for t in timings
        if t.error is None
        and t.seconds is not None
        and (t.name == REFERENCE or (t.cer_to_fp32 is not None and t.cer_to_fp32 <= max_cer_change))
    ]
    if not usable:
        problems = "; ".join(f"{t.name}: {t.error}" for t in timings) or "no candidate backend"
        raise RuntimeError(f"--backend auto: no backend could run ({problems}).")
    fastest = min(t.seconds for t in usable)
    close = [t for t in usable if t.seconds <= fastest * (1 + tie)]
    return min(close, key=lambda t: (0.0 if t.name == REFERENCE else t.cer_to_fp32, t.seconds)).name


def transcript_cer(references: list[str], hypotheses: list[str]) -> float:
    """Character error rate of `hypotheses` against `references` (the fp32 transcripts). When fp32 says nothing at
    all, any text is a full change (1.0) and none is no change."""

    reference, hypothesis = " ".join(references).strip(), " ".join(hypotheses).strip()
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return float(jiwer.cer(reference, hypothesis))


def calibration_clip(waves: list[np.ndarray], seconds: float = CALIBRATION_SECONDS) -> np.ndarray:
    """`seconds` of audio for timing: the calibration waves joined, repeated if they are shorter."""

    joined = np.concatenate(waves)
    samples = int(seconds * SAMPLING_RATE)
    return np.resize(joined, samples).astype(np.float32) if len(joined) < samples else joined[:samples]


def measure_backends(
    model_dir: str,
    waves: list[np.ndarray],
    candidates: list[str],
    device: str = "cpu",
    repeats: int = 3,
    trust_remote_code: bool = False,
) -> list[BackendTiming]:
    """Runs every candidate on `waves` (greedy transcripts, compared with the reference's) and times it on a 10 s
    clip made of them (median of `repeats` after a warm-up), each through its `Backend`: what the run executes. A
    path that fails is recorded with its error."""

    clip = calibration_clip(waves)
    references, timings = None, []
    for name in sorted(candidates, key=lambda n: n != REFERENCE):  # the reference first
        try:
            backend = load_backend(model_dir, name, device, trust_remote_code)
            greedy = CTCDecoder(backend.tokenizer)
            transcripts = [greedy(logits)["text"] for logits in backend.logits(waves)]
            backend.logits([clip])  # warm-up at the timed length
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                backend.logits([clip])
                seconds.append(time.perf_counter() - start)
        except Exception as err:  # a path that cannot run here is reported, not fatal
            timings.append(BackendTiming(name, error=f"{type(err).__name__}: {err}"))
            continue
        if name == REFERENCE:
            references = transcripts
        cer = transcript_cer(references, transcripts) if references is not None else None
        timings.append(BackendTiming(name, statistics.median(seconds), cer))
    return timings


def describe_timings(timings: list[BackendTiming], choice: str) -> str:
    rows = []
    for t in timings:
        if t.error:
            rows.append(f"  {t.name:<11} failed: {t.error}")
            continue
        cer = "reference" if t.name == REFERENCE else ("n/a" if t.cer_to_fp32 is None else f"{t.cer_to_fp32:.4f}")
        rows.append(
            f"  {t.name:<11} {t.seconds:.3f} s / {CALIBRATION_SECONDS:.0f} s audio, CER to fp32 {cer}"
            + ("  <- chosen" if t.name == choice else "")
        )
    return "\n".join(rows)


def cached_timings(cached: dict, candidates: list[str], max_cer_change: float) -> tuple[list | None, str | None]:
    """(the cached figures, None) when `cached` is a well-formed entry for these candidates and budget whose choice is
    the one its own figures give; (None, None) when it was made for other candidates or another budget; (None, why)
    when it is malformed or its choice breaks the budget (a file edited by hand, or written by another version).
    Only a cache: whatever is wrong with it is measured again, never trusted and never fatal."""
    if cached.get("max_cer_change") != max_cer_change or set(cached.get("candidates") or []) != set(candidates):
        return None, None
    known = {f.name for f in fields(BackendTiming)}
    try:
        timings = []
        for row in cached["timings"]:
            if not isinstance(row, dict) or set(row) - known:
                raise ValueError(
                    f"unexpected timing fields {sorted(set(row) - known) if isinstance(row, dict) else row!r}"
                )
            timing = BackendTiming(**row)
            for value in (timing.seconds, timing.cer_to_fp32):
                if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                    raise ValueError(f"{timing.name}: {value!r} is not a time or an error rate")
            timings.append(timing)
        expected = choose_backend(timings, max_cer_change)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        return None, f"{type(err).__name__}: {err}"
    if expected != cached["choice"]:
        return None, (
            f"it chose {cached['choice']}, but its own figures give {expected} within --max_cer_change "
            f"{max_cer_change:g}"
        )
    return timings, None


def auto_backend(
    model_dir: str,
    timing_waves,
    device: str = "cpu",
    max_cer_change: float = 0.01,
    cache_path: str | None = None,
    log=print,
    allowed: tuple[str, ...] = tuple(BACKENDS),
    trust_remote_code: bool = False,
) -> str:
    """The chosen path's name ("torch-fp32", ...): from the cache when this model and machine were measured before,
    else measured now on `timing_waves()` (called only then) and cached. Logs the choice and the figures."""
    candidates = [name for name in candidate_backends(model_dir, device) if name in allowed]
    if not candidates:
        raise RuntimeError(f"--backend auto: {model_dir} offers none of {', '.join(allowed)}.")
    if len(candidates) == 1:
        log(f"backend: {candidates[0]} (the only one this folder and machine offer)")
        return candidates[0]
    key = cache_key(model_dir, device)
    cached = load_cached_choice(key, cache_path)
    timings, problem = cached_timings(cached, candidates, max_cer_change) if cached else (None, None)
    if problem:
        where = cache_path or cache_file()
        log(f"warning: the cached --backend auto entry in {where} is not usable ({problem}): measuring again")
    if timings:
        log(
            f"backend: {cached['choice']} (measured {cached['measured']} on {cached['cpu']}; cached)\n"
            + describe_timings(timings, cached["choice"])
        )
        return cached["choice"]
    waves = timing_waves()
    if not waves:  # no file can be transcribed: nothing to measure on, and every file will report its own error
        log(f"backend: {candidates[0]} (no input file to time the others on)")
        return candidates[0]
    log(f"backend auto: timing {', '.join(candidates)} on 10 s of the input (once for this model and machine)...")
    timings = measure_backends(model_dir, waves, candidates, device, trust_remote_code=trust_remote_code)
    choice = choose_backend(timings, max_cer_change)
    entry = {
        "choice": choice,
        "candidates": candidates,
        "max_cer_change": max_cer_change,
        "timings": [asdict(t) for t in timings],
        "cpu": describe_cpu(),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }
    save_choice(key, entry, cache_path)
    log(
        f"backend: {choice} (fastest within {max_cer_change:.0%} CER of fp32's transcripts; within 5% of it, the "
        "closest to fp32)\n" + describe_timings(timings, choice)
    )
    return choice


def timing_waves(files: list[str], min_samples: int):
    """The first few files that can be transcribed, each cut to 10 s: what `--backend auto` measures on."""
    waves = []
    for path in files:
        try:
            waves.append(read_for_transcription(path, min_samples)[: int(TIMING_SECONDS * SAMPLING_RATE)])
        except AudioDecodeError:
            continue
        if len(waves) == TIMING_FILES:
            break
    return waves


def local_model_dir(model: str) -> str:
    """A local folder for `model` (a Hub id is downloaded, or found in the Hub cache): `--backend auto` keys its cache
    and finds the ONNX graphs there."""
    if os.path.isdir(model):
        return model
    try:
        return snapshot_download(model)
    except Exception as err:  # huggingface_hub raises many types for "cannot get it"
        raise OptionsError(f"cannot load {model!r}: {type(err).__name__}: {err}") from err

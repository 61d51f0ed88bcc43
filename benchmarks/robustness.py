"""Robustness of ASR models under corruptions whose *types* training never used.

    python benchmarks/robustness.py --models teacher=out/minilab/teacher student=out/asr ... [--test DIR] [--out DIR]

The test split (default: the synthetic corpus' test split: unseen sentences and voices) is corrupted once per
condition, deterministically (seeded by file), written to `OUT/conditions/<condition>/`, and every model transcribes
every condition through `transcribe.py`'s own path (the transformers ASR pipeline, greedy). CER/WER with jiwer on the
project's normalised text.

Conditions, chosen outside what `--augment` trains on (coloured noise, babble, hum, files; rooms of RT60 0.2-0.8 s;
G.711/GSM/Opus):
  tones      beeps (random pure tones switching on and off) and clicks, at 20/10/5/0 dB SNR
  narrowband noise through three narrow resonances (machine-like), at 20/10/5/0 dB
  music      synthetic music (chords of harmonic notes changing every 0.25-0.6 s), at 20/10/5/0 dB
  reverb     simulated rooms of RT60 1.0-1.6 s (longer than any training room)
  telephone  the 8 kHz channel through MP3 (a codec training does not use by default)
  lowpass    a 2 kHz low-pass channel (a muffled, cheap microphone)

Prints a table and writes OUT/robustness.json and OUT/robustness.md.
"""

import argparse
import csv
import os
import time

import numpy as np
import soundfile as sf
from harness import write_results
from render_tables import corrupted_mean, robustness_table

from modeling_distilxlsr.audio.augment import mix_at_snr, reverberate, simulated_rirs, telephone
from modeling_distilxlsr.audio.decode import load_audio
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.error_rates import error_rates

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNRS = (20, 10, 5, 0)
NOISE_TYPES = ("tones", "narrowband", "music")


def tones_and_clicks(length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / SAMPLING_RATE
    out = np.zeros(length)
    position = 0
    while position < length:  # beeps: a tone on for 0.1-0.4 s, then off
        on, off = int(rng.uniform(0.1, 0.4) * SAMPLING_RATE), int(rng.uniform(0.05, 0.3) * SAMPLING_RATE)
        freq = rng.uniform(300, 3000)
        out[position : position + on] += np.sin(2 * np.pi * freq * t[position : position + on])
        position += on + off
    for click in rng.integers(0, length, size=max(1, length // 4000)):  # clicks: 2 ms decaying impulses
        burst = rng.standard_normal(32) * np.exp(-np.arange(32) / 6) * 4
        out[click : click + 32] += burst[: length - click]
    return out.astype(np.float32)


def narrowband(length: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import iirpeak, lfilter

    white = rng.standard_normal(length)
    out = np.zeros(length)
    for center in rng.uniform(400, 4000, size=3):
        b, a = iirpeak(center, Q=30, fs=SAMPLING_RATE)
        out += lfilter(b, a, white)
    return out.astype(np.float32)


def music(length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / SAMPLING_RATE
    out = np.zeros(length)
    position = 0
    while position < length:
        span = int(rng.uniform(0.25, 0.6) * SAMPLING_RATE)
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        window = slice(position, position + span)
        envelope = np.exp(-np.arange(len(t[window])) / (0.3 * SAMPLING_RATE))
        for interval in (0, 4, 7):  # a major triad, five harmonics per note
            freq = root * 2 ** (interval / 12)
            for k in range(1, 6):
                out[window] += envelope / k * np.sin(2 * np.pi * freq * k * t[window])
        position += span
    return out.astype(np.float32)


def lowpass(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(8, 2000, fs=SAMPLING_RATE, output="sos"), audio).astype(np.float32)


NOISES = {"tones": tones_and_clicks, "narrowband": narrowband, "music": music}


def conditions() -> list[str]:
    names = ["clean"] + [f"{kind}_{snr}dB" for kind in NOISE_TYPES for snr in SNRS]
    return names + ["reverb", "telephone", "lowpass"]


def corrupt(audio: np.ndarray, condition: str, rng: np.random.Generator, rirs) -> np.ndarray:
    if condition == "clean":
        return audio
    if condition == "reverb":
        return reverberate(audio, rirs[int(rng.integers(len(rirs)))])
    if condition == "telephone":
        return telephone(audio, "mp3")
    if condition == "lowpass":
        return lowpass(audio)
    kind, snr = condition.rsplit("_", 1)
    return mix_at_snr(audio, NOISES[kind](len(audio), rng), float(snr.removesuffix("dB")))


def write_conditions(test_dir: str, out_dir: str) -> dict[str, str]:
    """Every condition's corrupted copy of the test split (with the same metadata.csv); reused when present."""
    rows = list(csv.DictReader(open(os.path.join(test_dir, "metadata.csv"), encoding="utf-8")))
    rirs = simulated_rirs(16, (1.0, 1.6), seed=12345)
    folders = {}
    for condition in conditions():
        folder = os.path.join(out_dir, "conditions", condition)
        folders[condition] = folder
        if os.path.exists(os.path.join(folder, "metadata.csv")):
            continue
        os.makedirs(folder, exist_ok=True)
        for index, row in enumerate(rows):
            rng = np.random.default_rng([index, conditions().index(condition)])
            audio = corrupt(load_audio(os.path.join(test_dir, row["file_name"])), condition, rng, rirs)
            peak = float(np.max(np.abs(audio))) or 1.0
            name = os.path.splitext(row["file_name"])[0] + ".flac"
            sf.write(os.path.join(folder, name), audio / max(peak, 1.0), SAMPLING_RATE)
        with open(os.path.join(folder, "metadata.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "transcription"])
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        "file_name": os.path.splitext(row["file_name"])[0] + ".flac",
                        "transcription": row["transcription"],
                    }
                )
    return folders


def score(model_dir: str, folder: str) -> dict:
    """CER/WER of `model_dir` on one condition folder, through transcribe.py's own path (torch fp32, greedy)."""

    from modeling_distilxlsr.audio.sources import list_audio_files
    from modeling_distilxlsr.inference.backends import load_backend
    from modeling_distilxlsr.inference.transcription import transcribe
    from modeling_distilxlsr.text.normalizer import normalize_text

    rows = list(csv.DictReader(open(os.path.join(folder, "metadata.csv"), encoding="utf-8")))
    references = {os.path.join(folder, r["file_name"]): normalize_text(r["transcription"]) for r in rows}
    backend = load_backend(model_dir, "torch-fp32")
    predictions = {}
    for path, result, error in transcribe(backend, list_audio_files([folder]), batch_size=8, chunk_length_s=None):
        if error:
            raise SystemExit(f"{path}: {error}")
        predictions[path] = result["text"]
    keys = sorted(references)
    refs, hyps = [references[k] for k in keys], [predictions[k] for k in keys]
    return error_rates(refs, hyps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="NAME=ASR_FOLDER ...")
    parser.add_argument("--test", default=None, help="Test split folder (default: the synthetic corpus' test split).")
    parser.add_argument("--out", default="out/robustness")
    args = parser.parse_args()
    if args.test is None:
        from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus

        args.test = os.path.join(ensure_corpus(default_corpus_dir()), "test")
    started = time.time()
    folders = write_conditions(args.test, args.out)
    results = {}
    for spec in args.models:
        name, _, model_dir = spec.partition("=")
        results[name] = {condition: score(model_dir, folder) for condition, folder in folders.items()}
        print(f"{name}: clean CER {results[name]['clean']['cer']:.3f}, corrupted {corrupted_mean(results[name]):.3f}")
    report = {"test": args.test, "conditions": conditions(), "results": results, "seconds": time.time() - started}
    text = robustness_table(report)
    write_results(os.path.join(args.out, "robustness.json"), report)
    with open(os.path.join(args.out, "robustness.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

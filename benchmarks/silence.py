"""What silence costs, and whether words and cues respect pauses: an ASR folder on the corpus test split, decoded
as before this change (whole files, words split only by `|`), whole with words split at pauses (`--no_vad`), and
speech region by speech region (the default), in one run.

    python benchmarks/silence.py MODEL_DIR [--clips 100] [--out benchmarks/results/silence.json]

Conditions: each clip as the corpus has it (tightly trimmed); each clip with 1 s of silence before and 2 s after
(`--floor_db`: a noise floor instead of digital zeros, as real rooms have); one long file of the clips joined by
1 s pauses, against the same clips one by one. Counted on the long file, from the corpus' own word times (espeak-ng's):
words that span a pause of 0.3 s or more, cues that span one of 0.5 s or more, cues under 5/6 s, lines over 42
characters. Also the seconds spent finding regions against the whole transcription.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
from harness import cpu_line, cpu_name, write_results
from render_tables import silence_table

from modeling_distilxlsr.audio.decode import load_audio
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.audio.vad import speech_regions
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.decoding import CTCDecoder
from modeling_distilxlsr.inference.subtitles import NETFLIX, cues_from_words, words_from_chunks
from modeling_distilxlsr.inference.transcription import transcribe
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextNormalizer

PAUSE_SECONDS = 1.0


def padded(audio: np.ndarray, before: float, after: float, floor_db: float | None, rng) -> np.ndarray:
    pad = [np.zeros(int(s * SAMPLING_RATE), np.float32) for s in (before, after)]
    out = np.concatenate([pad[0], audio, pad[1]])
    if floor_db is not None:
        out = out + (rng.standard_normal(len(out)) * 10 ** (floor_db / 20)).astype(np.float32)
    return out


def transcripts(backend, paths: list[str], vad: bool, word_pause_s: float | None = None) -> dict[str, dict]:
    pause = {} if word_pause_s is None else {"word_pause_s": word_pause_s}
    decoder = CTCDecoder(backend.tokenizer, timestamps="word", frame_seconds=backend.frame_seconds, **pause)
    return {path: result for path, result, _ in transcribe(backend, paths, decoder, vad=vad)}


def pause_checks(result: dict, pauses: list[tuple[float, float]]) -> dict:
    """On the long file: words and cues across the known pauses, and the cues' lengths."""
    words = words_from_chunks(result.get("chunks", []))
    cues = cues_from_words(words)

    def spans(start, end, limit):
        return any(start < p0 and end > p1 and p1 - p0 >= limit for p0, p1 in pauses)

    return {
        "words": len(words),
        "words_across_0.3s_pause": sum(spans(w.start, w.end, 0.3) for w in words),
        "cues": len(cues),
        "cues_across_0.5s_pause": sum(spans(c.words[0].start, c.words[-1].end, 0.5) for c in cues),
        "cues_under_min": sum(c.end - c.start < NETFLIX.min_seconds - 1e-3 for c in cues),  # to the ms
        "lines_over_42": sum(len(line) > 42 for c in cues for line in c.lines()),
        "cues_over_2_lines": sum(len(c.lines()) > 2 for c in cues),
        "cues_over_7s": sum(c.end - c.start > NETFLIX.max_seconds + 1e-6 for c in cues),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--test", help="Test folder (default: the built-in corpus' test split).")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--floor_db", type=float, default=None, help="Noise floor of the padding, dBFS.")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    test = args.test or os.path.join(ensure_corpus(default_corpus_dir(), quiet=True), "test")
    utterances = list(find_utterances(test, SkipCounter(), need_text=True))[: args.clips]
    normalizer = TextNormalizer()
    references = [normalizer(u.text) for u in utterances]
    backend = load_backend(args.model, "torch-fp32")
    rng = np.random.default_rng(0)
    report = {"cpu": cpu_name(), "model": args.model, "clips": len(utterances), "floor_db": args.floor_db}
    with tempfile.TemporaryDirectory() as tmp:
        waves = [load_audio(u.source) for u in utterances]
        sets = {"trimmed": [], "padded_1s_2s": []}
        long_parts, pauses, at = [], [], 0.0
        for i, wave in enumerate(waves):
            for name, audio in (("trimmed", wave), ("padded_1s_2s", padded(wave, 1.0, 2.0, args.floor_db, rng))):
                path = os.path.join(tmp, f"{name}_{i:04d}.wav")
                sf.write(path, audio, SAMPLING_RATE)
                sets[name].append(path)
            long_parts.append(wave)
            at += len(wave) / SAMPLING_RATE
            if i + 1 < len(waves):
                long_parts.append(padded(np.zeros(0, np.float32), PAUSE_SECONDS, 0, args.floor_db, rng))
                pauses.append((at, at + PAUSE_SECONDS))
                at += PAUSE_SECONDS
        long_path = os.path.join(tmp, "long.wav")
        long_audio = np.concatenate(long_parts)
        sf.write(long_path, long_audio, SAMPLING_RATE)
        report["long_file_seconds"] = round(len(long_audio) / SAMPLING_RATE, 1)
        # before: whole files, words split by `|` alone; --no_vad: whole files, words split at pauses; regions
        for mode, vad, word_pause_s in (("before", False, 0.0), ("whole", False, None), ("regions", True, None)):
            for name, paths in sets.items():
                started = time.perf_counter()
                results = transcripts(backend, paths, vad, word_pause_s)
                seconds = time.perf_counter() - started
                rates = error_rates(references, [results[p]["text"] for p in paths])
                report[f"{mode}/{name}"] = {**rates, "seconds": round(seconds, 2)}
                print(f"{mode:8s} {name:14s} CER {rates['cer']:.4f} WER {rates['wer']:.4f} ({seconds:.1f} s)")
            started = time.perf_counter()
            result = transcripts(backend, [long_path], vad, word_pause_s)[long_path]
            seconds = time.perf_counter() - started
            rates = error_rates([" ".join(references)], [result["text"]])
            report[f"{mode}/long_file"] = {**rates, "seconds": round(seconds, 2), **pause_checks(result, pauses)}
            print(f"{mode:8s} long file      CER {rates['cer']:.4f} WER {rates['wer']:.4f} ({seconds:.1f} s)")
            print("         ", json.dumps(pause_checks(result, pauses)))
        started = time.perf_counter()
        speech_regions(long_audio)
        report["vad_seconds_long_file"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        for wave in waves:
            speech_regions(padded(wave, 1.0, 2.0, args.floor_db, rng))
        report["vad_seconds_padded_clips"] = round(time.perf_counter() - started, 3)
    print("\n" + silence_table(report))
    print(
        cpu_line() + f"; finding regions took {report['vad_seconds_long_file']} s on the long file, "
        f"{report['vad_seconds_padded_clips']} s on the padded clips"
    )
    if args.out:
        write_results(args.out, report)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)

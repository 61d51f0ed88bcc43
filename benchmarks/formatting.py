"""What readable transcripts cost and how they read: speech regions (Silero VAD) + written numbers (NeMo ITN) +
punctuation and capitals (the shipped restorer) against the transcription itself, on 10 s clips and on a 7-minute
file; and the corpus test split end to end, its written references (cased, punctuated) against the default output.

    python benchmarks/formatting.py MODEL_DIR [--test DIR] [--clips 100] [--out benchmarks/results/formatting.json]

Timed in one run, one process, the CPU named: the transcription as `transcribe.py` runs it by default (regions,
formatted), and on the same regions' texts each formatting step alone (the grammar and the restorer loaded before the
clock starts, as a server holds them). The share is the three steps' seconds over the whole transcription's.
The main job's student is 745K parameters; beside it the same files go through the default student's shape (XLSR-53
into 2 layers, 38M, random weights: its speed does not depend on them) on ONNX int8, the fastest path `--backend auto`
has for it on these CPUs, so the share is also given against the transcription a user of the real student waits for
(the steps' seconds are the real model's: they depend on the text, not on the acoustic model). `--no_reference`
leaves that out.
"""

import argparse
import os
import sys
import tempfile
import time

import jiwer
import numpy as np
import soundfile as sf
from harness import cpu_line, cpu_name, write_results
from render_tables import formatting_table
from shapes import ctc_student_folder

from modeling_distilxlsr.audio.decode import load_audio
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.audio.vad import speech_regions
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.decoding import CTCDecoder
from modeling_distilxlsr.inference.text_format import bp_formatter
from modeling_distilxlsr.inference.transcription import transcribe
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextNormalizer
from modeling_distilxlsr.text.punctuation_scores import punctuation_scores


def joined(waves: list[np.ndarray], pause_s: float) -> np.ndarray:
    pause = np.zeros(int(pause_s * SAMPLING_RATE), np.float32)
    return np.concatenate([part for wave in waves for part in (wave, pause)][:-1])


def ten_second_files(waves: list[np.ndarray]) -> list[np.ndarray]:
    """Consecutive clips joined by 0.5 s pauses until each file reaches 10 s."""
    files, current = [], []
    for wave in waves:
        current.append(wave)
        if sum(len(w) for w in current) + 0.5 * SAMPLING_RATE * (len(current) - 1) >= 10 * SAMPLING_RATE:
            files.append(joined(current, 0.5))
            current = []
    return files


def timed_transcription(backend, paths, formatter):
    decoder = CTCDecoder(backend.tokenizer, timestamps="word", frame_seconds=backend.frame_seconds,
                         formatter=formatter)  # fmt: skip
    started = time.perf_counter()
    results = {path: result for path, result, _ in transcribe(backend, paths, decoder)}
    return results, time.perf_counter() - started


def step_seconds(audios, results, formatter) -> dict:
    """Each formatting step alone, on the regions' raw texts the transcription produced."""
    raw_texts = [s.get("raw_text", s["text"]) for r in results.values() for s in r["segments"]]
    numbers, restorer = formatter.steps[0], formatter.steps[-1]
    started = time.perf_counter()
    for audio in audios:
        speech_regions(audio)
    vad = time.perf_counter() - started
    started = time.perf_counter()
    written = [numbers(t) for t in raw_texts]
    itn = time.perf_counter() - started
    started = time.perf_counter()
    for t in written:
        restorer(t)
    punct = time.perf_counter() - started
    return {"vad_s": round(vad, 3), "itn_s": round(itn, 3), "punctuation_s": round(punct, 3),
            "regions": len(raw_texts)}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--test", help="Test folder (default: the built-in corpus' test split).")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--out")
    parser.add_argument("--no_reference", action="store_true", help="Leave out the default student's shape.")
    args = parser.parse_args(argv)
    test = args.test or os.path.join(ensure_corpus(default_corpus_dir(), quiet=True), "test")
    utterances = list(find_utterances(test, SkipCounter(), need_text=True))[: args.clips]
    backend = load_backend(args.model, "torch-fp32")
    formatter = bp_formatter(raw_text=False, log=print)
    if len(formatter.steps) < 2:
        raise SystemExit("error: the format extra (nemo-text-processing) is needed: pip install 'distilxlsr[format]'")
    formatter("vinte e cinco por cento de mil e quinhentos reais")  # the grammar and the model loaded, off the clock
    report = {"cpu": cpu_name(), "model": args.model, "clips": len(utterances)}
    waves = [load_audio(u.source) for u in utterances]
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        if not args.no_reference:
            student = ctc_student_folder(os.path.join(tmp, "default_student"))
            export_onnx(student, student, quantize="dynamic")  # distilxlsr-onnx MODEL MODEL --quantize dynamic
            reference = load_backend(student, "onnx-int8")
        sets = {"clips_10s": ten_second_files(waves), "long_file": [joined(waves, 1.0)]}
        clip_paths = []
        for i, wave in enumerate(waves):
            clip_paths.append(os.path.join(tmp, f"clip_{i:04d}.wav"))
            sf.write(clip_paths[-1], wave, SAMPLING_RATE)
        for name, audios in sets.items():
            paths = []
            for i, audio in enumerate(audios):
                paths.append(os.path.join(tmp, f"{name}_{i:04d}.wav"))
                sf.write(paths[-1], audio, SAMPLING_RATE)
            timed_transcription(backend, paths[:1], formatter)  # warm-up
            results, seconds = timed_transcription(backend, paths, formatter)
            steps = step_seconds(audios, results, formatter)
            share = (steps["vad_s"] + steps["itn_s"] + steps["punctuation_s"]) / seconds
            report[name] = {"files": len(audios), "audio_s": round(sum(map(len, audios)) / SAMPLING_RATE, 1),
                            "transcription_s": round(seconds, 2), **steps, "share": round(share, 4)}  # fmt: skip
            if reference is not None:
                timed_transcription(reference, paths[:1], formatter)  # warm-up
                _, reference_seconds = timed_transcription(reference, paths, formatter)
                report[name]["default_student_transcription_s"] = round(reference_seconds, 2)
                report[name]["default_student_share"] = round(share * seconds / reference_seconds, 4)
            print(name, report[name])
        # end to end: each test clip through the default output, against its written reference
        results, _ = timed_transcription(backend, clip_paths, formatter)
        references = [u.text for u in utterances]
        hypotheses = [results[p]["text"] for p in clip_paths]
        normalizer = TextNormalizer()
        report["corpus_test"] = {
            "written": {"cer": round(float(jiwer.cer(references, hypotheses)), 4),
                        "wer": round(float(jiwer.wer(references, hypotheses)), 4)},
            "normalised": {k: round(v, 4) for k, v in error_rates([normalizer(r) for r in references],
                                                                  [normalizer(h) for h in hypotheses]).items()},
            "punctuation": punctuation_scores(references, hypotheses),
            "examples": [{"reference": r, "output": h} for r, h in zip(references[:5], hypotheses[:5], strict=True)],
        }  # fmt: skip
    print("\n" + formatting_table(report))
    print(cpu_line())
    if args.out:
        write_results(args.out, report)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)

"""Forced alignment against espeak-ng's own word timing, and its speed against an XLSR-53-shaped model.

    python benchmarks/alignment.py [--models NAME=CTC_DIR ...] [--corpus DIR] [--out out/alignment]
                                   [--tolerance_ms 40] [--limit N] [--no_xlsr]

The synthetic corpus records where espeak-ng spoke each word (`word_times.jsonl`, from the synthesiser's own word and
phoneme events: a word runs from its start to the next word, pause or sentence end). Each model aligns the corpus'
test split (unseen sentences and voices) with `align.py`'s own code (`align_audio_file`: the transcript normalised as
the labels were, CTC Viterbi over its characters), and every word espeak-ng spoke is compared with the aligned word: the
share of words whose start and end both lie within `--tolerance_ms` of espeak-ng's, and the median errors. Words are
matched in order (difflib over the normalised words); a number, which espeak-ng reports as pieces of its own, is not
scored, and the count of unscored words is reported.

Speed: the same alignment loop (decode, forward, Viterbi) timed per model after one warm-up file, with an
XLSR-53-shaped CTC model (configs/xlsr53_config.json, random weights, the BP vocabulary: its speed does not depend on
the weights) as the baseline of the ratio, and the default 2-layer student of that shape beside it (random weights),
with each `--student_backends` path (torch fp32 eager, ONNX Runtime dynamic int8: what `--backend auto` picks here).
Default models: the shipped pt-BR teacher. The CPU is named.
"""

import argparse
import os
import statistics
import tempfile

import soundfile as sf
from harness import cpu_line, seconds_of, write_results
from shapes import ctc_student_folder, xlsr53_ctc_folder
from timed_speech import load_timed_split, match_words, timed_test_split

from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.inference.alignment import align_audio_file
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.normalizer import TextNormalizer


def word_errors(reference: list, aligned: list[dict], normalizer: TextNormalizer) -> tuple[list, int]:
    """(start error s, end error s) of every espeak-ng word whose normalised words all matched aligned words in
    order, and how many espeak-ng words were not scored."""
    matched = match_words(reference, [w["text"] for w in aligned], normalizer)
    errors = [(aligned[spans[0]]["start"] - start, aligned[spans[-1]]["end"] - end)
              for index, (_, start, end) in enumerate(reference) if (spans := matched.get(index))]  # fmt: skip
    return errors, len(reference) - len(errors)


def measure(name: str, model_dir: str, files: list[dict], normalizer: TextNormalizer, score: bool,
            backend_name: str = "torch-fp32") -> dict:  # fmt: skip
    backend = load_backend(model_dir, backend_name)
    align_audio_file(backend, normalizer, files[0]["path"], files[0]["text"], None, False)  # warm-up
    errors, unscored, failed, audio_seconds = [], 0, 0, 0.0
    rows, seconds = seconds_of(lambda: [align_audio_file(backend, normalizer, f["path"], f["text"], None, False)
                                        for f in files])  # fmt: skip
    for file, row in zip(files, rows, strict=True):
        audio_seconds += sf.info(file["path"]).duration
        if "error" in row:
            failed += 1
            continue
        file_errors, file_unscored = word_errors(file["words"], row["words"], normalizer)
        errors += file_errors
        unscored += file_unscored
    result = {"name": name, "model": model_dir, "files": len(files), "failed": failed, "seconds": seconds,
              "audio_seconds": audio_seconds, "frame_seconds": backend.frame_seconds}  # fmt: skip
    if score and errors:
        result |= {"scored_words": len(errors), "unscored_words": unscored, "errors": errors}
    return result


def within(errors: list, tolerance: float, which: slice) -> float:
    return sum(all(abs(e) <= tolerance for e in pair[which]) for pair in errors) / len(errors)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="NAME=CTC_DIR (default: the shipped teacher).")
    parser.add_argument("--corpus", help="A corpus made by this version (with word_times.jsonl); default: made.")
    parser.add_argument("--out", default="out/alignment")
    parser.add_argument("--tolerance_ms", type=float, default=40.0)
    parser.add_argument("--limit", type=int, help="Only the first N test files.")
    parser.add_argument("--no_xlsr", action="store_true", help="Leave out the speed rows (XLSR-53 and student shapes).")
    parser.add_argument("--student_backends", nargs="+", default=["torch-fp32", "onnx-int8"],
                        help="align.py --backend values timed for the default student shape.")  # fmt: skip
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    files = load_timed_split(timed_test_split(args.corpus, args.out), args.limit)
    normalizer = TextNormalizer()
    models = [m.split("=", 1) for m in (args.models or [f"shipped pt-BR teacher={shipped_teacher_dir()}"])]
    results = []
    if not args.no_xlsr:
        with tempfile.TemporaryDirectory() as folder:
            results.append(measure("XLSR-53 shape (random weights: speed only)", xlsr53_ctc_folder(folder), files,
                                   normalizer, score=False))  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            student = ctc_student_folder(folder)
            if any(name.startswith("onnx") for name in args.student_backends):
                export_onnx(student, student, quantize="dynamic")  # distilxlsr-onnx MODEL MODEL --quantize dynamic
            for backend in args.student_backends:
                results.append(measure(f"default student shape, {backend} (random weights: speed only)", student,
                                       files, normalizer, score=False, backend_name=backend))  # fmt: skip
    results += [measure(name, folder, files, normalizer, score=True) for name, folder in models]
    tolerance = args.tolerance_ms / 1000
    baseline = results[0]["seconds"] if not args.no_xlsr else None
    lines = [
        cpu_line(),
        f"test split: {len(files)} files, {results[0]['audio_seconds']:.0f} s of speech; tolerance "
        f"{args.tolerance_ms:g} ms",
        "",
        f"| model | frame | words within {args.tolerance_ms:g} ms (start and end) | start within | end within | "
        "median start error ms | median end error ms | words scored (unscored) | files failed | align s | "
        "audio s / s | speed vs XLSR-53 shape |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [r["name"], f"{r['frame_seconds'] * 1000:.0f} ms"]
        if "errors" in r:
            errors = r["errors"]
            cells += [f"{within(errors, tolerance, slice(0, 2)):.1%}", f"{within(errors, tolerance, slice(0, 1)):.1%}",
                      f"{within(errors, tolerance, slice(1, 2)):.1%}",
                      f"{statistics.median(e[0] for e in errors) * 1000:+.0f}",
                      f"{statistics.median(e[1] for e in errors) * 1000:+.0f}",
                      f"{r['scored_words']} ({r['unscored_words']})"]  # fmt: skip
        else:
            cells += ["-"] * 6
        speed = f"{baseline / r['seconds']:.1f}x" if baseline else "-"
        cells += [str(r["failed"]), f"{r['seconds']:.1f}", f"{r['audio_seconds'] / r['seconds']:.0f}", speed]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "alignment.md"), "w") as f:
        f.write(table + "\n")
    write_results(os.path.join(args.out, "alignment.json"), {"results": results, "samples_per_second": SAMPLING_RATE})


if __name__ == "__main__":
    main()

"""Greedy vs n-gram LM decoding on the mini-lab's ASR models: WER/CER on the test split and decode speed.

    python benchmarks/lm_decoding.py --asr out/minilab/student_distilled out/minilab/teacher [--corpus DIR]
                                     [--out out/lm_decoding] [--order 4] [--beam_width 32]

For each ASR folder and each LM text, a copy of the folder gets a KenLM model (`python -m modeling_distilxlsr.lm
build` + `attach`, as a user runs them), alpha/beta are tuned on the dev split (`lm tune`), and the test split is
scored greedy and with the LM. LM texts: the *train* transcripts only (test sentences stay unseen, the honest
setting); train + dev; and, as a ceiling that no real user has, train + dev + test (the test sentences leak into the
LM). RTF = (model forward + decoding) seconds per audio second on this CPU, batch 1. Writes OUT/lm_decoding.json and
OUT/lm_decoding.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from harness import cpu_line, write_results
from render_tables import lm_decoding_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LM_TEXTS = {
    "train transcripts": ("train",),
    "train + dev transcripts": ("train", "dev"),
    "train + dev + test (leaks test sentences: a ceiling)": ("train", "dev", "test"),
}


def run(args: list[str]) -> None:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asr", nargs="+", required=True, help="Fine-tuned ASR folders (e.g. the mini-lab's).")
    parser.add_argument("--corpus", default=None, help="Corpus folder (default: the cached synthetic corpus).")
    parser.add_argument("--out", default="out/lm_decoding")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--beam_width", type=int, default=32)
    args = parser.parse_args()
    from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus

    corpus = args.corpus or ensure_corpus(default_corpus_dir())
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for lm_name, splits in LM_TEXTS.items():
        lm_dir = os.path.join(args.out, "lm-" + "-".join(splits))
        texts = [os.path.join(corpus, split, "metadata.csv") for split in splits]
        run(["-m", "modeling_distilxlsr.lm", "build", *texts, "--out", lm_dir, "--order", str(args.order)])
        with open(os.path.join(lm_dir, "lm_info.json")) as f:
            info = json.load(f)
        for asr in args.asr:
            name = os.path.basename(os.path.normpath(asr))
            folder = os.path.join(args.out, f"{name}-{'-'.join(splits)}")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(asr, folder, ignore=shutil.ignore_patterns("checkpoints", "runs"))
            run(["-m", "modeling_distilxlsr.lm", "attach", folder, lm_dir])
            started = time.time()
            run(["-m", "modeling_distilxlsr.lm", "tune", folder, "--eval_data"]
                + [os.path.join(corpus, "dev"), os.path.join(corpus, "test")]
                + ["--beam_width", str(args.beam_width)])  # fmt: skip
            with open(os.path.join(folder, "lm_results.json")) as f:
                report = json.load(f)
            test = report["eval"]["test"]
            rows.append(
                {
                    "model": name,
                    "lm_text": lm_name,
                    "lm_sentences": info["sentences"],
                    "lm_vocabulary": info["vocabulary"],
                    "alpha": report["alpha"],
                    "beta": report["beta"],
                    **{f"greedy_{k}": v for k, v in test["greedy"].items()},
                    **{f"lm_{k}": v for k, v in test["lm"].items()},
                    "rtf_greedy": test["rtf_greedy"],
                    "rtf_lm": test["rtf_lm"],
                    "tune_seconds": time.time() - started,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    lines = [
        cpu_line(f"{args.order}-gram, beam width {args.beam_width}", "test split (unseen sentences and voices)"),
    ]
    table = "\n".join([*lines, "", lm_decoding_table({"rows": rows})])
    print(table)
    with open(os.path.join(args.out, "lm_decoding.md"), "w") as f:
        f.write(table + "\n")
    write_results(os.path.join(args.out, "lm_decoding.json"), {"rows": rows})


if __name__ == "__main__":
    main()

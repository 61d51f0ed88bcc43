"""Can alignment say no? The match score of each test clip aligned to its own transcript and to another clip's
(shuffled: a derangement, so no clip keeps its own), and how well the score tells the two apart (AUROC), with the
share of each that `MISMATCH_BELOW` marks.

    python benchmarks/alignment_mismatch.py MODEL_DIR [--test DIR] [--clips 100] [--out results/alignment_mismatch.json]
"""

import argparse
import os
import sys

import numpy as np
from harness import cpu_name, write_results
from render_tables import mismatch_table
from sklearn.metrics import roc_auc_score

from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.inference.alignment import MISMATCH_BELOW, align_audio_file
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.text.normalizer import TextNormalizer


def scores(backend, normalizer, pairs) -> list[float | None]:
    return [align_audio_file(backend, normalizer, path, text, None, False).get("match_score") for path, text in pairs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--test")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    test = args.test or os.path.join(ensure_corpus(default_corpus_dir(), quiet=True), "test")
    utterances = list(find_utterances(test, SkipCounter(), need_text=True))[: args.clips]
    paths, texts = [u.source for u in utterances], [u.text for u in utterances]
    shuffled = texts[1:] + texts[:1]  # each clip gets the next clip's transcript
    backend, normalizer = load_backend(args.model, "torch-fp32"), TextNormalizer()
    right = scores(backend, normalizer, zip(paths, texts, strict=True))
    wrong = scores(backend, normalizer, zip(paths, shuffled, strict=True))
    kept = [(r, w) for r, w in zip(right, wrong, strict=True) if r is not None and w is not None]
    right_kept, wrong_kept = [r for r, _ in kept], [w for _, w in kept]
    labels = [1] * len(kept) + [0] * len(kept)
    report = {
        "cpu": cpu_name(),
        "model": os.path.basename(os.path.normpath(args.model)),
        "clips": len(kept),
        "unscored": len(right) - len(kept),
        "auroc": round(float(roc_auc_score(labels, right_kept + wrong_kept)), 4),
        "threshold": MISMATCH_BELOW,
        "right_marked": round(float(np.mean([r < MISMATCH_BELOW for r in right_kept])), 4),
        "wrong_marked": round(float(np.mean([w < MISMATCH_BELOW for w in wrong_kept])), 4),
        "right_median": round(float(np.median(right_kept)), 4),
        "wrong_median": round(float(np.median(wrong_kept)), 4),
        "right_min": round(float(np.min(right_kept)), 4),
        "wrong_max": round(float(np.max(wrong_kept)), 4),
    }
    print(mismatch_table([report]))
    if args.out:
        write_results(args.out, report)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)

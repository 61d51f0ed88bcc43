"""Confidence that tells: fits the word and transcript calibrations (`inference/confidence.py`) on the corpus' dev
split and scores them on its test split, each under three conditions: clean (unseen voices and sentences),
corrupted (robustness.py's conditions, one per clip in turn: noise types and levels training never used, long
rooms, telephone, low-pass) and foreign-accented (espeak-ng's Spanish, Italian, French and English voices reading the
Portuguese sentences: speech no pt-BR model here has heard).

    python benchmarks/confidence.py MODEL_DIR [--clips 100] [--out results/confidence.json] [--plot reliability.png]
                                    [--write_calibration] [--check_lexicon /usr/share/dict/brazilian]

Reported, raw (the mean probability of a word's frames) against calibrated: AUROC of the transcript score for
utterances with CER <= 0.2 against CER >= 0.5, AUROC of word confidence for right against wrong words (jiwer's word
alignment), expected calibration error (10 bins) on the clean set and on all three. `--write_calibration` saves the
fit into MODEL_DIR/confidence.json, where transcribe.py and the server find it.
"""

import argparse
import json
import os
import sys

import jiwer
import librosa
import numpy as np
from harness import cpu_name, write_results
from robustness import conditions, corrupt
from sklearn.metrics import roc_auc_score

from modeling_distilxlsr.audio.augment import simulated_rirs
from modeling_distilxlsr.audio.decode import load_audio
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.audio.vad import speech_regions
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.confidence import (
    TRANSCRIPT_FEATURES,
    UNDERSTOOD_CER,
    WORD_FEATURES,
    ConfidenceCalibration,
    Logistic,
    transcript_features,
)
from modeling_distilxlsr.inference.decoding import CTCDecoder
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.espeak import Espeak, Voice
from modeling_distilxlsr.text.normalizer import TextNormalizer

ACCENTS = ("es", "it", "fr", "en")
SETS = ("clean", "corrupted", "foreign")


def condition_sets(split_dir: str, clips: int, seed: int) -> dict[str, list[tuple[np.ndarray, str]]]:
    """{set: [(16 kHz audio, normalised reference)]} for one split."""
    normalizer, rng = TextNormalizer(), np.random.default_rng(seed)
    rirs = simulated_rirs(8, (1.0, 1.6), seed)
    corruptions = [c for c in conditions() if c != "clean"]
    espeak = Espeak.shared()
    sets = {name: [] for name in SETS}
    for i, utterance in enumerate(list(find_utterances(split_dir, SkipCounter(), need_text=True))[:clips]):
        audio, reference = load_audio(utterance.source), normalizer(utterance.text)
        sets["clean"].append((audio, reference))
        sets["corrupted"].append((corrupt(audio, corruptions[i % len(corruptions)], rng, rirs), reference))
        voice = Voice("accent", "m3", 160, 50, 50)
        spoken = espeak.synthesize_timed(utterance.text, voice, seed=i, language=ACCENTS[i % len(ACCENTS)])[0]
        spoken = librosa.resample(spoken, orig_sr=espeak.sample_rate, target_sr=SAMPLING_RATE)
        sets["foreign"].append((spoken, reference))
    return sets


def decoded(backend, decoder, audio: np.ndarray) -> dict:
    """One utterance: its text, CER-ready words with their features and raw confidences, its transcript features."""
    words, rows, raw, sums = [], [], [], np.zeros(6)
    for region in speech_regions(audio):
        logits = backend.logits([audio[region.start : region.end]])[0]
        region_words, region_rows, region_sums = decoder.word_features(logits)
        words += region_words
        rows += region_rows
        sums = sums + region_sums
        raw += [c["confidence"] for c in decoder(logits).get("chunks", [])]
    return {"text": " ".join(words), "words": words, "rows": rows, "raw": raw, "features": transcript_features(sums)}


def right_words(reference: str, words: list[str]) -> list[bool]:
    if not words:
        return []
    right = [False] * len(words)
    for chunk in jiwer.process_words(reference or "-", " ".join(words)).alignments[0]:
        if chunk.type == "equal":
            right[chunk.hyp_start_idx : chunk.hyp_end_idx] = [True] * (chunk.hyp_end_idx - chunk.hyp_start_idx)
    return right


def scored(backend, decoder, sets) -> list[dict]:
    out = []
    for name, items in sets.items():
        for audio, reference in items:
            result = decoded(backend, decoder, audio)
            cer = min(1.0, jiwer.cer(reference, result["text"])) if result["text"] else 1.0
            out.append({"set": name, "cer": cer, "right": right_words(reference, result["words"]), **result})
    return out


def lexicon_check(dev: list[dict], test: list[dict], words_file: str) -> dict:
    """The word calibration refitted with another word list in place of the shipped lexicon (no ranks: a plain list
    such as Debian's `wbrazilian`, `/usr/share/dict/brazilian`): the shipped one read the corpus' train and dev
    sentences, this shows what a lexicon that never read the corpus gives."""
    with open(words_file, encoding="utf-8") as f:
        lexicon = {line.strip().lower() for line in f if line.strip()}
    names = tuple(n for n in WORD_FEATURES if n != "lexicon_rank")

    def rows(utterances):
        out = []
        for u in utterances:
            for w, row in zip(u["words"], u["rows"], strict=True):
                known = w in lexicon
                out.append(row | {"in_lexicon": float(known), "lexicon_chars": float(len(w)) * known})
        return out

    fit = Logistic.fit(names, rows(dev), [r for u in dev for r in u["right"]])
    confidences, right = [fit(r) for r in rows(test)], [r for u in test for r in u["right"]]
    clean = [i for i, u in enumerate(u for u in test for _ in u["words"]) if u["set"] == "clean"]
    return {"words_file": words_file, "words": len(lexicon), "word_auroc": auroc(right, confidences),
            "ece_clean": round(expected_calibration_error([confidences[i] for i in clean],
                                                          [right[i] for i in clean]), 4)}  # fmt: skip


def auroc(labels, scores) -> float | None:
    """roc_auc_score, or None when the labels hold one class only (a few clips can all be understood)."""
    return round(float(roc_auc_score(labels, scores)), 4) if len(set(labels)) == 2 else None


def expected_calibration_error(confidences, right, bins: int = 10) -> float:
    confidences, right = np.asarray(confidences), np.asarray(right, float)
    edges = np.minimum((confidences * bins).astype(int), bins - 1)
    return float(sum(abs(confidences[edges == b].mean() - right[edges == b].mean()) * (edges == b).mean()
                     for b in range(bins) if (edges == b).any()))  # fmt: skip


def reliability_plot(path: str, curves: dict[str, tuple[list, list]], bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    for label, (confidences, right) in curves.items():
        confidences, right = np.asarray(confidences), np.asarray(right, float)
        edges = np.minimum((confidences * bins).astype(int), bins - 1)
        points = [(confidences[edges == b].mean(), right[edges == b].mean()) for b in range(bins) if (edges == b).any()]
        axis.plot(*zip(*points, strict=True), "o-", label=label)
    axis.set_xlabel("word confidence")
    axis.set_ylabel("share of words right")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--corpus", help="A corpus folder with dev/ and test/ (default: the built-in corpus).")
    parser.add_argument("--clips", type=int, default=100, help="Clips per split and condition.")
    parser.add_argument("--out")
    parser.add_argument("--plot", help="The reliability diagram (PNG).")
    parser.add_argument("--write_calibration", action="store_true", help="Save the fit as MODEL/confidence.json.")
    parser.add_argument("--check_lexicon", help="Also refit with this word list (one word a line) as the lexicon.")
    args = parser.parse_args(argv)
    corpus = args.corpus or ensure_corpus(default_corpus_dir(), quiet=True)
    backend = load_backend(args.model, "torch-fp32")
    decoder = CTCDecoder(backend.tokenizer, timestamps="word", frame_seconds=backend.frame_seconds, confidence=True)
    dev = scored(backend, decoder, condition_sets(os.path.join(corpus, "dev"), args.clips, 1))
    test = scored(backend, decoder, condition_sets(os.path.join(corpus, "test"), args.clips, 2))

    dev_rows, dev_right = [row for u in dev for row in u["rows"]], [r for u in dev for r in u["right"]]
    if len(set(dev_right)) < 2 or len({u["cer"] <= UNDERSTOOD_CER for u in dev}) < 2:
        raise SystemExit("error: the dev split gave one class only (all right or all wrong): use more --clips")
    word = Logistic.fit(WORD_FEATURES, dev_rows, dev_right)
    dev_understood = [u["cer"] <= UNDERSTOOD_CER for u in dev]
    transcript = Logistic.fit(TRANSCRIPT_FEATURES, [u["features"] for u in dev], dev_understood)
    calibration = ConfidenceCalibration(word, transcript, f"{corpus} dev split, {args.clips} clips x {SETS}")

    words = [(u["set"], raw, word(row), right) for u in test for raw, row, right in
             zip(u["raw"], u["rows"], u["right"], strict=True)]  # fmt: skip
    apart = [u for u in test if u["cer"] <= UNDERSTOOD_CER or u["cer"] >= 0.5]
    labels = [u["cer"] <= UNDERSTOOD_CER for u in apart]
    clean = [w for w in words if w[0] == "clean"]
    report = {
        "cpu": cpu_name(),
        "model": os.path.basename(os.path.normpath(args.model)),
        "clips": args.clips,
        "cer": {name: round(float(np.mean([u["cer"] for u in test if u["set"] == name])), 4) for name in SETS},
        "utterances_apart": {"understood": int(sum(labels)), "not": int(len(labels) - sum(labels))},
        "transcript_auroc": auroc(labels, [transcript(u["features"]) for u in apart]),
        "transcript_auroc_raw_mean_confidence": auroc(labels, [np.mean(u["raw"]) if u["raw"] else 0.0 for u in apart]),
        "words": len(words),
        "word_auroc": auroc([w[3] for w in words], [w[2] for w in words]),
        "word_auroc_raw": auroc([w[3] for w in words], [w[1] for w in words]),
        "ece_clean": round(expected_calibration_error([w[2] for w in clean], [w[3] for w in clean]), 4),
        "ece_clean_raw": round(expected_calibration_error([w[1] for w in clean], [w[3] for w in clean]), 4),
        "ece_all": round(expected_calibration_error([w[2] for w in words], [w[3] for w in words]), 4),
        "ece_all_raw": round(expected_calibration_error([w[1] for w in words], [w[3] for w in words]), 4),
        "flagged_not_understood": {
            name: round(float(np.mean([transcript(u["features"]) < 0.5 for u in test if u["set"] == name])), 4)
            for name in SETS
        },  # fmt: skip
    }
    if args.check_lexicon:
        report["lexicon_check"] = lexicon_check(dev, test, args.check_lexicon)
    print(json.dumps(report, indent=1))
    if args.plot:
        reliability_plot(args.plot, {"raw, all": ([w[1] for w in words], [w[3] for w in words]),
                                     "calibrated, all": ([w[2] for w in words], [w[3] for w in words]),
                                     "calibrated, clean": ([w[2] for w in clean], [w[3] for w in clean])})  # fmt: skip
    if args.write_calibration:
        print(f"calibration written to {calibration.save(args.model)}")
    if args.out:
        write_results(args.out, report)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)

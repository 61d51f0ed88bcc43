"""Tunes the LM weight (alpha) and word insertion bonus (beta) of an ASR folder's language model on a dev set, stores
the best in the folder's decoder, and reports greedy vs LM WER/CER and decode speed per eval set (`lm_results.json`
and a section of the model card).

    python -m modeling_distilxlsr.lm tune ASR_DIR --eval_data DEV [TEST...] [--beam_width 32]

The model runs once per utterance; every (alpha, beta) pair only re-decodes the stored logits, so a grid of 30 costs
30 beam searches, not 30 forwards.
"""

import json
import logging
import os
import time

import numpy as np
import torch
from transformers import AutoModelForCTC, Wav2Vec2Processor

from ..audio.decode import load_audio
from ..audio.sources import SkipCounter, find_utterances
from ..inference.decoding import DEFAULT_BEAM_WIDTH, LM_INFO_FILE, LanguageModelError, has_lm, load_folder_decoder
from ..models.audio_format import SAMPLING_RATE
from ..text.error_rates import error_rates
from ..text.normalizer import TextNormalizer

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5)
DEFAULT_BETAS = (0.0, 0.5, 1.0, 2.0, 3.0)
RESULTS_FILE = "lm_results.json"
CARD_START, CARD_END = "<!-- lm-results-start -->", "<!-- lm-results-end -->"


def folder_normalizer(asr_dir: str) -> TextNormalizer:
    """The text settings the folder's labels were made with (ctc_results.json), else the LM's, else the defaults."""
    for path in (os.path.join(asr_dir, "ctc_results.json"), os.path.join(asr_dir, LM_INFO_FILE)):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            settings = data.get("text_normalizer") or data.get("normalizer")
            if settings:
                return TextNormalizer(**settings)
    return TextNormalizer()


def eval_logits(model, feature_extractor, spec: str, normalizer: TextNormalizer) -> dict:
    """Logits, normalised references and timing of every transcribed utterance of one eval set."""
    skips = SkipCounter()
    utterances = find_utterances(spec, skips, need_text=True)
    logits, references, forward_seconds, audio_seconds = [], [], 0.0, 0.0
    for utterance in utterances:
        reference = normalizer(utterance.text)
        if not reference:
            skips.skip("transcript empty after normalisation", str(utterance.source))
            continue
        audio = load_audio(utterance.source)
        inputs = feature_extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        started = time.perf_counter()
        with torch.no_grad():
            logits.append(model(inputs.input_values).logits[0].float().numpy())
        forward_seconds += time.perf_counter() - started
        references.append(reference)
        audio_seconds += len(audio) / SAMPLING_RATE
    if skips.reasons:
        logger.info("%s: %s", spec, skips.summary("utterances"))
    return {"logits": logits, "references": references, "forward": forward_seconds, "audio": audio_seconds}


def score(hypotheses: list[str], references: list[str]) -> dict:
    return error_rates(references, hypotheses)


def decode_all(decoder, logits: list[np.ndarray], beam_width: int) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = [decoder.decode(item, beam_width=beam_width) for item in logits]
    return texts, time.perf_counter() - started


def tune_lm(asr_dir: str, eval_data: list[str], beam_width: int = DEFAULT_BEAM_WIDTH, alphas=None, betas=None) -> dict:

    if not has_lm(asr_dir):
        raise LanguageModelError(f"{asr_dir} has no language model: attach one first (`lm attach`).")
    model = AutoModelForCTC.from_pretrained(asr_dir).eval()
    processor = Wav2Vec2Processor.from_pretrained(asr_dir)
    decoder = load_folder_decoder(asr_dir)
    normalizer = folder_normalizer(asr_dir)
    sets = {spec: eval_logits(model, processor.feature_extractor, spec, normalizer) for spec in eval_data}
    dev = sets[eval_data[0]]
    grid = []
    for alpha in alphas or DEFAULT_ALPHAS:
        for beta in betas or DEFAULT_BETAS:
            decoder.reset_params(alpha=alpha, beta=beta)
            texts, _ = decode_all(decoder, dev["logits"], beam_width)
            grid.append({"alpha": alpha, "beta": beta, **score(texts, dev["references"])})
            logger.info("alpha %.2f beta %.2f: dev WER %.4f CER %.4f", alpha, beta, grid[-1]["wer"], grid[-1]["cer"])
    best = min(grid, key=lambda row: (row["wer"], row["cer"]))
    decoder.reset_params(alpha=best["alpha"], beta=best["beta"])
    store_params(asr_dir, best["alpha"], best["beta"])
    report = {"beam_width": beam_width, "alpha": best["alpha"], "beta": best["beta"], "grid": grid, "eval": {}}
    for spec, data in sets.items():
        greedy_started = time.perf_counter()
        greedy = [processor.tokenizer.decode(item.argmax(-1)) for item in data["logits"]]
        greedy_seconds = time.perf_counter() - greedy_started
        beam, beam_seconds = decode_all(decoder, data["logits"], beam_width)
        audio = max(data["audio"], 1e-9)
        report["eval"][os.path.basename(os.path.normpath(spec))] = {
            "utterances": len(data["references"]),
            "greedy": score(greedy, data["references"]),
            "lm": score(beam, data["references"]),
            "rtf_greedy": (data["forward"] + greedy_seconds) / audio,
            "rtf_lm": (data["forward"] + beam_seconds) / audio,
        }
    with open(os.path.join(asr_dir, RESULTS_FILE), "w") as f:
        json.dump(report, f, indent=2)
    update_card(asr_dir, report)
    return report


def store_params(asr_dir: str, alpha: float, beta: float) -> None:
    """Writes alpha/beta into the folder's decoder (`language_model/attrs.json`, pyctcdecode's format), which
    `pipeline()` and `Wav2Vec2ProcessorWithLM.from_pretrained` read."""
    path = os.path.join(asr_dir, "language_model", "attrs.json")
    with open(path) as f:
        attrs = json.load(f)
    attrs.update(alpha=alpha, beta=beta)
    with open(path, "w") as f:
        json.dump(attrs, f)


def update_card(asr_dir: str, report: dict) -> None:
    """Adds (or replaces) the greedy vs LM table in the folder's model card."""
    path = os.path.join(asr_dir, "README.md")
    card = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    lines = [
        CARD_START,
        "## Decoding with the n-gram language model",
        "",
        f"Beam search (pyctcdecode, beam width {report['beam_width']}) with the KenLM model in `language_model/`, "
        f"alpha {report['alpha']:g} and beta {report['beta']:g} tuned on the first eval set. `pipeline()` uses it "
        "when pyctcdecode and kenlm are installed, greedy decoding otherwise.",
        "",
        "| eval set | greedy WER | LM WER | greedy CER | LM CER | RTF greedy | RTF LM |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["eval"].items():
        lines.append(
            f"| {name} | {row['greedy']['wer']:.3f} | {row['lm']['wer']:.3f} | {row['greedy']['cer']:.3f} | "
            f"{row['lm']['cer']:.3f} | {row['rtf_greedy']:.4f} | {row['rtf_lm']:.4f} |"
        )
    lines.append(CARD_END)
    section = "\n".join(lines)
    if CARD_START in card:
        before, rest = card.split(CARD_START, 1)
        card = before + section + rest.split(CARD_END, 1)[-1]
    else:
        card = card.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(card)

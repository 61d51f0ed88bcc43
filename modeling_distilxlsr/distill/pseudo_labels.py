"""Pseudo-labels: a fine-tuned CTC teacher's transcripts of unlabeled audio, as CTC targets for the student.

distil-whisper's lever (arXiv 2311.00430) for a CTC student: the teacher transcribes every training utterance once
(greedy, or beam search with the teacher folder's n-gram), each transcript gets a confidence, and those under
`min_confidence` are left out and counted. Transcribing is the costly part (a beam search per utterance, the whole
teacher per clip), so the transcripts are cached on disk, keyed by the teacher's weights and vocabulary, the
settings, and each file's path, size and modification time: a resume or a second run reads them back.

The confidence is the greedy path's: the mean, over the characters it emits, of the probability of each one's most
likely frame. A beam search gives sequence scores, not per-character probabilities, so with an LM the transcript is
the beam's and the confidence still the greedy reading's (how sure the acoustic model is of what it heard).
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from accelerate.utils import gather_object
from scipy.special import softmax

from ..audio.decode import AudioDecodeError, load_audio, normalize
from ..audio.sources import SkipCounter, Utterance
from ..cache import cache_dir
from ..errors import UserError
from ..inference.decoding import CTCDecoder, load_lm_decoder
from ..models.audio_format import SAMPLING_RATE, default_feature_extractor
from ..models.configuration_distilxlsr import cnn_output_frames
from ..text.normalizer import ctc_min_frames

logger = logging.getLogger(__name__)
PSEUDO_LABEL_MODES = ("none", "greedy", "lm")


class PseudoLabelError(UserError, ValueError):
    """Pseudo-labels cannot be made as asked (no n-gram in the teacher folder for `lm`)."""


@dataclass(frozen=True)
class PseudoLabel:
    text: str
    confidence: float


def greedy_confidence(logits: np.ndarray, blank_id: int) -> float:
    """Mean, over the characters the greedy path emits (a run of one non-blank label is one character), of the
    highest probability that label reaches in its run. 0 when the teacher emits nothing."""
    probs = softmax(logits, axis=-1)
    ids, best = probs.argmax(-1), probs.max(-1)
    scores, run_best, previous = [], 0.0, None
    for label, p in zip(ids.tolist(), best.tolist(), strict=True):
        if label != previous and previous is not None and previous != blank_id:
            scores.append(run_best)
        run_best = p if label != previous else max(run_best, p)
        previous = label
    if previous is not None and previous != blank_id:
        scores.append(run_best)
    return float(np.mean(scores)) if scores else 0.0


def teacher_digest(teacher, tokenizer) -> str:
    """SHA-256 of the teacher's weights (every tensor, in name order) and its vocabulary: the same teacher under any
    path or Hub revision gives the same key, a retrained one another."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return digest.hexdigest()[:24]


def file_key(utterance: Utterance) -> str:
    """Path, size and modification time of a file (a rewritten file is labelled again); in-memory clips by their
    bytes' digest."""
    if isinstance(utterance.source, bytes):
        return "bytes:" + hashlib.sha256(utterance.source).hexdigest()
    stat = os.stat(utterance.source)
    return f"{os.path.abspath(utterance.source)}|{stat.st_size}|{stat.st_mtime_ns}"


class PseudoLabelCache:
    """One JSON-lines file per (teacher, settings): `{"key", "text", "confidence"}` rows, appended as labelled. A
    torn last line (a run killed mid-write) is ignored and relabelled."""

    def __init__(self, teacher_key: str, settings: dict, folder: str | None = None):
        settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        self.folder = folder or os.path.join(cache_dir(), "pseudo_labels")
        self.path = os.path.join(self.folder, f"{teacher_key}-{settings_key}.jsonl")
        self.labels: dict[str, PseudoLabel] = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self.labels[row["key"]] = PseudoLabel(row["text"], float(row["confidence"]))
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue

    def add(self, new: dict[str, PseudoLabel]) -> None:
        os.makedirs(self.folder, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for key, label in new.items():
                f.write(json.dumps({"key": key, "text": label.text, "confidence": label.confidence}) + "\n")
        self.labels.update(new)


@torch.no_grad()
def transcribe_with_teacher(teacher, tokenizer, utterances: list[Utterance], decoder: CTCDecoder, device,
                            batch_size: int = 8) -> dict[str, PseudoLabel]:  # fmt: skip
    """Teacher transcripts of whole utterances, batched by length; a file that fails to decode gets no label (the
    data loader counts it when it meets it)."""
    labels = {}
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].num_samples)
    for start in range(0, len(order), batch_size):
        batch, waves = [], []
        for index in order[start : start + batch_size]:
            try:
                waves.append(normalize(load_audio(utterances[index].source)))
                batch.append(utterances[index])
            except AudioDecodeError:
                continue
        if not waves:
            continue
        inputs = default_feature_extractor().pad(
            {"input_values": waves}, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        logits = teacher(**inputs.to(device)).logits.float().cpu().numpy()
        for row, utterance in enumerate(batch):
            frames = cnn_output_frames(teacher.config, len(waves[row]))
            item_logits = logits[row, :frames]
            text = decoder(item_logits)["text"].strip()
            labels[file_key(utterance)] = PseudoLabel(text, greedy_confidence(item_logits, tokenizer.pad_token_id))
    return labels


def label_decoder(mode: str, tokenizer, teacher_dir: str) -> CTCDecoder:
    if mode == "lm":
        if not os.path.isdir(os.path.join(teacher_dir, "language_model")):
            raise PseudoLabelError(
                f"--pseudo_labels lm decodes with the teacher folder's n-gram, and {teacher_dir} holds none "
                "(no language_model/): attach one with `distilxlsr-lm attach`, or use --pseudo_labels greedy."
            )
        return CTCDecoder(tokenizer, lm=load_lm_decoder(model_dir=teacher_dir))
    return CTCDecoder(tokenizer)


def pseudo_labelled(utterances: list[Utterance], cache: PseudoLabelCache, min_confidence: float, config,
                    tokenizer, skips: SkipCounter, max_samples: int | None) -> list[Utterance]:  # fmt: skip
    """The utterances with their pseudo-label as text; left out and counted, each with its reason: no label (the
    file failed to decode), an empty transcript, a confidence under `min_confidence`, a clip longer than
    `max_samples` (a transcript covers the whole clip, so it cannot be cropped), a clip too short for its transcript.
    """
    kept = []
    for utterance in utterances:
        label = cache.labels.get(file_key(utterance))
        if label is None:
            skips.skip("pseudo-label: file failed to decode", utterance.name)
        elif not label.text:
            skips.skip("pseudo-label: empty (the teacher heard no speech)", utterance.name)
        elif label.confidence < min_confidence:
            skips.skip(f"pseudo-label: confidence under {min_confidence:g}", utterance.name, f"{label.confidence:.3f}")
        elif max_samples and utterance.num_samples > max_samples:
            skips.skip(
                f"pseudo-label: longer than {max_samples / SAMPLING_RATE:g} s (--max_audio_samples)",
                utterance.name,
                f"{utterance.seconds:.1f} s",
            )
        elif cnn_output_frames(config, utterance.num_samples) < ctc_min_frames(tokenizer(label.text).input_ids):
            skips.skip("pseudo-label: too short for its transcript", utterance.name)
        else:
            kept.append(Utterance(utterance.source, utterance.num_samples, label.text, utterance.speaker,
                                  utterance.name))  # fmt: skip
    return kept


def label_missing(accelerator, cache: PseudoLabelCache, teacher, tokenizer, utterances: list[Utterance],
                  decoder: CTCDecoder, batch_size: int) -> int:  # fmt: skip
    """Transcribes the utterances the cache lacks, each rank its share, and gathers every rank's labels into the
    cache (the main process writes it). Returns how many were labelled now."""
    missing = [u for u in utterances if file_key(u) not in cache.labels]
    mine = missing[accelerator.process_index :: accelerator.num_processes]
    labels = transcribe_with_teacher(teacher, tokenizer, mine, decoder, accelerator.device, batch_size)
    gathered = gather_object([labels]) if accelerator.num_processes > 1 else [labels]
    new = {key: label for part in gathered for key, label in part.items()}
    if accelerator.is_main_process and new:
        cache.add(new)
    else:
        cache.labels.update(new)
    accelerator.wait_for_everyone()
    return len(missing)

"""Labelled clips for utterance classification: where labels come from, which classes there are, and batches.

Labels come from a column of a manifest (a folder's metadata.csv, or a CSV/TSV/JSONL file; `--label_column`), or,
for a folder without metadata.csv, from class sub-folders (the `audiofolder` convention: `train/sim/a.wav` is a
"sim"). Problems are found before training: an empty label is a counted skip; a class with no training example, or
an eval label training never saw, is a clear error (the model could never predict it, and its scores would be
meaningless).
"""

import os
from collections import Counter

import numpy as np
import torch

from ..audio.dataset import AudioCollator
from ..audio.sources import (
    PATH_COLUMNS,
    ManifestError,
    SkipCounter,
    Utterance,
    count_unlisted_files,
    read_manifest_rows,
    resolve_manifest_path,
    scan_audio_folder,
    usable_utterances,
)
from ..models.audio_format import SAMPLING_RATE


def labelled_entries(spec: str, label_column: str = "label") -> list[tuple[str, str | None, None]]:
    """(path, label, None) of every clip of a manifest or folder, before any audio is opened."""
    manifest = os.path.join(spec, "metadata.csv") if os.path.isdir(spec) else spec
    if os.path.isfile(manifest):
        rows = read_manifest_rows(manifest)
        if not rows:
            return []
        path_column = next((c for c in PATH_COLUMNS if c in rows[0]), None)
        if path_column is None or label_column not in rows[0]:
            raise ManifestError(
                f"{manifest}: needs an audio path column ({', '.join(PATH_COLUMNS)}) and a {label_column!r} column "
                f"(--label_column); got {list(rows[0])}."
            )
        folder = os.path.dirname(os.path.abspath(manifest))
        return [
            (resolve_manifest_path(folder, row[path_column]), (row[label_column] or "").strip(), None) for row in rows
        ]
    if not os.path.isdir(spec):
        raise ManifestError(f"{spec!r} is neither a folder of class sub-folders nor a manifest file.")
    entries = []
    for path in scan_audio_folder(spec):
        relative = os.path.relpath(os.path.dirname(path), spec)
        label = "" if relative == "." else relative.split(os.sep)[0]  # a file outside any class folder: no label
        entries.append((path, label, None))
    return entries


def find_labelled_clips(
    spec: str, skips: SkipCounter, label_column: str = "label", max_samples: int | None = None
) -> list[Utterance]:
    """The usable clips of `spec`, label in `Utterance.text`; empty labels, unreadable or too long clips counted."""
    entries = labelled_entries(spec, label_column)
    count_unlisted_files(spec, entries, skips)  # a folder's audio its metadata.csv leaves out: counted, not lost
    labelled = []
    for path, label, speaker in entries:
        if label:
            labelled.append((path, label, speaker))
        else:
            skips.total += 1
            skips.skip("empty label", path)
    kept = []
    for clip in usable_utterances(labelled, skips):
        if max_samples and clip.num_samples > max_samples:
            skips.skip(f"longer than {max_samples / SAMPLING_RATE:g} s", clip.name, f"{clip.seconds:.1f} s")
        else:
            kept.append(clip)
    return kept


def class_names(train: list[Utterance], eval_sets: dict[str, list[Utterance]], wanted: list[str] | None = None):
    """The classes, sorted (or `wanted`, in its order), checked: every class has training examples, every eval
    label is a class."""
    counts = Counter(u.text for u in train)
    every_label = set(counts) | {u.text for clips in eval_sets.values() for u in clips} | set(wanted or [])
    by_folded = {}
    for label in sorted(every_label):
        by_folded.setdefault(" ".join(label.split()).casefold(), []).append(label)
    clashes = [variants for variants in by_folded.values() if len(variants) > 1]
    if clashes:  # "Sim" and "sim" as two classes: a model taught to tell apart what no one meant to separate
        raise ValueError(
            f"Labels that differ only in case or spacing: {clashes}. Write each class one way in the data (or "
            "name the classes with --labels after making them agree)."
        )
    names = list(wanted) if wanted else sorted(counts)
    if len(names) < 2:
        raise ValueError(f"Classification needs at least 2 classes; the training data has {sorted(counts)}.")
    empty = [name for name in names if counts[name] == 0]
    if empty:
        raise ValueError(f"Class(es) {empty} have no training example; training examples per class: {dict(counts)}.")
    extra = sorted(set(counts) - set(names))
    if extra:
        raise ValueError(f"Training labels {extra} are not in --labels {names}.")
    for source, clips in eval_sets.items():
        unseen = Counter(u.text for u in clips if u.text not in counts)
        if unseen:
            raise ValueError(
                f"{source}: label(s) {dict(unseen)} never appear in the training data (classes: {names}); the model "
                "could never predict them. Remove those clips or add training examples."
            )
    return names


def balanced_class_weights(train: list[Utterance], names: list[str]) -> torch.Tensor:
    """n / (classes x count of the class), scikit-learn's "balanced": each class weighs the same in the loss."""
    counts = Counter(u.text for u in train)
    return torch.tensor([len(train) / (len(names) * counts[name]) for name in names], dtype=torch.float32)


class ClassificationCollator(AudioCollator):
    """Pads audio (with attention mask) and turns labels into class ids."""

    def __init__(self, label2id: dict[str, int], feature_extractor=None):
        super().__init__(feature_extractor)
        self.label2id = label2id

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__(items)
        labels = [self.label2id[item["text"]] for item in items if "skip" not in item]
        if labels:
            batch["labels"] = torch.tensor(labels)
        return batch

    def stand_in(self, num_samples: int = SAMPLING_RATE) -> dict:

        first = next(iter(self.label2id))
        return self([{"input_values": np.zeros(num_samples, np.float32), "text": first, "name": "stand-in"}])

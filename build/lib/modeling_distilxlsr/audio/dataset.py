"""Audio data shared by distillation and fine-tuning: decode the utterances `sources.py` found to 16 kHz mono float,
normalise, crop (and corrupt, with `augment.py`), and batch by length, with every clip that fails to decode counted
rather than crashing.

`ctc_data.py` turns utterances into CTC training examples, `classification_data.py` into labelled clips.

Decoding is done with soundfile + librosa rather than `datasets.Audio`, whose decoder (torchcodec) does not load with
every torch build; lengths come from headers (`soundfile.info`) so filtering and length grouping never decode audio.
"""

import numpy as np
import torch
from transformers import Wav2Vec2FeatureExtractor

from ..models.audio_format import SAMPLING_RATE, default_feature_extractor
from ..transformers_internals import get_length_grouped_indices
from .decode import AudioDecodeError, load_audio, normalize
from .sources import Utterance

# A clip whose samples, once its mean (DC offset) is removed, have a standard deviation below this (-80 dBFS) holds
# no speech: all-zero and DC-only clips are skipped and counted as "silent or DC only" rather than trained on.
SILENCE_STD = 1e-4


def decode_item(
    utterance: Utterance,
    max_samples: int | None,
    random_crop: bool,
    rng: np.random.Generator,
    augmenter=None,
    paired: bool = False,
) -> dict:
    """A training item: decoded, cropped to `max_samples` (at random or from the start), normalised; or
    `{"skip": reason, "name": ...}` when the file fails to decode or is silent (`SILENCE_STD`), for the collator to
    report. With an `augmenter` (augment.py), corrupted on the fly from `rng`: `paired` (distillation) keeps what the
    teacher hears as `input_values` and adds what the student hears as `student_input_values`; otherwise the
    corrupted clip replaces the clean one."""
    try:
        audio = load_audio(utterance.source)
    except AudioDecodeError as err:
        return {"skip": err.reason, "name": utterance.name}
    if np.std(audio) < SILENCE_STD:  # the whole clip, before any crop
        return {"skip": "silent or DC only", "name": utterance.name}
    if max_samples and len(audio) > max_samples:
        start = int(rng.integers(0, len(audio) - max_samples + 1)) if random_crop else 0
        audio = audio[start : start + max_samples]
    if augmenter is None:
        item = {"input_values": normalize(audio)}
    else:
        teacher_audio, student_audio = augmenter(audio, rng)
        item = {"input_values": normalize(teacher_audio if paired else student_audio)}
        if paired:
            item["student_input_values"] = normalize(student_audio)
    if utterance.text is not None:
        item["text"] = utterance.text
    return item


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one example in one epoch (crop and corruptions): the same in every run with `seed`,
    resumed or not, whichever worker decodes it."""
    return np.random.default_rng([seed, epoch, index])


class AudioDataset(torch.utils.data.Dataset):
    """Decoded, cropped, normalised (and, with an `augmenter`, corrupted) utterances. A file that fails to decode
    yields `{"skip": reason}` instead of raising, so one bad file never kills a run; the collator drops it and
    reports the reason. Keys are indices, or `(index, epoch)` pairs from `LengthGroupedSampler`, which seed the
    example's random stream (`example_rng`)."""

    def __init__(
        self,
        utterances: list[Utterance],
        max_samples: int | None = None,
        random_crop: bool = True,
        augmenter=None,
        seed: int = 0,
        paired: bool = False,
    ):
        self.utterances = utterances
        self.max_samples = max_samples
        self.random_crop = random_crop
        self.augmenter, self.seed, self.paired = augmenter, seed, paired

    def __len__(self):
        return len(self.utterances)

    @property
    def lengths(self) -> list[int]:
        return [min(u.num_samples, self.max_samples or u.num_samples) for u in self.utterances]

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = example_rng(self.seed, epoch, index)
        return decode_item(self.utterances[index], self.max_samples, self.random_crop, rng, self.augmenter, self.paired)


class LengthGroupedSampler(torch.utils.data.Sampler):
    """transformers' length grouping (random mega-batches sorted by length, so a batch holds similar lengths and
    little padding), reshuffled per epoch from `seed` so that every DDP rank draws the same order."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        """(index, epoch) keys: the epoch reaches the dataset in the workers (persistent workers keep a copy made
        at the first epoch, so an attribute set later would not), and seeds each example's random stream."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        return iter([(index, self.epoch) for index in indices])


class AudioCollator:
    """Pads a batch with the feature extractor (attention mask included) and passes on what was skipped."""

    def __init__(self, feature_extractor: Wav2Vec2FeatureExtractor | None = None):
        self.feature_extractor = feature_extractor or default_feature_extractor()

    def __call__(self, items: list[dict]) -> dict:
        good = [item for item in items if "skip" not in item]
        batch = {"skipped": [(item["skip"], item["name"]) for item in items if "skip" in item], "num_items": len(items)}
        if good:
            batch.update(
                self.feature_extractor.pad(
                    {"input_values": [item["input_values"] for item in good]},
                    padding=True,
                    return_attention_mask=True,
                    return_tensors="pt",
                )
            )
            batch["attention_mask"] = batch["attention_mask"].long()
            if "student_input_values" in good[0]:  # same lengths as input_values: same mask
                batch["student_input_values"] = self.feature_extractor.pad(
                    {"input_values": [item["student_input_values"] for item in good]},
                    padding=True,
                    return_tensors="pt",
                )["input_values"]
        return batch

    def stand_in(self, num_samples: int = SAMPLING_RATE) -> dict:
        """The batch for a step whose clips all failed to decode: one silent clip (with a one-letter transcript for a
        CTC collator). Run with zero loss weight, it keeps DDP ranks in step: every rank must run forward and
        backward at every step, or the gradient all-reduce hangs. One second long, so that SpecAugment's time masks
        (10 frames by default) fit in it."""
        return self([{"input_values": np.zeros(num_samples, np.float32), "text": "a", "name": "stand-in"}])


def split_eval(utterances: list[Utterance], fraction: float, seed: int) -> tuple[list, list]:
    """A held-out fraction of `utterances` (at least one, and one left for training), drawn with `seed`."""
    order = np.random.default_rng(seed).permutation(len(utterances))
    n_eval = min(max(1, round(fraction * len(utterances))), len(utterances) - 1)
    if n_eval < 1:
        raise ValueError("Need at least 2 utterances to hold one out for evaluation; pass --eval_data.")
    eval_ids = set(order[:n_eval].tolist())
    train = [u for i, u in enumerate(utterances) if i not in eval_ids]
    held_out = [u for i, u in enumerate(utterances) if i in eval_ids]
    return train, held_out


def make_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, collator, num_workers: int = 0, shuffle_seed: int | None = None
):
    """A DataLoader over `dataset`: length-grouped and reshuffled per epoch when `shuffle_seed` is given (training),
    in order otherwise (evaluation). A `StreamingAudioDataset` orders itself."""
    sampler = LengthGroupedSampler(dataset.lengths, batch_size, seed=shuffle_seed) if shuffle_seed is not None else None
    # A generator of its own: a DataLoader draws a seed from its generator each time an iterator starts (every
    # evaluation, every epoch, the restart after a resume); drawn from the global RNG, that shifted the dropout
    # masks of every later step, and a resumed run drifted from the run it continues.
    generator = torch.Generator().manual_seed(shuffle_seed or 0)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
    )

"""Distillation's data: train and eval loaders of untranscribed audio (a listed folder, manifest or dataset, or a
stream each rank reads its own part of), and the teacher's pseudo-labels for them when the run asks for some."""

import logging
from dataclasses import replace

from ..audio.augment import make_augmenter
from ..audio.dataset import AudioCollator, AudioDataset, make_loader, split_eval
from ..audio.sources import NoUsableAudioError, find_utterances
from ..audio.streaming import StreamingAudioDataset, open_audio_stream
from ..corpus.synthesis import default_corpus_split
from ..distill.pseudo_labels import PseudoLabelCache, label_decoder, label_missing, pseudo_labelled, teacher_digest
from ..errors import OptionsError
from .ctc_data import CTCCollator

logger = logging.getLogger(__name__)


def build_distill_loaders(run, augment, distill, min_samples: int, accelerator, skips, with_pseudo_labels):
    """Train and eval loaders, lengths from headers (unreadable/empty/too-short files counted and left out): a listed
    folder/manifest/dataset, or with --streaming a stream each rank reads its own part of. Transcripts the data may
    carry are never used: the training utterances get the teacher's pseudo-labels (`with_pseudo_labels`, which also
    leaves some out) or none. Returns (train loader, eval loader, collator)."""
    train_source = distill.train_data or default_corpus_split("train", accelerator)
    collator = AudioCollator() if with_pseudo_labels is None else CTCCollator(with_pseudo_labels.processor)
    loader_options = dict(batch_size=run.per_device_batch_size, collator=collator, num_workers=run.num_workers)
    eval_utterances = None
    if distill.eval_data:
        eval_utterances = find_utterances(distill.eval_data, skips, min_samples=min_samples)
    if distill.streaming:
        if with_pseudo_labels is not None:
            raise OptionsError(
                "--pseudo_labels labels a listed corpus once (cached): drop --streaming, or use only "
                "--logit_loss_weight, which needs no labels."
            )
        stream, held_out, audio_column, text_column = open_audio_stream(
            train_source,
            accelerator.process_index,
            accelerator.num_processes,
            run.seed,
            distill.shuffle_buffer,
            0 if distill.eval_data else distill.streaming_eval_examples,
            skips,
        )
        eval_utterances = eval_utterances or held_out
        if not eval_utterances:
            raise NoUsableAudioError(
                f"No usable held-out audio in the first examples of {train_source!r}: pass --eval_data."
            )
        train_dataset = StreamingAudioDataset(
            stream,
            audio_column,
            text_column,
            batch_size=run.per_device_batch_size,
            max_samples=distill.max_audio_samples,
            min_samples=min_samples,
            sort_buffer=32 * run.per_device_batch_size,
            augmenter=make_augmenter(augment, run.seed, [], distilling=True),  # no babble: nothing listed up front
            seed=run.seed,
        )
        # One worker per shard at most (an idle worker would break the batch order resuming relies on).
        train_loader = make_loader(
            train_dataset, **{**loader_options, "num_workers": min(run.num_workers, stream.num_shards)}
        )
        logger.info(
            "train: streaming %s (%d shards on this rank), held out: %d",
            train_source,
            stream.num_shards,
            len(eval_utterances),
        )
    else:
        utterances = find_utterances(train_source, skips, min_samples=min_samples)
        if eval_utterances is None:
            utterances, eval_utterances = split_eval(utterances, distill.eval_fraction, run.seed)
        utterances = [replace(u, text=None) for u in utterances]  # distillation learns from no transcript
        if with_pseudo_labels is not None:
            utterances = with_pseudo_labels(utterances, distill.max_audio_samples)
        logger.info(
            "train: %d utterances (%.2f h), held out: %d",
            len(utterances),
            sum(u.seconds for u in utterances) / 3600,
            len(eval_utterances),
        )
        augmenter = make_augmenter(augment, run.seed, utterances, distilling=True)
        train_dataset = AudioDataset(
            utterances, distill.max_audio_samples, random_crop=True, augmenter=augmenter, seed=run.seed, paired=True
        )
        train_loader = make_loader(train_dataset, shuffle_seed=run.seed, **loader_options)
    eval_loader = make_loader(
        AudioDataset(eval_utterances, max_samples=distill.max_audio_samples, random_crop=False),
        **{**loader_options, "collator": AudioCollator()},
    )
    return train_loader, eval_loader, collator


class TeacherPseudoLabels:
    """Gives training utterances the teacher's transcripts (`distill/pseudo_labels.py`): the cached ones read back,
    the rest transcribed (each rank its share), those unfit left out and counted in `skips`."""

    def __init__(self, distill, ctc_teacher, processor, accelerator, skips, batch_size: int):
        self.distill, self.teacher, self.processor = distill, ctc_teacher, processor
        self.accelerator, self.skips, self.batch_size = accelerator, skips, batch_size

    def __call__(self, utterances: list, max_samples: int) -> list:
        tokenizer = self.processor.tokenizer
        decoder = label_decoder(self.distill.pseudo_labels, tokenizer, self.distill.teacher)
        settings = {"mode": self.distill.pseudo_labels, "decoder": type(decoder.lm).__name__}
        cache = PseudoLabelCache(teacher_digest(self.teacher, tokenizer), settings)
        labelled_now = label_missing(self.accelerator, cache, self.teacher, tokenizer, utterances, decoder,
                                     self.batch_size)  # fmt: skip
        kept = pseudo_labelled(utterances, cache, self.distill.min_pseudo_confidence, self.teacher.config,
                               tokenizer, self.skips, max_samples)  # fmt: skip
        logger.info(
            "pseudo-labels (%s): %d of %d utterances kept; %d transcribed now, %d read from %s",
            self.distill.pseudo_labels,
            len(kept),
            len(utterances),
            labelled_now,
            len(utterances) - labelled_now,
            cache.path,
        )
        if not kept:
            raise NoUsableAudioError(f"No pseudo-label passed the filters ({self.skips.summary()}).")
        return kept

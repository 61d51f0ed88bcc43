"""Semi-supervised CTC fine-tuning: a frozen fine-tuned CTC teacher whose posteriors the model learns on
untranscribed audio (KL on every real frame), mixed with CTC on the transcripts."""

import logging
from dataclasses import replace

import torch

from ..audio.augment import make_augmenter
from ..audio.dataset import AudioCollator, AudioDataset, make_loader
from ..audio.sources import find_utterances
from ..distill.losses import logit_distillation_loss
from ..distill.teacher import check_same_vocabulary, load_teacher, load_teacher_processor
from ..errors import OptionsError
from ..models.audio_format import SAMPLING_RATE
from ..models.configuration_distilxlsr import cnn_receptive_field
from ..models.modeling_distilxlsr_parts import frame_attention_mask

logger = logging.getLogger(__name__)


def prepare_teacher_and_unlabeled(run, augment, finetune, processor, model, skips):
    """Semi-supervised fine-tuning's two extras: the frozen CTC teacher (its vocabulary checked against the model's
    tokenizer: refused, naming the differing characters) and a loader of unlabeled audio, transcripts dropped, that
    with --augment gives the teacher the clean clip and the model the corrupted one. Returns (teacher, loader)."""
    if not finetune.unlabeled_data:
        raise OptionsError("--teacher learns from untranscribed audio: give it with --unlabeled_data.")
    if finetune.target != "characters":
        raise OptionsError("--teacher distils a character CTC teacher; it does not combine with --target phonemes.")
    teacher = load_teacher(finetune.teacher, ctc_head=True)
    teacher_processor = load_teacher_processor(finetune.teacher, teacher.config)
    check_same_vocabulary(processor.tokenizer, teacher_processor.tokenizer, "The model's tokenizer")
    utterances = find_utterances(finetune.unlabeled_data, skips, min_samples=cnn_receptive_field(model.config))
    utterances = [replace(u, text=None) for u in utterances]
    augmenter = make_augmenter(augment, run.seed + 1, utterances, distilling=True)
    max_samples = int(finetune.max_audio_seconds * SAMPLING_RATE)
    dataset = AudioDataset(utterances, max_samples, random_crop=True, augmenter=augmenter, seed=run.seed + 1,
                           paired=True)  # fmt: skip
    batch_size = run.per_device_batch_size
    loader = make_loader(dataset, batch_size, AudioCollator(), run.num_workers, shuffle_seed=dataset.seed)
    logger.info(
        "semi-supervised: teacher %s, %d unlabeled utterances (%.2f h), %d KD batch(es) per step, weight %g, T=%g",
        finetune.teacher,
        len(utterances),
        sum(u.seconds for u in utterances) / 3600,
        finetune.unlabeled_batches_per_step,
        finetune.logit_loss_weight,
        finetune.logit_temperature,
    )
    return teacher, loader


def endless_batches(loader):
    """The unlabeled loader, epoch after epoch (reshuffled). A resume restarts it at an epoch's beginning: its order
    is not part of the checkpoint, the labelled loader's is."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def unlabeled_kd_loss(model, teacher, batches, finetune, accelerator, skips) -> torch.Tensor:
    """The mean KL, over `unlabeled_batches_per_step` unlabeled batches, between the teacher's posteriors on the
    clean clip and the model's on what it hears (the corrupted clip with --augment), real frames only. A batch
    whose clips all failed to decode adds nothing (and its skips are counted)."""
    total, used = None, 0
    for _ in range(finetune.unlabeled_batches_per_step):
        batch = next(batches)
        for reason, name in batch["skipped"]:
            skips.skip(reason, name, once=True)
        if "input_values" not in batch:
            continue
        with torch.no_grad():
            teacher_logits = teacher(batch["input_values"], attention_mask=batch["attention_mask"]).logits
        with accelerator.autocast():
            student_logits = model(
                batch.get("student_input_values", batch["input_values"]), attention_mask=batch["attention_mask"]
            ).logits
        config = accelerator.unwrap_model(model).config
        mask = frame_attention_mask(config, batch["attention_mask"], student_logits.shape[1])
        kl = logit_distillation_loss(student_logits, teacher_logits, mask, finetune.logit_temperature)
        total, used = (kl if total is None else total + kl), used + 1
    if total is None:
        return torch.zeros((), device=accelerator.device)
    return total / used

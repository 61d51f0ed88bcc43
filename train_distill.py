"""Distil a wav2vec2-family teacher (XLSR-53 by default) into a DistilXLSR student on unlabeled audio.

    accelerate launch train_distill.py --teacher facebook/wav2vec2-large-xlsr-53 --train_data DATA --output_dir out/
    accelerate launch train_distill.py configs/xlsr53_bp.yaml

DistilHuBERT (arXiv 2110.01900) as in s3prl, with three differences: padded frames are left out of the loss, the
teacher runs only up to the deepest predicted layer, and pre-LN teachers get layer-normalised targets (DistilXLSR).
One loop, top to bottom, in the manner of accelerate's examples; the pieces it calls live in `modeling_distilxlsr/`.
"""

import logging
import os
import time
from dataclasses import dataclass, field, replace

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm
from transformers import pipeline

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForCTC, DistilXLSRForDistillation
from modeling_distilxlsr.audio.augment import AugmentArguments, describe_augmentation, make_augmenter
from modeling_distilxlsr.audio.dataset import AudioCollator, AudioDataset, make_loader, split_eval
from modeling_distilxlsr.audio.decode import load_audio
from modeling_distilxlsr.audio.sources import NoUsableAudioError, SkipCounter, find_utterances
from modeling_distilxlsr.audio.streaming import StreamingAudioDataset, open_audio_stream
from modeling_distilxlsr.corpus.synthesis import default_corpus_split
from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.distill.losses import DistillationLoss, logit_distillation_loss, student_distillation_loss
from modeling_distilxlsr.distill.pseudo_labels import (
    PSEUDO_LABEL_MODES,
    PseudoLabelCache,
    label_decoder,
    label_missing,
    pseudo_labelled,
    teacher_digest,
)
from modeling_distilxlsr.distill.teacher import (
    TeacherCTCError,
    TeacherTargets,
    has_slim_cnn,
    init_student_from_teacher,
    is_ctc_model,
    load_teacher,
    load_teacher_processor,
)
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.models.folder import load_config, save_for_hub
from modeling_distilxlsr.models.modeling_distilxlsr import ctc_loss
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextNormalizer
from modeling_distilxlsr.training.arguments import RunArguments, parse_args, run_settings
from modeling_distilxlsr.training.checkpoints import data_fingerprint, save_checkpoint
from modeling_distilxlsr.training.ctc_data import CTCCollator
from modeling_distilxlsr.training.hub import check_hub_access, push_folder
from modeling_distilxlsr.training.loop import (
    TrainingState,
    backward_and_step_optimizer_and_scheduler,
    batch_or_stand_in,
    check_resume_settings,
    collective_timeout,
    count_nonfinite_step,
    decay_parameter_groups,
    finish_run,
    nonfinite_summary,
    open_output_dir,
    resumable_batches,
    session_summary,
    setup_logging,
    start_run,
    user_errors_as_messages,
    warmup_linear_schedule,
)
from modeling_distilxlsr.training.model_card import (
    card_metadata,
    format_params,
    readable_dataset_name,
    render_card,
    train_data_name,
)
from modeling_distilxlsr.training.plots import plot_curves
from modeling_distilxlsr.training.results import write_json

logger = logging.getLogger("train_distill")
# DistilHuBERT's recipe (s3prl), for the shared run settings: 200k steps, AdamW (0.9, 0.98), warm-up 7%.
DISTILL_DEFAULTS = dict(
    output_dir="out/distilxlsr",
    max_steps=200_000,
    per_device_batch_size=8,
    learning_rate=2e-4,
    adam_beta2=0.98,
    adam_epsilon=1e-6,
    weight_decay=0.01,
    warmup_fraction=0.07,
    max_grad_norm=5.0,
    eval_steps=500,
    save_steps=1000,
    save_total_limit=3,
)


@dataclass(kw_only=True)
class DistillArguments:
    """What distillation adds to the shared `RunArguments` (and `AugmentArguments`): teacher, student, targets, data."""

    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Teacher: Hub id or local folder of a Wav2Vec2/HuBERT/WavLM model (facebook/wav2vec2-large-xlsr-53,"
            " or a fine-tuned CTC model such as lgris/bp400-xlsr), or a config.json with --teacher_random_init. "
            "Default: the small pt-BR CTC teacher shipped in the package (trained on the synthetic corpus)."
        },
    )
    teacher_random_init: bool = field(
        default=False, metadata={"help": "Random teacher weights from its config: smoke runs and benchmarks only."}
    )
    train_data: str | None = field(
        default=None,
        metadata={
            "help": "Audio folder, manifest (.csv/.tsv/.jsonl) or HF dataset. Default: the project's "
            "synthetic pt-BR corpus (made on first use)."
        },
    )
    eval_data: str | None = field(default=None, metadata={"help": "Held-out audio; default: --eval_fraction of train."})
    eval_fraction: float = field(default=0.02, metadata={"help": "Fraction of train held out when no --eval_data."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read --train_data (a Hugging Face dataset: Hub name, local data files or save_to_disk folder) "
            "as a stream, each rank its own part: for corpora larger than disk or memory."
        },
    )
    streaming_eval_examples: int = field(
        default=100, metadata={"help": "With --streaming and no --eval_data: the first N examples are held out."}
    )
    shuffle_buffer: int = field(default=2000, metadata={"help": "With --streaming: examples in the shuffle buffer."})
    pred_layer_ids: list[int] = field(
        default_factory=lambda: [8, 16, 24], metadata={"help": "Teacher layers the heads predict."}
    )
    num_student_layers: int = field(default=2)
    init_teacher_layers: list[int] | None = field(
        default=None, metadata={"help": "Teacher layer (0-based) copied into each student layer; default: the first N."}
    )
    normalize_targets: str = field(
        default="auto",
        metadata={
            "help": "Layer-normalise teacher targets: auto (yes for pre-LN teachers), yes, no.",
            "choices": ["auto", "yes", "no"],
        },
    )
    cosine_weight: float = field(default=1.0, metadata={"help": "lambda of the -log sigmoid(cosine) term."})
    freeze_cnn: bool = field(
        default=False,
        metadata={"help": "Freeze the student's CNN; it then equals the teacher's, whose features are reused."},
    )
    student_cnn_width: int | None = field(
        default=None,
        metadata={
            "help": "Slim student: channels of every CNN layer but the last (default: the teacher's CNN, copied). "
            "The slim CNN starts from a channel subset of the teacher's and learns the teacher's CNN output."
        },
    )
    student_frontend: str = field(
        default="cnn",
        metadata={
            "help": "cnn: the teacher's waveform CNN (copied, or slim with --student_cnn_width). log_mel: log-mel "
            "frames over the teacher CNN's receptive field and stride through a per-frame MLP, learnt from the "
            "teacher's CNN output (about 1/100 of XLSR-53's CNN cost).",
            "choices": ["cnn", "log_mel"],
        },
    )
    cnn_loss_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the CNN-output target (L1 + cosine); default 1 for a slim CNN or a log-mel front-end, "
            "else 0 (off)."
        },
    )
    max_audio_samples: int = field(default=250_000, metadata={"help": "Random crops of at most this many samples."})
    layer_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the layer-wise (DistilHuBERT) loss; 0: output distillation only."}
    )
    logit_loss_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the KL divergence between the teacher's and the student's softened CTC posteriors on "
            "every real frame (output distillation). Needs a fine-tuned CTC teacher; the student then gets a CTC "
            "head from the teacher's and the output folder is an ASR model. Default: 1 for a CTC teacher, else 0."
        },
    )
    logit_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the KL term."})
    pseudo_labels: str = field(
        default="none",
        metadata={
            "help": "CTC on the teacher's transcripts of the training audio: greedy, or lm (beam search with the "
            "teacher folder's n-gram); cached on disk.",
            "choices": list(PSEUDO_LABEL_MODES),
        },
    )
    pseudo_label_weight: float = field(default=1.0, metadata={"help": "Weight of the pseudo-label CTC loss."})
    min_pseudo_confidence: float = field(
        default=0.5, metadata={"help": "Pseudo-labels under this confidence (0-1) are left out and counted."}
    )
    test_data: str | None = field(
        default=None,
        metadata={
            "help": "Transcribed audio the finished ASR student transcribes (test CER/WER printed and written to "
            "distill_results.json). Default with the built-in corpus: its test split."
        },
    )


@dataclass
class StepLosses:
    """One batch's losses: the total `backward()` sees and its parts (detached, for logs)."""

    loss: torch.Tensor
    layers: DistillationLoss
    cnn: DistillationLoss | None
    logit_kl: torch.Tensor | None  # output distillation (a CTC teacher)
    pseudo_ctc: torch.Tensor | None  # CTC on the teacher's pseudo-labels


def distill_step_loss(student, teacher_targets, batch, distill: DistillArguments, accelerator, share_cnn: bool):
    """Teacher targets, student forward and loss for one batch: the per-layer loss (and, with `cnn_loss_weight`,
    the student's CNN output against the teacher's), plus, for a CTC teacher, the KL between the teacher's posteriors
    on the clean clip and the student's on what it hears, and CTC on the batch's pseudo-labels when it has some."""
    teacher = teacher_targets(batch["input_values"], batch["attention_mask"])
    with accelerator.autocast():  # the student only: targets and losses are float32
        outputs = student(
            batch.get("student_input_values", batch["input_values"]),  # with --augment: the corrupted clip
            attention_mask=batch["attention_mask"],
            cnn_features=teacher.cnn_features if share_cnn else None,
        )
    layer_loss, layers, cnn = student_distillation_loss(
        outputs, teacher.targets, teacher.cnn_features, distill.cosine_weight, distill.cnn_loss_weight
    )
    loss = distill.layer_loss_weight * layer_loss
    logit_kl = pseudo_ctc = None
    if distill.logit_loss_weight:
        logit_kl = logit_distillation_loss(
            outputs.logits, teacher.logits, outputs.frame_attention_mask, distill.logit_temperature
        )
        loss = loss + distill.logit_loss_weight * logit_kl
    if "labels" in batch:
        pseudo_ctc = ctc_loss(outputs.logits, batch["labels"], outputs.frame_attention_mask, student_config(student))
        loss = loss + distill.pseudo_label_weight * pseudo_ctc
    return StepLosses(loss, layers, cnn, logit_kl, pseudo_ctc)


def student_config(student):
    return getattr(student, "module", student).config  # DDP wraps the model


@torch.no_grad()
def evaluate(student, teacher_targets, loader, distill: DistillArguments, accelerator, skips: SkipCounter) -> dict:
    """Held-out loss, per-layer cosine (and the CNN output's, when it is a target) and, for a CTC teacher, the KL of
    the posteriors, weighted by real frames across all ranks."""
    student.eval()
    sums = None
    for batch in loader:
        for reason, name in batch["skipped"]:
            skips.skip(reason, name, once=True)
        if "input_values" not in batch:
            continue
        step = distill_step_loss(student, teacher_targets, batch, distill, accelerator, share_cnn=False)
        layers, cnn = step.layers, step.cnn
        frames = layers.num_frames
        cosines = layers.cosine_per_layer if cnn is None else torch.cat([layers.cosine_per_layer, cnn.cosine_per_layer])
        kl = step.logit_kl.detach()[None] if step.logit_kl is not None else torch.zeros(1, device=frames.device)
        batch_sums = torch.cat([(step.loss.detach() * frames)[None], cosines * frames, kl * frames, frames[None]])
        sums = batch_sums if sums is None else sums + batch_sums
    if sums is None:
        sums = torch.zeros(len(distill.pred_layer_ids) + 3 + bool(distill.cnn_loss_weight), device=accelerator.device)
    sums = accelerator.reduce(sums, reduction="sum")
    student.train()
    frames = sums[-1].clamp(min=1)
    metrics = {"eval/loss": (sums[0] / frames).item()}
    names = [f"eval/cosine_layer_{i}" for i in distill.pred_layer_ids] + ["eval/cosine_cnn"] * bool(
        distill.cnn_loss_weight
    )
    metrics.update(zip(names, (sums[1:-2] / frames).tolist(), strict=True))
    if distill.logit_loss_weight:
        metrics["eval/logit_kl"] = (sums[-2] / frames).item()
    return metrics


def build_teacher_and_student(distill: DistillArguments, accelerator):
    """The truncated teacher's targets and the student initialised from it (every configuration error surfaces here,
    before any data is read). A fine-tuned CTC teacher (the default, shipped one included) also gives its CTC
    posteriors, its head and its processor: the student then gets both. Returns (teacher_targets, student, teacher
    parameter count before truncation, the teacher's processor or None, the whole CTC teacher or None)."""
    distill.teacher = distill.teacher or shipped_teacher_dir()
    teacher_is_ctc = is_ctc_model(load_config(distill.teacher))
    if distill.logit_loss_weight is None:
        distill.logit_loss_weight = 1.0 if teacher_is_ctc and not distill.teacher_random_init else 0.0
    outputs_wanted = distill.logit_loss_weight > 0 or distill.pseudo_labels != "none"
    if outputs_wanted and distill.teacher_random_init:
        raise TeacherCTCError(
            "--logit_loss_weight and --pseudo_labels distil what a trained CTC teacher says; a random teacher "
            "(--teacher_random_init) says noise. Set --logit_loss_weight 0 and --pseudo_labels none."
        )
    teacher = load_teacher(distill.teacher, random_init=distill.teacher_random_init, ctc_head=outputs_wanted)
    processor = load_teacher_processor(distill.teacher, teacher.config) if outputs_wanted else None
    ctc_fields = {}
    if outputs_wanted:
        ctc_fields = dict(
            distill_ctc_head=True,
            vocab_size=teacher.config.vocab_size,
            pad_token_id=teacher.config.pad_token_id,
            final_dropout=teacher.config.final_dropout,
        )
    config = DistilXLSRConfig.from_teacher_config(
        teacher.config,
        num_hidden_layers=distill.num_student_layers,
        pred_layer_ids=distill.pred_layer_ids,
        teacher_name_or_path=distill.teacher,
        cnn_width=distill.student_cnn_width,
        feature_frontend=distill.student_frontend,
        # DistilHuBERT distils from unmasked input (and an unused mask embedding would break DDP); fine-tuning turns
        # SpecAugment on and learns its mask embedding.
        apply_spec_augment=False,
        mask_time_prob=0.0,
        **ctc_fields,
    )
    slim_cnn = has_slim_cnn(config, teacher.config)
    if slim_cnn and distill.freeze_cnn:
        raise ValueError(
            "--freeze_cnn keeps the teacher's CNN, --student_cnn_width and --student_frontend log_mel replace it: "
            "choose one."
        )
    if distill.cnn_loss_weight is None:
        distill.cnn_loss_weight = 1.0 if slim_cnn else 0.0
    student = DistilXLSRForDistillation(config)
    layer_map = dict(enumerate(distill.init_teacher_layers)) if distill.init_teacher_layers else None
    init_student_from_teacher(student, teacher, layer_map=layer_map)
    if distill.freeze_cnn:
        student.freeze_feature_encoder()
    teacher_params = sum(p.numel() for p in teacher.parameters())
    normalize = (
        teacher.config.do_stable_layer_norm
        if distill.normalize_targets == "auto"
        else distill.normalize_targets == "yes"
    )
    ctc_teacher = teacher if outputs_wanted else None
    teacher_targets = TeacherTargets(teacher, distill.pred_layer_ids, normalize=normalize).to(accelerator.device)
    logger.info(
        "teacher %s%s; student: %s backbone + %s heads, CNN %s; targets: layers %s (weight %g), normalised=%s, CNN "
        "weight %g, CTC posteriors weight %g (T=%g), pseudo-labels %s",
        distill.teacher,
        " (RANDOM weights)" if distill.teacher_random_init else "",
        format_params(sum(p.numel() for p in student.distilxlsr.parameters())),
        format_params(sum(p.numel() for p in student.prediction_heads.parameters())),
        list(config.conv_dim),
        distill.pred_layer_ids,
        distill.layer_loss_weight,
        normalize,
        distill.cnn_loss_weight,
        distill.logit_loss_weight,
        distill.logit_temperature,
        distill.pseudo_labels,
    )
    return teacher_targets, student, teacher_params, processor, ctc_teacher


def build_loaders(run, augment, distill: DistillArguments, min_samples: int, accelerator, skips, with_pseudo_labels):
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
            raise ValueError(
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
            raise ValueError(f"No usable held-out audio in the first examples of {train_source!r}: pass --eval_data.")
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

    def __init__(self, distill: DistillArguments, ctc_teacher, processor, accelerator, skips, batch_size: int):
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


def log_row(state: TrainingState, step: StepLosses, scheduler, distill: DistillArguments) -> dict:
    """The logged training row: loss, learning rate, per-layer L1 and cosine (and the CNN output's, the posteriors'
    KL, the pseudo-label CTC), audio seen."""
    row = {"step": state.step, "train/loss": step.loss.item(), "lr": scheduler.get_last_lr()[0]}
    for layer_id, l1, cosine in zip(
        distill.pred_layer_ids, step.layers.l1_per_layer.tolist(), step.layers.cosine_per_layer.tolist(), strict=True
    ):
        row[f"train/l1_layer_{layer_id}"] = l1
        row[f"train/cosine_layer_{layer_id}"] = cosine
    if step.cnn is not None:
        row["train/l1_cnn"] = step.cnn.l1_per_layer.item()
        row["train/cosine_cnn"] = step.cnn.cosine_per_layer.item()
    if step.logit_kl is not None:
        row["train/logit_kl"] = step.logit_kl.item()
    if step.pseudo_ctc is not None:
        row["train/pseudo_label_ctc"] = step.pseudo_ctc.item()
    row["audio_hours"] = state.audio_seconds / 3600
    return row


def main(run: RunArguments, augment: AugmentArguments, distill: DistillArguments):
    accelerator = Accelerator(
        gradient_accumulation_steps=run.gradient_accumulation_steps,
        log_with=None if run.report_to == "none" else run.report_to,
        project_dir=run.output_dir,
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=False),
            collective_timeout(run.ddp_timeout),
        ],
    )
    setup_logging(accelerator, "train_distill")
    set_seed(run.seed)
    if run.push_to_hub:
        check_hub_access(run.hub_model_id)
    lock = open_output_dir(accelerator, run)

    teacher_targets, student, teacher_params, processor, ctc_teacher = build_teacher_and_student(distill, accelerator)
    # the settings are whole now (the teacher's kind decides the loss weights left unset): a resume with other
    # settings is refused here, before the corpus is pseudo-labelled, not after
    check_resume_settings(run, (run, augment, distill))
    skips = SkipCounter()
    pseudo_labels = None
    if distill.pseudo_labels != "none":
        pseudo_labels = TeacherPseudoLabels(
            distill, ctc_teacher, processor, accelerator, skips, run.per_device_batch_size
        )
    train_loader, eval_loader, collator = build_loaders(
        run, augment, distill, student.config.receptive_field, accelerator, skips, pseudo_labels
    )
    listed = {"eval": eval_loader.dataset.utterances}  # a stream has no listing up front: only its held-out part
    if not distill.streaming:
        listed["train"] = train_loader.dataset.utterances
    data = data_fingerprint(listed)
    optimizer = torch.optim.AdamW(decay_parameter_groups(student, run.weight_decay), **run.adam_options())
    scheduler = warmup_linear_schedule(optimizer, run.warmup_fraction, run.max_steps, accelerator.num_processes)
    if distill.streaming:  # each rank reads its own part; a prepared loader would read it all on rank 0 and dispatch
        student, optimizer, eval_loader, scheduler = accelerator.prepare(student, optimizer, eval_loader, scheduler)
    else:
        student, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
            student, optimizer, train_loader, eval_loader, scheduler
        )
    state = TrainingState()
    groups = (run, augment, distill)
    checkpoint_dir = start_run(accelerator, run, groups, state, "distill", skips, data)
    if state.step == 0:
        state.history.append(
            {"step": 0, **evaluate(student, teacher_targets, eval_loader, distill, accelerator, skips)}
        )
        logger.info("initial held-out: %s", state.history[-1])

    student.train()  # from_pretrained returns eval mode: a resumed run (no initial eval) trained without dropout
    session_start = (state.step, state.audio_seconds)  # what this start does, for the closing line
    progress = tqdm(total=run.max_steps, initial=state.step, disable=not accelerator.is_main_process, desc="distil")
    seconds_since_log = torch.zeros((), device=accelerator.device)
    started = time.time()
    for batch in resumable_batches(accelerator, train_loader, state):
        if state.step >= run.max_steps:
            break
        if distill.streaming:  # nothing was listed up front: count what the stream delivers
            skips.total += batch["num_items"]
        batch, all_skipped = batch_or_stand_in(accelerator, batch, collator, skips)
        with accelerator.accumulate(student):
            step = distill_step_loss(
                student, teacher_targets, batch, distill, accelerator, share_cnn=distill.freeze_cnn
            )
            stepped = backward_and_step_optimizer_and_scheduler(
                accelerator, student, step.loss, all_skipped, optimizer, scheduler, run.max_grad_norm
            )
        if not all_skipped:
            seconds_since_log += batch["attention_mask"].sum() / SAMPLING_RATE
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        count_nonfinite_step(state, stepped, run.max_nonfinite_steps)
        progress.update(1)
        saving = state.step % run.save_steps == 0 or state.step == run.max_steps
        if saving or state.step % run.logging_steps == 0:  # all ranks' audio, counted before any checkpoint
            state.audio_seconds += accelerator.reduce(seconds_since_log, reduction="sum").item()
            seconds_since_log.zero_()
            state.history.append(log_row(state, step, scheduler, distill))
            accelerator.log(state.history[-1], step=state.step)
            progress.set_postfix(loss=f"{step.loss.item():.3f}", hours=f"{state.audio_seconds / 3600:.2f}")
        if state.step % run.eval_steps == 0 or state.step == run.max_steps:
            metrics = evaluate(student, teacher_targets, eval_loader, distill, accelerator, skips)
            state.history.append({"step": state.step, **metrics})
            accelerator.log(metrics, step=state.step)
            logger.info("step %d held-out: %s", state.step, metrics)
        if saving:
            save_checkpoint(accelerator, checkpoint_dir, state, skips, run.save_total_limit, run_settings(*groups))
    progress.close()
    finish_distillation(
        accelerator, student, groups, state, skips, (session_start, time.time() - started), teacher_params, processor
    )
    finish_run(accelerator, lock)


def finish_distillation(accelerator, student, groups, state, skips, timing: tuple, teacher_params, processor):
    """After the last step: one skip summary for all ranks, the hub-ready folder (an ASR folder when the student has
    the teacher's CTC head: `processor` given), its test CER, distill_results.json, the upload. `timing`: ((step,
    audio seconds) when this start's loop began, its seconds)."""
    run, _, distill = groups
    session_start, elapsed = timing
    skips.merge_ranks(sum_totals=distill.streaming)  # skips happen in each rank's workers
    state_dict = accelerator.get_state_dict(student)  # on every rank: gathers sharded (FSDP/ZeRO-3) weights
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    summary = skips.summary("examples read" if distill.streaming else "files")
    logger.info(summary)
    evals = [row for row in state.history if "eval/loss" in row]
    results = {
        "initial_eval": evals[0],
        "final_eval": evals[-1],
        "steps": state.step,
        "audio_hours": state.audio_seconds / 3600,
        "num_processes": accelerator.num_processes,
        "skipped": summary,
        "nonfinite": nonfinite_summary(state),
        "train_seconds": elapsed,
    }
    model = accelerator.unwrap_model(student)
    if processor is None:
        write_model_folder(model, state_dict, groups, state, evals[-1], summary, teacher_params)
    else:
        test_source = distill.test_data or (None if distill.train_data else default_corpus_split("test"))
        results["test"] = write_asr_folder(
            model, state_dict, processor, groups, state, evals[-1], summary, teacher_params, test_source
        )
    write_json(os.path.join(run.output_dir, "distill_results.json"), results)
    logger.info("done: %s -> %s", session_summary(state, session_start, elapsed), run.output_dir)
    if run.push_to_hub:
        logger.info("pushed to %s", push_folder(run.output_dir, run.hub_model_id, f"DistilXLSR, {state.step} steps"))


def write_asr_folder(student, state_dict, processor, groups, state, final_eval, skips_summary, teacher_params,
                     test_source: str | None) -> dict | None:  # fmt: skip
    """The student with the teacher's CTC head as a `DistilXLSRForCTC` folder (processor and tokenizer included, the
    prediction heads dropped): `pipeline("automatic-speech-recognition")` and `transcribe.py` take it as is. Then,
    with `test_source`, its test CER/WER through the transformers pipeline, printed; returned for the results."""
    run, augment, distill = groups
    asr_model = DistilXLSRForCTC(student.config)
    weights = {k: v for k, v in state_dict.items() if not k.startswith("prediction_heads.")}
    asr_model.load_state_dict(weights)
    save_for_hub(asr_model, run.output_dir, processor)
    plot_curves(state.history, run.output_dir, {"loss_curve.png": ["train/loss", "eval/loss"]})
    test = score_asr_folder(run.output_dir, test_source, run.per_device_batch_size) if test_source else None
    if test is not None:
        print(
            f"test CER {test['cer']:.3f}, WER {test['wer']:.3f} on {test['utterances']} utterances of {test_source} "
            f"(greedy; {run.output_dir} transcribed with the transformers pipeline)",
            flush=True,
        )
    config = student.config
    losses = [f"layers {', '.join(map(str, config.pred_layer_ids))} (weight {distill.layer_loss_weight:g})"]
    if distill.logit_loss_weight:
        losses.append(
            f"KL of the CTC posteriors (weight {distill.logit_loss_weight:g}, T={distill.logit_temperature:g})"
        )
    if distill.pseudo_labels != "none":
        losses.append(
            f"CTC on the teacher's {distill.pseudo_labels} pseudo-labels (weight {distill.pseudo_label_weight:g}, "
            f"confidence >= {distill.min_pseudo_confidence:g})"
        )
    card_data = card_metadata(
        distill.train_data, distill.teacher, "automatic-speech-recognition", ["distilhubert", "ctc", "pt-br"]
    )
    render_card(
        "distilled_asr.md",
        run.output_dir,
        card_data,
        model_name=run.hub_model_id or os.path.basename(os.path.abspath(run.output_dir)),
        repo_id=run.hub_model_id or run.output_dir,
        teacher=readable_dataset_name(distill.teacher),
        teacher_params=format_params(teacher_params),
        backbone_params=format_params(sum(p.numel() for p in student.distilxlsr.parameters())),
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        vocab_size=config.vocab_size,
        losses="; ".join(losses),
        train_data=train_data_name(distill.train_data),
        hours_seen=f"{state.audio_seconds / 3600:.2f}",
        steps=state.step,
        eval_kl=f"{final_eval.get('eval/logit_kl', float('nan')):.4f}",
        test=(
            f"CER {test['cer']:.3f}, WER {test['wer']:.3f} ({test['utterances']} utterances of "
            f"{readable_dataset_name(test_source)}, greedy)"
            if test
            else "not measured (no --test_data)"
        ),
        cnn=cnn_description(config, distill),
        skips=skips_summary,
        augmentation=describe_augmentation(augment, distilling=True),
    )
    return test


def score_asr_folder(model_dir: str, test_source: str, batch_size: int) -> dict:
    """Test CER/WER of a saved ASR folder through the transformers pipeline, as a user runs it: transcripts of
    decoded 16 kHz audio against the normalised references (utterances without one are left out)."""
    utterances = [u for u in find_utterances(test_source, SkipCounter(), need_text=True)]
    normalizer = TextNormalizer()
    recognizer = pipeline("automatic-speech-recognition", model=model_dir, device="cpu")
    references, predictions = [], []
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        waves = [load_audio(u.source) for u in chunk]
        outputs = recognizer(waves, batch_size=batch_size)
        for utterance, output in zip(chunk, outputs, strict=True):
            reference = normalizer(utterance.text)
            if reference:
                references.append(reference)
                predictions.append(output["text"].strip())
    return {
        **error_rates(references, predictions),
        "utterances": len(references),
        "examples": [{"reference": r, "prediction": p} for r, p in list(zip(references, predictions, strict=True))[:3]],
    }


def write_model_folder(student, state_dict, groups, state, final_eval: dict, skips_summary: str, teacher_params: int):
    """The hub-ready folder: weights + config + code + feature extractor, curves, and the model card."""
    run, augment, distill = groups
    save_for_hub(student, run.output_dir, state_dict=state_dict)
    plot_curves(
        state.history,
        run.output_dir,
        {
            "loss_curve.png": ["train/loss", "eval/loss"],
            "cosine_per_layer.png": [f"eval/cosine_layer_{i}" for i in distill.pred_layer_ids] + ["eval/cosine_cnn"],
        },
    )
    config = student.config
    card_data = card_metadata(
        distill.train_data, distill.teacher, "feature-extraction", ["distilhubert", "feature-extraction"]
    )
    render_card(
        "distilled.md",
        run.output_dir,
        card_data,
        model_name=run.hub_model_id or os.path.basename(os.path.abspath(run.output_dir)),
        repo_id=run.hub_model_id or run.output_dir,
        teacher=readable_dataset_name(distill.teacher),
        teacher_note=" (**random weights: a smoke run, not a usable model**)" if distill.teacher_random_init else "",
        teacher_params=format_params(teacher_params),
        backbone_params=format_params(sum(p.numel() for p in student.distilxlsr.parameters())),
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        pred_layer_ids=", ".join(map(str, config.pred_layer_ids)),
        target_norm=distill.normalize_targets,
        train_data=train_data_name(distill.train_data),
        hours_seen=f"{state.audio_seconds / 3600:.2f}",
        steps=state.step,
        eval_loss=f"{final_eval['eval/loss']:.4f}",
        eval_cosine=", ".join(
            [f"layer {i}: {final_eval[f'eval/cosine_layer_{i}']:.3f}" for i in distill.pred_layer_ids]
            + ([f"CNN output: {final_eval['eval/cosine_cnn']:.3f}"] if "eval/cosine_cnn" in final_eval else [])
        ),
        cnn=cnn_description(config, distill),
        skips=skips_summary,
        augmentation=describe_augmentation(augment, distilling=True),
    )


def cnn_description(config, distill: DistillArguments) -> str:
    if distill.student_frontend == "log_mel":
        return (
            f"log-mel ({config.num_mel_bins} bands, {config.conv_kernel[0]}-sample window every "
            f"{config.conv_stride[0]}) + a per-frame MLP to {config.conv_dim[0]} channels, distilled from the "
            f"teacher's CNN output (weight {distill.cnn_loss_weight:g})"
        )
    if distill.student_cnn_width is None:
        frozen = ", frozen" if distill.freeze_cnn else ""
        return f"the teacher's ({list(config.conv_dim)} channels), copied{frozen}"
    return (
        f"slim, {list(config.conv_dim)} channels: initialised from a channel subset of the teacher's CNN and "
        f"distilled from its output (weight {distill.cnn_loss_weight:g})"
    )


def cli(argv=None):
    """`distilxlsr-distill` and `python train_distill.py`: flags, or a YAML/JSON config followed by flags."""
    with user_errors_as_messages():
        main(*parse_args((RunArguments, AugmentArguments, DistillArguments), DISTILL_DEFAULTS, argv))


if __name__ == "__main__":
    cli()

"""Distil a wav2vec2-family teacher (XLSR-53 by default) into a DistilXLSR student on unlabeled audio.

    accelerate launch train_distill.py --teacher facebook/wav2vec2-large-xlsr-53 --train_data DATA --output_dir out/
    accelerate launch train_distill.py configs/xlsr53_bp.yaml

DistilHuBERT (arXiv 2110.01900) as in s3prl, with three differences: padded frames are left out of the loss, the
teacher runs only up to the deepest predicted layer, and pre-LN teachers get layer-normalised targets (DistilXLSR).
One loop, top to bottom, in the manner of accelerate's examples; the pieces it calls live in `modeling_distilxlsr/`.
"""

import logging
import sys
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed

from modeling_distilxlsr.audio.augment import AugmentArguments
from modeling_distilxlsr.audio.sources import SkipCounter
from modeling_distilxlsr.distill.build import build_teacher_and_student
from modeling_distilxlsr.distill.losses import DistillationLoss, logit_distillation_loss, student_distillation_loss
from modeling_distilxlsr.distill.pseudo_labels import PSEUDO_LABEL_MODES
from modeling_distilxlsr.errors import UserError
from modeling_distilxlsr.models.modeling_distilxlsr import ctc_loss
from modeling_distilxlsr.training.arguments import RunArguments, parse_args, run_settings
from modeling_distilxlsr.training.checkpoints import data_fingerprint
from modeling_distilxlsr.training.distill_data import TeacherPseudoLabels, build_distill_loaders
from modeling_distilxlsr.training.distill_outputs import finish_distillation
from modeling_distilxlsr.training.hub import check_hub_access
from modeling_distilxlsr.training.loop import (
    TrainingState,
    check_resume_settings,
    collective_timeout,
    decay_parameter_groups,
    finish_run,
    output_dir_held,
    setup_logging,
    start_run,
    warmup_linear_schedule,
)
from modeling_distilxlsr.training.train_loop import TrainingLoop, run_training_loop

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
    pred_layer_ids: list[int] | None = field(
        default=None,
        metadata={
            "help": "Teacher layers the heads predict; default: a third, two thirds and all of the teacher's depth "
            "(DistilHuBERT's 4/8/12 of 12; 8/16/24 for XLSR-53; 2/4/6 for the shipped 6-layer teacher)."
        },
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
    student_pos_conv: list[int] | None = field(
        default=None,
        metadata={
            "help": "TAPS GROUPS of the student's positional convolution (default: the teacher's, copied). Fewer "
            "taps in the teacher's groups start as its central taps, any other shape from scratch; both are learnt. "
            "Fewer taps cost less (XLSR-53's 128 are a quarter of a log-mel student's forward pass); `128 16` is "
            "XLSR-53's layout, which CTranslate2 needs, for a student of a smaller teacher.",
            "nargs": 2,
        },
    )
    student_encoder_stride: int = field(
        default=1,
        metadata={
            "help": "Run the student's layers at 1/N of the frame rate (frames averaged in groups of N, the output "
            "repeated back with a learnt skip connection; the layers are still copied from the teacher): 2 halves "
            "what they compute. The output keeps 50 frames a second. Not exportable as a plain wav2vec2 or to "
            "CTranslate2; ONNX is.",
        },
    )
    mel_band_mask_prob: float = field(
        default=0.0,
        metadata={
            "help": "log_mel front-end: SpecAugment frequency masks over about this share of the mel bands of each "
            "training clip, set to the frame's floor (what a band-limited channel leaves); saved in the config, so "
            "fine-tuning keeps them. 0: off."
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

    def log_parts(self, pred_layer_ids) -> dict:
        """The parts a logged row shows: per-layer L1 and cosine (and the CNN output's, the posteriors' KL, the
        pseudo-label CTC), as 0-d tensors (read only when a row is logged)."""
        parts = {}
        for index, layer_id in enumerate(pred_layer_ids):
            parts[f"train/l1_layer_{layer_id}"] = self.layers.l1_per_layer[index]
            parts[f"train/cosine_layer_{layer_id}"] = self.layers.cosine_per_layer[index]
        if self.cnn is not None:
            parts["train/l1_cnn"], parts["train/cosine_cnn"] = self.cnn.l1_per_layer[0], self.cnn.cosine_per_layer[0]
        if self.logit_kl is not None:
            parts["train/logit_kl"] = self.logit_kl.detach()
        if self.pseudo_ctc is not None:
            parts["train/pseudo_label_ctc"] = self.pseudo_ctc.detach()
        return parts


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
    groups = (run, augment, distill)
    with output_dir_held(accelerator, run):
        # 1. teacher and student; the settings are whole now (the teacher decides the loss weights and target layers
        # left unset), so a resume with other settings is refused here, before any data is read or labelled
        teacher_targets, student, teacher_params, processor, ctc_teacher = build_teacher_and_student(
            distill, accelerator.device
        )
        check_resume_settings(run, groups)

        # 2. data: untranscribed audio, and the teacher's pseudo-labels for it when asked for
        skips = SkipCounter()
        pseudo_labels = None
        if distill.pseudo_labels != "none":
            pseudo_labels = TeacherPseudoLabels(
                distill, ctc_teacher, processor, accelerator, skips, run.per_device_batch_size
            )
        train_loader, eval_loader, collator = build_distill_loaders(
            run, augment, distill, student.config.receptive_field, accelerator, skips, pseudo_labels
        )
        listed = {"eval": eval_loader.dataset.utterances}  # a stream has no listing up front: its held-out part
        if not distill.streaming:
            listed["train"] = train_loader.dataset.utterances

        # 3. optimizer and schedule, prepared; a stream is not (each rank reads its own part; a prepared loader
        # would read it all on rank 0 and dispatch)
        optimizer = torch.optim.AdamW(decay_parameter_groups(student, run.weight_decay), **run.adam_options())
        scheduler = warmup_linear_schedule(optimizer, run.warmup_fraction, run.max_steps, accelerator.num_processes)
        if distill.streaming:
            student, optimizer, eval_loader, scheduler = accelerator.prepare(student, optimizer, eval_loader, scheduler)
        else:
            student, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
                student, optimizer, train_loader, eval_loader, scheduler
            )

        # 4. resume or start, train, and write the folder
        state = TrainingState()
        checkpoint_dir = start_run(accelerator, run, groups, state, "distill", skips, data_fingerprint(listed))
        session_start = (state.step, state.audio_seconds)

        def step_loss(batch):
            step = distill_step_loss(student, teacher_targets, batch, distill, accelerator, distill.freeze_cnn)
            return step.loss, lambda: step.log_parts(distill.pred_layer_ids)

        def evaluate_held_out():
            return evaluate(student, teacher_targets, eval_loader, distill, accelerator, skips)

        loop = TrainingLoop(student, optimizer, scheduler, train_loader, collator, step_loss, evaluate_held_out,
                            student.train, name="distil")  # fmt: skip
        elapsed = run_training_loop(accelerator, run, loop, state, skips, checkpoint_dir, run_settings(*groups))
        finish_distillation(
            accelerator, student, groups, state, skips, (session_start, elapsed), teacher_params, processor
        )
        finish_run(accelerator)


def cli(argv=None):
    """`distilxlsr-distill` and `python train_distill.py`: flags, or a YAML/JSON config followed by flags. An error
    the user can fix from its message ends the run with one `error: ...` line."""
    try:
        main(*parse_args((RunArguments, AugmentArguments, DistillArguments), DISTILL_DEFAULTS, argv))
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    cli()

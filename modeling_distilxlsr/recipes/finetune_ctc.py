"""Fine-tune a distilled DistilXLSR model (or any wav2vec2-family checkpoint) for Brazilian Portuguese speech
recognition with a character CTC tokenizer.

    python finetune_ctc.py --model DISTILLED_DIR_OR_HUB_ID --train_data DATA --eval_data DATA --output_dir asr/
    accelerate launch finetune_ctc.py configs/finetune_bp.yaml

The output folder works with `pipeline("automatic-speech-recognition", model="asr/", trust_remote_code=True)` and
`python transcribe.py asr/ audio/`.

An Accelerate loop rather than `Trainer`: it shares the distillation script's data loading, length grouping,
checkpointing and resume code, and keeps the CTC-specific guards (skipped infeasible clips, fp32 loss, all-skipped
batches under DDP) in plain sight.
"""

import logging
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from modeling_distilxlsr.audio.augment import AugmentArguments
from modeling_distilxlsr.audio.sources import SkipCounter
from modeling_distilxlsr.errors import UserError
from modeling_distilxlsr.inference.decoding import greedy_transcripts
from modeling_distilxlsr.models.folder import save_for_hub
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.training.arguments import RunArguments, parse_args, run_settings
from modeling_distilxlsr.training.checkpoints import data_fingerprint
from modeling_distilxlsr.training.ctc_data import CTCCollator
from modeling_distilxlsr.training.ctc_outputs import METRICS, brief, finish_finetuning
from modeling_distilxlsr.training.ctc_setup import prepare_ctc_data
from modeling_distilxlsr.training.hub import check_hub_access
from modeling_distilxlsr.training.loop import (
    TrainingState,
    check_resume_settings,
    collective_timeout,
    finish_run,
    output_dir_held,
    prepare_supervised_training,
    setup_logging,
    start_run,
    train_mode,
)
from modeling_distilxlsr.training.semi_supervised import (
    endless_batches,
    prepare_teacher_and_unlabeled,
    unlabeled_kd_loss,
)
from modeling_distilxlsr.training.train_loop import TrainingLoop, keep_if_best, run_training_loop

logger = logging.getLogger("finetune_ctc")
FINETUNE_DEFAULTS = dict(
    output_dir="out/asr",
    max_steps=5000,
    per_device_batch_size=8,
    learning_rate=3e-4,
    adam_beta2=0.98,
    weight_decay=0.005,
    warmup_fraction=0.1,
    max_grad_norm=1.0,
    eval_steps=500,
    save_steps=500,
    save_total_limit=2,
)


@dataclass(kw_only=True)
class FinetuneArguments:
    """What CTC fine-tuning adds to the shared `RunArguments` (and `AugmentArguments`): model, data, text, target."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Distilled DistilXLSR folder or Hub id, any wav2vec2-family CTC/base checkpoint, or (with "
            "--from_scratch) a config.json."
        },
    )
    from_scratch: bool = field(default=False, metadata={"help": "Random init from the model's config (baselines)."})
    train_data: str | None = field(
        default=None, metadata={"help": "Transcribed audio; default: the synthetic pt-BR corpus' train split."}
    )
    eval_data: list[str] | None = field(
        default=None, metadata={"help": "One or more eval sets; default: the corpus' dev split."}
    )
    train_fraction: float = field(default=1.0, metadata={"help": "Use this fraction of the training utterances."})
    freeze_cnn: bool = field(default=True, metadata={"help": "Keep the CNN feature encoder frozen (standard)."})
    freeze_encoder: bool = field(
        default=False,
        metadata={
            "help": "Train the CTC head only, on the frozen encoder's last layer (a linear probe: the phoneme "
            "recognition of benchmarks/probe.py)."
        },
    )
    mask_time_prob: float = field(default=0.05, metadata={"help": "SpecAugment time-masking probability."})
    vocab: str = field(
        default="fixed",
        metadata={
            "help": "fixed: the BP alphabet (shared across corpora); corpus: the characters of the training "
            "transcripts.",
            "choices": ["fixed", "corpus"],
        },
    )
    digits: str = field(
        default="spell",
        metadata={"help": "Digits in transcripts: spell out, or drop the utterance.", "choices": ["spell", "drop"]},
    )
    ambiguous_numbers: str = field(
        default="drop",
        metadata={
            "help": "A number with no single reading ('3.5', '1/2'): drop the utterance (counted), or keep it read "
            "digit group by digit group.",
            "choices": ["drop", "keep"],
        },
    )
    keep_apostrophe: bool = field(default=False)
    max_audio_seconds: float = field(default=20.0, metadata={"help": "Longer training clips are skipped (counted)."})
    max_eval_audio_seconds: float = field(
        default=60.0,
        metadata={
            "help": "Longer eval clips are skipped (counted): one long clip pads its whole eval batch (a 30-min clip "
            "took 3.3 GB). Cut long recordings into utterances for evaluation."
        },
    )
    lm_text: list[str] | None = field(
        default=None,
        metadata={
            "help": "Text files (plain, .gz, CSV/TSV/JSONL) for an n-gram LM built at the end of training, shipped in "
            "output_dir (Wav2Vec2ProcessorWithLM) and tuned on the first eval set. Keep test sentences out of it."
        },
    )
    lm_order: int = field(default=4, metadata={"help": "n-gram order of the --lm_text model."})
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Semi-supervised: a fine-tuned CTC teacher (folder or Hub id) whose posteriors the model learns "
            "on --unlabeled_data (KL on every real frame), mixed with CTC on the transcripts. Its vocabulary must "
            "be the model's tokenizer's."
        },
    )
    unlabeled_data: str | None = field(
        default=None, metadata={"help": "With --teacher: untranscribed audio (folder, manifest or HF dataset)."}
    )
    unlabeled_batches_per_step: int = field(
        default=1, metadata={"help": "With --teacher: unlabeled (KD) batches per labelled batch in each step."}
    )
    logit_loss_weight: float = field(default=1.0, metadata={"help": "With --teacher: weight of the KL term."})
    logit_temperature: float = field(default=2.0, metadata={"help": "With --teacher: softmax temperature of the KL."})
    target: str = field(
        default="characters",
        metadata={
            "help": "phonemes: CTC on the IPA phones espeak-ng gives the normalised transcripts (SUPERB's phoneme "
            "recognition); WER is then the phone error rate.",
            "choices": ["characters", "phonemes"],
        },
    )


@torch.no_grad()
def evaluate(model, loader, processor, accelerator, skips: SkipCounter, finetune: FinetuneArguments) -> dict:
    """Error rates (`error_rates`) and the share of empty outputs (the blank-only failure). Clips that fail to
    decode are counted in `skips`; every rank gathers for every batch, also one whose clips all failed (a rank that
    skipped the gather would pair its next collective with the others' gather)."""
    model.eval()
    predictions, references = [], []
    for batch in loader:
        for reason, name in batch["skipped"]:
            skips.skip(reason, name, once=True)
        texts = (
            greedy_transcripts(accelerator.unwrap_model(model), batch, processor.tokenizer)
            if "input_values" in batch
            else []
        )
        predictions += accelerator.gather_for_metrics(texts, use_gather_object=True)
        references += accelerator.gather_for_metrics(batch.get("texts", []), use_gather_object=True)
    train_mode(model, finetune.freeze_encoder)
    return {
        **error_rates(references, predictions, finetune.target),
        "empty_outputs": float(np.mean([not p.strip() for p in predictions])),
        "examples": [{"reference": r, "prediction": p} for r, p in list(zip(references, predictions, strict=True))[:3]],
    }


def main(run: RunArguments, augment: AugmentArguments, finetune: FinetuneArguments):
    accelerator = Accelerator(
        gradient_accumulation_steps=run.gradient_accumulation_steps,
        log_with=None if run.report_to == "none" else run.report_to,
        project_dir=run.output_dir,
        kwargs_handlers=[collective_timeout(run.ddp_timeout)],
    )
    setup_logging(accelerator, "finetune_ctc")
    set_seed(run.seed)
    if run.push_to_hub:
        check_hub_access(run.hub_model_id)
    groups = (run, augment, finetune)
    with output_dir_held(accelerator, run):
        check_resume_settings(run, groups)  # before the data and any teacher are loaded

        # 1. data, text targets and the model sized to them; with --teacher, the teacher and unlabeled audio
        skips = SkipCounter()
        model, processor, normalizer, train_utterances, eval_sets = prepare_ctc_data(run, finetune, accelerator, skips)
        collator = CTCCollator(processor)
        teacher, unlabeled = (None, None)
        if finetune.teacher:  # before prepare: the unlabeled loader is sharded across ranks like the labelled one
            teacher, unlabeled = prepare_teacher_and_unlabeled(run, augment, finetune, processor, model, skips)
            teacher.to(accelerator.device)
        listed = {"train": train_utterances, **eval_sets}

        # 2. loaders, optimizer and schedule, prepared
        model, optimizer, scheduler, train_loader, eval_loaders = prepare_supervised_training(
            run, augment, model, collator, train_utterances, eval_sets, accelerator
        )
        unlabeled_batches = None
        if unlabeled is not None:
            unlabeled_batches = endless_batches(accelerator.prepare(unlabeled))
            listed["unlabeled"] = unlabeled.dataset.utterances

        # 3. resume or start, train (the best model by the first eval set's CER kept in output_dir), finish
        state = TrainingState()
        checkpoint_dir = start_run(accelerator, run, groups, state, "finetune_ctc", skips, data_fingerprint(listed))

        def step_loss(batch):
            with accelerator.autocast():
                outputs = model(batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["labels"])
            if unlabeled_batches is None:
                return outputs.loss, lambda: {}
            logit_kl = unlabeled_kd_loss(model, teacher, unlabeled_batches, finetune, accelerator, skips)
            loss = outputs.loss + finetune.logit_loss_weight * logit_kl
            return loss, lambda: {"train/ctc_loss": outputs.loss.detach(), "train/logit_kl": logit_kl.detach()}

        def run_evals():
            return {
                "eval": {
                    name: evaluate(model, loader, processor, accelerator, skips, finetune)
                    for name, loader in zip(eval_sets, eval_loaders, strict=True)
                }
            }

        def keep_best(fields):  # the first eval set's CER (PER for phones) picks the model in output_dir
            first = next(iter(fields["eval"].values()))
            save = lambda m, sd: save_for_hub(m, run.output_dir, processor, sd)  # noqa: E731
            keep_if_best(accelerator, model, state, first[METRICS[finetune.target][0]], save)

        def set_train_mode():
            train_mode(model, finetune.freeze_encoder)

        loop = TrainingLoop(model, optimizer, scheduler, train_loader, collator, step_loss, run_evals, set_train_mode,
                            keep_best, lambda fields: brief(fields["eval"]), "ctc")  # fmt: skip
        elapsed = run_training_loop(accelerator, run, loop, state, skips, checkpoint_dir, run_settings(*groups))
        model = accelerator.unwrap_model(model)
        finish_finetuning(accelerator, model, processor, normalizer, groups, state, skips, elapsed)
        finish_run(accelerator)


def cli(argv=None):
    """`distilxlsr-finetune` and `python finetune_ctc.py`: flags, or a YAML/JSON config followed by flags."""
    groups = (RunArguments, AugmentArguments, FinetuneArguments)
    try:
        main(*parse_args(groups, FINETUNE_DEFAULTS, argv, required=("model",)))
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    cli()

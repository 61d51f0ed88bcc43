"""Fine-tune a distilled DistilXLSR model (or any wav2vec2-family checkpoint) to classify utterances: keywords,
speakers, emotions, intents.

    python finetune_classification.py --model DISTILLED_DIR --train_data train/ --eval_data dev/ --output_dir kws/
    accelerate launch finetune_classification.py --model ... --freeze_encoder     # the SUPERB frozen-encoder probe

Data: class sub-folders (`train/sim/*.wav`, `train/nao/*.wav`) or a manifest / metadata.csv with a `--label_column`.
The head is SUPERB's (weighted sum of every layer, mean pooling over real frames); the output folder works with
`pipeline("audio-classification", model="kws/", trust_remote_code=True)`. The same Accelerate loop, data layer,
checkpoints, resume and bad-input accounting as finetune_ctc.py; accuracy and macro-F1 per eval set.
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm
from transformers import AutoModelForAudioClassification

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForSequenceClassification
from modeling_distilxlsr.audio.augment import AugmentArguments, describe_augmentation
from modeling_distilxlsr.audio.sources import SkipCounter
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE, default_feature_extractor
from modeling_distilxlsr.models.folder import load_config, save_for_hub
from modeling_distilxlsr.training.arguments import RunArguments, parse_args, run_settings
from modeling_distilxlsr.training.checkpoints import data_fingerprint, save_checkpoint
from modeling_distilxlsr.training.classification_data import (
    ClassificationCollator,
    balanced_class_weights,
    class_names,
    find_labelled_clips,
)
from modeling_distilxlsr.training.hub import check_hub_access, push_folder
from modeling_distilxlsr.training.loop import (
    TrainingState,
    backward_and_step_optimizer_and_scheduler,
    batch_or_stand_in,
    collective_timeout,
    count_nonfinite_step,
    finish_run,
    keep_if_best,
    nonfinite_summary,
    open_output_dir,
    prepare_supervised_training,
    resumable_batches,
    setup_logging,
    start_run,
    train_mode,
    user_errors_as_messages,
)
from modeling_distilxlsr.training.model_card import (
    card_metadata,
    format_params,
    readable_dataset_name,
    render_card,
)
from modeling_distilxlsr.training.results import write_json

logger = logging.getLogger("finetune_classification")
CLASSIFICATION_DEFAULTS = dict(
    output_dir="out/classifier",
    max_steps=2000,
    per_device_batch_size=16,
    learning_rate=1e-4,
    weight_decay=0.0,
    warmup_fraction=0.1,
    max_grad_norm=1.0,
    eval_steps=200,
    save_steps=200,
    save_total_limit=2,
)


@dataclass(kw_only=True)
class ClassificationArguments:
    """What classification adds to the shared `RunArguments` (and `AugmentArguments`): model, labelled data, head."""

    model: str | None = field(
        default=None, metadata={"help": "Distilled DistilXLSR folder or Hub id, or any wav2vec2-family checkpoint."}
    )
    train_data: str | None = field(
        default=None, metadata={"help": "Class sub-folders, or a manifest with a label column."}
    )
    eval_data: list[str] | None = field(
        default=None, metadata={"help": "One or more eval sets, labelled the same way."}
    )
    label_column: str = field(default="label", metadata={"help": "The label column of a manifest / metadata.csv."})
    labels: list[str] | None = field(
        default=None, metadata={"help": "The classes, in this order (default: the training labels, sorted)."}
    )
    class_weights: str = field(
        default="none",
        metadata={
            "help": "balanced: weigh each class the same in the loss (imbalanced data).",
            "choices": ["none", "balanced"],
        },
    )
    freeze_encoder: bool = field(default=False, metadata={"help": "Train the head only (SUPERB's frozen probe)."})
    freeze_cnn: bool = field(default=True)
    use_weighted_layer_sum: bool = field(default=True, metadata={"help": "The head sees a learnt mix of all layers."})
    classifier_proj_size: int = field(default=256)
    max_audio_seconds: float = field(default=10.0, metadata={"help": "Longer clips are skipped (counted)."})


def load_classifier(args: ClassificationArguments, names: list[str]):
    """Our class for DistilXLSR checkpoints, AutoModelForAudioClassification for any other (the XLSR-53 teacher for
    a probe, say); the head is new, sized to the classes."""
    options = dict(
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        use_weighted_layer_sum=args.use_weighted_layer_sum,
        classifier_proj_size=args.classifier_proj_size,
        layerdrop=0.0,  # a skipped layer leaves unused parameters: DDP would fail
        mask_time_prob=0.0,
        ignore_mismatched_sizes=True,
    )
    is_ours = isinstance(load_config(args.model), DistilXLSRConfig)
    model_class = DistilXLSRForSequenceClassification if is_ours else AutoModelForAudioClassification
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the new head is meant to be new: no warning table
    try:
        model, info = model_class.from_pretrained(args.model, output_loading_info=True, **options)
    finally:
        transformers.logging.set_verbosity(verbosity)
    if "layer_weights" in info["missing_keys"]:  # a new head: equal weights (transformers' own leaves them garbage)
        with torch.no_grad():
            model.layer_weights.fill_(1.0 / model.layer_weights.numel())
    if args.freeze_encoder:
        model.freeze_base_model()
    elif args.freeze_cnn:
        model.freeze_feature_encoder()
    if args.use_weighted_layer_sum and getattr(model.config, "do_stable_layer_norm", False):
        # The weighted sum takes the hidden states as transformers records them, the last one before the encoder's
        # final LayerNorm (as Wav2Vec2ForSequenceClassification does, so exports give the same outputs): that
        # LayerNorm never reaches the loss, and DDP fails on a trainable parameter without a gradient.
        model.base_model.encoder.layer_norm.requires_grad_(False)
    return model


@torch.no_grad()
def evaluate(model, loader, accelerator, skips: SkipCounter, num_labels: int, freeze_encoder: bool) -> dict:
    """Accuracy and macro-F1 over every class (a class the model never predicts scores 0 in the mean). Every rank
    gathers for every batch, also one whose clips all failed to decode."""
    model.eval()
    predictions, references = [], []
    for batch in loader:
        for reason, name in batch["skipped"]:
            skips.skip(reason, name, once=True)
        predicted = []
        if "input_values" in batch:
            predicted = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits.argmax(-1).tolist()
        predictions += accelerator.gather_for_metrics(predicted, use_gather_object=True)
        references += accelerator.gather_for_metrics(
            batch.get("labels", torch.empty(0)).tolist(), use_gather_object=True
        )
    train_mode(model, freeze_encoder)
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "macro_f1": float(
            f1_score(references, predictions, labels=list(range(num_labels)), average="macro", zero_division=0)
        ),
        "clips": len(references),
    }


def load_data_and_model(run: RunArguments, task: ClassificationArguments, skips: SkipCounter):
    """Labelled clips (class sub-folders or a manifest), the classes in order, and the classifier sized to them.
    Returns (model, class names, train clips, {eval source: clips}, class weights or None)."""
    if not task.train_data or not task.eval_data:
        raise SystemExit("--train_data and --eval_data are required (class sub-folders or a labelled manifest).")
    max_samples = int(task.max_audio_seconds * SAMPLING_RATE)
    train = find_labelled_clips(task.train_data, skips, task.label_column, max_samples)
    eval_sets = {s: find_labelled_clips(s, skips, task.label_column, max_samples) for s in task.eval_data}
    try:
        names = class_names(train, eval_sets, task.labels)
        model = load_classifier(task, names)
    except ValueError as err:  # bad labels, or a --model that is not a model
        raise SystemExit(f"error: {err}") from err
    weights = balanced_class_weights(train, names) if task.class_weights == "balanced" else None
    logger.info(
        "model %s: %s parameters (%s trainable); classes %s; train: %d clips; eval: %s",
        task.model,
        format_params(sum(p.numel() for p in model.parameters())),
        format_params(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        names,
        len(train),
        {k: len(v) for k, v in eval_sets.items()},
    )
    return model, names, train, eval_sets, weights


def main(run: RunArguments, augment: AugmentArguments, task: ClassificationArguments):
    accelerator = Accelerator(
        gradient_accumulation_steps=run.gradient_accumulation_steps,
        log_with=None if run.report_to == "none" else run.report_to,
        project_dir=run.output_dir,
        kwargs_handlers=[collective_timeout(run.ddp_timeout)],
    )
    setup_logging(accelerator, "finetune_classification")
    set_seed(run.seed)
    if run.push_to_hub:
        check_hub_access(run.hub_model_id)
    lock = open_output_dir(accelerator, run)

    skips = SkipCounter()
    model, names, train, eval_sets, weights = load_data_and_model(run, task, skips)
    collator = ClassificationCollator(model.config.label2id)
    model, optimizer, scheduler, train_loader, eval_loaders = prepare_supervised_training(
        run, augment, model, collator, train, eval_sets, accelerator
    )
    state = TrainingState()
    groups = (run, augment, task)
    data = data_fingerprint({"train": train, **eval_sets})
    checkpoint_dir = start_run(accelerator, run, groups, state, "finetune_classification", skips, data)

    def run_evals():
        return {
            name: evaluate(model, loader, accelerator, skips, len(names), task.freeze_encoder)
            for name, loader in zip(eval_sets, eval_loaders, strict=True)
        }

    if state.step == 0:
        state.history.append({"step": 0, "eval": run_evals()})
        logger.info("initial eval: %s", state.history[-1]["eval"])
    train_mode(model, task.freeze_encoder)
    progress = tqdm(total=run.max_steps, initial=state.step, disable=not accelerator.is_main_process, desc="classify")
    started = time.time()
    for batch in resumable_batches(accelerator, train_loader, state):
        if state.step >= run.max_steps:
            break
        batch, all_skipped = batch_or_stand_in(accelerator, batch, collator, skips)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
            class_weights = None if weights is None else weights.to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"], weight=class_weights)
            stepped = backward_and_step_optimizer_and_scheduler(
                accelerator, model, loss, all_skipped, optimizer, scheduler, run.max_grad_norm
            )
        if not all_skipped:
            state.audio_seconds += batch["attention_mask"].sum().item() / SAMPLING_RATE
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        count_nonfinite_step(state, stepped, run.max_nonfinite_steps)
        progress.update(1)
        if state.step % run.logging_steps == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
            accelerator.log({"train/loss": loss.item()}, step=state.step)
        if state.step % run.eval_steps == 0 or state.step == run.max_steps:
            results = run_evals()
            state.history.append({"step": state.step, "eval": results})
            logger.info("step %d eval: %s", state.step, results)
            accuracy = next(iter(results.values()))["accuracy"]
            keep_if_best(  # the best model in output_dir; accuracy is higher-better
                accelerator,
                model,
                state,
                -accuracy,
                lambda m, sd: save_for_hub(m, run.output_dir, default_feature_extractor(), sd),
            )
        if state.step % run.save_steps == 0 or state.step == run.max_steps:
            save_checkpoint(accelerator, checkpoint_dir, state, skips, run.save_total_limit, run_settings(*groups))
    progress.close()
    finish_classification(accelerator, model, groups, state, skips, time.time() - started, names)
    finish_run(accelerator, lock)


def finish_classification(accelerator, model, groups, state, skips, elapsed: float, names: list[str]) -> None:
    """After the last step: one skip summary for all ranks, the card and classification_results.json, the upload."""
    run = groups[0]
    skips.merge_ranks()
    if not accelerator.is_main_process:
        return
    summary = skips.summary("clips")
    logger.info(summary)
    params = format_params(sum(p.numel() for p in model.parameters()))
    write_card_and_results(groups, state, summary, elapsed, names, accelerator.num_processes, params)
    if run.push_to_hub:
        message = f"classifier, {state.step} steps"
        logger.info("pushed to %s", push_folder(run.output_dir, run.hub_model_id, message))


def write_card_and_results(groups, state, skips_summary, elapsed, names, num_processes, params):
    run, augment, task = groups
    evals = [row for row in state.history if "eval" in row]
    initial, best = evals[0]["eval"], next(row["eval"] for row in evals if row["step"] == state.best_step)
    table = ["| eval set | accuracy | macro-F1 | clips | accuracy before fine-tuning |", "|---|---|---|---|---|"]
    for name, result in best.items():
        table.append(
            f"| {readable_dataset_name(name)} | {result['accuracy']:.3f} | {result['macro_f1']:.3f} | "
            f"{result['clips']} | {initial[name]['accuracy']:.3f} |"
        )
    model_name = run.hub_model_id or os.path.basename(os.path.abspath(run.output_dir))
    card_data = card_metadata(
        task.train_data, task.model, "audio-classification", ["audio-classification"], metrics=["accuracy", "f1"],
        model_name=model_name,
    )  # fmt: skip
    render_card(
        "classification.md",
        run.output_dir,
        card_data,
        model_name=model_name,
        repo_id=run.hub_model_id or run.output_dir,
        base_model=readable_dataset_name(task.model),
        params=params,
        classes=", ".join(f"`{n}`" for n in names),
        head="frozen encoder, head only" if task.freeze_encoder else "the whole model but its CNN",
        results_table="\n".join(table),
        steps=f"best of {state.step} (step {state.best_step})",
        skips=skips_summary,
        augmentation=describe_augmentation(augment, distilling=False),
    )
    results = {
        "classes": names,
        "initial_eval": initial,
        "best_eval": best,
        "best_step": state.best_step,
        "steps": state.step,
        "num_processes": num_processes,
        "train_seconds": elapsed,
        "audio_hours": state.audio_seconds / 3600,
        "skipped": skips_summary,
        "nonfinite": nonfinite_summary(state),
    }
    write_json(os.path.join(run.output_dir, "classification_results.json"), results)
    logger.info("done: %d steps -> %s; best %s", state.step, run.output_dir, json.dumps(best))


def cli(argv=None):
    """`distilxlsr-classify` and `python finetune_classification.py`: flags, or a YAML/JSON config followed by flags."""
    groups = (RunArguments, AugmentArguments, ClassificationArguments)
    with user_errors_as_messages():
        main(*parse_args(groups, CLASSIFICATION_DEFAULTS, argv, required=("model",)))


if __name__ == "__main__":
    cli()

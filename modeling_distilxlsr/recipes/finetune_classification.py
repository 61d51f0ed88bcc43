"""Fine-tune a distilled DistilXLSR model (or any wav2vec2-family checkpoint) to classify utterances: keywords,
speakers, emotions, intents.

    python finetune_classification.py --model DISTILLED_DIR --train_data train/ --eval_data dev/ --output_dir kws/
    accelerate launch finetune_classification.py --model ... --freeze_encoder     # the SUPERB frozen-encoder probe

Data: class sub-folders (`train/sim/*.wav`, `train/nao/*.wav`) or a manifest / metadata.csv with a `--label_column`.
The head is SUPERB's (weighted sum of every layer, mean pooling over real frames); the output folder works with
`pipeline("audio-classification", model="kws/", trust_remote_code=True)`. The same Accelerate loop, data layer,
checkpoints, resume and bad-input accounting as finetune_ctc.py; accuracy and macro-F1 per eval set.
"""

import logging
import sys
from dataclasses import dataclass, field

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForAudioClassification

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForSequenceClassification
from modeling_distilxlsr.audio.augment import AugmentArguments
from modeling_distilxlsr.audio.sources import SkipCounter
from modeling_distilxlsr.errors import OptionsError, UserError
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE, default_feature_extractor
from modeling_distilxlsr.models.folder import load_config, save_for_hub
from modeling_distilxlsr.training.arguments import RunArguments, parse_args, run_settings
from modeling_distilxlsr.training.checkpoints import data_fingerprint
from modeling_distilxlsr.training.classification_data import (
    ClassificationCollator,
    balanced_class_weights,
    class_names,
    find_labelled_clips,
)
from modeling_distilxlsr.training.classification_outputs import finish_classification
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
from modeling_distilxlsr.training.model_card import format_params
from modeling_distilxlsr.training.train_loop import TrainingLoop, keep_if_best, run_training_loop

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
        raise OptionsError("--train_data and --eval_data are required (class sub-folders or a labelled manifest).")
    max_samples = int(task.max_audio_seconds * SAMPLING_RATE)
    train = find_labelled_clips(task.train_data, skips, task.label_column, max_samples)
    eval_sets = {s: find_labelled_clips(s, skips, task.label_column, max_samples) for s in task.eval_data}
    try:
        names = class_names(train, eval_sets, task.labels)
        model = load_classifier(task, names)
    except ValueError as err:  # bad labels, or a --model that is not a model
        raise OptionsError(str(err)) from err
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
    groups = (run, augment, task)
    with output_dir_held(accelerator, run):
        check_resume_settings(run, groups)  # before the data and the model are loaded

        # 1. labelled clips and the classifier sized to their classes; loaders, optimizer and schedule, prepared
        skips = SkipCounter()
        model, names, train, eval_sets, weights = load_data_and_model(run, task, skips)
        collator = ClassificationCollator(model.config.label2id)
        model, optimizer, scheduler, train_loader, eval_loaders = prepare_supervised_training(
            run, augment, model, collator, train, eval_sets, accelerator
        )

        # 2. resume or start, train (the best model by the first eval set's accuracy kept in output_dir), finish
        state = TrainingState()
        data = data_fingerprint({"train": train, **eval_sets})
        checkpoint_dir = start_run(accelerator, run, groups, state, "finetune_classification", skips, data)

        def step_loss(batch):
            with accelerator.autocast():
                logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
            class_weights = None if weights is None else weights.to(logits.device)
            return torch.nn.functional.cross_entropy(logits.float(), batch["labels"], weight=class_weights), lambda: {}

        def run_evals():
            return {
                "eval": {
                    name: evaluate(model, loader, accelerator, skips, len(names), task.freeze_encoder)
                    for name, loader in zip(eval_sets, eval_loaders, strict=True)
                }
            }

        def keep_best(fields):  # the first eval set's accuracy (higher-better) picks the model in output_dir
            accuracy = next(iter(fields["eval"].values()))["accuracy"]
            save = lambda m, sd: save_for_hub(m, run.output_dir, default_feature_extractor(), sd)  # noqa: E731
            keep_if_best(accelerator, model, state, -accuracy, save)

        def set_train_mode():
            train_mode(model, task.freeze_encoder)

        loop = TrainingLoop(model, optimizer, scheduler, train_loader, collator, step_loss, run_evals, set_train_mode,
                            keep_best, lambda fields: str(fields["eval"]), "classify")  # fmt: skip
        elapsed = run_training_loop(accelerator, run, loop, state, skips, checkpoint_dir, run_settings(*groups))
        finish_classification(accelerator, model, groups, state, skips, elapsed, names)
        finish_run(accelerator)


def cli(argv=None):
    """`distilxlsr-classify` and `python finetune_classification.py`: flags, or a YAML/JSON config followed by flags."""
    groups = (RunArguments, AugmentArguments, ClassificationArguments)
    try:
        main(*parse_args(groups, CLASSIFICATION_DEFAULTS, argv, required=("model",)))
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    cli()

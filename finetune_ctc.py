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
import os
import tempfile
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import transformers
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from huggingface_hub import EvalResult
from tqdm.auto import tqdm
from transformers import AutoModelForCTC

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForCTC
from modeling_distilxlsr.audio.augment import AugmentArguments, describe_augmentation, make_augmenter
from modeling_distilxlsr.audio.dataset import AudioCollator, AudioDataset, make_loader
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.corpus.synthesis import default_corpus_split
from modeling_distilxlsr.distill.losses import logit_distillation_loss
from modeling_distilxlsr.distill.teacher import check_same_vocabulary, load_teacher, load_teacher_processor
from modeling_distilxlsr.lm.build import attach_lm, build_lm
from modeling_distilxlsr.lm.tune import tune_lm
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE, default_feature_extractor
from modeling_distilxlsr.models.configuration_distilxlsr import cnn_output_frames, cnn_receptive_field
from modeling_distilxlsr.models.folder import load_config, save_for_hub
from modeling_distilxlsr.models.modeling_distilxlsr_parts import frame_attention_mask
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextCounts, TextNormalizer, build_processor, build_vocab
from modeling_distilxlsr.text.phonemes import PhonemeTargets, build_phoneme_processor
from modeling_distilxlsr.training.arguments import RunArguments, parse_args, run_settings
from modeling_distilxlsr.training.checkpoints import data_fingerprint, save_checkpoint
from modeling_distilxlsr.training.ctc_data import CTCCollator, prepare_ctc_utterances
from modeling_distilxlsr.training.hub import check_hub_access, push_folder
from modeling_distilxlsr.training.loop import (
    TrainingState,
    backward_and_step_optimizer_and_scheduler,
    batch_or_stand_in,
    check_resume_settings,
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
    train_data_name,
)
from modeling_distilxlsr.training.results import write_json

logger = logging.getLogger("finetune_ctc")
# The eval figures per target, the first picks the best model: CER for characters; the phone error rate for phones.
METRICS = {"characters": ("cer", "wer"), "phonemes": ("per",)}
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


def load_ctc_model(args: FinetuneArguments, processor):
    """DistilXLSR checkpoints load with our own class (so the saved code is this version's); anything else through
    AutoModelForCTC. The head is sized to the tokenizer; CTC settings that avoid inf/NaN are forced."""
    overrides = dict(
        vocab_size=len(processor.tokenizer),
        pad_token_id=processor.tokenizer.pad_token_id,
        ctc_zero_infinity=True,
        ctc_loss_reduction="mean",
        layerdrop=0.0,  # a skipped layer leaves unused parameters: DDP would fail
        apply_spec_augment=args.mask_time_prob > 0,
        mask_time_prob=args.mask_time_prob,
    )
    config = load_config(args.model)
    model_class = DistilXLSRForCTC if isinstance(config, DistilXLSRConfig) else AutoModelForCTC
    if args.from_scratch:
        for key, value in overrides.items():
            setattr(config, key, value)
        model = DistilXLSRForCTC(config) if model_class is DistilXLSRForCTC else AutoModelForCTC.from_config(config)
    else:
        # transformers' load report is a warning table; the CTC head that fine-tuning adds is meant to be new, so the
        # report is replaced by one line, and a warning only for weights that should have been in the checkpoint.
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            model, info = model_class.from_pretrained(
                args.model, ignore_mismatched_sizes=True, output_loading_info=True, **overrides
            )
        finally:
            transformers.logging.set_verbosity(verbosity)
        log_loading_info(info)
    if args.freeze_encoder:  # Wav2Vec2ForCTC and DistilXLSRForCTC both leave only lm_head trainable
        model.freeze_base_model()
    elif args.freeze_cnn:
        model.freeze_feature_encoder()
    return model


def log_loading_info(info: dict) -> None:
    new = sorted(set(info["missing_keys"]) | {key for key, *_ in info.get("mismatched_keys", [])})
    expected_new = [key for key in new if key.startswith("lm_head.")]
    unexpected_new = [key for key in new if not key.startswith("lm_head.")]
    dropped = sorted(info["unexpected_keys"])
    logger.info(
        "newly initialised: %s (the CTC head, sized to the tokenizer)%s",
        ", ".join(expected_new) or "nothing",
        f"; not used from the checkpoint: {len(dropped)} tensors ({dropped[0].split('.')[0]}...)" if dropped else "",
    )
    if unexpected_new:
        logger.warning("weights missing from the checkpoint, newly initialised: %s", ", ".join(unexpected_new))


def greedy_transcripts(model, batch, processor) -> list[str]:
    """Argmax CTC decoding of the real frames of each item (frames from the config's kernels and strides)."""
    logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    real = frame_attention_mask(model.config, batch["attention_mask"], logits.shape[1])
    ids = logits.argmax(-1).masked_fill(~real, processor.tokenizer.pad_token_id)
    return processor.batch_decode(ids.cpu().numpy())


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
        texts = greedy_transcripts(accelerator.unwrap_model(model), batch, processor) if "input_values" in batch else []
        predictions += accelerator.gather_for_metrics(texts, use_gather_object=True)
        references += accelerator.gather_for_metrics(batch.get("texts", []), use_gather_object=True)
    train_mode(model, finetune.freeze_encoder)
    return {
        **error_rates(references, predictions, finetune.target),
        "empty_outputs": float(np.mean([not p.strip() for p in predictions])),
        "examples": [{"reference": r, "prediction": p} for r, p in list(zip(references, predictions, strict=True))[:3]],
    }


def build_text_targets(finetune: FinetuneArguments, train_raw: list):
    """The labels' normaliser (characters, or espeak-ng's IPA phones of the normalised text) and the processor whose
    tokenizer spells them: one normaliser for labels, references and vocabulary."""
    normalizer = TextNormalizer(finetune.digits, finetune.keep_apostrophe, finetune.ambiguous_numbers)
    if finetune.target == "phonemes":
        if finetune.lm_text:
            raise SystemExit("--lm_text builds a word n-gram for character targets; drop it with --target phonemes.")
        normalizer = PhonemeTargets(normalizer)
        phones = [text for u in train_raw if (text := normalizer(u.text))]
        return normalizer, build_phoneme_processor(phones, tempfile.mkdtemp())
    if finetune.vocab == "fixed":
        vocab = build_vocab(keep_apostrophe=finetune.keep_apostrophe)
    else:
        vocab = build_vocab([text for u in train_raw if (text := normalizer(u.text))])
    return normalizer, build_processor(vocab, default_feature_extractor())


def prepare_data(run: RunArguments, finetune: FinetuneArguments, accelerator, skips: SkipCounter):
    """Transcribed utterances, normalised and checked against their clip's length, the model sized to the tokenizer,
    and the eval sets. Returns (model, processor, normalizer, train utterances, {eval source: utterances})."""
    train_source = finetune.train_data or default_corpus_split("train", accelerator)
    eval_sources = finetune.eval_data or [default_corpus_split("dev", accelerator)]
    train_raw = find_utterances(train_source, skips, need_text=True)
    normalizer, processor = build_text_targets(finetune, train_raw)
    model = load_ctc_model(finetune, processor)
    text_counts = TextCounts()

    def prepare(utterances, max_seconds):
        return prepare_ctc_utterances(
            utterances,
            normalizer,
            processor.tokenizer,
            lambda samples: cnn_output_frames(model.config, samples),
            skips,
            text_counts,
            int(max_seconds * SAMPLING_RATE),
        )

    train_utterances = prepare(train_raw, finetune.max_audio_seconds)
    if finetune.train_fraction < 1.0:
        keep = np.random.default_rng(run.seed).permutation(len(train_utterances))
        keep = sorted(keep[: max(1, round(finetune.train_fraction * len(train_utterances)))])
        train_utterances = [train_utterances[i] for i in keep]
    eval_sets = {
        source: prepare(find_utterances(source, skips, need_text=True), finetune.max_eval_audio_seconds)
        for source in eval_sources
    }
    if not train_utterances:
        raise ValueError(f"No usable transcribed audio in {train_source} ({skips.summary()}).")
    logger.info(
        "model %s%s: %s parameters; train: %d utterances (%.2f h); eval: %s; %s",
        finetune.model,
        " (from scratch)" if finetune.from_scratch else "",
        format_params(sum(p.numel() for p in model.parameters())),
        len(train_utterances),
        sum(u.seconds for u in train_utterances) / 3600,
        {k: len(v) for k, v in eval_sets.items()},
        text_counts.report(),
    )
    return model, processor, normalizer, train_utterances, eval_sets


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
    lock = open_output_dir(accelerator, run)
    check_resume_settings(run, (run, augment, finetune))  # before the data and any teacher are loaded

    skips = SkipCounter()
    model, processor, normalizer, train_utterances, eval_sets = prepare_data(run, finetune, accelerator, skips)
    collator = CTCCollator(processor)
    teacher, unlabeled = (None, None)
    if finetune.teacher:  # before prepare: the unlabeled loader is sharded across ranks like the labelled one
        teacher, unlabeled = prepare_teacher_and_unlabeled(run, augment, finetune, processor, model, skips)
        teacher.to(accelerator.device)
    model, optimizer, scheduler, train_loader, eval_loaders = prepare_supervised_training(
        run, augment, model, collator, train_utterances, eval_sets, accelerator
    )
    unlabeled_batches = None
    if unlabeled is not None:
        unlabeled_batches = endless_batches(accelerator.prepare(unlabeled))
    state = TrainingState()
    groups = (run, augment, finetune)
    listed = {"train": train_utterances, **eval_sets}
    if unlabeled is not None:
        listed["unlabeled"] = unlabeled.dataset.utterances
    data = data_fingerprint(listed)
    checkpoint_dir = start_run(accelerator, run, groups, state, "finetune_ctc", skips, data)

    def run_evals():
        return {
            name: evaluate(model, loader, processor, accelerator, skips, finetune)
            for name, loader in zip(eval_sets, eval_loaders, strict=True)
        }

    if state.step == 0:
        state.history.append({"step": 0, "eval": run_evals()})
        logger.info("initial eval: %s", brief(state.history[-1]["eval"]))

    # from_pretrained returns eval mode: a resumed run (no initial eval) trained without dropout and SpecAugment
    # until this was set here
    train_mode(model, finetune.freeze_encoder)
    progress = tqdm(total=run.max_steps, initial=state.step, disable=not accelerator.is_main_process, desc="ctc")
    started = time.time()
    for batch in resumable_batches(accelerator, train_loader, state):
        if state.step >= run.max_steps:
            break
        batch, all_skipped = batch_or_stand_in(accelerator, batch, collator, skips)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                outputs = model(batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["labels"])
            loss, logit_kl = outputs.loss, None
            if unlabeled_batches is not None:
                logit_kl = unlabeled_kd_loss(model, teacher, unlabeled_batches, finetune, accelerator, skips)
                loss = loss + finetune.logit_loss_weight * logit_kl
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
            row = {"step": state.step, "train/loss": outputs.loss.item(), "lr": scheduler.get_last_lr()[0]}
            if logit_kl is not None:
                row["train/logit_kl"] = logit_kl.item()
            state.history.append(row)
            accelerator.log(row, step=state.step)
            progress.set_postfix(loss=f"{row['train/loss']:.3f}")
        if state.step % run.eval_steps == 0 or state.step == run.max_steps:
            results = run_evals()
            state.history.append({"step": state.step, "eval": results})
            first = next(iter(results.values()))
            accelerator.log({f"eval/{k}": v for k, v in first.items() if k != "examples"}, step=state.step)
            logger.info("step %d eval: %s", state.step, brief(results))
            keep_if_best(  # the best model in output_dir
                accelerator,
                model,
                state,
                first[METRICS[finetune.target][0]],
                lambda m, sd: save_for_hub(m, run.output_dir, processor, sd),
            )
        if state.step % run.save_steps == 0 or state.step == run.max_steps:
            save_checkpoint(accelerator, checkpoint_dir, state, skips, run.save_total_limit, run_settings(*groups))
    progress.close()

    finish_finetuning(
        accelerator, accelerator.unwrap_model(model), processor, normalizer, groups, state, skips, started
    )
    finish_run(accelerator, lock)


def prepare_teacher_and_unlabeled(run, augment, finetune: FinetuneArguments, processor, model, skips):
    """Semi-supervised fine-tuning's two extras: the frozen CTC teacher (its vocabulary checked against the model's
    tokenizer: refused, naming the differing characters) and a loader of unlabeled audio, transcripts dropped, that
    with --augment gives the teacher the clean clip and the model the corrupted one. Returns (teacher, loader)."""
    if not finetune.unlabeled_data:
        raise ValueError("--teacher learns from untranscribed audio: give it with --unlabeled_data.")
    if finetune.target != "characters":
        raise ValueError("--teacher distils a character CTC teacher; it does not combine with --target phonemes.")
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


def unlabeled_kd_loss(model, teacher, batches, finetune: FinetuneArguments, accelerator, skips) -> torch.Tensor:
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


def finish_finetuning(accelerator, model, processor, normalizer, groups, state, skips, started: float) -> None:
    """After the last step: one skip summary for all ranks, the card and ctc_results.json, the LM, the upload."""
    run, _, finetune = groups
    skips.merge_ranks()
    if not accelerator.is_main_process:
        return
    summary = skips.summary("utterances")
    logger.info(summary)
    write_card_and_results(groups, state, summary, time.time() - started, model, processor)
    if finetune.lm_text:
        attach_tuned_lm(run, finetune, normalizer, finetune.eval_data or [default_corpus_split("dev")])
    if run.push_to_hub:
        logger.info("pushed to %s", push_folder(run.output_dir, run.hub_model_id, f"CTC, {state.step} steps"))


def attach_tuned_lm(run: RunArguments, finetune: FinetuneArguments, normalizer, eval_sources: list[str]) -> None:
    """Builds the --lm_text n-gram with the labels' normaliser, ships it in output_dir and tunes it on the dev set."""
    with tempfile.TemporaryDirectory() as lm_dir:
        info = build_lm(finetune.lm_text, lm_dir, finetune.lm_order, normalizer=normalizer)
        logger.info(
            "LM: %d sentences, vocabulary %d, n-grams %s", info["sentences"], info["vocabulary"], info["ngram_counts"]
        )
        attach_lm(run.output_dir, lm_dir)
    report = tune_lm(run.output_dir, eval_sources)
    for name, row in report["eval"].items():
        logger.info(
            "%s: greedy WER %.3f CER %.3f -> LM WER %.3f CER %.3f (alpha %g, beta %g)",
            name, row["greedy"]["wer"], row["greedy"]["cer"], row["lm"]["wer"], row["lm"]["cer"],
            report["alpha"], report["beta"],
        )  # fmt: skip


def brief(results: dict) -> str:
    return "; ".join(
        f"{os.path.basename(os.path.normpath(name))}: "
        + " ".join(f"{metric.upper()} {r[metric]:.3f}" for metric in ("wer", "cer", "per") if metric in r)
        + f" empty {r['empty_outputs']:.2f}"
        for name, r in results.items()
    )


def results_table(initial: dict, best: dict, metrics: tuple[str, ...]) -> tuple[str, list]:
    """The card's table (each metric, after and before fine-tuning) and the Hub's model-index results."""
    names = [m.upper() for m in metrics]
    table = [
        "| eval set | " + " | ".join(names) + " | " + " | ".join(f"{n} before fine-tuning" for n in names) + " |",
        "|---" * (1 + 2 * len(names)) + "|",
    ]
    eval_results = []
    for name, result in best.items():
        dataset = readable_dataset_name(name)
        after = " | ".join(f"{result[m]:.3f}" for m in metrics)
        before = " | ".join(f"{initial[name][m]:.3f}" for m in metrics)
        table.append(f"| {dataset} | {after} | {before} |")
        eval_results += [
            EvalResult(
                task_type="automatic-speech-recognition",
                task_name="Speech Recognition",
                dataset_type=dataset,
                dataset_name=dataset,
                metric_type=metric,
                metric_name=f"{metric.upper()} (greedy)",
                metric_value=round(result[metric], 4),
            )
            for metric in metrics
        ]
    return "\n".join(table), eval_results


def write_card_and_results(groups, state, skips_summary, elapsed, model, processor):
    run, augment, finetune = groups
    evals = [row for row in state.history if "eval" in row]
    initial, best = evals[0]["eval"], next(row["eval"] for row in evals if row["step"] == state.best_step)
    metrics = ("wer", "cer") if finetune.target == "characters" else METRICS[finetune.target]
    table, eval_results = results_table(initial, best, metrics)
    model_name = run.hub_model_id or os.path.basename(os.path.abspath(run.output_dir))
    card_data = card_metadata(
        finetune.train_data,
        None if finetune.from_scratch else finetune.model,
        "automatic-speech-recognition",
        ["automatic-speech-recognition"],
        metrics=list(metrics),
        model_name=model_name,
        eval_results=eval_results,
    )
    if any(r["empty_outputs"] > 0.5 for r in best.values()):
        logger.warning(
            "More than half of the eval outputs are empty: the model predicts only blanks. Train longer, "
            "raise the learning rate, or check the transcripts."
        )
    render_card(
        "asr.md",
        run.output_dir,
        card_data,
        model_name=model_name,
        repo_id=run.hub_model_id or run.output_dir,
        base_model=readable_dataset_name(finetune.model) + (" (random init)" if finetune.from_scratch else ""),
        params=format_params(sum(p.numel() for p in model.parameters())),
        train_data=train_data_name(finetune.train_data),
        vocabulary=(
            f"an IPA phone vocabulary of {len(processor.tokenizer)} symbols (espeak-ng's pt-br rules, `<pad>` is the "
            "CTC blank; PER below is the phone error rate)"
            if finetune.target == "phonemes"
            else f"a character vocabulary of {len(processor.tokenizer)} symbols (`|` marks word boundaries, `[PAD]` "
            "is the CTC blank)"
        ),
        results_table=table,
        steps=f"best of {state.step} (step {state.best_step})",
        skips=skips_summary,
        augmentation=describe_augmentation(augment, distilling=False),
    )
    results = {
        "initial_eval": initial,
        "best_eval": best,
        "best_step": state.best_step,
        "steps": state.step,
        "target": finetune.target,
        "num_processes": PartialState().num_processes,  # the launch's, as train_distill.py records it
        "train_seconds": elapsed,
        "audio_hours": state.audio_seconds / 3600,
        "skipped": skips_summary,
        "nonfinite": nonfinite_summary(state),
        "text_normalizer": TextNormalizer(
            finetune.digits, finetune.keep_apostrophe, finetune.ambiguous_numbers
        ).settings(),
    }
    write_json(os.path.join(run.output_dir, "ctc_results.json"), results)


def cli(argv=None):
    """`distilxlsr-finetune` and `python finetune_ctc.py`: flags, or a YAML/JSON config followed by flags."""
    with user_errors_as_messages():
        main(
            *parse_args(
                (RunArguments, AugmentArguments, FinetuneArguments), FINETUNE_DEFAULTS, argv, required=("model",)
            )
        )


if __name__ == "__main__":
    cli()

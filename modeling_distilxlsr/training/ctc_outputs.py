"""What a CTC fine-tuning run leaves beside the best model: its model card (results table, Hub model-index),
ctc_results.json, the n-gram LM built from --lm_text and tuned on the dev set, and the upload."""

import logging
import os
import tempfile

from accelerate import PartialState
from huggingface_hub import EvalResult

from ..audio.augment import describe_augmentation
from ..corpus.synthesis import default_corpus_split
from ..lm.build import attach_lm, build_lm
from ..lm.tune import tune_lm
from ..text.normalizer import TextNormalizer
from .hub import push_folder
from .loop import best_model_results
from .model_card import card_metadata, card_repo_id, format_params, readable_dataset_name, render_card, train_data_name
from .results import write_json

logger = logging.getLogger(__name__)
# The eval figures per target, the first picks the best model: CER for characters; the phone error rate for phones.
METRICS = {"characters": ("cer", "wer"), "phonemes": ("per",)}


def finish_finetuning(accelerator, model, processor, normalizer, groups, state, skips, elapsed: float) -> None:
    """After the last step: one skip summary for all ranks, the card and ctc_results.json, the LM, the upload."""
    run, _, finetune = groups
    skips.merge_ranks()
    if not accelerator.is_main_process:
        return
    summary = skips.summary("utterances")
    logger.info(summary)
    write_card_and_results(groups, state, summary, elapsed, model, processor)
    if finetune.lm_text:
        attach_tuned_lm(run, finetune, normalizer, finetune.eval_data or [default_corpus_split("dev")])
    if run.push_to_hub:
        logger.info("pushed to %s", push_folder(run.output_dir, run.hub_model_id, f"CTC, {state.step} steps"))


def attach_tuned_lm(run, finetune, normalizer, eval_sources: list[str]) -> None:
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
    # the launch's process count, as train_distill.py records it
    results = best_model_results(state, skips_summary, elapsed, PartialState().num_processes)
    initial, best = results["initial_eval"], results["best_eval"]
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
        repo_id=card_repo_id(run.hub_model_id, run.output_dir),
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
    results["target"] = finetune.target
    results["text_normalizer"] = TextNormalizer(
        finetune.digits, finetune.keep_apostrophe, finetune.ambiguous_numbers
    ).settings()
    write_json(os.path.join(run.output_dir, "ctc_results.json"), results)

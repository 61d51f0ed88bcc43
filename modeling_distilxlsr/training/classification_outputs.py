"""What a classification fine-tuning run leaves beside the best model: its model card (accuracy and macro-F1 per
eval set, before and after), classification_results.json, and the upload."""

import json
import logging
import os

from ..audio.augment import describe_augmentation
from .hub import push_folder
from .loop import best_model_results
from .model_card import card_metadata, card_repo_id, format_params, readable_dataset_name, render_card
from .results import write_json

logger = logging.getLogger(__name__)


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
    results = {"classes": names, **best_model_results(state, skips_summary, elapsed, num_processes)}
    initial, best = results["initial_eval"], results["best_eval"]
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
        repo_id=card_repo_id(run.hub_model_id, run.output_dir),
        base_model=readable_dataset_name(task.model),
        params=params,
        classes=", ".join(f"`{n}`" for n in names),
        head="frozen encoder, head only" if task.freeze_encoder else "the whole model but its CNN",
        results_table="\n".join(table),
        steps=f"best of {state.step} (step {state.best_step})",
        skips=skips_summary,
        augmentation=describe_augmentation(augment, distilling=False),
    )
    write_json(os.path.join(run.output_dir, "classification_results.json"), results)
    logger.info("done: %d steps -> %s; best %s", state.step, run.output_dir, json.dumps(best))

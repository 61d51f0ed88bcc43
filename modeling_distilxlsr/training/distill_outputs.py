"""What a distillation run leaves: the hub-ready folder (the student's backbone, or an ASR folder when it has the
teacher's CTC head), its curves, its test CER through the transformers pipeline, its model card and
distill_results.json, and the upload. From the recipe's argument groups `(run, augment, distill)`."""

import logging
import os

from ..audio.augment import describe_augmentation
from ..corpus.synthesis import default_corpus_split
from ..inference.scoring import score_asr_folder
from ..models.folder import save_for_hub
from ..models.modeling_distilxlsr import DistilXLSRForCTC
from .hub import push_folder
from .loop import nonfinite_summary, session_summary
from .model_card import card_metadata, card_repo_id, format_params, readable_dataset_name, render_card, train_data_name
from .plots import plot_curves
from .results import write_json

logger = logging.getLogger(__name__)


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
    run, _, distill = groups
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
        **card_facts(groups, student, state, teacher_params, skips_summary),
        vocab_size=config.vocab_size,
        losses="; ".join(losses),
        eval_kl=f"{final_eval.get('eval/logit_kl', float('nan')):.4f}",
        test=(
            f"CER {test['cer']:.3f}, WER {test['wer']:.3f} ({test['utterances']} utterances of "
            f"{readable_dataset_name(test_source)}, greedy)"
            if test
            else "not measured (no --test_data)"
        ),
    )
    return test


def write_model_folder(student, state_dict, groups, state, final_eval: dict, skips_summary: str, teacher_params: int):
    """The hub-ready folder: weights + config + code + feature extractor, curves, and the model card."""
    run, _, distill = groups
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
        **card_facts(groups, student, state, teacher_params, skips_summary),
        teacher_note=" (**random weights: a smoke run, not a usable model**)" if distill.teacher_random_init else "",
        pred_layer_ids=", ".join(map(str, config.pred_layer_ids)),
        target_norm=distill.normalize_targets,
        eval_loss=f"{final_eval['eval/loss']:.4f}",
        eval_cosine=", ".join(
            [f"layer {i}: {final_eval[f'eval/cosine_layer_{i}']:.3f}" for i in distill.pred_layer_ids]
            + ([f"CNN output: {final_eval['eval/cosine_cnn']:.3f}"] if "eval/cosine_cnn" in final_eval else [])
        ),
    )


def card_facts(groups, student, state, teacher_params: int, skips_summary: str) -> dict:
    """What both distillation cards say: names, teacher and student sizes, data, steps, CNN, skips, augmentation."""
    run, augment, distill = groups
    config = student.config
    return dict(
        model_name=run.hub_model_id or os.path.basename(os.path.abspath(run.output_dir)),
        repo_id=card_repo_id(run.hub_model_id, run.output_dir),
        teacher=readable_dataset_name(distill.teacher),
        teacher_params=format_params(teacher_params),
        backbone_params=format_params(sum(p.numel() for p in student.distilxlsr.parameters())),
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        layer_rate=(
            f", at 1/{config.encoder_stride} of the frame rate (`encoder_stride`: frames averaged in groups of "
            f"{config.encoder_stride}, the output repeated back with a learnt skip)"
            if config.encoder_stride > 1
            else ""
        ),
        train_data=train_data_name(distill.train_data),
        hours_seen=f"{state.audio_seconds / 3600:.2f}",
        steps=state.step,
        cnn=cnn_description(config, distill),
        skips=skips_summary,
        augmentation=describe_augmentation(augment, distilling=True),
    )


def cnn_description(config, distill) -> str:
    if distill.student_frontend == "log_mel":
        return (
            f"log-mel ({config.num_mel_bins} bands, {config.conv_kernel[0]}-sample window every "
            f"{config.conv_stride[0]}) + a per-frame MLP to {config.conv_dim[0]} channels, distilled from the "
            f"teacher's CNN output (weight {distill.cnn_loss_weight:g})"
            + (
                f"; mel-band masks over {config.mel_band_mask_prob:g} of the bands in training"
                if config.mel_band_mask_prob
                else ""
            )
        )
    if distill.student_cnn_width is None:
        frozen = ", frozen" if distill.freeze_cnn else ""
        return f"the teacher's ({list(config.conv_dim)} channels), copied{frozen}"
    return (
        f"slim, {list(config.conv_dim)} channels: initialised from a channel subset of the teacher's CNN and "
        f"distilled from its output (weight {distill.cnn_loss_weight:g})"
    )

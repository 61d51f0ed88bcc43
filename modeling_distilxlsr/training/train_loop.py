"""The one training loop the three recipes share, and its step pieces: batches from where a resume left off,
stand-ins for batches whose clips all failed, backward / clip / optimizer and schedule steps (a NaN/Inf update
skipped), logging, evaluation, checkpoints. A recipe gives it what differs (`TrainingLoop`: the loss of a batch, the
evaluation, what to do with an evaluation); the loop reads top to bottom like accelerate's `complete_nlp_example.py`.

Audio seen is summed on the device and reduced across ranks only when a row is logged or a checkpoint saved: a
per-step `.item()` would force a device sync each step, and would count one rank's audio under DDP."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from accelerate.utils import send_to_device
from tqdm.auto import tqdm

from ..audio.streaming import StreamingAudioDataset
from ..errors import UserError
from ..models.audio_format import SAMPLING_RATE
from .checkpoints import save_checkpoint
from .loop import TrainingState

logger = logging.getLogger(__name__)


class NonFiniteLossError(UserError, RuntimeError):
    """Too many optimizer steps in a row with a NaN/Inf loss or gradients: the run has diverged."""


@dataclass
class TrainingLoop:
    """What a recipe hands the shared loop. `step_loss(batch)` returns the loss `backward()` sees and a function
    giving its parts to log ({name: 0-d tensor}), called only when a row is logged, so that a step that logs
    nothing builds nothing; `evaluate()` the fields of a history row; `after_eval` (optional) gets them after each
    evaluation but the initial one (keeping the best model); `set_train_mode` puts the model back in training mode
    after an evaluation."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: object
    collator: object
    step_loss: Callable[[dict], tuple[torch.Tensor, Callable[[], dict]]]
    evaluate: Callable[[], dict]
    set_train_mode: Callable[[], None]
    after_eval: Callable[[dict], None] | None = None
    describe_eval: Callable[[dict], str] = str
    name: str = "train"


def run_training_loop(accelerator, run, loop: TrainingLoop, state: TrainingState, skips, checkpoint_dir: str,
                      settings: dict) -> float:  # fmt: skip
    """Trains from `state` (fresh or resumed) to `run.max_steps`; returns the seconds this start took."""
    if state.step == 0:
        state.history.append({"step": 0, **loop.evaluate()})
        logger.info("initial eval: %s", loop.describe_eval(state.history[-1]))
    # from_pretrained returns eval mode: a resumed run (no initial eval) would train without dropout
    loop.set_train_mode()
    streamed = isinstance(loop.train_loader.dataset, StreamingAudioDataset)
    progress = tqdm(total=run.max_steps, initial=state.step, disable=not accelerator.is_main_process, desc=loop.name)
    audio_since_log = torch.zeros((), device=accelerator.device)
    started = time.time()
    for batch in resumable_batches(accelerator, loop.train_loader, state):
        if state.step >= run.max_steps:
            break
        if streamed:  # nothing was listed up front: count what the stream delivers
            skips.total += batch["num_items"]
        batch, stand_in = batch_or_stand_in(accelerator, batch, loop.collator, skips)
        with accelerator.accumulate(loop.model):
            loss, log_parts = loop.step_loss(batch)
            stepped = backward_and_step_optimizer_and_scheduler(
                accelerator, loop.model, loss, stand_in, loop.optimizer, loop.scheduler, run.max_grad_norm
            )
        if not stand_in:
            audio_since_log += batch["attention_mask"].sum() / SAMPLING_RATE
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        count_nonfinite_step(state, stepped, run.max_nonfinite_steps)
        progress.update(1)
        saving = state.step % run.save_steps == 0 or state.step == run.max_steps
        if saving or state.step % run.logging_steps == 0:  # all ranks' audio, counted before any checkpoint
            state.audio_seconds += accelerator.reduce(audio_since_log, reduction="sum").item()
            audio_since_log.zero_()
            row = {"step": state.step, "train/loss": loss.item(), "lr": loop.scheduler.get_last_lr()[0]}
            row.update({name: value.item() for name, value in log_parts().items()})
            row["audio_hours"] = state.audio_seconds / 3600
            state.history.append(row)
            accelerator.log(row, step=state.step)
            progress.set_postfix(loss=f"{row['train/loss']:.3f}", hours=f"{row['audio_hours']:.2f}")
        if state.step % run.eval_steps == 0 or state.step == run.max_steps:
            fields = loop.evaluate()
            state.history.append({"step": state.step, **fields})
            accelerator.log(scalars(fields), step=state.step)
            logger.info("step %d eval: %s", state.step, loop.describe_eval(fields))
            if loop.after_eval is not None:
                loop.after_eval(fields)
        if saving:
            save_checkpoint(accelerator, checkpoint_dir, state, skips, run.save_total_limit, settings)
    progress.close()
    return time.time() - started


def scalars(fields: dict) -> dict:
    """The numbers of an evaluation row for the trackers: flat figures as they are; per-eval-set results
    (`{"eval": {set: {metric: value}}}`) as the first set's, `eval/<metric>` (the set that picks the best model)."""
    flat = {name: value for name, value in fields.items() if isinstance(value, int | float)}
    per_set = fields.get("eval")
    if isinstance(per_set, dict) and per_set:
        first = next(iter(per_set.values()))
        flat.update({f"eval/{k}": v for k, v in first.items() if isinstance(v, int | float)})
    return flat


def batch_or_stand_in(accelerator, batch: dict, collator, skips) -> tuple[dict, bool]:
    """Counts the clips of `batch` that failed to decode; a batch whose clips all failed is replaced by the
    collator's stand-in (run with zero loss weight: every rank must still run forward and backward, or DDP's
    gradient all-reduce hangs). Returns the batch to run and whether it is the stand-in."""

    for reason, name in batch["skipped"]:
        skips.skip(reason, name, once=True)
    if "input_values" in batch:
        return batch, False
    return send_to_device(collator.stand_in(), accelerator.device), True


def backward_and_step_optimizer_and_scheduler(
    accelerator, model, loss, stand_in: bool, optimizer, scheduler, max_grad_norm: float
) -> bool:
    """Backward (a stand-in batch with zero weight), then, at the end of an accumulation, clip; then the optimizer
    step, the LR scheduler step and zeroed gradients (accelerate's prepared optimizer and scheduler skip their step
    inside an accumulation).

    Returns False when the update is skipped: the gradients' total norm is NaN/Inf (a non-finite loss on any rank, or
    an overflow). The norm is taken after DDP's all-reduce, so every rank sees the same value and skips together;
    the gradients are dropped and neither optimizer nor schedule steps, as torch.amp's GradScaler does with an
    overflow. (transformers' Trainer would apply the NaN update and train on garbage from then on.)"""
    accelerator.backward(loss * (0.0 if stand_in else 1.0))
    if accelerator.sync_gradients:
        norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        if norm is not None and not torch.isfinite(torch.as_tensor(norm)).all():
            optimizer.zero_grad()
            return False
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return True


def count_nonfinite_step(state: TrainingState, stepped: bool, limit: int) -> None:
    """After each optimizer step: a skipped update (`backward_and_step_optimizer_and_scheduler`) is logged with its
    step and counted (the summary and results report them); `limit` skipped in a row stop the run with
    `NonFiniteLossError` before anything is saved from it (a model that only gives NaN is not a result)."""
    if stepped:
        state.nonfinite_in_a_row = 0
        return
    state.nonfinite_steps.append(state.step)
    state.nonfinite_in_a_row += 1
    logger.warning(
        "step %d: non-finite (NaN/Inf) loss or gradients: update skipped (%d in a row, %d in all)",
        state.step,
        state.nonfinite_in_a_row,
        len(state.nonfinite_steps),
    )
    if state.nonfinite_in_a_row >= limit:
        raise NonFiniteLossError(
            f"step {state.step}: the loss or its gradients were NaN/Inf at {limit} steps in a row (steps "
            f"{state.nonfinite_steps[-limit]}-{state.step}); the run stops and saves nothing. Lower the learning rate, "
            "check the data, or resume from an earlier checkpoint (--max_nonfinite_steps sets the limit)."
        )


def keep_if_best(accelerator, model, state: TrainingState, score: float, save) -> None:
    """When `score` (lower is better) beats the best so far, records it and calls `save(unwrapped model,
    full state dict)` on the main process; the state dict is gathered on every rank (sharded weights)."""
    if state.best_metric is None or score < state.best_metric:
        state.best_metric, state.best_step = score, state.step
        state_dict = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            save(accelerator.unwrap_model(model), state_dict)
    accelerator.wait_for_everyone()


def resumable_batches(accelerator, loader, state: TrainingState):
    """Batches epoch after epoch, from where `state` says: after a resume, the same epoch (same shuffle) past the
    batches already seen. The caller stops when it has done its steps.

    A `StreamingAudioDataset` is one endless pass (it reshuffles itself); its loader is not prepared by accelerate
    (each rank reads its own part of the stream), so batches are moved to the device here."""

    if isinstance(loader.dataset, StreamingAudioDataset):
        loader.dataset.resume_after(state.batches_in_epoch)
        for batch in loader:
            state.batches_in_epoch += 1
            yield send_to_device(batch, accelerator.device)
        raise RuntimeError("The audio stream ended: no DataLoader worker has any data left.")
    while True:
        loader.set_epoch(state.epoch)
        batches = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        for batch in batches:
            state.batches_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batches_in_epoch = 0

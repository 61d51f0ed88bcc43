"""Pieces the three training recipes share: resumable loop state, the run's start (output folder, resume) and end,
weight-decay groups, the batches of a resumed epoch. Not part of the Hub files."""

import contextlib
import logging
import math
import os
import time
import uuid
from datetime import timedelta

import torch
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list
from torch import nn
from transformers import get_linear_schedule_with_warmup

from ..audio.augment import make_augmenter
from ..audio.dataset import AudioDataset, make_loader
from .arguments import field_defaults, resume_policies, run_settings
from .checkpoints import (
    compare_data,
    list_checkpoints,
    load_checkpoint,
    resume_candidates,
    whole_checkpoints_with_these_settings,
)
from .output_dir import OutputDirError, claim_output_dir
from .results import write_json

logger = logging.getLogger(__name__)


class TrainingState:
    """What a killed run needs, beyond model/optimizer/scheduler/RNG (which `accelerator.save_state` keeps), to go on
    exactly where it stopped: the step, the epoch and the position inside it, audio seen, the logged history."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.audio_seconds = 0.0
        self.history: list[dict] = []
        self.best_metric: float | None = None  # fine-tuning keeps the model with the best eval CER
        self.best_step: int | None = None
        self.skips_per_rank: list[dict] | None = None  # each rank's SkipCounter at the checkpoint
        self.run_id = uuid.uuid4().hex  # checkpoint rotation removes only this run's checkpoints
        self.resumes: list[dict] = []  # {"checkpoint", "step"} of every resume, for training_args.json
        self.nonfinite_steps: list[int] = []  # steps whose update was skipped: NaN/Inf loss or gradients
        self.nonfinite_in_a_row = 0
        self.data_fingerprint: dict | None = None  # the data listing the run trains on (`data_fingerprint`)

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict):
        for key, value in state.items():
            setattr(self, key, value)


def collective_timeout(seconds: int):
    """How long a collective (a gather, a barrier, DDP's gradient all-reduce) waits for the other processes before
    the run fails with a timeout error rather than hanging: a machine that died mid-run. transformers' default."""

    return InitProcessGroupKwargs(timeout=timedelta(seconds=seconds))


def train_mode(model: nn.Module, freeze_encoder: bool) -> None:
    """`model.train()`, except a frozen encoder stays in eval mode: a probe of frozen features must see them as
    inference does (no dropout, no SpecAugment masking), as SUPERB's frozen upstreams run."""
    model.train()
    if freeze_encoder:
        getattr(model, "module", model).base_model.eval()  # `module`: the model inside DDP


def decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices only, none on biases, norms and 1-D parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or name.endswith(".bias") or "norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_linear_schedule(optimizer, warmup_fraction: float, max_steps: int, num_processes: int):
    """Linear warm-up over `warmup_fraction` of `max_steps` optimizer steps, then linear decay to 0 at `max_steps`.

    A scheduler passed to `accelerator.prepare` is stepped `num_processes` times per optimizer step (accelerate
    assumes the schedule counts the batches of all processes), so the schedule is laid out over
    `max_steps * num_processes`: without that, two GPUs would decay the LR to 0 halfway through the run."""

    warmup = math.ceil(warmup_fraction * max_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup * num_processes, max_steps * num_processes)


def setup_logging(accelerator, script_logger_name: str):
    """INFO from our code on the main process only; libraries stay at WARNING."""
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
    level = logging.INFO if accelerator.is_main_process else logging.WARNING
    for name in (script_logger_name, "modeling_distilxlsr"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger(script_logger_name).info(
        "%s, %d process(es), mixed precision: %s",
        accelerator.distributed_type,
        accelerator.num_processes,
        accelerator.mixed_precision,
    )


@contextlib.contextmanager
def output_dir_held(accelerator, run):
    """Claims `run.output_dir` for this run before anything expensive happens (see `output_dir.claim_output_dir`),
    and releases it however the run ends: the main process takes the lock, and every rank fails with the same
    `OutputDirError` if it cannot. Released on an error too: a lock left behind would name a process that is still
    alive (a notebook's, a test's) and refuse every later run into the folder."""

    checkpoint_dir = os.path.join(run.output_dir, "checkpoints")
    resuming = bool(run.resume_from_checkpoint) and (
        run.resume_from_checkpoint != "latest" or bool(list_checkpoints(checkpoint_dir))
    )
    lock, error = None, [None]
    if accelerator.is_main_process:
        try:
            lock = claim_output_dir(run.output_dir, resuming, run.overwrite_output_dir)
        except Exception as err:  # passed to every rank, raised there
            error = [str(err) if isinstance(err, OutputDirError) else f"{type(err).__name__}: {err}"]
    if accelerator.num_processes > 1:
        broadcast_object_list(error)
    if error[0]:
        raise OutputDirError(error[0])
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def check_resume_settings(run, groups: tuple) -> None:
    """The settings half of a resume, before the costly set-up (loading a teacher, pseudo-labelling the corpus): a
    resume with other settings is refused in seconds, not after minutes of work that `start_run` would then refuse.
    The checkpoint compared is the one `start_run` would load first (a damaged `latest` is passed over there too)."""
    candidates, explicit = resume_candidates(run.resume_from_checkpoint, os.path.join(run.output_dir, "checkpoints"))
    settings, policies, defaults = run_settings(*groups), resume_policies(*groups), field_defaults(*groups)
    # the first one that passes is the one start_run loads (it warns about the damaged ones passed over)
    next(whole_checkpoints_with_these_settings(candidates, explicit, settings, policies, defaults, warn=False), None)


def start_run(
    accelerator, run, groups: tuple, state: TrainingState, project_name: str, skips, data: dict | None = None
) -> str:
    """What every loop does before the first step: resume from `run.resume_from_checkpoint` (the newest checkpoint
    that is whole, with the same settings, compared field by field as each field declares: `training/arguments.py`;
    the skip counts saved there replace those of this start: the listing is the same), write training_args.json (the
    settings of every group, and every resume), start the trackers. Returns the checkpoint folder."""
    settings = run_settings(*groups)
    checkpoint_dir = os.path.join(run.output_dir, "checkpoints")
    candidates, explicit = resume_candidates(run.resume_from_checkpoint, checkpoint_dir)
    if run.resume_from_checkpoint == "latest" and not candidates:
        logger.info("--resume_from_checkpoint latest: no checkpoint in %s yet, starting fresh", checkpoint_dir)
    resume_path = load_checkpoint(
        accelerator, candidates, explicit, state, settings, resume_policies(*groups), field_defaults(*groups)
    )
    if resume_path:
        data_change = compare_data(state.data_fingerprint, data, resume_path, run.allow_data_change)
        resume = {"checkpoint": os.path.abspath(resume_path), "step": state.step}
        if data_change:
            logger.warning("--allow_data_change: %s; going on from the saved position", data_change)
            resume["data_changed"] = {"before": state.data_fingerprint, "now": data}
        state.resumes.append(resume)
        logger.info("resumed from %s at step %d", resume_path, state.step)
        same_listing = not data_change  # the skips found listing *these* files stand; the saved ones were another's
        if same_listing and state.skips_per_rank and len(state.skips_per_rank) == accelerator.num_processes:
            skips.load_state_dict(state.skips_per_rank[accelerator.process_index])
    state.data_fingerprint = data
    if accelerator.is_main_process:
        os.makedirs(run.output_dir, exist_ok=True)
        write_json(os.path.join(run.output_dir, "training_args.json"), {**settings, "_resumes": state.resumes})
    if run.report_to != "none":
        accelerator.init_trackers(project_name, config={k: str(v) for k, v in settings.items()})
    return checkpoint_dir


def finish_run(accelerator):
    """`accelerator.end_training()`, after a barrier, then a moment with the GIL released before the process exits.

    gloo's worker threads free the tensors of a finished collective (e.g. the final `gather_object` of skip counts)
    after the caller has moved on, and need the GIL for it; at exit the DDP reducer tears the process group down
    while holding the GIL and waits for those threads. Without the pause, CPU DDP runs hung at exit now and then
    (pytorch/pytorch#56297)."""
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.num_processes > 1:
        time.sleep(0.5)


def prepare_supervised_training(run, augment, model, collator, train: list, eval_sets: dict, accelerator):
    """What both fine-tuning recipes build before their loop: loaders (training clips corrupted on the fly with
    --augment; `collator` makes the task's batches), AdamW and the LR schedule, all prepared by accelerate. Returns
    (model, optimizer, scheduler, train loader, eval loaders, one per eval set)."""
    loader_options = dict(batch_size=run.per_device_batch_size, collator=collator, num_workers=run.num_workers)
    augmenter = make_augmenter(augment, run.seed, train, distilling=False)
    train_loader = make_loader(
        AudioDataset(train, augmenter=augmenter, seed=run.seed), shuffle_seed=run.seed, **loader_options
    )
    eval_loaders = [make_loader(AudioDataset(clips), **loader_options) for clips in eval_sets.values()]
    optimizer = torch.optim.AdamW(decay_parameter_groups(model, run.weight_decay), **run.adam_options())
    scheduler = warmup_linear_schedule(optimizer, run.warmup_fraction, run.max_steps, accelerator.num_processes)
    model, optimizer, train_loader, scheduler, *eval_loaders = accelerator.prepare(
        model, optimizer, train_loader, scheduler, *eval_loaders
    )
    return model, optimizer, scheduler, train_loader, eval_loaders


def session_summary(state: TrainingState, start: tuple[int, float], elapsed: float) -> str:
    """The closing line's figures: steps and audio in all, and what *this* start did (from `start` = (step, audio
    seconds) when its loop began) in `elapsed` seconds. A finished run resumed again did nothing, and says so,
    instead of dividing the whole run's audio by a second."""
    steps, audio = state.step - start[0], state.audio_seconds - start[1]
    total = f"{state.step} steps, {state.audio_seconds / 3600:.2f} h of audio in all"
    if steps <= 0:
        return f"{total}; nothing left to train (step {state.step} was reached before this start)"
    speed = audio / max(elapsed, 1e-9)
    return f"{total}; this start: {steps} steps, {audio / 3600:.2f} h in {elapsed:.0f} s ({speed:.1f} audio s/s)"


def nonfinite_summary(state: TrainingState) -> str:
    """One line on the updates skipped for NaN/Inf, for the closing log and the results file."""
    steps = state.nonfinite_steps
    if not steps:
        return "0 updates skipped for a non-finite loss"
    shown = ", ".join(map(str, steps[:10])) + (", ..." if len(steps) > 10 else "")
    return f"{len(steps)} update(s) skipped for a non-finite loss (steps {shown})"


def best_model_results(state: TrainingState, skips_summary: str, elapsed: float, num_processes: int) -> dict:
    """What the results file of a run that keeps its best model (`keep_if_best`) says: the eval results before
    training and at the best step, steps, time, audio, skips, skipped updates."""
    evals = [row for row in state.history if "eval" in row]
    return {
        "initial_eval": evals[0]["eval"],
        "best_eval": next(row["eval"] for row in evals if row["step"] == state.best_step),
        "best_step": state.best_step,
        "steps": state.step,
        "num_processes": num_processes,
        "train_seconds": elapsed,
        "audio_hours": state.audio_seconds / 3600,
        "skipped": skips_summary,
        "nonfinite": nonfinite_summary(state),
    }

"""Checkpoints of a training run: written atomically, rotated within the run, validated before resuming, and loaded
without running code.

A checkpoint `OUTPUT/checkpoints/step_K` holds what `accelerator.save_state` writes (model.safetensors, optimizer,
scheduler and RNG states, which accelerate loads with `torch.load(weights_only=True)`) plus two JSON files of ours:
`training_state.json` (step, data position, history, skip counts, the run's id) and `training_args.json` (the
settings the run was started with). The loop state is deliberately *not* registered with
`accelerator.register_for_checkpointing`: accelerate pickles such objects and unpickles them with
`weights_only=False`, so a crafted checkpoint could run code.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import zipfile

from accelerate.utils import gather_object, load
from safetensors import SafetensorError, safe_open

from ..errors import UserError
from .arguments import FREE, SCHEDULE
from .results import write_json

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
STATE_FILE = "training_state.json"
ARGS_FILE = "training_args.json"


class CheckpointError(UserError, RuntimeError):
    pass


class SettingsChangedError(CheckpointError):
    """A whole checkpoint whose settings differ from this run's: never passed over for an older one."""


class DataChangedError(CheckpointError):
    """The data listing differs from the one the checkpoint was trained on (files added, removed or changed)."""


def data_fingerprint(splits: dict[str, list]) -> dict:
    """What a run trains and evaluates on, per split: the number of utterances, their hours, and a SHA-256 of every
    utterance's name and file size (bytes for in-memory clips), in listing order. Kept in each checkpoint, so that a
    resume on a folder that lost, gained or changed files is noticed: the saved data position would otherwise point
    into another listing without a word."""
    fingerprint = {}
    for split, utterances in splits.items():
        digest = hashlib.sha256()
        for utterance in utterances:
            source = utterance.source
            try:
                size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
            except OSError:
                size = -1
            digest.update(f"{utterance.name or source}\0{size}\n".encode("utf-8", "surrogateescape"))
        fingerprint[split] = {
            "utterances": len(utterances),
            "hours": round(sum(u.seconds for u in utterances) / 3600, 6),
            "sha256": digest.hexdigest(),
        }
    return fingerprint


def compare_data(saved: dict | None, current: dict | None, checkpoint: str, allow_change: bool) -> str | None:
    """None when the data listing is the one `checkpoint` was trained on (or either side has none: a stream, or a
    checkpoint from before fingerprints). Otherwise the differences in words: refused with `DataChangedError`, or
    returned when `allow_change` (--allow_data_change), for the caller to log and record."""
    if not saved or not current or saved == current:
        return None
    changes = []
    for split in sorted(set(saved) | set(current)):
        before, now = saved.get(split), current.get(split)
        if before == now:
            continue
        if before is None or now is None:
            changes.append(
                f"{split}: {'absent' if before is None else 'present'} -> {'absent' if now is None else 'present'}"
            )
            continue
        changes.append(
            f"{split}: {before['utterances']} -> {now['utterances']} utterances, {before['hours']:.4f} -> "
            f"{now['hours']:.4f} h"
            + (
                ", same count and hours but other files or sizes"
                if before["utterances"] == now["utterances"] and before["hours"] == now["hours"]
                else ""
            )
        )
    message = f"The data changed since {checkpoint} was saved ({'; '.join(changes)})"
    if not allow_change:
        raise DataChangedError(
            f"{message}. Resume on the same data, or pass --allow_data_change to go on from the saved position in "
            "the new listing (recorded in training_args.json)."
        )
    return message


def list_checkpoints(checkpoint_dir: str) -> list[str]:
    """Checkpoint folders `step_K`, oldest first."""
    if not os.path.isdir(checkpoint_dir):
        return []
    steps = sorted(int(m.group(1)) for name in os.listdir(checkpoint_dir) if (m := CHECKPOINT_PATTERN.match(name)))
    return [os.path.join(checkpoint_dir, f"step_{step}") for step in steps]


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} is missing") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


# Layouts that accelerate's backends write instead of model.safetensors: FSDP with a full state dict writes
# pytorch_model_fsdp.bin (a torch zip archive, loaded with weights_only=True, CRC-checked below like optimizer.bin);
# DeepSpeed (pytorch_model/*_states.pt) and sharded FSDP (pytorch_model_fsdp_0/, optimizer_0/: torch.distributed
# checkpoint files) are loaded by code outside accelerate's weights_only loading, so they need the user's word.
FSDP_FULL_WEIGHTS = "pytorch_model_fsdp"
TRUST_ENV = "DISTILXLSR_TRUST_CHECKPOINTS"


def _loaded_by_unpickling(folder: str) -> bool:
    return any(n.endswith(("_model_states.pt", "_optim_states.pt", ".distcp")) for n in os.listdir(folder))


def validate_checkpoint(path: str):
    """Raises `CheckpointError` naming the first file of `path` that is missing or damaged: our two JSON files, and
    every safetensors file (header and size checked, which catches truncation; every floating-point tensor read and
    checked for NaN/Inf, which catches same-size bit-rot: safetensors has no checksum) and torch state file
    accelerate will load (opened as the zip archive torch writes, CRCs checked). Nothing is unpickled here."""

    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such checkpoint folder")
    read_json(os.path.join(path, STATE_FILE))
    read_json(os.path.join(path, ARGS_FILE))
    names = sorted(os.listdir(path))
    pickled = [
        n for n in names if os.path.isdir(os.path.join(path, n)) and _loaded_by_unpickling(os.path.join(path, n))
    ]
    if pickled and os.environ.get(TRUST_ENV) != "1":
        raise CheckpointError(
            f"{os.path.join(path, pickled[0])} is a DeepSpeed or sharded-FSDP checkpoint, which its own loader "
            f"unpickles (a crafted one could run code). Resume from it only if you made it: set {TRUST_ENV}=1."
        )
    if not pickled and not any(n.endswith(".safetensors") or n.startswith(FSDP_FULL_WEIGHTS) for n in names):
        raise CheckpointError(f"{path} holds no model weights (*.safetensors)")
    for name in names:
        file = os.path.join(path, name)
        try:
            if name.endswith(".safetensors"):
                check_finite_safetensors(file)
            elif name.startswith("custom_checkpoint_"):  # accelerate would unpickle it unrestricted
                raise ValueError(
                    "a pickled custom_checkpoint file, which this project never writes and never loads (unpickling "
                    "it could run code); remove it if you trust it"
                )
            elif name.startswith("random_states_"):  # accelerate swallows a failure to load these: check here
                load(file)  # weights_only=True, with accelerate's allow-list (numpy RNG state)
            elif name.endswith((".bin", ".pkl")):
                with zipfile.ZipFile(file) as archive:
                    if archive.testzip() is not None:
                        raise ValueError("a member fails its CRC check")
        except Exception as err:  # safetensors and zipfile raise several types
            raise CheckpointError(f"{file} is damaged: {err}") from err


def check_finite_safetensors(file: str) -> None:
    """Raises `ValueError` naming the first floating-point tensor of `file` holding NaN or Inf."""
    with safe_open(file, framework="pt") as f:
        for key in f.keys():
            tensor = f.get_tensor(key)
            if tensor.is_floating_point() and not tensor.isfinite().all():
                raise ValueError(f"tensor {key!r} holds NaN/Inf values (bit-rot, or a diverged run)")


def resume_candidates(resume_from_checkpoint: str | None, checkpoint_dir: str) -> tuple[list[str], bool]:
    """The checkpoints to try, best first, and whether the user named one explicitly. `latest`: every checkpoint in
    `checkpoint_dir`, newest first (none yet: a fresh start, so `latest` is safe to pass on a first run)."""
    if not resume_from_checkpoint:
        return [], False
    if resume_from_checkpoint == "latest":
        return list_checkpoints(checkpoint_dir)[::-1], False
    return [resume_from_checkpoint], True


def compare_settings(saved: dict, current: dict, checkpoint: str, on_resume: dict[str, str], defaults: dict):
    """Refuses a resume whose settings differ from the checkpoint's, naming every differing field. Only fields
    declared `on_resume="free"` may change (`training/arguments.py`); a field the checkpoint does not record (added
    to the project after it was saved) matches when it keeps its default, the value the saved run behaved with."""
    model_changes, schedule_changes = [], []
    for key in sorted(set(saved) | set(current)):
        if on_resume.get(key) == FREE or key.startswith("_"):
            continue
        before, now = saved.get(key, defaults.get(key, "<unset>")), current.get(key, "<unset>")
        if _normalised(before) != _normalised(now):
            changes = schedule_changes if on_resume.get(key) == SCHEDULE else model_changes
            changes.append(f"{key}: {before!r} -> {now!r}")
    if model_changes or schedule_changes:
        parts = []
        if model_changes:
            parts.append("settings that define the model, its objective or its data: " + "; ".join(model_changes))
        if schedule_changes:
            parts.append(
                "schedule settings (the saved optimizer and LR schedule were built from the old values): "
                + "; ".join(schedule_changes)
            )
        raise SettingsChangedError(
            f"Cannot resume from {checkpoint} with other settings than it was trained with. Changed "
            + ". Changed ".join(parts)
            + ". Resume with the checkpoint's settings (see its training_args.json), or start a new run into "
            "another --output_dir."
        )


def _normalised(value):
    return list(value) if isinstance(value, tuple) else value


def save_checkpoint(accelerator, checkpoint_dir: str, state, skips, keep: int, settings: dict) -> str:
    """`accelerator.save_state` plus our JSON files (the loop state, the run's `settings`) into `checkpoint_dir/step_K`
    (K = `state.step`), then drop all but the `keep` newest
    checkpoints *of this run* (a checkpoint of another run is never removed). Every rank's skip counts go into
    `state`, so a resumed run still reports the files skipped before the interruption.

    Written under a temporary name and renamed when complete: a run killed while saving leaves no half checkpoint
    for `--resume_from_checkpoint latest` to trip on."""

    state.skips_per_rank = gather_object([skips.state_dict()])
    path = os.path.join(checkpoint_dir, f"step_{state.step}")
    partial = path + ".partial"
    error = None
    try:
        accelerator.save_state(partial)
        if accelerator.is_main_process:
            write_json(os.path.join(partial, STATE_FILE), state.state_dict(), indent=None)
            write_json(os.path.join(partial, ARGS_FILE), settings)
    except (OSError, RuntimeError, SafetensorError) as err:  # a full disk or quota: safetensors, torch, json
        error = f"{type(err).__name__}: {err}"
    errors = [e for e in gather_object([error]) if e]  # every rank learns of any rank's failure: none waits alone
    if errors:
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointError(_save_failure(checkpoint_dir, path, errors[0]))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(partial, path)
        if keep > 0:
            own = [c for c in list_checkpoints(checkpoint_dir) if _run_id(c) == state.run_id]
            for old in own[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(folder) for n in names)


def _save_failure(checkpoint_dir: str, path: str, error: str) -> str:
    """What a failed checkpoint save says: the folder, the space there and what one checkpoint needs, and what was
    kept (the half-written one is removed; the older ones are untouched)."""
    kept = list_checkpoints(checkpoint_dir)
    free = shutil.disk_usage(checkpoint_dir).free if os.path.isdir(checkpoint_dir) else 0
    needed = f"; a checkpoint of this run takes {_folder_bytes(kept[-1]) / 1e6:.1f} MB" if kept else ""
    older = ", ".join(os.path.basename(c) for c in kept) or "none"
    return (
        f"Could not write checkpoint {path} ({error}). {free / 1e6:.1f} MB free in {checkpoint_dir}{needed}. "
        f"The partial checkpoint was removed; kept, whole: {older}. Free some space (or lower --save_total_limit), "
        "then resume with --resume_from_checkpoint latest."
    )


def _run_id(checkpoint: str) -> str | None:
    try:
        return read_json(os.path.join(checkpoint, STATE_FILE)).get("run_id")
    except CheckpointError:
        return None


def whole_checkpoints_with_these_settings(
    candidates: list[str], explicit: bool, settings: dict, on_resume: dict, defaults: dict, warn: bool = True
):
    """The candidates, newest first, that are whole and whose settings match: a damaged `latest` is passed over (with
    a warning naming the bad file, unless `warn` is off), a damaged explicit checkpoint is an error, and other
    settings are always an error. What `load_checkpoint` loads from, and what a run checks before its costly set-up
    (`training.loop.check_resume_settings`), so that both pass over the same checkpoints."""
    for path in candidates:
        try:
            validate_checkpoint(path)
            compare_settings(read_json(os.path.join(path, ARGS_FILE)), settings, path, on_resume, defaults)
        except CheckpointError as err:
            if explicit or isinstance(err, SettingsChangedError):
                raise
            if warn:
                logger.warning("skipping checkpoint %s: %s; trying an older one", path, err)
            continue
        yield path


def load_checkpoint(
    accelerator, candidates: list[str], explicit: bool, state, settings: dict, on_resume: dict, defaults: dict
) -> str | None:
    """Loads the first candidate that is whole into the prepared objects and `state`; returns its path (None if
    there was no candidate). A damaged `latest` is passed over with a warning naming the bad file; a damaged
    explicit checkpoint is an error naming the file. Settings are compared before anything is loaded."""
    for path in whole_checkpoints_with_these_settings(candidates, explicit, settings, on_resume, defaults):
        try:
            accelerator.load_state(path)
        except Exception as err:  # torch/accelerate raise many types for a bad file
            if explicit:
                raise CheckpointError(f"Cannot load checkpoint {path}: {type(err).__name__}: {err}") from err
            logger.warning("skipping checkpoint %s: it failed to load (%s); trying an older one", path, err)
            continue
        state.load_state_dict(read_json(os.path.join(path, STATE_FILE)))
        return path
    if candidates:
        raise CheckpointError(f"No checkpoint of {os.path.dirname(candidates[0])} could be loaded (see warnings).")
    return None

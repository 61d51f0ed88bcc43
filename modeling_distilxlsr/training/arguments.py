"""Run settings, declared once: `RunArguments` holds what every training recipe shares (output folder, seed, steps,
batch, optimizer, logging, saving, resume, Hub, DDP timeout, workers); each recipe composes it with its own groups,
as distil-whisper composes `ModelArguments`, `DataTrainingArguments`...:

    run, augment, distill = parse_args((RunArguments, AugmentArguments, DistillArguments), DISTILL_DEFAULTS)

What a resume may change is declared on each field (`metadata={"on_resume": ...}`): `FREE` (logging, saving, where
things go: never what is learned) or `SCHEDULE` (the optimizer and LR schedule saved in a checkpoint were built from
it, so a change is refused with that reason); a field without it defines the model, its objective or its data, and
a change is refused too. `training/checkpoints.py` reads the declarations; it names no field itself.
"""

import dataclasses
import json
import sys
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser

ON_RESUME = "on_resume"
FREE = "free"
SCHEDULE = "schedule"
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def free(default=None, help: str | None = None, **kwargs):
    """A field a resume may change."""
    return field(default=default, metadata={"help": help, ON_RESUME: FREE}, **kwargs)


def schedule(default=None, help: str | None = None, **kwargs):
    """A field of the optimisation schedule: a resume with another value is refused."""
    return field(default=default, metadata={"help": help, ON_RESUME: SCHEDULE}, **kwargs)


@dataclass(kw_only=True)
class RunArguments:
    """What every training recipe shares. Each recipe gives its own defaults (`parse_args(..., defaults)`)."""

    output_dir: str = free("out/run", "Where the model, checkpoints, curves and card go.")
    overwrite_output_dir: bool = free(False, "Replace what a previous run left in output_dir (refused otherwise).")
    resume_from_checkpoint: str | None = free(
        None, "'latest' (the newest checkpoint that loads) or a checkpoint folder; same settings only."
    )
    allow_data_change: bool = free(
        False, "Resume although the data listing differs from the checkpoint's (logged and recorded with the resume)."
    )
    seed: int = field(default=0, metadata={"help": "Seed of the weights' init, the data order, crops, corruptions."})
    max_steps: int = schedule(1000, "Optimizer steps.")
    per_device_batch_size: int = schedule(8, "Clips per batch on each process.")
    gradient_accumulation_steps: int = schedule(1, "Batches per optimizer step.")
    learning_rate: float = schedule(1e-4, "Peak learning rate (AdamW).")
    weight_decay: float = schedule(0.0, "On weight matrices only; biases and norms get none.")
    warmup_fraction: float = schedule(0.1, "Linear warm-up over this fraction of the steps, then linear decay to 0.")
    max_grad_norm: float = schedule(1.0, "Gradient clipping.")
    adam_beta1: float = schedule(0.9)
    adam_beta2: float = schedule(0.999)
    adam_epsilon: float = schedule(1e-8)
    max_nonfinite_steps: int = free(
        5, "Optimizer steps in a row with a NaN/Inf loss (each skipped and counted) before the run stops."
    )
    num_workers: int = free(2, "DataLoader workers per process.")
    logging_steps: int = free(10)
    eval_steps: int = free(500)
    save_steps: int = free(500)
    save_total_limit: int = free(2, "Checkpoints of this run kept in output_dir/checkpoints.")
    report_to: str = free("tensorboard", "accelerate tracker(s), or 'none'.")
    ddp_timeout: int = free(
        1800, "Seconds a collective may wait for the other processes (a dead machine) before failing."
    )
    push_to_hub: bool = free(False, "Upload the finished folder (checked before training starts).")
    hub_model_id: str | None = free(None, "user/name on the Hub, with --push_to_hub.")

    def adam_options(self) -> dict:
        return {"lr": self.learning_rate, "betas": (self.adam_beta1, self.adam_beta2), "eps": self.adam_epsilon}


class RunArgumentParser(HfArgumentParser):
    """`HfArgumentParser`, which hands each field's metadata to `add_argument`, minus our own `on_resume` key
    (argparse would refuse it)."""

    def add_argument(self, *args, on_resume=None, **kwargs):
        return super().add_argument(*args, **kwargs)


def run_settings(*groups) -> dict:
    """Every setting of a run, flat: what training_args.json records and a resume is compared with."""
    settings = {}
    for group in groups:
        for name, value in dataclasses.asdict(group).items():
            if name in settings:
                raise ValueError(f"setting {name!r} is declared by two argument groups")
            settings[name] = value
    return settings


def resume_policies(*groups) -> dict[str, str]:
    """{field: FREE or SCHEDULE} for the fields that declare one; the others may not change on resume."""
    return {
        f.name: f.metadata[ON_RESUME] for group in groups for f in dataclasses.fields(group) if ON_RESUME in f.metadata
    }


def field_defaults(*groups) -> dict:
    """The value each field had before it existed in a saved run: its default (for resuming older checkpoints)."""
    defaults = {}
    for group in groups:
        for f in dataclasses.fields(group):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
    return defaults


def parse_args(groups: tuple, defaults: dict | None = None, argv: list[str] | None = None, required=()) -> tuple:
    """The recipe's argument groups from command-line flags, or from a YAML/JSON file holding the same fields,
    optionally followed by flags that override it (`train_distill.py configs/smoke.yaml --output_dir out/other`).
    `defaults` are the recipe's own defaults for shared fields; a file's values override them, flags override both.
    `required`: fields that need a value from the file or the flags. An unknown field or flag is a usage error, not
    a traceback."""
    parser = RunArgumentParser(groups)
    argv = sys.argv[1:] if argv is None else list(argv)
    values = dict(defaults or {})
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        values.update(read_config_file(parser, argv[0]))
        argv = argv[1:]
    known = {f.name for group in groups for f in dataclasses.fields(group)}
    unknown = sorted(set(values) - known)
    if unknown:
        parser.error(f"unknown setting(s): {', '.join(unknown)}")
    parser.set_defaults(**values)
    try:
        parsed = tuple(parser.parse_args_into_dataclasses(argv))
    except ValueError as err:  # HfArgumentParser's "arguments are not used": a usage error, not a traceback
        parser.error(str(err))
    missing = [name for name in required if all(getattr(group, name, None) is None for group in parsed)]
    if missing:
        parser.error("the following arguments are required: " + ", ".join(f"--{name}" for name in missing))
    return parsed


def read_config_file(parser: RunArgumentParser, path: str) -> dict:
    """The settings of a YAML or JSON config file, as a dict of field values."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError) as err:
        parser.error(f"cannot read the config file {path}: {err}")
    if not isinstance(values, dict):
        parser.error(f"{path} must hold a mapping of setting names to values")
    return values

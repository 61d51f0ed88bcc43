"""Run settings are declared once (`RunArguments`), composed with each recipe's own groups, given the recipe's
defaults, read from flags or a YAML/JSON file plus flags; what a resume may change is declared on each field."""

import json

import pytest

from finetune_classification import CLASSIFICATION_DEFAULTS, ClassificationArguments
from finetune_ctc import FINETUNE_DEFAULTS, FinetuneArguments
from modeling_distilxlsr.audio.augment import AugmentArguments, validate_augment_settings
from modeling_distilxlsr.training.arguments import (
    FREE,
    SCHEDULE,
    RunArguments,
    field_defaults,
    parse_args,
    resume_policies,
    run_settings,
)
from modeling_distilxlsr.training.checkpoints import SettingsChangedError, compare_settings
from train_distill import DISTILL_DEFAULTS, DistillArguments

RECIPES = [
    ((RunArguments, AugmentArguments, DistillArguments), DISTILL_DEFAULTS, []),
    ((RunArguments, AugmentArguments, FinetuneArguments), FINETUNE_DEFAULTS, ["--model", "m"]),
    ((RunArguments, AugmentArguments, ClassificationArguments), CLASSIFICATION_DEFAULTS, ["--model", "m"]),
]


@pytest.mark.parametrize("groups, defaults, flags", RECIPES)
def test_every_recipe_composes_the_shared_settings_with_its_own_defaults(groups, defaults, flags):
    run, augment, task = parse_args(groups, defaults, flags)
    assert isinstance(run, RunArguments) and isinstance(augment, AugmentArguments)
    assert {name: getattr(run, name) for name in defaults} == defaults
    settings = run_settings(run, augment, task)  # no field is declared twice
    assert settings["push_to_hub"] is False and "seed" in settings and "augment" in settings


def test_a_yaml_config_takes_the_recipe_defaults_and_flags_override_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("max_steps: 7\nteacher: configs/tiny_teacher_config.json\naugment: true\n")
    groups = (RunArguments, AugmentArguments, DistillArguments)
    run, augment, distill = parse_args(groups, DISTILL_DEFAULTS, [str(config), "--learning_rate", "0.5"])
    assert (run.max_steps, run.learning_rate, run.adam_beta2) == (7, 0.5, DISTILL_DEFAULTS["adam_beta2"])
    assert augment.augment and distill.teacher == "configs/tiny_teacher_config.json"
    (tmp_path / "run.json").write_text(json.dumps({"max_steps": 3}))
    assert parse_args(groups, DISTILL_DEFAULTS, [str(tmp_path / "run.json")])[0].max_steps == 3


def test_an_unknown_setting_or_a_missing_model_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("max_stepz: 7\n")
    groups = (RunArguments, AugmentArguments, FinetuneArguments)
    with pytest.raises(SystemExit):
        parse_args(groups, FINETUNE_DEFAULTS, [str(config), "--model", "m"])
    assert "unknown setting(s): max_stepz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(groups, FINETUNE_DEFAULTS, [], required=("model",))
    assert "required: --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(groups, FINETUNE_DEFAULTS, ["--model", "m", "--no_such_flag", "1"])


def test_what_a_resume_may_change_is_declared_on_each_field():
    policies = resume_policies(RunArguments(), AugmentArguments(), DistillArguments())
    assert policies["output_dir"] == policies["logging_steps"] == policies["push_to_hub"] == FREE
    assert policies["learning_rate"] == policies["max_steps"] == policies["adam_beta2"] == SCHEDULE
    assert "teacher" not in policies and "seed" not in policies and "augment" not in policies  # never change


def test_a_resume_is_compared_field_by_field_and_a_new_field_matches_its_default():
    groups = (RunArguments(), AugmentArguments(), DistillArguments())
    saved = run_settings(*groups)
    policies, defaults = resume_policies(*groups), field_defaults(*groups)
    compare_settings(saved | {"logging_steps": 99}, saved, "ckpt", policies, defaults)  # free: no error
    with pytest.raises(SettingsChangedError, match=r"schedule settings.*learning_rate"):
        compare_settings(saved | {"learning_rate": 1.0}, saved, "ckpt", policies, defaults)
    with pytest.raises(SettingsChangedError, match=r"define the model.*teacher"):
        compare_settings(saved | {"teacher": "other"}, saved, "ckpt", policies, defaults)
    older = {k: v for k, v in saved.items() if k != "adam_beta1"}  # saved before the field existed
    compare_settings(older, saved, "ckpt", policies, defaults)
    with pytest.raises(SettingsChangedError, match="adam_beta1"):
        compare_settings(older, saved | {"adam_beta1": 0.5}, "ckpt", policies, defaults)


@pytest.mark.parametrize("config", ["configs/main_job.yaml", "configs/cpu_student.yaml", "configs/smoke.yaml"])
def test_every_shipped_distillation_config_parses_and_its_settings_are_valid(config):
    run, augment, distill = parse_args((RunArguments, AugmentArguments, DistillArguments), DISTILL_DEFAULTS, [config])
    validate_augment_settings(augment.augment_settings())
    assert run.max_steps > 0 and run.output_dir.startswith("out/")
    if config == "configs/cpu_student.yaml":  # the robust CPU student: log-mel, band masks, corrupted audio
        assert distill.student_frontend == "log_mel" and distill.mel_band_mask_prob > 0
        assert augment.augment and augment.bandlimit_prob > 0 and augment.augment_target == "student"

"""configs/accelerate/: every file is a valid accelerate config for what it says, FSDP wraps a layer class our
models have, and the CPU one really starts two ranks."""

import glob
import os

import pytest
import torch
from conftest import REPO_ROOT, TWO_CPU_RANKS_ENV, TWO_PROCESS_GROUP, run_script, tiny_student_config

CONFIGS = os.path.join(REPO_ROOT, "configs", "accelerate")
EXPECTED = {
    "multi_gpu.yaml": ("MULTI_GPU", 1),
    "multi_node.yaml": ("MULTI_GPU", 2),
    "fsdp.yaml": ("FSDP", 1),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 1),
    "deepspeed_zero3.yaml": ("DEEPSPEED", 1),
    "cpu_two_processes.yaml": ("MULTI_GPU", 1),
}


def load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(os.path.join(CONFIGS, name))


def test_every_config_is_listed_and_loads_as_what_it_says():
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.yaml"))) == sorted(EXPECTED)
    for name, (kind, machines) in EXPECTED.items():
        config = load(name)
        assert config.distributed_type.value == kind and config.num_machines == machines, name
    node = load("multi_node.yaml")
    assert node.main_process_ip and node.main_process_port and node.num_processes % node.num_machines == 0
    assert load("deepspeed_zero2.yaml").deepspeed_config["zero_stage"] == 2
    zero3 = load("deepspeed_zero3.yaml").deepspeed_config
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"]  # a full model at the end


@pytest.mark.parametrize("model_class", ["DistilXLSRForDistillation", "DistilXLSRForCTC"])
def test_fsdp_wraps_a_layer_class_the_models_have(model_class):
    import modeling_distilxlsr

    fsdp = load("fsdp.yaml").fsdp_config
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    model = getattr(modeling_distilxlsr, model_class)(tiny_student_config(vocab_size=12))
    layers = [m for m in model.modules() if type(m).__name__ == fsdp["fsdp_transformer_layer_cls_to_wrap"]]
    assert len(layers) == model.config.num_hidden_layers
    assert torch.nn.Module in type(layers[0]).__mro__


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_the_cpu_config_starts_two_ranks(tiny_ctc_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    model_dir, _ = tiny_ctc_dir
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", np.random.default_rng(i).standard_normal(8000).astype("float32") * 0.1, 16000)
    launch = ["accelerate", "launch", "--config_file", os.path.join(CONFIGS, "cpu_two_processes.yaml")]
    result = run_script(
        [*launch, "transcribe.py", str(model_dir), str(tmp_path), "--output", str(tmp_path / "out.jsonl")],
        env_extra=TWO_CPU_RANKS_ENV,
    )
    assert "by 2 process(es)" in result.stderr, result.stderr[-2000:]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3

"""What a DistilXLSR model folder holds, in one place: the file names, reading its config without running its code, and
writing a Hub-ready folder (weights, config with `auto_map`, the model code, the processor)."""

import json
import os
import shutil

from huggingface_hub import hf_hub_download
from safetensors import SafetensorError
from transformers import AutoConfig, PretrainedConfig

from ..errors import UserError
from .audio_format import default_feature_extractor
from .configuration_distilxlsr import HUB_CODE_FILES, DistilXLSRConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# The ONNX Runtime graphs `export.onnx_export` writes beside the weights, by dtype.
ONNX_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
# Files of a processor (feature extractor + tokenizer) that travel beside the weights.
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def load_config(name_or_path: str) -> PretrainedConfig:
    """A model config from a Hub id, a model folder, or a path to a config.json (for offline random-init runs).
    DistilXLSR configs load with this package's class, never with a folder's remote code."""
    try:
        if os.path.isfile(name_or_path):
            config_file = name_or_path
        elif os.path.isdir(name_or_path):
            config_file = os.path.join(name_or_path, CONFIG_FILE)
            if not os.path.isfile(config_file):
                raise OSError("no config.json there")
        else:  # a Hub id, through the Hub cache (offline: what the cache holds)
            config_file = hf_hub_download(name_or_path, CONFIG_FILE)
        with open(config_file) as f:
            config_dict = json.load(f)
    except (OSError, ValueError) as err:  # huggingface_hub's errors are OSError or ValueError subclasses
        raise ValueError(
            f"Could not load the model {name_or_path!r}: {err}\nGive a Hub id (facebook/wav2vec2-large-xlsr-53), a "
            "local model folder, or, with --teacher_random_init / --from_scratch, a config.json (e.g. "
            "configs/xlsr53_config.json)."
        ) from err
    model_type = config_dict.pop("model_type", "wav2vec2")
    if model_type == DistilXLSRConfig.model_type:
        config = DistilXLSRConfig.from_dict(config_dict)
    else:
        config = AutoConfig.for_model(model_type, **config_dict)
    config.name_or_path = name_or_path
    return config


class ModelSaveError(UserError, OSError):
    """The finished model could not be written (a full disk, a quota, a read-only folder)."""


def save_for_hub(model, out_dir: str, processor=None, state_dict: dict | None = None) -> str:
    """Writes model.safetensors, config.json (with `auto_map` for every Auto class, `AUTO_MAP`), the model code
    files (`HUB_CODE_FILES`), and the processor (or the default feature extractor).
    `state_dict`: the full weights when the model is sharded (FSDP, DeepSpeed ZeRO-3), from
    `accelerator.get_state_dict`."""
    weights = state_dict if state_dict is not None else model.state_dict()
    broken = [name for name, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:  # a model with NaN/Inf weights gives garbage everywhere: it is never written as a finished model
        raise ValueError(
            f"Refusing to save a model with non-finite (NaN/Inf) weights into {out_dir}: {len(broken)} tensor(s), "
            f"first {broken[0]}. The run diverged or resumed from damaged weights."
        )
    try:
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir, state_dict=state_dict)
        code_dir = os.path.dirname(os.path.abspath(__file__))  # the Hub files live beside this one, in models/
        for name in HUB_CODE_FILES:  # all of them, whichever class saved: see HUB_CODE_FILES
            shutil.copy(os.path.join(code_dir, name), os.path.join(out_dir, name))
        (processor if processor is not None else default_feature_extractor()).save_pretrained(out_dir)
    except (OSError, SafetensorError) as err:  # a full disk or quota
        free = shutil.disk_usage(out_dir).free / 1e6 if os.path.isdir(out_dir) else 0.0
        raise ModelSaveError(
            f"Could not save the model into {out_dir} ({type(err).__name__}: {err}); {free:.1f} MB free there. The "
            "run's checkpoints are untouched: free some space and resume with --resume_from_checkpoint latest."
        ) from err
    return out_dir

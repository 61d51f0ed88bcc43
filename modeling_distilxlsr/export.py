"""Hub-ready folders and the vanilla wav2vec2 export.

`save_for_hub` writes what `from_pretrained(..., trust_remote_code=True)` and the ASR pipeline need. Our backbone is a
`Wav2Vec2Model` under another config class, so `export_as_wav2vec2` is a rename: plain `Wav2Vec2Model` /
`Wav2Vec2ForCTC` then load the folder with no remote code, and every wav2vec2 tool (ONNX exporters, CTranslate2,
sherpa...) can use it.

    python -m modeling_distilxlsr.export MODEL_DIR OUT_DIR
"""

import argparse
import os
import shutil

from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification, Wav2Vec2Model

from .audio_format import default_feature_extractor
from .configuration_distilxlsr import HUB_CODE_FILES, DistilXLSRConfig
from .modeling_distilxlsr import DistilXLSRForCTC, DistilXLSRModel
from .modeling_distilxlsr_classification import DistilXLSRForSequenceClassification

# Files of a processor (feature extractor + tokenizer) that travel beside the weights.
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
DISTILXLSR_ONLY_FIELDS = (
    "pred_layer_ids",
    "teacher_hidden_size",
    "head_activation",
    "teacher_name_or_path",
    "fast_feature_encoder",
)


def save_for_hub(model, out_dir: str, processor=None, state_dict: dict | None = None) -> str:
    """Writes model.safetensors, config.json (auto_map for AutoConfig, AutoModel, AutoModelForCTC and
    AutoModelForPreTraining), the two code files, and the processor (or the default feature extractor).
    `state_dict`: the full weights when the model is sharded (FSDP, DeepSpeed ZeRO-3), from
    `accelerator.get_state_dict`."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, state_dict=state_dict)
    for name in HUB_CODE_FILES:  # all of them, whichever class saved: see HUB_CODE_FILES
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), os.path.join(out_dir, name))
    (processor if processor is not None else default_feature_extractor()).save_pretrained(out_dir)
    return out_dir


def wav2vec2_config(config: DistilXLSRConfig) -> Wav2Vec2Config:
    fields = config.to_dict()
    for name in (*DISTILXLSR_ONLY_FIELDS, "auto_map", "architectures", "model_type", "transformers_version"):
        fields.pop(name, None)
    return Wav2Vec2Config.from_dict(fields)


def export_as_wav2vec2(model_dir: str, out_dir: str) -> str:
    """Re-saves a DistilXLSR folder as a plain wav2vec2 one (Wav2Vec2ForCTC for a CTC model,
    Wav2Vec2ForSequenceClassification for a classifier, Wav2Vec2Model otherwise; a distillation checkpoint loses its
    prediction heads). Same weights, same outputs."""
    config = DistilXLSRConfig.from_pretrained(model_dir)
    architecture = (config.architectures or ["DistilXLSRModel"])[0]
    if architecture in ("DistilXLSRForCTC", "DistilXLSRForSequenceClassification"):
        source_class, target_class = {
            "DistilXLSRForCTC": (DistilXLSRForCTC, Wav2Vec2ForCTC),
            "DistilXLSRForSequenceClassification": (
                DistilXLSRForSequenceClassification,
                Wav2Vec2ForSequenceClassification,
            ),
        }[architecture]
        source = source_class.from_pretrained(model_dir)
        target = target_class(wav2vec2_config(source.config))
        state = {
            ("wav2vec2." + k.removeprefix("distilxlsr.") if k.startswith("distilxlsr.") else k): v
            for k, v in source.state_dict().items()
        }
    else:
        source = DistilXLSRModel.from_pretrained(model_dir)
        target = Wav2Vec2Model(wav2vec2_config(source.config))
        state = source.state_dict()
    target.load_state_dict(state, strict=True)
    target.config.architectures = [type(target).__name__]
    target.save_pretrained(out_dir)
    copied = [f for f in PROCESSOR_FILES if os.path.exists(os.path.join(model_dir, f))]
    for name in copied:
        shutil.copy(os.path.join(model_dir, name), os.path.join(out_dir, name))
    if "preprocessor_config.json" not in copied:
        default_feature_extractor().save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export a DistilXLSR folder as a plain wav2vec2 one (no remote code).")
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    print(export_as_wav2vec2(args.model_dir, args.out_dir))


if __name__ == "__main__":
    main()

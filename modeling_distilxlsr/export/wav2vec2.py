"""Hub-ready folders and the vanilla wav2vec2 export.

`save_for_hub` writes what `from_pretrained(..., trust_remote_code=True)` and the ASR pipeline need. Our backbone is a
`Wav2Vec2Model` under another config class, so `export_as_wav2vec2` is a rename: plain `Wav2Vec2Model` /
`Wav2Vec2ForCTC` then load the folder with no remote code, and every wav2vec2 tool (ONNX exporters, CTranslate2,
sherpa...) can use it.

    python -m modeling_distilxlsr.export MODEL_DIR OUT_DIR
"""

import os
import shutil

from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification, Wav2Vec2Model

from ..models.audio_format import default_feature_extractor
from ..models.configuration_distilxlsr import DistilXLSRConfig
from ..models.folder import PROCESSOR_FILES
from ..models.modeling_distilxlsr import DistilXLSRForCTC, DistilXLSRModel
from ..models.modeling_distilxlsr_classification import DistilXLSRForSequenceClassification

DISTILXLSR_ONLY_FIELDS = (
    "pred_layer_ids",
    "teacher_hidden_size",
    "head_activation",
    "teacher_name_or_path",
    "fast_feature_encoder",
    "feature_frontend",
    "num_mel_bins",
    "encoder_stride",
)


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
    if config.feature_frontend != "cnn":
        raise ValueError(
            f"{model_dir} has a {config.feature_frontend} front-end, which wav2vec2 has no module for: it cannot be "
            "saved as a plain wav2vec2 folder. Publish it as a DistilXLSR folder (trust_remote_code), or export "
            "it to ONNX (distilxlsr-onnx)."
        )
    if config.encoder_stride > 1:
        raise ValueError(
            f"{model_dir} runs its layers at 1/{config.encoder_stride} of the frame rate (encoder_stride), which "
            "wav2vec2 has no module for: it cannot be saved as a plain wav2vec2 folder. Publish it as a DistilXLSR "
            "folder (trust_remote_code), or export it to ONNX (distilxlsr-onnx)."
        )
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

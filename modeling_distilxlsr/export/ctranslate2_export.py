"""A DistilXLSR CTC folder for CTranslate2 (faster-whisper's engine), int8 or fp32, through its own converter.

    distilxlsr-ct2 MODEL_DIR OUT_DIR [--quantization int8]

CTranslate2's `Wav2Vec2` model is not a general wav2vec2: its C++ layers (`src/layers/wav2vec2.cc`, read at commit
0d8bcd3, July 2026) hard-code XLSR-53's layout. The positional convolution is built with padding 64 and 16 groups
whatever the weights say, so a model with another kernel or group count (the main job's student, which inherits the
1.75M teacher's 32-wide, 4-group one) converts without a word and then fails in oneDNN with "could not create a
primitive descriptor for a convolution forward propagation primitive" at the first `encode`. The CNN is taken as
LayerNorm conv layers with stride 5 then 2, the encoder as pre-LayerNorm GELU layers. `ctranslate2_problems` names
every difference before converting, so the error says what the model lacks instead of failing inside oneDNN; the
default student distilled from XLSR-53 has its teacher's layout and converts (its logits match torch's to 1e-5,
`tests/test_integrations.py`).

The folder written holds CTranslate2's `model.bin` + `vocabulary.json` and our processor files: the input is one
normalised wave shaped (batch, 1, samples) (no attention mask: a batch must be one length), the output the CTC
logits, decoded as any wav2vec2 CTC model's (`Wav2Vec2Processor.batch_decode` of the argmax).
"""

import argparse
import os
import shutil
import tempfile

from ..errors import UserError
from ..models.configuration_distilxlsr import DistilXLSRConfig
from ..models.folder import PROCESSOR_FILES
from .wav2vec2 import export_as_wav2vec2, wav2vec2_config

# What CTranslate2's Wav2Vec2 layers fix (src/layers/wav2vec2.cc, src/models/wav2vec2.cc).
CT2_POSITIONAL_CONV = {"num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16}
CT2_FIRST_STRIDE, CT2_OTHER_STRIDES = 5, 2
INSTALL_HINT = "pip install 'distilxlsr[integrations]'"


class CTranslate2Unsupported(UserError, ValueError):
    """The model's layout is one CTranslate2's Wav2Vec2 layers cannot compute."""


def ctranslate2_problems(model_config: DistilXLSRConfig) -> list[str]:
    """What in a DistilXLSR config CTranslate2's Wav2Vec2 would compute differently or fail on (empty: it fits)."""
    if model_config.feature_frontend != "cnn":
        return [f"a {model_config.feature_frontend} front-end (CTranslate2 has only wav2vec2's CNN)"]
    config = wav2vec2_config(model_config)
    problems = []
    if model_config.encoder_stride > 1:
        problems.append(f"encoder_stride={model_config.encoder_stride} (CTranslate2 runs the layers at the CNN rate)")
    for name, fixed in CT2_POSITIONAL_CONV.items():
        if getattr(config, name) != fixed:
            problems.append(f"{name}={getattr(config, name)} (CTranslate2 builds the positional conv with {fixed})")
    strides = list(config.conv_stride)
    if strides[0] != CT2_FIRST_STRIDE or any(s != CT2_OTHER_STRIDES for s in strides[1:]):
        problems.append(f"conv_stride={strides} (CTranslate2 uses 5, then 2 for every other CNN layer)")
    if config.feat_extract_norm != "layer" or not config.conv_bias:
        problems.append("a CNN without a LayerNorm and a bias in every layer (CTranslate2 has only that kind)")
    if not config.do_stable_layer_norm:
        problems.append("post-LayerNorm encoder layers (CTranslate2 computes pre-LayerNorm ones, as XLSR-53's)")
    if config.hidden_act != "gelu" or config.feat_extract_activation != "gelu":
        problems.append(f"activations {config.hidden_act}/{config.feat_extract_activation} (CTranslate2: gelu)")
    return problems


def export_ctranslate2(model_dir: str, out_dir: str, quantization: str | None = None) -> str:
    """Converts a DistilXLSR CTC folder with CTranslate2's TransformersConverter,
    after checking its layout; writes the processor files beside `model.bin`. Returns `out_dir`."""
    try:
        import ctranslate2  # lazy: optional dependency (the integrations extra)
    except ImportError as err:
        raise ImportError(f"CTranslate2 is not installed: {INSTALL_HINT}") from err
    config = DistilXLSRConfig.from_pretrained(model_dir)
    if "DistilXLSRForCTC" not in (config.architectures or []):
        raise CTranslate2Unsupported(f"{model_dir} is not a CTC model: CTranslate2's Wav2Vec2 needs a CTC head")
    problems = ctranslate2_problems(config)
    if problems:
        raise CTranslate2Unsupported(
            f"{model_dir} does not fit CTranslate2's Wav2Vec2, which hard-codes XLSR-53's layout: "
            + "; ".join(problems)
            + ". Students distilled from XLSR-53 have it (a smaller teacher's student gets its positional convolution "
            "with train_distill.py --student_pos_conv 128 16); use the ONNX export (distilxlsr-onnx) for this one."
        )
    with tempfile.TemporaryDirectory() as plain:
        export_as_wav2vec2(model_dir, plain)
        converter = ctranslate2.converters.TransformersConverter(plain)
        converter.convert(out_dir, quantization=quantization, force=True)
        for name in PROCESSOR_FILES:
            if os.path.exists(os.path.join(plain, name)):
                shutil.copy(os.path.join(plain, name), os.path.join(out_dir, name))
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert a DistilXLSR CTC folder for CTranslate2's Wav2Vec2.")
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--quantization", choices=["int8", "int8_float32", "float16", "bfloat16", "float32"])
    args = parser.parse_args(argv)
    try:
        print(export_ctranslate2(args.model_dir, args.out_dir, args.quantization))
    except (UserError, ImportError) as err:  # as every recipe's cli: one line, status 1
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()

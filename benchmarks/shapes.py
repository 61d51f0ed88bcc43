"""The model shapes the benchmarks build: XLSR-53's (configs/xlsr53_config.json, random weights), or tiny ones when
DISTILXLSR_BENCH_TINY=1, which `gpu_check.sh --tiny` sets so that a CPU test runs the whole GPU check in seconds and
it never rots between the sessions that have a GPU."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XLSR_LAYERS = 24


def teacher_config_path() -> str:
    tiny = os.environ.get("DISTILXLSR_BENCH_TINY") == "1"  # read at each call: tests run benchmarks in-process
    name = "tiny_teacher_config.json" if tiny else "xlsr53_config.json"
    return os.path.join(REPO, "configs", name)


def teacher_config():
    import json

    from transformers import Wav2Vec2Config

    with open(teacher_config_path()) as f:
        fields = json.load(f)
    fields.pop("model_type")
    return Wav2Vec2Config(**fields)


def layer_ids(ids, teacher_layers: int) -> list[int]:
    """XLSR-53 layer ids (of 24) at the same relative depths of a shallower teacher."""
    return sorted({max(1, round(i * teacher_layers / XLSR_LAYERS)) for i in ids})


def student_config(slim: bool = False, pred=(8, 16, 24), **overrides):
    """The default student of the teacher above (or the slim one: inner CNN layers half as wide, 256 for XLSR-53)."""
    from modeling_distilxlsr import DistilXLSRConfig

    teacher = teacher_config()
    width = teacher.conv_dim[0] // 2 if slim else None
    pred = layer_ids(pred, teacher.num_hidden_layers)
    return DistilXLSRConfig.from_teacher_config(teacher, pred_layer_ids=pred, cnn_width=width, **overrides)


def ctc_student_folder(out_dir: str, slim: bool = False, feature_frontend: str = "cnn", **overrides) -> str:
    """A saved random-weight CTC student of `student_config` (`feature_frontend="log_mel"`: the default student with
    the log-mel front-end; `overrides`: other config fields) with the BP character processor: what the speed
    benchmarks serve and transcribe (speed does not depend on the weights)."""
    import torch

    from modeling_distilxlsr import DistilXLSRForCTC
    from modeling_distilxlsr.models.audio_format import default_feature_extractor
    from modeling_distilxlsr.models.folder import save_for_hub
    from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

    torch.manual_seed(0)
    processor = build_processor(build_vocab(), default_feature_extractor())
    config = student_config(
        slim, vocab_size=len(processor.tokenizer), pad_token_id=0, feature_frontend=feature_frontend, **overrides
    )
    save_for_hub(DistilXLSRForCTC(config).eval(), out_dir, processor)
    return out_dir


def xlsr53_ctc_folder(out_dir: str) -> str:
    """A saved random-weight `Wav2Vec2ForCTC` of the teacher shape above (XLSR-53's, or the tiny one) with the BP
    character processor: the 315M model a user would otherwise align or transcribe with (speed only)."""
    import torch
    from transformers import Wav2Vec2ForCTC

    from modeling_distilxlsr.models.audio_format import default_feature_extractor
    from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

    torch.manual_seed(0)
    processor = build_processor(build_vocab(), default_feature_extractor())
    config = teacher_config()
    config.vocab_size, config.pad_token_id = len(processor.tokenizer), 0
    Wav2Vec2ForCTC(config).eval().save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir

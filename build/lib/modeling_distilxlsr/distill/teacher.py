"""The teacher side of distillation: load a wav2vec2-family teacher, run it only as deep as needed, and initialise a
student from it. Not part of the Hub files: the published model never needs a teacher."""

import logging

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from ..models.configuration_distilxlsr import TEACHER_ARCHITECTURE_FIELDS
from ..models.folder import load_config
from ..models.modeling_distilxlsr import DistilXLSRModel
from ..models.modeling_distilxlsr_parts import (
    conv_features,
    frame_attention_mask,
    record_encoder_outputs,
)

logger = logging.getLogger(__name__)

SUPPORTED_TEACHER_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")


def load_teacher(name_or_path: str, random_init: bool = False, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A frozen teacher base model (Wav2Vec2Model, HubertModel, WavLMModel...) in eval mode.

    `random_init` builds the architecture from its config with random weights: for smoke runs and benchmarks where
    the real weights are not at hand. A CTC or pre-training checkpoint is reduced to its base model.
    """
    config = load_config(name_or_path)
    if config.model_type not in SUPPORTED_TEACHER_TYPES:
        raise ValueError(
            f"Teacher {name_or_path!r} is a {config.model_type!r} model; "
            f"supported: {', '.join(SUPPORTED_TEACHER_TYPES)}."
        )
    config.layerdrop = 0.0
    if random_init:
        logger.warning(
            "Teacher %s built with RANDOM weights (--teacher_random_init): not a real teacher.", name_or_path
        )
        teacher = AutoModel.from_config(config, dtype=dtype)
    else:
        teacher = AutoModel.from_pretrained(name_or_path, config=config, dtype=dtype)
    teacher = teacher.base_model
    teacher.eval().requires_grad_(False)
    return teacher


def truncate_teacher(teacher: PreTrainedModel, deepest_layer: int) -> PreTrainedModel:
    """Drops the layers above `deepest_layer`: their outputs are never targets, so running them is wasted time.

    Hidden state i (input of layer 1 for i = 0, output of layer i otherwise) is unchanged, since layer i only sees
    what is below it. The final encoder LayerNorm stays but only touches `last_hidden_state`, which we don't use.
    """
    layers = teacher.encoder.layers
    if deepest_layer > len(layers):
        raise ValueError(f"Cannot predict teacher layer {deepest_layer}: the teacher has {len(layers)} layers.")
    keep = max(deepest_layer, 1)  # hidden state 0 is recorded on the way into layer 1
    teacher.encoder.layers = nn.ModuleList(list(layers)[:keep])
    teacher.config.num_hidden_layers = keep
    return teacher


class TeacherTargets(nn.Module):
    """Runs a truncated teacher and returns `(targets, cnn_features)`: the hidden states the student's heads regress,
    stacked as `(batch, len(pred_layer_ids), frames, teacher_hidden_size)` in float32, and the teacher's raw CNN
    output `(batch, conv_dim[-1], frames)` (what a student with the same frozen CNN reuses, and what a slim student's
    CNN learns).

    `normalize` applies a parameter-free LayerNorm per frame to each target (DistilXLSR's recipe for pre-LN teachers,
    whose residual stream grows with depth; for XLSR-53 the top layer's raw output is ~10x larger than layer 8's).
    For stable-layer-norm teachers hidden state `num_layers` is the residual stream *before* the final encoder
    LayerNorm, as transformers 5 returns it; normalising it makes the top target the final LayerNorm's output up to
    that LayerNorm's affine weights.

    The teacher's forward is spelled out (CNN, feature projection, encoder) rather than called whole, so that its CNN
    takes the student's time-major fast path and its output comes back with the targets. In eval mode this is what
    `Wav2Vec2Model.forward` (and HuBERT's, WavLM's) computes: no time masking, no adapter (refused at load).
    """

    def __init__(self, teacher: PreTrainedModel, pred_layer_ids, normalize: bool):
        super().__init__()
        self.pred_layer_ids = [int(i) for i in pred_layer_ids]
        self.teacher = truncate_teacher(teacher, max(self.pred_layer_ids))
        self.normalize = normalize

    def train(self, mode: bool = True):
        return super().train(False)  # the teacher is always in eval mode (no dropout)

    def conv_features(self, input_values: torch.Tensor) -> torch.Tensor:
        return conv_features(self.teacher.feature_extractor, self.teacher.config, input_values)

    @torch.no_grad()
    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """On GPU the frozen teacher runs under bf16 autocast (fp16 where bf16 is missing); targets come back fp32."""
        on_gpu = input_values.is_cuda
        half = torch.bfloat16 if not on_gpu or torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(input_values.device.type, dtype=half, enabled=on_gpu):
            cnn_features = self.conv_features(input_values)
            projected = self.teacher.feature_projection(cnn_features.transpose(1, 2))
            hidden_states = projected[0] if isinstance(projected, tuple) else projected  # HuBERT's is a tensor
            frame_mask = frame_attention_mask(self.teacher.config, attention_mask, hidden_states.shape[1])
            with record_encoder_outputs(self.teacher.encoder, hidden_states=True, attentions=False) as recorded:
                self.teacher.encoder(hidden_states, attention_mask=frame_mask)
        targets = torch.stack([recorded["hidden_states"][i] for i in self.pred_layer_ids], dim=1).float()
        if self.normalize:
            targets = nn.functional.layer_norm(targets, targets.shape[-1:])
        return targets, cnn_features


def has_slim_cnn(student_config, teacher_config) -> bool:
    """True when the student's CNN is narrower than the teacher's (its own, distilled from the teacher's output)."""
    return list(student_config.conv_dim) != list(teacher_config.conv_dim)


def _describe_mismatch(student_config, teacher_config) -> list[str]:
    differences = []
    student_dims, teacher_dims = list(student_config.conv_dim), list(teacher_config.conv_dim)
    if len(student_dims) != len(teacher_dims) or student_dims[-1:] != teacher_dims[-1:]:
        differences.append(
            f"conv_dim: student {student_dims} vs teacher {teacher_dims} (a slim CNN may narrow the inner layers "
            "but needs as many layers as the teacher and the same last width)"
        )
    for name in TEACHER_ARCHITECTURE_FIELDS:
        student_value, teacher_value = getattr(student_config, name, None), getattr(teacher_config, name, None)
        if isinstance(student_value, (list, tuple)):
            student_value, teacher_value = list(student_value), list(teacher_value or [])
        if student_value != teacher_value:
            differences.append(f"{name}: student {student_value!r} vs teacher {teacher_value!r}")
    return differences


def _backbone(student: nn.Module) -> DistilXLSRModel:
    if isinstance(student, DistilXLSRModel):
        return student
    backbone = getattr(student, "distilxlsr", None)
    if not isinstance(backbone, DistilXLSRModel):
        raise TypeError(f"Expected a DistilXLSR model, got {type(student).__name__}.")
    return backbone


def init_student_from_teacher(student: nn.Module, teacher: PreTrainedModel, layer_map: dict[int, int] | None = None):
    """Copies the teacher's CNN, feature projection (with its LayerNorm), positional convolution and chosen layers
    into the student, as DistilHuBERT does. `layer_map` maps student layer -> teacher layer (0-based); the default is
    the first N teacher layers. Works on the backbone or any of our wrapper models; returns the student.

    A WavLM teacher's layers share the wav2vec2 names except its relative-position bias, which the student lacks:
    those weights are skipped (and logged). A slim student's CNN is initialised by `init_slim_cnn_from_teacher`.
    """
    backbone = _backbone(student)
    teacher = teacher.base_model
    differences = _describe_mismatch(backbone.config, teacher.config)
    if differences:
        raise ValueError(
            "The student cannot be initialised from this teacher; these architecture fields differ:\n  "
            + "\n  ".join(differences)
            + "\nBuild the student with DistilXLSRConfig.from_teacher_config(teacher.config)."
        )
    num_student_layers = len(backbone.encoder.layers)
    layer_map = dict(layer_map) if layer_map is not None else {i: i for i in range(num_student_layers)}
    if sorted(layer_map) != list(range(num_student_layers)):
        raise ValueError(f"layer_map must map every student layer 0..{num_student_layers - 1}, got {layer_map}.")
    num_teacher_layers = len(teacher.encoder.layers)
    if any(not 0 <= t < num_teacher_layers for t in layer_map.values()):
        raise ValueError(f"layer_map {layer_map} names a teacher layer outside 0..{num_teacher_layers - 1}.")

    def copy(student_module: nn.Module, teacher_module: nn.Module, what: str):
        teacher_state = teacher_module.state_dict()
        student_state = student_module.state_dict()
        skipped = sorted(set(teacher_state) - set(student_state))
        if skipped:
            logger.info("%s: teacher weights with no student counterpart, skipped: %s", what, skipped)
        missing = sorted(set(student_state) - set(teacher_state))
        if missing:
            raise ValueError(f"{what}: the teacher has no weights for {missing}.")
        student_module.load_state_dict({k: teacher_state[k] for k in student_state})

    with torch.no_grad():
        if has_slim_cnn(backbone.config, teacher.config):
            init_slim_cnn_from_teacher(backbone.feature_extractor, teacher.feature_extractor)
        else:
            copy(backbone.feature_extractor, teacher.feature_extractor, "CNN feature encoder")
        copy(backbone.feature_projection, teacher.feature_projection, "feature projection")
        copy(backbone.encoder.pos_conv_embed, teacher.encoder.pos_conv_embed, "positional convolution")
        copy(backbone.encoder.layer_norm, teacher.encoder.layer_norm, "encoder LayerNorm")
        for student_layer, teacher_layer in layer_map.items():
            copy(
                backbone.encoder.layers[student_layer],
                teacher.encoder.layers[teacher_layer],
                f"layer {student_layer} <- teacher layer {teacher_layer}",
            )
        teacher_spec_embed = getattr(teacher, "masked_spec_embed", None)
        if teacher_spec_embed is not None and getattr(backbone, "masked_spec_embed", None) is not None:
            backbone.masked_spec_embed.copy_(teacher_spec_embed)
    return student


@torch.no_grad()
def init_slim_cnn_from_teacher(student_cnn: nn.Module, teacher_cnn: nn.Module):
    """Initialises a narrower CNN with a channel subset of the teacher's (structured pruning), a better start than
    random weights for distilling the teacher's CNN output: each inner layer keeps the channels the next teacher layer
    weighs most (L2 norm of the next conv's input weights, times |LayerNorm gain| where there is a norm), and each
    layer's weights are cut to the kept input and output channels. The last layer keeps all its output channels."""
    student_layers, teacher_layers = list(student_cnn.conv_layers), list(teacher_cnn.conv_layers)
    kept_inputs = None
    for index, (student_layer, teacher_layer) in enumerate(zip(student_layers, teacher_layers, strict=True)):
        teacher_weight = teacher_layer.conv.weight  # (out, in, kernel)
        width = student_layer.conv.out_channels
        if index + 1 < len(teacher_layers):
            importance = teacher_layers[index + 1].conv.weight.float().pow(2).sum((0, 2)).sqrt()
            norm = getattr(teacher_layer, "layer_norm", None)
            if norm is not None and getattr(norm, "weight", None) is not None:
                importance = importance * norm.weight.float().abs()
            kept = importance.topk(width).indices.sort().values
        else:
            kept = torch.arange(teacher_weight.shape[0], device=teacher_weight.device)
        student_state = student_layer.state_dict()
        sliced = {}
        for name, value in teacher_layer.state_dict().items():
            if name not in student_state:
                continue
            value = value.index_select(0, kept)  # conv weight and bias, norm gain and bias: all per output channel
            if name == "conv.weight" and kept_inputs is not None:
                value = value.index_select(1, kept_inputs)
            sliced[name] = value
        student_layer.load_state_dict(sliced)
        kept_inputs = kept
    logger.info(
        "slim CNN %s initialised from a channel subset of the teacher's CNN %s",
        [layer.conv.out_channels for layer in student_layers],
        [layer.conv.out_channels for layer in teacher_layers],
    )

"""The teacher side of distillation: load a wav2vec2-family teacher, run it only as deep as needed, and initialise a
student from it. Not part of the Hub files: the published model never needs a teacher."""

import logging
import math
from typing import NamedTuple

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCTC, PreTrainedModel, Wav2Vec2Processor

from ..errors import UserError
from ..models.configuration_distilxlsr import TEACHER_ARCHITECTURE_FIELDS, cnn_receptive_field
from ..models.folder import load_config
from ..models.modeling_distilxlsr import DistilXLSRModel
from ..models.modeling_distilxlsr_parts import (
    conv_features,
    frame_attention_mask,
    record_encoder_outputs,
)

logger = logging.getLogger(__name__)

SUPPORTED_TEACHER_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")


def load_teacher(
    name_or_path: str, random_init: bool = False, dtype: torch.dtype | None = None, ctc_head: bool = False
) -> PreTrainedModel:
    """A frozen teacher base model (Wav2Vec2Model, HubertModel, WavLMModel...) in eval mode.

    `random_init` builds the architecture from its config with random weights: for smoke runs and benchmarks where
    the real weights are not at hand. A CTC or pre-training checkpoint is reduced to its base model, unless
    `ctc_head`: then the teacher must be a fine-tuned CTC model (`Wav2Vec2ForCTC`...) and is returned whole, its
    `lm_head` included (`TeacherCTCError` before anything is trained when it has none).
    """
    config = load_config(name_or_path)
    if config.model_type not in SUPPORTED_TEACHER_TYPES:
        raise ValueError(
            f"Teacher {name_or_path!r} is a {config.model_type!r} model; "
            f"supported: {', '.join(SUPPORTED_TEACHER_TYPES)}."
        )
    config.layerdrop = 0.0
    if ctc_head:
        return load_ctc_teacher(name_or_path, config, dtype)
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


class TeacherCTCError(UserError, ValueError):
    """Output distillation was asked of a teacher that is not a fine-tuned CTC model."""


class VocabularyMismatchError(UserError, ValueError):
    """Two CTC vocabularies that must be one (the teacher's posteriors index the student's characters)."""


def is_ctc_model(config) -> bool:
    """True for a fine-tuned CTC checkpoint (its config names a ...ForCTC architecture)."""
    return any(name.endswith("ForCTC") for name in (getattr(config, "architectures", None) or []))


def vocabulary_differences(vocab: dict[str, int], other: dict[str, int]) -> list[str]:
    """The tokens that are in one vocabulary only, or at another id: what makes two CTC heads disagree."""
    return sorted(token for token in set(vocab) | set(other) if vocab.get(token) != other.get(token))


def check_same_vocabulary(tokenizer, teacher_tokenizer, what: str) -> None:
    """Refuses a tokenizer that does not spell with the teacher's vocabulary, naming the differing characters."""
    differing = vocabulary_differences(tokenizer.get_vocab(), teacher_tokenizer.get_vocab())
    if differing:
        raise VocabularyMismatchError(
            f"{what} does not match the teacher's vocabulary: {len(differing)} token(s) differ "
            f"({', '.join(map(repr, differing[:20]))}): the teacher's posteriors would train the wrong characters. "
            "Use the teacher's tokenizer (train_distill.py gives the student the teacher's)."
        )


def load_teacher_processor(name_or_path: str, config) -> Wav2Vec2Processor:
    """The CTC teacher's feature extractor + tokenizer (no code run: the classes are named here), checked against its
    head: as many tokens as CTC outputs, and the same blank (pad) token."""
    try:
        processor = Wav2Vec2Processor.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError) as err:
        raise TeacherCTCError(
            f"The CTC teacher {name_or_path!r} has no readable tokenizer ({type(err).__name__}: {err}); output "
            "distillation gives the student the teacher's tokenizer."
        ) from err
    tokenizer = processor.tokenizer
    if len(tokenizer) != config.vocab_size or tokenizer.pad_token_id != config.pad_token_id:
        vocab = tokenizer.get_vocab()
        raise VocabularyMismatchError(
            f"The tokenizer of {name_or_path!r} does not match its CTC head: {len(tokenizer)} tokens, pad id "
            f"{tokenizer.pad_token_id}, against vocab_size {config.vocab_size}, pad_token_id {config.pad_token_id}"
            f" (tokens past the head: {[t for t, i in vocab.items() if i >= config.vocab_size][:20]})."
        )
    return processor


def load_ctc_teacher(name_or_path: str, config, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The whole fine-tuned CTC teacher (`Wav2Vec2ForCTC`, `HubertForCTC`...), frozen, in eval mode. A folder whose
    config names no CTC architecture, or whose weights hold no `lm_head`, is refused here, before any data is read:
    transformers would otherwise give it a *random* head and distil noise."""
    architectures = list(getattr(config, "architectures", None) or [])
    if not is_ctc_model(config):
        raise TeacherCTCError(
            f"--logit_loss_weight and --pseudo_labels need a fine-tuned CTC teacher (a Wav2Vec2ForCTC folder or Hub "
            f"id, with its tokenizer); {name_or_path!r} is a {', '.join(architectures) or config.model_type} model "
            "with no CTC head. Distil its layers only (leave --logit_loss_weight at 0), or give a CTC teacher."
        )
    # float32 unless asked: a teacher shipped in fp16 (the package's) still runs and is distilled in float32
    teacher, info = AutoModelForCTC.from_pretrained(
        name_or_path, config=config, dtype=dtype or torch.float32, output_loading_info=True
    )
    if any(key.startswith("lm_head") for key in info["missing_keys"]):
        raise TeacherCTCError(f"The teacher {name_or_path!r} has no trained CTC head (no lm_head in its weights).")
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


class TeacherOutputs(NamedTuple):
    targets: torch.Tensor  # (batch, len(pred_layer_ids), frames, teacher_hidden_size), float32
    cnn_features: torch.Tensor  # (batch, conv_dim[-1], frames)
    logits: torch.Tensor | None  # (batch, frames, vocab), float32: a CTC teacher's, else None


class TeacherTargets(nn.Module):
    """Runs a truncated teacher and returns `TeacherOutputs(targets, cnn_features, logits)`: the hidden states the
    student's heads regress, stacked as `(batch, len(pred_layer_ids), frames, teacher_hidden_size)` in float32, the
    teacher's raw CNN output `(batch, conv_dim[-1], frames)` (what a student with the same frozen CNN reuses, and what
    a slim student's CNN learns), and, for a CTC teacher (`load_teacher(..., ctc_head=True)`), its CTC logits. A CTC
    teacher is never truncated: its logits come from its last layer.

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
        self.lm_head = getattr(teacher, "lm_head", None)  # a CTC teacher's head, run on its last layer
        teacher = teacher.base_model
        depth = len(teacher.encoder.layers) if self.lm_head is not None else max(self.pred_layer_ids)
        self.teacher = truncate_teacher(teacher, depth)
        self.normalize = normalize

    def train(self, mode: bool = True):
        return super().train(False)  # the teacher is always in eval mode (no dropout)

    def conv_features(self, input_values: torch.Tensor) -> torch.Tensor:
        return conv_features(self.teacher.feature_extractor, self.teacher.config, input_values)

    @torch.no_grad()
    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TeacherOutputs:
        """On GPU the frozen teacher runs under bf16 autocast (fp16 where bf16 is missing); targets come back fp32."""
        on_gpu = input_values.is_cuda
        half = torch.bfloat16 if not on_gpu or torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(input_values.device.type, dtype=half, enabled=on_gpu):
            cnn_features = self.conv_features(input_values)
            projected = self.teacher.feature_projection(cnn_features.transpose(1, 2))
            hidden_states = projected[0] if isinstance(projected, tuple) else projected  # HuBERT's is a tensor
            frame_mask = frame_attention_mask(self.teacher.config, attention_mask, hidden_states.shape[1])
            with record_encoder_outputs(self.teacher.encoder, hidden_states=True, attentions=False) as recorded:
                encoded = self.teacher.encoder(hidden_states, attention_mask=frame_mask)
            # Wav2Vec2ForCTC's head: on the encoder's output (after its final LayerNorm), dropout off in eval mode
            logits = None if self.lm_head is None else self.lm_head(encoded[0]).float()
        targets = torch.stack([recorded["hidden_states"][i] for i in self.pred_layer_ids], dim=1).float()
        if self.normalize:
            targets = nn.functional.layer_norm(targets, targets.shape[-1:])
        return TeacherOutputs(targets, cnn_features, logits)


def has_log_mel_frontend(student_config) -> bool:
    return getattr(student_config, "feature_frontend", "cnn") == "log_mel"


def has_slim_cnn(student_config, teacher_config) -> bool:
    """True when the student's front-end is its own rather than a copy of the teacher's CNN (a narrower CNN, or the
    log-mel front-end), learnt from the teacher's CNN output."""
    return has_log_mel_frontend(student_config) or list(student_config.conv_dim) != list(teacher_config.conv_dim)


POS_CONV_FIELDS = ("num_conv_pos_embeddings", "num_conv_pos_embedding_groups")


def has_own_pos_conv(student_config, teacher_config) -> bool:
    """True when the student's positional convolution has another shape than the teacher's (taps, groups): it cannot
    be copied whole (`--student_pos_conv`); `crops_pos_conv` says whether it starts from the teacher's central taps."""
    return any(getattr(student_config, name) != getattr(teacher_config, name) for name in POS_CONV_FIELDS)


def crops_pos_conv(student_config, teacher_config) -> bool:
    """True when a student's positional convolution of its own is the teacher's with fewer taps in the same groups:
    it starts from the teacher's central taps (`init_pos_conv_from_teacher`) instead of from scratch."""
    taps, groups = (getattr(student_config, name) for name in POS_CONV_FIELDS)
    teacher_taps, teacher_groups = (getattr(teacher_config, name) for name in POS_CONV_FIELDS)
    return groups == teacher_groups and taps < teacher_taps


@torch.no_grad()
def init_pos_conv_from_teacher(student_pos_conv: nn.Module, teacher_pos_conv: nn.Module):
    """A shorter positional convolution from the teacher's: its central taps, as they sit around the output frame
    (same-padding: tap j of K looks K//2 - j frames back), the bias as is. Each tap's weight-norm gain is per tap
    (`dim=2`), so the kept taps are exactly the teacher's; what the cut-off taps added is learnt from the layer
    targets. A better start than random weights for the convolution every layer's input passes through."""
    student_state = student_pos_conv.state_dict()
    teacher_taps = teacher_pos_conv.conv.kernel_size[0]
    taps = student_pos_conv.conv.kernel_size[0]
    start = teacher_taps // 2 - taps // 2
    cropped = {}
    for name, value in teacher_pos_conv.state_dict().items():
        if value.dim() >= 3 and value.shape[-1] == teacher_taps:  # the weight (or its weight-norm parts)
            value = value[..., start : start + taps]
        cropped[name] = value
    student_pos_conv.load_state_dict({name: cropped[name] for name in student_state})


def _describe_mismatch(student_config, teacher_config) -> list[str]:
    differences = []
    student_dims, teacher_dims = list(student_config.conv_dim), list(teacher_config.conv_dim)
    log_mel = has_log_mel_frontend(student_config)
    if log_mel:  # one frame analysis over the teacher CNN's receptive field and stride, as wide as its output
        frames = (student_config.conv_kernel[0], student_config.conv_stride[0], student_dims[0])
        teacher = (cnn_receptive_field(teacher_config), math.prod(teacher_config.conv_stride), teacher_dims[-1])
        if frames != teacher:
            differences.append(
                f"log-mel frames (window, hop, width): student {frames} vs the teacher CNN's receptive field, stride "
                f"and width {teacher}"
            )
    elif len(student_dims) != len(teacher_dims) or student_dims[-1:] != teacher_dims[-1:]:
        differences.append(
            f"conv_dim: student {student_dims} vs teacher {teacher_dims} (a slim CNN may narrow the inner layers "
            "but needs as many layers as the teacher and the same last width)"
        )
    for name in TEACHER_ARCHITECTURE_FIELDS:
        if log_mel and name in ("conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm"):
            continue
        if name in POS_CONV_FIELDS:  # a positional convolution of its own is learnt (`has_own_pos_conv`)
            continue
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
    """Copies the teacher's CNN, feature projection (with its LayerNorm), positional convolution (unless the student
    has one of its own shape) and chosen layers into the student, as DistilHuBERT does. `layer_map` maps student
    layer -> teacher layer (0-based); the default is the first N teacher layers. Works on the backbone or any of our
    wrapper models; returns the student.

    A WavLM teacher's layers share the wav2vec2 names except its relative-position bias, which the student lacks:
    those weights are skipped (and logged). A slim student's CNN is initialised by `init_slim_cnn_from_teacher`.
    A student with a CTC head (`distill_ctc_head`) gets a CTC teacher's `lm_head`.
    """
    backbone = _backbone(student)
    teacher_model, teacher = teacher, teacher.base_model
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
        if has_log_mel_frontend(backbone.config):
            logger.info("log-mel front-end: nothing to copy, it learns the teacher's CNN output")
        elif has_slim_cnn(backbone.config, teacher.config):
            init_slim_cnn_from_teacher(backbone.feature_extractor, teacher.feature_extractor)
        else:
            copy(backbone.feature_extractor, teacher.feature_extractor, "CNN feature encoder")
        copy(backbone.feature_projection, teacher.feature_projection, "feature projection")
        if has_own_pos_conv(backbone.config, teacher.config):
            cropped = crops_pos_conv(backbone.config, teacher.config)
            if cropped:
                init_pos_conv_from_teacher(backbone.encoder.pos_conv_embed, teacher.encoder.pos_conv_embed)
            logger.info(
                "positional convolution: %d taps in %d groups (the teacher's: %d in %d): %s",
                *(getattr(c, n) for c in (backbone.config, teacher.config) for n in POS_CONV_FIELDS),
                "the teacher's central taps" if cropped else "not copied, learnt",
            )
        else:
            copy(backbone.encoder.pos_conv_embed, teacher.encoder.pos_conv_embed, "positional convolution")
        copy(backbone.encoder.layer_norm, teacher.encoder.layer_norm, "encoder LayerNorm")
        for student_layer, teacher_layer in layer_map.items():
            copy(
                backbone.encoder.layers[student_layer],
                teacher.encoder.layers[teacher_layer],
                f"layer {student_layer} <- teacher layer {teacher_layer}",
            )
        teacher_head, student_head = getattr(teacher_model, "lm_head", None), getattr(student, "lm_head", None)
        if teacher_head is not None and student_head is not None:  # output distillation starts from the teacher's head
            copy(student_head, teacher_head, "CTC head")
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

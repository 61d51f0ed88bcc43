"""The parts of the DistilXLSR models that are not layers: input checks, the time-major CNN, frame masks, SpecAugment
masking, and the hooks that collect hidden states.

This file travels to the Hugging Face Hub with the weights (``trust_remote_code=True``), like modeling_distilxlsr.py:
torch and public transformers names only, so that a folder keeps loading across transformers releases. It is also what
the distillation teacher runs (`distill/teacher.py`), since the teacher's CNN takes the same fast path.
"""

import contextlib

import torch
from torch import nn


def validate_input_values(input_values: torch.Tensor, attention_mask: torch.Tensor | None, config) -> torch.Tensor:
    """Turns bad waveforms into a clear `ValueError` instead of a shape error deep inside a convolution.

    Accepts `(batch, samples)`, a single utterance `(samples,)` (returned as a batch of one), and
    `(batch, 1, samples)` (mono with a channel axis, squeezed).
    """
    if not isinstance(input_values, torch.Tensor):
        raise ValueError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}.")
    if not input_values.is_floating_point():
        raise ValueError(
            f"input_values must be a float waveform, got dtype {input_values.dtype}. Convert integer PCM to float "
            "(e.g. with Wav2Vec2FeatureExtractor, which also normalises it as in training)."
        )
    if input_values.dim() == 1:
        input_values = input_values[None]
    elif input_values.dim() == 3:
        if input_values.shape[1] != 1:
            raise ValueError(
                f"input_values of shape {tuple(input_values.shape)} looks like multi-channel audio (batch, channels, "
                "samples); the model takes mono 16 kHz audio of shape (batch, samples): mix the channels first, "
                "e.g. input_values.mean(dim=1)."
            )
        input_values = input_values[:, 0]
    elif input_values.dim() != 2:
        raise ValueError(
            f"input_values must have shape (batch, samples) or (samples,), got {input_values.dim()} dimensions "
            f"{tuple(input_values.shape)}."
        )
    lengths = (
        attention_mask.sum(-1) if attention_mask is not None else input_values.new_full((1,), input_values.shape[-1])
    )
    if attention_mask is not None and attention_mask.shape != input_values.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match "
            f"input_values {tuple(input_values.shape)}."
        )
    if torch.compiler.is_compiling():  # torch.compile / torch.export / ONNX: no data-dependent checks in the graph
        return input_values
    shortest = int(lengths.min())
    if shortest < config.receptive_field:
        raise ValueError(
            f"Audio too short: {shortest} samples, but the CNN feature encoder needs at least {config.receptive_field} "
            f"samples ({1000 * config.receptive_field / 16000:.0f} ms at 16 kHz) to produce one frame."
        )
    return input_values


def supports_time_major_cnn(feature_encoder: nn.Module, config) -> bool:
    """The fast CNN path covers the per-layer-LayerNorm CNN (`feat_extract_norm="layer"`: XLSR-53, XLS-R, our
    students), not group norm (wav2vec2 base, HuBERT). Read from the config, the public description of the layers,
    rather than from transformers' layer classes, whose module path is not an API."""
    layers = getattr(feature_encoder, "conv_layers", None)
    return (
        bool(layers)
        and config.feat_extract_norm == "layer"
        and all(hasattr(layer, "conv") and hasattr(layer, "layer_norm") for layer in layers)
    )


def time_major_conv_features(feature_encoder: nn.Module, input_values: torch.Tensor) -> torch.Tensor:
    """`Wav2Vec2FeatureEncoder.forward` for a LayerNorm CNN, with the same parameters and the same result (float
    noise only), computed time-major.

    transformers' layers run each Conv1d channel-first and transpose around every per-frame LayerNorm; on CPU the
    layout copies cost about as much as the convolutions. Here activations stay (batch, frames, channels) end to end,
    so the LayerNorm needs no transpose, and each convolution is a matmul over a *view* of its input: with stride s,
    s consecutive frames are one row of the (frames / s, s * channels) view, so a kernel of s taps is one matmul and
    a kernel of s + 1 taps (3 taps at stride 2) is that matmul plus one more over every s-th frame. Returns
    `(batch, channels, frames)` like the original, as a transposed view (no copy).
    """
    batch = input_values.shape[0]
    hidden = None
    for index, layer in enumerate(feature_encoder.conv_layers):
        weight = layer.conv.weight  # (out, in, kernel)
        kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
        if index == 0:  # one input channel: windows of the waveform
            frames = (input_values.shape[1] - kernel) // stride + 1
            hidden = input_values.unfold(1, kernel, stride) @ weight[:, 0, :].t()
        else:
            channels = hidden.shape[2]
            frames = (hidden.shape[1] - kernel) // stride + 1
            if kernel in (stride, stride + 1):
                rows = hidden[:, : frames * stride].reshape(batch, frames, stride * channels)
                taps = weight[:, :, :stride].permute(2, 1, 0).reshape(stride * channels, -1)
                output = rows @ taps
                if kernel == stride + 1:
                    output = output + hidden[:, stride : stride * frames + 1 : stride] @ weight[:, :, stride].t()
                hidden = output
            else:
                windows = hidden.unfold(1, kernel, stride).reshape(batch, frames, channels * kernel)
                hidden = windows @ weight.reshape(weight.shape[0], -1).t()
        if layer.conv.bias is not None:
            hidden = hidden + layer.conv.bias
        norm = layer.layer_norm
        hidden = layer.activation(
            nn.functional.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        )
    return hidden.transpose(1, 2)


def conv_features(feature_encoder: nn.Module, config, input_values: torch.Tensor, fast: bool = True) -> torch.Tensor:
    """CNN features `(batch, channels, frames)` of any wav2vec2-family feature encoder: the time-major fast path where
    it applies (`fast`, and a LayerNorm CNN), transformers' module otherwise. The student and the teacher both run
    their CNN through here."""
    if fast and supports_time_major_cnn(feature_encoder, config):
        return time_major_conv_features(feature_encoder, input_values)
    return feature_encoder(input_values)


def frame_attention_mask(config, attention_mask: torch.Tensor | None, num_frames: int) -> torch.BoolTensor | None:
    """Sample-level mask `(batch, samples)` -> frame-level bool mask `(batch, frames)`, True on frames computed from
    real samples only (right padding, as every feature extractor pads). Computed from the config's kernels and
    strides rather than with transformers' private helper, so that this file keeps working across releases."""
    if attention_mask is None:
        return None
    lengths = attention_mask.sum(-1)
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]


@contextlib.contextmanager
def record_encoder_outputs(encoder: nn.Module, hidden_states: bool, attentions: bool):
    """Collects what `output_hidden_states` / `output_attentions` ask for with plain torch hooks on the encoder's
    layers: the input of the first layer (after the positional convolution), the output of each layer (before the
    final LayerNorm of a pre-LN encoder, as wav2vec2 reports them), and each layer's attention weights.

    Why hooks of our own: transformers 5 collects these through a private decorator (`utils.output_capturing`)
    whose module path and behaviour change between releases; this file travels to the Hub and must not break with
    them. Layers return a tensor in transformers 5 and a tuple in 4.x; both are read.
    """
    recorded = {"hidden_states": [], "attentions": []}
    handles = []

    def first(value):
        return value[0] if isinstance(value, tuple) else value

    if hidden_states:
        handles.append(
            encoder.layers[0].register_forward_pre_hook(
                lambda module, args, kwargs: recorded["hidden_states"].append(
                    args[0] if args else kwargs["hidden_states"]
                ),
                with_kwargs=True,
            )
        )
        for layer in encoder.layers:
            handles.append(layer.register_forward_hook(lambda m, i, out: recorded["hidden_states"].append(first(out))))
    if attentions:
        for layer in encoder.layers:
            handles.append(
                layer.attention.register_forward_hook(lambda m, i, out: recorded["attentions"].append(out[1]))
            )
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def sample_span_mask(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    lengths: torch.Tensor | None = None,
    device=None,
) -> torch.BoolTensor:
    """SpecAugment spans as wav2vec 2.0 draws them (`_compute_mask_indices` in transformers): per row, about
    `mask_prob * length / mask_length` spans of `mask_length` steps (at least `min_masks`, at most what fits), starting
    at distinct random positions of the row's real part (`lengths`, else the whole row); spans may overlap.

    Our own code with torch's RNG, because transformers' helper is private (its name and module may change between
    releases, and this file travels to the Hub)."""
    batch, size = shape
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    if mask_prob <= 0 or mask_length < 1:
        return mask
    for row in range(batch):
        length = int(lengths[row]) if lengths is not None else size
        starts_available = length - mask_length + 1
        if starts_available < 1:
            continue
        num_spans = int(mask_prob * length / mask_length + torch.rand(()).item())
        num_spans = min(max(num_spans, min_masks), starts_available)
        starts = torch.randperm(starts_available)[:num_spans]
        positions = (starts[:, None] + torch.arange(mask_length)[None]).flatten()
        mask[row, positions.to(mask.device)] = True
    return mask


def spec_augment(
    hidden_states: torch.Tensor,
    config,
    masked_spec_embed: torch.Tensor | None,
    training: bool,
    mask_time_indices: torch.Tensor | None = None,
    frame_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """SpecAugment on the projected features, as `Wav2Vec2Model` does it: time spans replaced by the learnt mask
    embedding (`mask_time_indices` when given, else drawn in training with `mask_time_prob` over real frames only),
    and, in training, feature channels zeroed over all frames (`mask_feature_prob`)."""
    if not getattr(config, "apply_spec_augment", True):
        return hidden_states
    batch, frames, hidden_size = hidden_states.shape
    if mask_time_indices is None and training and config.mask_time_prob > 0:
        lengths = frame_mask.sum(-1) if frame_mask is not None else None
        mask_time_indices = sample_span_mask(
            (batch, frames), config.mask_time_prob, config.mask_time_length, config.mask_time_min_masks, lengths,
            hidden_states.device,
        )  # fmt: skip
    if mask_time_indices is not None and masked_spec_embed is not None:
        hidden_states = torch.where(
            mask_time_indices.bool()[..., None], masked_spec_embed.to(hidden_states.dtype), hidden_states
        )
    if training and config.mask_feature_prob > 0:
        channels = sample_span_mask(
            (batch, hidden_size), config.mask_feature_prob, config.mask_feature_length, config.mask_feature_min_masks,
            device=hidden_states.device,
        )  # fmt: skip
        hidden_states = hidden_states.masked_fill(channels[:, None, :], 0.0)
    return hidden_states

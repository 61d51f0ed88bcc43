"""DistilXLSR configuration.

This file travels to the Hugging Face Hub with the weights (``trust_remote_code=True``): it imports only
``transformers`` and ``huggingface_hub`` (a transformers dependency).
"""

import math

from huggingface_hub.dataclasses import strict
from transformers import Wav2Vec2Config

AUTO_MAP = {
    "AutoConfig": "configuration_distilxlsr.DistilXLSRConfig",
    "AutoModel": "modeling_distilxlsr.DistilXLSRModel",
    "AutoModelForCTC": "modeling_distilxlsr.DistilXLSRForCTC",
    "AutoModelForPreTraining": "modeling_distilxlsr.DistilXLSRForDistillation",
    "AutoModelForAudioClassification": "modeling_distilxlsr_classification.DistilXLSRForSequenceClassification",
}
# The model code that travels with every saved folder (what AUTO_MAP points at, and the parts file they import),
# whichever class saved it: a distilled student on the Hub must load as an audio classifier as well as a CTC model.
HUB_CODE_FILES = (
    "configuration_distilxlsr.py",
    "modeling_distilxlsr.py",
    "modeling_distilxlsr_parts.py",
    "modeling_distilxlsr_log_mel.py",
    "modeling_distilxlsr_stride.py",
    "modeling_distilxlsr_classification.py",
)

FEATURE_FRONTENDS = ("cnn", "log_mel")
# Config fields that describe the teacher's architecture and that a student must share with it to be
# initialised from it (CNN, feature projection, positional convolution, layer layout). `conv_dim` is checked apart:
# a slim student may have narrower inner CNN layers (see `DistilXLSRConfig.from_teacher_config(cnn_width=...)`).
TEACHER_ARCHITECTURE_FIELDS = (
    "conv_stride",
    "conv_kernel",
    "conv_bias",
    "feat_extract_norm",
    "feat_extract_activation",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
    "do_stable_layer_norm",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
)


def cnn_receptive_field(config) -> int:
    """Samples seen by one CNN output frame of any wav2vec2-family config: the shortest input that yields a frame."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def cnn_output_frames(config, samples: int) -> int:
    """Frames the CNN of any wav2vec2-family config makes of `samples` (0 below the receptive field)."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        samples = max(0, (samples - kernel) // stride + 1)
    return samples


@strict
class DistilXLSRConfig(Wav2Vec2Config):
    r"""
    Configuration of a DistilXLSR student: a short wav2vec2 (the teacher's CNN, feature projection and positional
    convolution, and a few of its transformer layers) with DistilHuBERT prediction heads that regress several teacher
    layers at once. All [`Wav2Vec2Config`] fields keep their meaning; the defaults below are the DistilHuBERT recipe
    applied to facebook/wav2vec2-large-xlsr-53, so `DistilXLSRConfig()` is the default student of XLSR-53.

    pred_layer_ids (`list[int]` or `tuple[int, ...]`, defaults to `(8, 16, 24)`):
        Teacher hidden-state indices the prediction heads regress: 0 is the input of the first transformer layer
        (after the positional convolution), `i` the output of layer `i` (for pre-LN "stable layer norm" teachers,
        before the final encoder LayerNorm). DistilHuBERT predicts 4/8/12 of a 12-layer teacher; the same thirds of
        the 24-layer XLSR-53 are 8/16/24.
    teacher_hidden_size (`int`, defaults to 1024):
        Width of the teacher's hidden states, i.e. the output size of each prediction head.
    head_activation (`str`, defaults to `"gelu"`):
        Activation between the shared expansion and the per-layer projections of the heads (s3prl's
        "expand-last" design: Linear(hidden -> hidden * N) -> GELU -> N separate Linear(hidden -> teacher_hidden)).
    teacher_name_or_path (`str`, *optional*):
        Hub id or path of the teacher the student was distilled from. Provenance only (model card, logs).
    distill_ctc_head (`bool`, defaults to `False`):
        Give `DistilXLSRForDistillation` a CTC head (`vocab_size` outputs, as `DistilXLSRForCTC`'s `lm_head`) to
        distil a fine-tuned teacher's CTC posteriors: the distilled student is then an ASR model without transcripts.
    fast_feature_encoder (`bool`, defaults to `True`):
        Compute the CNN time-major (same weights, same outputs up to float noise, about twice as fast on CPU) rather
        than with transformers' channel-first layers. Only applies to `feat_extract_norm="layer"` CNNs.
    num_hidden_layers (`int`, defaults to 2):
        Student transformer layers (DistilHuBERT uses 2).
    layerdrop (`float`, defaults to 0.0):
        Off by default: with only two layers it is harmful, and a skipped layer leaves unused parameters, which
        breaks DistributedDataParallel.

    feature_frontend (`str`, defaults to `"cnn"`):
        What turns the waveform into frames. `"cnn"`: the teacher's waveform CNN (copied from it, or slim).
        `"log_mel"`: log-mel energies of the teacher CNN's own frames (one Hann window of `conv_kernel[0]` samples
        every `conv_stride[0]`: XLSR-53's receptive field, 400, and stride, 320, so every length gives the teacher's
        frame count) through a per-frame MLP to `conv_dim[0]` channels, learnt from the teacher's CNN output. The
        MelHuBERT idea (spectral input instead of a waveform CNN; Lin et al., 2023) applied to a distilled student:
        about 0.024 GMAC per audio second instead of the 2.45 of XLSR-53's CNN, which is most of what a 2-layer
        student computes. Build it with `from_teacher_config(..., feature_frontend="log_mel")`.
    num_mel_bins (`int`, defaults to 80):
        Mel bands of the `"log_mel"` front-end (whisper's and most CTC recipes' 80).
    mel_band_mask_prob (`float`, defaults to 0.0):
        `"log_mel"` front-end, in training only: SpecAugment's frequency masks (Park et al., 2019) on the mel bands,
        spans of `mel_band_mask_length` bands per clip covering about this share of them, set to the frame's floor
        (the value an empty band of a band-limited channel takes). Off by default; `--mel_band_mask_prob` in
        train_distill.py. Unlike `mask_feature_prob` (which zeroes projected channels), it acts where a telephone or
        a cheap microphone acts: on the spectrum.
    mel_band_mask_length (`int`, defaults to 8):
        Bands per frequency mask (SpecAugment's F; 8 of 80 is a tenth of the mel axis).
    encoder_stride (`int`, defaults to 1):
        The transformer layers (and the positional convolution) run at 1/`encoder_stride` of the front-end's frame
        rate: frames are averaged in groups before them, and the last layer's output is repeated back to the frame
        rate with a learnt skip connection from the frames that went in (Squeezeformer's Temporal U-Net, Kim et
        al., 2022), so heads, CTC timing and every frame-reading tool keep 50 frames a second. 2 halves what the
        layers compute, which is most of a log-mel student; the layers are still copied from the teacher, which
        ran at the full rate. `--student_encoder_stride` in train_distill.py.

    conv_dim (`tuple[int, ...]`, defaults to XLSR-53's `(512,) * 7`):
        CNN channels per layer. A *slim* student narrows the inner layers (e.g. `(256,) * 6 + (512,)`, built with
        `from_teacher_config(..., cnn_width=256)`) and keeps the last one as wide as the teacher's, so that its CNN
        output can be distilled from the teacher's CNN output and feeds the teacher's feature projection. On XLSR-53
        shapes that cuts the CNN's FLOPs about 4x, and the CNN is most of what the 2-layer student computes.

    The remaining defaults are XLSR-53's: a 7-layer CNN with 512 channels, kernels (10, 3, 3, 3, 3, 2, 2), strides
    (5, 2, 2, 2, 2, 2, 2), conv bias and per-layer LayerNorm; pre-LN transformer layers 1024 wide with 16 heads and
    an FFN of 4096; a 128-wide positional convolution in 16 groups. Use [`DistilXLSRConfig.from_teacher_config`] for
    any other teacher.
    """

    model_type = "distilxlsr"

    pred_layer_ids: list[int] | tuple[int, ...] = (8, 16, 24)
    teacher_hidden_size: int = 1024
    head_activation: str = "gelu"
    teacher_name_or_path: str | None = None
    distill_ctc_head: bool = False
    fast_feature_encoder: bool = True
    feature_frontend: str = "cnn"
    num_mel_bins: int = 80
    mel_band_mask_prob: float = 0.0
    mel_band_mask_length: int = 8
    encoder_stride: int = 1

    hidden_size: int = 1024
    num_hidden_layers: int = 2
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    layerdrop: float | int = 0.0
    feat_extract_norm: str = "layer"
    conv_bias: bool = True
    do_stable_layer_norm: bool = True
    ctc_zero_infinity: bool = True
    ctc_loss_reduction: str = "mean"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # The one place auto_map is set: every Auto class a DistilXLSR folder supports, whatever class saves it, and
        # nothing else (an entry a loaded folder brought would name code this folder does not hold, or run it).
        self.auto_map = dict(AUTO_MAP)

    def validate_architecture(self):
        super().validate_architecture()
        if len(self.pred_layer_ids) == 0:
            raise ValueError("`pred_layer_ids` must name at least one teacher layer to predict.")
        if any(layer_id < 0 for layer_id in self.pred_layer_ids):
            raise ValueError(f"`pred_layer_ids` must be >= 0, got {list(self.pred_layer_ids)}.")
        if self.feature_frontend not in FEATURE_FRONTENDS:
            raise ValueError(f"`feature_frontend` must be one of {FEATURE_FRONTENDS}, got {self.feature_frontend!r}.")
        if self.feature_frontend == "log_mel" and len(self.conv_dim) != 1:
            raise ValueError(
                "A log-mel front-end is one frame analysis: conv_dim, conv_kernel and conv_stride must each hold one "
                f"value (width, window, hop), got conv_dim {list(self.conv_dim)}. Build it with "
                "DistilXLSRConfig.from_teacher_config(teacher_config, feature_frontend='log_mel')."
            )
        if not 0.0 <= self.mel_band_mask_prob < 1.0:
            raise ValueError(f"`mel_band_mask_prob` must be in [0, 1), got {self.mel_band_mask_prob}.")
        if self.mel_band_mask_prob > 0 and self.feature_frontend != "log_mel":
            raise ValueError("`mel_band_mask_prob` masks mel bands: it needs `feature_frontend='log_mel'`.")
        if self.encoder_stride < 1:
            raise ValueError(f"`encoder_stride` must be 1 (full frame rate) or more, got {self.encoder_stride}.")
        if not 1 <= self.mel_band_mask_length <= self.num_mel_bins:
            raise ValueError(
                f"`mel_band_mask_length` must be 1..num_mel_bins ({self.num_mel_bins}), "
                f"got {self.mel_band_mask_length}."
            )

    @property
    def receptive_field(self) -> int:
        """Samples seen by one CNN output frame: the shortest input that yields a frame (400 for XLSR-53)."""
        return cnn_receptive_field(self)

    @classmethod
    def from_teacher_config(
        cls,
        teacher_config,
        num_hidden_layers: int = 2,
        pred_layer_ids: list[int] | tuple[int, ...] | None = None,
        teacher_name_or_path: str | None = None,
        cnn_width: int | None = None,
        feature_frontend: str = "cnn",
        pos_conv: tuple[int, int] | None = None,
        **kwargs,
    ) -> "DistilXLSRConfig":
        """Builds the student that matches a Wav2Vec2 / HuBERT / WavLM teacher config (same CNN, width, layer
        layout), so that `init_student_from_teacher` can copy its weights. `pred_layer_ids` defaults to the thirds
        of the teacher's depth, as DistilHuBERT (4/8/12 of 12 layers). `cnn_width` makes a slim student: every CNN
        layer but the last gets that many channels (the last keeps the teacher's width). `feature_frontend="log_mel"`
        replaces the CNN by log-mel frames over the teacher CNN's receptive field and stride, as wide as its output.
        `pos_conv=(taps, groups)` gives the student a positional convolution of its own (learnt, not copied): a
        cheaper one than XLSR-53's 128 taps, or XLSR-53's layout for a student of a smaller teacher."""
        teacher_layers = teacher_config.num_hidden_layers
        if pred_layer_ids is None:
            pred_layer_ids = tuple(teacher_layers * k // 3 for k in (1, 2, 3))
        pred_layer_ids = tuple(int(i) for i in pred_layer_ids)
        too_deep = [i for i in pred_layer_ids if i > teacher_layers]
        if too_deep:
            raise ValueError(
                f"pred_layer_ids {list(pred_layer_ids)} asks for teacher layer(s) {too_deep}, but the teacher "
                f"({type(teacher_config).__name__}) has only {teacher_layers} layers (valid ids: 0..{teacher_layers})."
            )
        if getattr(teacher_config, "add_adapter", False):
            raise ValueError("Teachers with an adapter on top of the encoder are not supported.")
        fields = {name: getattr(teacher_config, name) for name in TEACHER_ARCHITECTURE_FIELDS}
        conv_dim = tuple(teacher_config.conv_dim)
        if cnn_width is not None:
            if cnn_width < 1:
                raise ValueError(f"cnn_width must be a positive number of channels, got {cnn_width}.")
            conv_dim = (int(cnn_width),) * (len(conv_dim) - 1) + conv_dim[-1:]
        conv_stride, conv_kernel = tuple(fields["conv_stride"]), tuple(fields["conv_kernel"])
        if feature_frontend == "log_mel":
            if cnn_width is not None:
                raise ValueError("cnn_width narrows the waveform CNN; a log-mel front-end has none: choose one.")
            conv_dim, conv_kernel = conv_dim[-1:], (cnn_receptive_field(teacher_config),)
            conv_stride = (math.prod(conv_stride),)
        if pos_conv is not None:
            taps, groups = (int(v) for v in pos_conv)
            if taps < 2 or groups < 1 or teacher_config.hidden_size % groups:
                raise ValueError(
                    f"pos_conv {list(pos_conv)}: taps must be >= 2 and groups must divide the hidden size "
                    f"({teacher_config.hidden_size})."
                )
            fields.update(num_conv_pos_embeddings=taps, num_conv_pos_embedding_groups=groups)
        fields.update(
            conv_dim=conv_dim,
            conv_stride=conv_stride,
            conv_kernel=conv_kernel,
            feature_frontend=feature_frontend,
            teacher_hidden_size=teacher_config.hidden_size,
            num_hidden_layers=num_hidden_layers,
            pred_layer_ids=pred_layer_ids,
            teacher_name_or_path=teacher_name_or_path or getattr(teacher_config, "_name_or_path", None) or None,
        )
        fields.update(kwargs)
        return cls(**fields)


__all__ = ["DistilXLSRConfig"]

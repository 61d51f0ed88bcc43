"""DistilXLSR models: a short wav2vec2 student, DistilHuBERT prediction heads, and a CTC head.

This file travels to the Hugging Face Hub with the weights (``trust_remote_code=True``): it imports only torch,
transformers and its own configuration (relative import). The backbone *is* a transformers `Wav2Vec2Model` with a
different config class, so its weight names are wav2vec2's and `export_as_wav2vec2` only renames a prefix.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutput, ModelOutput

from .configuration_distilxlsr import DistilXLSRConfig
from .modeling_distilxlsr_log_mel import DistilXLSRLogMelFeatureEncoder
from .modeling_distilxlsr_parts import (
    conv_features,
    frame_attention_mask,
    record_encoder_outputs,
    spec_augment,
    validate_input_values,
)
from .modeling_distilxlsr_stride import DistilXLSREncoderStride


@dataclass
class DistilXLSRModelOutput(ModelOutput):
    """
    last_hidden_state: output of the last student layer (after the final LayerNorm for pre-LN students), at the
        front-end's frame rate (with `encoder_stride`, brought back to it).
    extract_features: CNN features after the feature-projection LayerNorm, `(batch, frames, conv_dim[-1])`.
    hidden_states: input of the first layer and output of each layer, `num_hidden_layers + 1` tensors (with
        `encoder_stride`, at the layers' own, lower frame rate).
    attentions: attention weights, when requested.
    frame_attention_mask: `(batch, frames)` bool, True on real frames; None when no attention mask was given.
    """

    last_hidden_state: torch.FloatTensor | None = None
    extract_features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    frame_attention_mask: torch.BoolTensor | None = None


@dataclass
class DistilXLSRForDistillationOutput(ModelOutput):
    """
    predictions: head outputs, `(batch, len(pred_layer_ids), frames, teacher_hidden_size)`, in the order of
        `config.pred_layer_ids`.
    logits: CTC logits `(batch, frames, vocab_size)` when the student has a CTC head (`config.distill_ctc_head`:
        output distillation from a fine-tuned teacher), else None.
    cnn_features: the student's raw CNN output `(batch, conv_dim[-1], frames)`, which a slim student distils from
        the teacher's CNN output.
    last_hidden_state, hidden_states, attentions, frame_attention_mask: as in `DistilXLSRModelOutput`.
    """

    predictions: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cnn_features: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    frame_attention_mask: torch.BoolTensor | None = None


class DistilXLSRPreTrainedModel(Wav2Vec2PreTrainedModel):
    """Wav2Vec2's weight init, SDPA/flash support and output-length helpers, with our config class."""

    config: DistilXLSRConfig
    config_class = DistilXLSRConfig
    base_model_prefix = "distilxlsr"

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, DistilXLSRPredictionHeads):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.bias)
        if isinstance(module, DistilXLSREncoderStride):  # after its linear layer's default init (children first)
            hidden = module.skip_scale.shape[0]
            init.copy_(module.expand.weight, torch.eye(hidden).repeat(module.stride, 1))
            init.zeros_(module.expand.bias)
            init.zeros_(module.skip_scale)

    def use_return_dict(self, return_dict: bool | None) -> bool:
        """`return_dict` as every transformers model reads it: the argument, else the config's."""
        return getattr(self.config, "return_dict", True) if return_dict is None else return_dict

    def frame_attention_mask(self, attention_mask: torch.Tensor | None, num_frames: int) -> torch.BoolTensor | None:
        """Sample-level mask -> frame-level bool mask (True on frames computed from real samples only)."""
        return frame_attention_mask(self.config, attention_mask, num_frames)


class DistilXLSRModel(DistilXLSRPreTrainedModel, Wav2Vec2Model):
    """The student backbone: transformers' `Wav2Vec2Model` (CNN, feature projection, positional convolution,
    `num_hidden_layers` encoder layers) with input checks and a frame-level mask in its output.

    An utterance inside a padded batch gives the same frames as alone when `attention_mask` is passed (the CNN uses
    per-frame LayerNorm, so padding never leaks into real frames).
    """

    # A distillation checkpoint carries the prediction heads: loading it as a backbone drops them on purpose.
    _keys_to_ignore_on_load_unexpected = [r"prediction_heads\."]

    def __init__(self, config: DistilXLSRConfig):
        super().__init__(config)
        if config.feature_frontend == "log_mel":
            self.feature_extractor = DistilXLSRLogMelFeatureEncoder(config)
            self.feature_extractor.apply(self._init_weights)
        # the layers at a lower frame rate, back to the full rate after them (`encoder_stride`)
        self.encoder_stride = DistilXLSREncoderStride(config) if config.encoder_stride > 1 else None

    def conv_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """CNN features `(batch, channels, frames)`: the time-major fast path when the config allows it (and no
        gradient checkpointing is asked for), transformers' module otherwise; the log-mel front-end's frames when the
        config has one."""
        encoder = self.feature_extractor
        if isinstance(encoder, DistilXLSRLogMelFeatureEncoder):
            return encoder(input_values)
        checkpointing = encoder.gradient_checkpointing and self.training
        fast = self.config.fast_feature_encoder and not checkpointing
        return conv_features(encoder, self.config, input_values, fast)

    def forward(
        self,
        input_values: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        cnn_features: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DistilXLSRModelOutput | tuple:
        r"""
        input_values: mono 16 kHz waveform `(batch, samples)`, normalised as `Wav2Vec2FeatureExtractor` does.
        attention_mask: `(batch, samples)`, 1 on real samples; pass it for padded batches.
        mask_time_indices: SpecAugment time mask to apply (otherwise drawn from the config in training).
        cnn_features: the CNN output `(batch, conv_dim[-1], frames)` when it was already computed, e.g. by a teacher
            with the same frozen CNN during distillation; the student's own CNN is then skipped.
        output_hidden_states / output_attentions / return_dict: as everywhere in transformers.
        """
        if cnn_features is None:
            input_values = validate_input_values(input_values, attention_mask, self.config)
            cnn_features = self.conv_features(input_values)
        extract_features = cnn_features.transpose(1, 2)
        frame_attention_mask = self.frame_attention_mask(attention_mask, extract_features.shape[1])

        hidden_states, extract_features = self.feature_projection(extract_features)
        hidden_states = spec_augment(
            hidden_states,
            self.config,
            getattr(self, "masked_spec_embed", None),
            self.training,
            mask_time_indices,
            frame_attention_mask,
        )
        output_hidden_states = bool(output_hidden_states or self.config.output_hidden_states)
        output_attentions = bool(output_attentions or self.config.output_attentions)
        with record_encoder_outputs(self.encoder, output_hidden_states, output_attentions) as recorded:
            if output_attentions:
                kwargs["output_attentions"] = True
            skip, encoder_mask = hidden_states, frame_attention_mask
            if self.encoder_stride is not None:
                hidden_states, encoder_mask = self.encoder_stride.down(hidden_states, frame_attention_mask)
            encoder_outputs = self.encoder(hidden_states, attention_mask=encoder_mask, **kwargs)
        last_hidden_state = encoder_outputs[0]
        if self.encoder_stride is not None:
            last_hidden_state = self.encoder_stride.up(last_hidden_state, skip)
        output = DistilXLSRModelOutput(
            last_hidden_state=last_hidden_state,
            extract_features=extract_features,
            hidden_states=tuple(recorded["hidden_states"]) if output_hidden_states else None,
            attentions=tuple(recorded["attentions"]) if output_attentions else None,
            frame_attention_mask=frame_attention_mask,
        )
        return output if self.use_return_dict(return_dict) else output.to_tuple()


class DistilXLSRPredictionHeads(nn.Module):
    """s3prl's "expand-last" heads: one shared Linear(hidden -> hidden * N) + activation, then a separate projection
    per predicted teacher layer, all N computed by one einsum over stacked weights."""

    def __init__(self, config: DistilXLSRConfig):
        super().__init__()
        self.num_heads = len(config.pred_layer_ids)
        self.hidden_size = config.hidden_size
        self.expand = nn.Linear(config.hidden_size, config.hidden_size * self.num_heads)
        self.activation = ACT2FN[config.head_activation]
        self.weight = nn.Parameter(torch.empty(self.num_heads, config.hidden_size, config.teacher_hidden_size))
        self.bias = nn.Parameter(torch.zeros(self.num_heads, config.teacher_hidden_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = hidden_states.shape
        expanded = self.activation(self.expand(hidden_states)).view(batch, frames, self.num_heads, self.hidden_size)
        return torch.einsum("btnh,nho->bnto", expanded, self.weight) + self.bias[None, :, None, :]


class DistilXLSRForDistillation(DistilXLSRPreTrainedModel):
    """Backbone + prediction heads: what `train_distill.py` trains. Its checkpoint loads into `DistilXLSRModel` and
    `DistilXLSRForCTC` (the heads are dropped there).

    With `config.distill_ctc_head` (a fine-tuned CTC teacher), it also has `DistilXLSRForCTC`'s dropout + `lm_head`,
    under the same names, so that the teacher's CTC posteriors can be distilled and the checkpoint loads into
    `DistilXLSRForCTC` as a finished ASR model."""

    def __init__(self, config: DistilXLSRConfig):
        super().__init__(config)
        self.distilxlsr = DistilXLSRModel(config)
        self.prediction_heads = DistilXLSRPredictionHeads(config)
        if config.distill_ctc_head:
            self.dropout = nn.Dropout(config.final_dropout)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def freeze_feature_encoder(self):
        self.distilxlsr.freeze_feature_encoder()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        cnn_features: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DistilXLSRForDistillationOutput | tuple:
        if cnn_features is None:  # computed here rather than in the backbone, to return it
            input_values = validate_input_values(input_values, attention_mask, self.config)
            cnn_features = self.distilxlsr.conv_features(input_values)
        outputs = self.distilxlsr(
            input_values,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            cnn_features=cnn_features,
            **kwargs,
        )
        logits = None
        if self.config.distill_ctc_head:
            logits = self.lm_head(self.dropout(outputs.last_hidden_state))
        output = DistilXLSRForDistillationOutput(
            predictions=self.prediction_heads(outputs.last_hidden_state),
            logits=logits,
            cnn_features=cnn_features,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            frame_attention_mask=outputs.frame_attention_mask,
        )
        return output if self.use_return_dict(return_dict) else output.to_tuple()


def blank_padded_frames(logits: torch.Tensor, frame_mask: torch.Tensor, blank_id: int) -> torch.Tensor:
    """Logits of padded frames set to a certain blank. The transformers ASR pipeline decodes every frame of a padded
    batch (it does not trim to each item's length), so without this a short file batched with a long one gets
    characters made up from padding appended to its transcript."""
    blank_row = torch.full_like(logits[:1, :1], torch.finfo(logits.dtype).min)
    blank_row[..., blank_id] = 0.0
    return torch.where(frame_mask[..., None].bool(), logits, blank_row)


class DistilXLSRForCTC(DistilXLSRPreTrainedModel):
    """Backbone + dropout + `lm_head`, trained with CTC (blank = `pad_token_id`), as `Wav2Vec2ForCTC`.

    With an `attention_mask`, padded frames get blank logits, so any decoder of a padded batch (the ASR pipeline's
    included) returns each item's own transcript. The CTC loss is always computed in float32 (log-softmax and
    loss), also under fp16/bf16 autocast, and
    `ctc_zero_infinity` defaults to True: an infeasible clip (fewer frames than its label needs) cannot turn the
    loss into inf/NaN.
    """

    _keys_to_ignore_on_load_unexpected = [r"prediction_heads\."]

    def __init__(self, config: DistilXLSRConfig):
        super().__init__(config)
        if config.vocab_size is None:
            raise ValueError(
                "DistilXLSRForCTC needs `config.vocab_size` (the tokenizer's size), e.g. "
                "DistilXLSRForCTC.from_pretrained(path, vocab_size=len(tokenizer), "
                "pad_token_id=tokenizer.pad_token_id)."
            )
        self.distilxlsr = DistilXLSRModel(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def freeze_feature_encoder(self):
        self.distilxlsr.freeze_feature_encoder()

    def freeze_base_model(self):
        for param in self.distilxlsr.parameters():
            param.requires_grad = False

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutput | tuple:
        if labels is not None and labels.max() >= self.config.vocab_size:
            raise ValueError(f"Label values must be < vocab_size ({self.config.vocab_size}), got {int(labels.max())}.")
        outputs = self.distilxlsr(
            input_values,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        logits = self.lm_head(self.dropout(outputs.last_hidden_state))

        loss = None
        if labels is not None:
            loss = self.ctc_loss(logits, labels, outputs.frame_attention_mask)
        if outputs.frame_attention_mask is not None and self.config.pad_token_id is not None:
            logits = blank_padded_frames(logits, outputs.frame_attention_mask, self.config.pad_token_id)

        output = CausalLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if self.use_return_dict(return_dict) else output.to_tuple()

    def ctc_loss(self, logits: torch.Tensor, labels: torch.Tensor, frame_mask: torch.BoolTensor | None) -> torch.Tensor:
        return ctc_loss(logits, labels, frame_mask, self.config)


def ctc_loss(logits: torch.Tensor, labels: torch.Tensor, frame_mask: torch.BoolTensor | None, config) -> torch.Tensor:
    """CTC loss as `Wav2Vec2ForCTC` computes it (labels padded with -100, blank = `pad_token_id`), in float32
    whatever the autocast dtype: plain `nn.functional.ctc_loss`, public in every torch release. Shared by
    `DistilXLSRForCTC` and the pseudo-label loss of distillation."""
    if frame_mask is not None:
        logit_lengths = frame_mask.sum(-1)
    else:
        logit_lengths = torch.full((logits.shape[0],), logits.shape[1], device=logits.device)
    labels_mask = labels >= 0
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_probs = nn.functional.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        return nn.functional.ctc_loss(
            log_probs,
            labels.masked_select(labels_mask),
            logit_lengths.long(),
            labels_mask.sum(-1),
            blank=config.pad_token_id,
            reduction=config.ctc_loss_reduction,
            zero_infinity=config.ctc_zero_infinity,
        )


DistilXLSRConfig.register_for_auto_class("AutoConfig")
DistilXLSRModel.register_for_auto_class("AutoModel")
DistilXLSRForCTC.register_for_auto_class("AutoModelForCTC")
DistilXLSRForDistillation.register_for_auto_class("AutoModelForPreTraining")

__all__ = [
    "DistilXLSRForCTC",
    "DistilXLSRForDistillation",
    "DistilXLSRModel",
    "DistilXLSRPreTrainedModel",
    "DistilXLSRPredictionHeads",
]

"""DistilXLSR for utterance classification (keyword spotting, speaker, emotion, intent...): the SUPERB recipe.

This file travels to the Hugging Face Hub with the weights (``trust_remote_code=True``), like modeling_distilxlsr.py:
torch, transformers and relative imports only. The head is `Wav2Vec2ForSequenceClassification`'s (a learnable
softmax-weighted sum of every hidden state when `use_weighted_layer_sum`, a projector, mean pooling, a classifier),
with the same parameter names, so `export_as_wav2vec2` writes a plain `Wav2Vec2ForSequenceClassification`.
"""

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_distilxlsr import DistilXLSRConfig
from .modeling_distilxlsr import DistilXLSRModel, DistilXLSRPreTrainedModel


def masked_mean(hidden_states: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the frames computed from real samples only: a padded utterance pools to what it pools to alone."""
    if frame_mask is None:
        return hidden_states.mean(dim=1)
    weights = frame_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class DistilXLSRForSequenceClassification(DistilXLSRPreTrainedModel):
    """Backbone + SUPERB head: with `config.use_weighted_layer_sum`, the classifier sees a learnt mixture of every
    layer (what a frozen encoder keeps differs by layer: speaker in the lower ones, words higher up); otherwise the
    last layer. Labels are in `config.id2label`; `freeze_base_model()` gives the frozen-encoder probe."""

    _keys_to_ignore_on_load_unexpected = [r"prediction_heads\.", r"lm_head\."]

    def __init__(self, config: DistilXLSRConfig):
        super().__init__(config)
        self.distilxlsr = DistilXLSRModel(config)
        num_layers = config.num_hidden_layers + 1  # the transformer's input + each layer's output
        if config.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        # Equal weights to start. transformers' init knows no `layer_weights` (Wav2Vec2ForSequenceClassification,
        # transformers 5.24, keeps uninitialised memory there when loaded from a base checkpoint: values like 1e31,
        # different every run). `init.constant_` leaves a value loaded from a checkpoint as it is.
        weights = getattr(module, "layer_weights", None)
        if isinstance(module, DistilXLSRForSequenceClassification) and weights is not None:
            init.constant_(weights, 1.0 / weights.numel())

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
    ) -> SequenceClassifierOutput | tuple:
        if labels is not None and (labels.min() < 0 or labels.max() >= self.config.num_labels):
            raise ValueError(f"Labels must be in [0, {self.config.num_labels}), got {labels.tolist()}.")
        weighted = self.config.use_weighted_layer_sum
        outputs = self.distilxlsr(
            input_values,
            attention_mask=attention_mask,
            output_hidden_states=bool(output_hidden_states or weighted),
            output_attentions=output_attentions,
        )
        if weighted:
            stacked = torch.stack(outputs.hidden_states, dim=1)
            weights = nn.functional.softmax(self.layer_weights, dim=-1)
            hidden_states = (stacked * weights.view(-1, 1, 1)).sum(dim=1)
        else:
            hidden_states = outputs.last_hidden_state
        pooled = masked_mean(self.projector(hidden_states), outputs.frame_attention_mask)
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if self.use_return_dict(return_dict) else output.to_tuple()


DistilXLSRForSequenceClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = ["DistilXLSRForSequenceClassification", "masked_mean"]

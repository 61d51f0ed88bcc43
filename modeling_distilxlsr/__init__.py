"""DistilXLSR: DistilHuBERT-style distillation of wav2vec2 XLSR-53 into a small, fast speech encoder."""

from .configuration_distilxlsr import DistilXLSRConfig
from .modeling_distilxlsr import (
    DistilXLSRForCTC,
    DistilXLSRForDistillation,
    DistilXLSRModel,
    DistilXLSRPreTrainedModel,
)

__all__ = [
    "DistilXLSRConfig",
    "DistilXLSRForCTC",
    "DistilXLSRForDistillation",
    "DistilXLSRModel",
    "DistilXLSRPreTrainedModel",
]

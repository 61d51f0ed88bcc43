"""DistilXLSR: DistilHuBERT-style distillation of wav2vec2 XLSR-53 into a small, fast speech encoder."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForCTC,
    AutoModelForPreTraining,
)

from .models.configuration_distilxlsr import DistilXLSRConfig
from .models.modeling_distilxlsr import (
    DistilXLSRForCTC,
    DistilXLSRForDistillation,
    DistilXLSRModel,
    DistilXLSRPreTrainedModel,
)
from .models.modeling_distilxlsr_classification import DistilXLSRForSequenceClassification

# Registered with the Auto classes, so that DistilXLSR folders load with this package's code, without
# `trust_remote_code` and without running the Python files that travel with a folder.
AutoConfig.register(DistilXLSRConfig.model_type, DistilXLSRConfig, exist_ok=True)
AutoModel.register(DistilXLSRConfig, DistilXLSRModel, exist_ok=True)
AutoModelForCTC.register(DistilXLSRConfig, DistilXLSRForCTC, exist_ok=True)
AutoModelForPreTraining.register(DistilXLSRConfig, DistilXLSRForDistillation, exist_ok=True)
AutoModelForAudioClassification.register(DistilXLSRConfig, DistilXLSRForSequenceClassification, exist_ok=True)

__all__ = [
    "DistilXLSRConfig",
    "DistilXLSRForCTC",
    "DistilXLSRForDistillation",
    "DistilXLSRForSequenceClassification",
    "DistilXLSRModel",
    "DistilXLSRPreTrainedModel",
]

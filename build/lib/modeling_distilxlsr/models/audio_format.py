"""The audio every DistilXLSR model takes, defined once for the whole project: 16 kHz mono, each utterance
normalised to zero mean and unit variance, padded batches with an attention mask (the CNN's per-frame LayerNorm makes
padded batches exact). The files that travel to the Hub state 16 kHz on their own: they import nothing of
the project but each other."""

from transformers import Wav2Vec2FeatureExtractor

SAMPLING_RATE = 16_000


def default_feature_extractor() -> Wav2Vec2FeatureExtractor:
    """The feature extractor every DistilXLSR model is trained and served with."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )

"""Error rates of transcripts against references, both already normalised: jiwer's CER and WER, or for phone targets
the phone error rate. One function, so every script and benchmark scores the same way (an empty reference set
is refused by jiwer with a clear ValueError)."""

import jiwer

from .phonemes import phone_error_rate


def error_rates(references: list[str], predictions: list[str], target: str = "characters") -> dict:
    """`{"cer", "wer"}`; for `target="phonemes"` `{"per"}`: the edit distance over phones / reference phones."""
    if target == "phonemes":
        return {"per": phone_error_rate(references, predictions)}
    return {"cer": float(jiwer.cer(references, predictions)), "wer": float(jiwer.wer(references, predictions))}

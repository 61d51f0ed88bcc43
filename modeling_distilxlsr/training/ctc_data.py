"""CTC training examples: transcripts normalised and checked against the clip's length, and batches of padded audio
with padded label ids."""

from ..audio.dataset import AudioCollator
from ..audio.sources import SkipCounter, Utterance
from ..models.audio_format import SAMPLING_RATE
from ..text.normalizer import TextCounts, ctc_min_frames


def prepare_ctc_utterances(
    utterances: list[Utterance],
    normalizer,
    tokenizer,
    frames_for_samples,
    skips: SkipCounter,
    text_counts: TextCounts,
    max_samples: int | None = None,
) -> list[Utterance]:
    """Normalises transcripts and keeps the utterances CTC can learn from. Dropped and counted: transcripts that
    normalise to nothing or hold a number with no single reading (or any digit, with `digits="drop"`), clips longer
    than `max_samples`, and clips too short for their transcript (fewer frames than CTC needs: infinite loss)."""

    kept = []
    for utterance in utterances:
        normalised = normalizer.normalize(utterance.text or "", text_counts)
        text = normalised.text
        if text is None:
            reason = normalised.drop_reason  # counted by kind; the number itself goes to the log
            skips.skip(
                "ambiguous number" if reason.startswith("ambiguous") else reason,
                utterance.name,
                reason.removeprefix("ambiguous number "),
            )
            continue
        if not text:
            skips.skip("transcript empty after normalisation", utterance.name, repr(utterance.text))
            continue
        if max_samples and utterance.num_samples > max_samples:
            skips.skip(f"longer than {max_samples / SAMPLING_RATE:g} s", utterance.name, f"{utterance.seconds:.1f} s")
            continue
        frames = int(frames_for_samples(utterance.num_samples))
        needed = ctc_min_frames(tokenizer(text).input_ids)
        if frames < needed:
            skips.skip("too short for its transcript", utterance.name, f"{frames} frames < {needed} needed")
            continue
        kept.append(Utterance(utterance.source, utterance.num_samples, text, utterance.speaker, utterance.name))
    return kept


class CTCCollator(AudioCollator):
    """Pads audio (with attention mask) and tokenised transcripts; label padding is -100 so the loss ignores it."""

    def __init__(self, processor):
        super().__init__(processor.feature_extractor)
        self.tokenizer = processor.tokenizer

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__(items)
        texts = [item["text"] for item in items if "skip" not in item]
        if texts:
            labels = self.tokenizer(texts, padding=True, return_tensors="pt", return_attention_mask=True)
            batch["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
            batch["texts"] = texts
        return batch

"""CTC fine-tuning's set-up: the model (ours, or any wav2vec2-family checkpoint) sized to the tokenizer, the label
normaliser and the processor that spells its output, and the transcribed utterances CTC can learn from, from the
recipe's `FinetuneArguments`."""

import logging
import tempfile

import numpy as np
import transformers
from transformers import AutoModelForCTC

from ..audio.sources import NoUsableAudioError, SkipCounter, find_utterances
from ..corpus.synthesis import default_corpus_split
from ..errors import OptionsError
from ..models.audio_format import SAMPLING_RATE, default_feature_extractor
from ..models.configuration_distilxlsr import DistilXLSRConfig, cnn_output_frames
from ..models.folder import load_config
from ..models.modeling_distilxlsr import DistilXLSRForCTC
from ..text.normalizer import TextCounts, TextNormalizer, build_processor, build_vocab
from ..text.phonemes import PhonemeTargets, build_phoneme_processor
from .ctc_data import prepare_ctc_utterances
from .model_card import format_params

logger = logging.getLogger(__name__)


def load_ctc_model(args, processor):
    """DistilXLSR checkpoints load with our own class (so the saved code is this version's); anything else through
    AutoModelForCTC. The head is sized to the tokenizer; CTC settings that avoid inf/NaN are forced."""
    overrides = dict(
        vocab_size=len(processor.tokenizer),
        pad_token_id=processor.tokenizer.pad_token_id,
        ctc_zero_infinity=True,
        ctc_loss_reduction="mean",
        layerdrop=0.0,  # a skipped layer leaves unused parameters: DDP would fail
        apply_spec_augment=args.mask_time_prob > 0,
        mask_time_prob=args.mask_time_prob,
    )
    config = load_config(args.model)
    model_class = DistilXLSRForCTC if isinstance(config, DistilXLSRConfig) else AutoModelForCTC
    if args.from_scratch:
        for key, value in overrides.items():
            setattr(config, key, value)
        model = DistilXLSRForCTC(config) if model_class is DistilXLSRForCTC else AutoModelForCTC.from_config(config)
    else:
        # transformers' load report is a warning table; the CTC head that fine-tuning adds is meant to be new, so the
        # report is replaced by one line, and a warning only for weights that should have been in the checkpoint.
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            model, info = model_class.from_pretrained(
                args.model, ignore_mismatched_sizes=True, output_loading_info=True, **overrides
            )
        finally:
            transformers.logging.set_verbosity(verbosity)
        log_loading_info(info)
    if args.freeze_encoder:  # Wav2Vec2ForCTC and DistilXLSRForCTC both leave only lm_head trainable
        model.freeze_base_model()
    elif args.freeze_cnn:
        model.freeze_feature_encoder()
    return model


def log_loading_info(info: dict) -> None:
    new = sorted(set(info["missing_keys"]) | {key for key, *_ in info.get("mismatched_keys", [])})
    expected_new = [key for key in new if key.startswith("lm_head.")]
    unexpected_new = [key for key in new if not key.startswith("lm_head.")]
    dropped = sorted(info["unexpected_keys"])
    logger.info(
        "newly initialised: %s (the CTC head, sized to the tokenizer)%s",
        ", ".join(expected_new) or "nothing",
        f"; not used from the checkpoint: {len(dropped)} tensors ({dropped[0].split('.')[0]}...)" if dropped else "",
    )
    if unexpected_new:
        logger.warning("weights missing from the checkpoint, newly initialised: %s", ", ".join(unexpected_new))


def build_text_targets(finetune, train_raw: list):
    """The labels' normaliser (characters, or espeak-ng's IPA phones of the normalised text) and the processor whose
    tokenizer spells them: one normaliser for labels, references and vocabulary."""
    normalizer = TextNormalizer(finetune.digits, finetune.keep_apostrophe, finetune.ambiguous_numbers)
    if finetune.target == "phonemes":
        if finetune.lm_text:
            raise OptionsError("--lm_text builds a word n-gram for character targets; drop it with --target phonemes.")
        normalizer = PhonemeTargets(normalizer)
        phones = [text for u in train_raw if (text := normalizer(u.text))]
        return normalizer, build_phoneme_processor(phones, tempfile.mkdtemp())
    if finetune.vocab == "fixed":
        vocab = build_vocab(keep_apostrophe=finetune.keep_apostrophe)
    else:
        vocab = build_vocab([text for u in train_raw if (text := normalizer(u.text))])
    return normalizer, build_processor(vocab, default_feature_extractor())


def prepare_ctc_data(run, finetune, accelerator, skips: SkipCounter):
    """Transcribed utterances, normalised and checked against their clip's length, the model sized to the tokenizer,
    and the eval sets. Returns (model, processor, normalizer, train utterances, {eval source: utterances})."""
    train_source = finetune.train_data or default_corpus_split("train", accelerator)
    eval_sources = finetune.eval_data or [default_corpus_split("dev", accelerator)]
    train_raw = find_utterances(train_source, skips, need_text=True)
    normalizer, processor = build_text_targets(finetune, train_raw)
    model = load_ctc_model(finetune, processor)
    text_counts = TextCounts()

    def prepare(utterances, max_seconds):
        return prepare_ctc_utterances(
            utterances,
            normalizer,
            processor.tokenizer,
            lambda samples: cnn_output_frames(model.config, samples),
            skips,
            text_counts,
            int(max_seconds * SAMPLING_RATE),
        )

    train_utterances = prepare(train_raw, finetune.max_audio_seconds)
    if finetune.train_fraction < 1.0:
        keep = np.random.default_rng(run.seed).permutation(len(train_utterances))
        keep = sorted(keep[: max(1, round(finetune.train_fraction * len(train_utterances)))])
        train_utterances = [train_utterances[i] for i in keep]
    eval_sets = {
        source: prepare(find_utterances(source, skips, need_text=True), finetune.max_eval_audio_seconds)
        for source in eval_sources
    }
    if not train_utterances:
        raise NoUsableAudioError(f"No usable transcribed audio in {train_source} ({skips.summary()}).")
    logger.info(
        "model %s%s: %s parameters; train: %d utterances (%.2f h); eval: %s; %s",
        finetune.model,
        " (from scratch)" if finetune.from_scratch else "",
        format_params(sum(p.numel() for p in model.parameters())),
        len(train_utterances),
        sum(u.seconds for u in train_utterances) / 3600,
        {k: len(v) for k, v in eval_sets.items()},
        text_counts.report(),
    )
    return model, processor, normalizer, train_utterances, eval_sets

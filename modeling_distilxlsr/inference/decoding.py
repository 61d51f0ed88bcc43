"""CTC decoding of one utterance's logits: greedy with the tokenizer, or beam search with an n-gram LM (the
pyctcdecode decoder a folder ships in `language_model/`, or one built over an external KenLM file), with word or
character timestamps, as the transformers ASR pipeline decodes. Building, attaching and tuning LMs is
`modeling_distilxlsr.lm`'s work; this is what transcription needs of it."""

import hashlib
import json
import os
import zlib

import numpy as np
from scipy.special import softmax

from ..errors import UserError
from ..models.modeling_distilxlsr_parts import frame_attention_mask
from .confidence import emitting_frames, lexicon_features, transcript_features, utterance_sums, word_features
from .text_format import formatted_piece

LM_INFO_FILE = "lm_info.json"
DEFAULT_BEAM_WIDTH = 32
WORD_PAUSE_SECONDS = 0.3  # a run of blank frames this long ends a word, as the word delimiter does


class LanguageModelError(UserError, ValueError):
    pass


def ctc_labels(tokenizer) -> list[str]:
    """pyctcdecode's alphabet for a character CTC tokenizer: ids in order, the pad token (our CTC blank) as "", the
    word delimiter as " "."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return [
        " " if token == tokenizer.word_delimiter_token else "" if token == tokenizer.pad_token else token
        for token, _ in vocab
    ]


def _loading(path: str, load):
    """Runs `load` (which reads the KenLM file at `path`), turning a missing or corrupt file into a clear error at
    load time rather than a crash at decode time."""
    if not os.path.isfile(path):
        raise LanguageModelError(f"No KenLM model at {path}.")
    try:
        return load()
    except (OSError, RuntimeError, ValueError) as err:
        raise LanguageModelError(f"{path} is not a valid KenLM model (ARPA or binary): {err}") from err


def build_decoder(tokenizer, lm_path: str, unigrams: list[str] | None = None, alpha: float = 0.5, beta: float = 1.0):
    """A pyctcdecode beam-search decoder over the tokenizer's characters with the KenLM model at `lm_path`."""
    from pyctcdecode import build_ctcdecoder  # lazy: optional dependency

    labels = ctc_labels(tokenizer)
    return _loading(
        lm_path,
        lambda: build_ctcdecoder(labels, kenlm_model_path=lm_path, unigrams=unigrams, alpha=alpha, beta=beta),
    )


def has_lm(model_dir: str) -> bool:
    return os.path.isdir(os.path.join(str(model_dir), "language_model"))


def lm_file_digests(model_dir: str) -> dict[str, dict]:
    """{file of language_model/: {"bytes", "sha256"}}: what `distilxlsr-lm attach` records and a load checks. The
    KenLM model and the unigrams; not attrs.json, which `distilxlsr-lm tune` rewrites with the weights it found."""
    folder = os.path.join(model_dir, "language_model")
    digests = {}
    for name in sorted(os.listdir(folder)):
        if name == "attrs.json":
            continue
        digest = hashlib.sha256()
        with open(os.path.join(folder, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digests[name] = {"bytes": os.path.getsize(os.path.join(folder, name)), "sha256": digest.hexdigest()}
    return digests


def check_lm_files(model_dir: str) -> None:
    """Raises `LanguageModelError` naming a file of the folder's `language_model/` that differs from what `attach`
    wrote (truncated, overwritten, bit-rot): kenlm would fail with "Cannot read model" or a UnicodeDecodeError, or,
    worse, load a different model. Folders attached before the digests were recorded are not checked."""
    info_path = os.path.join(model_dir, LM_INFO_FILE)
    try:
        with open(info_path, encoding="utf-8") as f:
            recorded = json.load(f).get("files")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(recorded, dict):
        return
    now = lm_file_digests(model_dir)
    for name, expected in recorded.items():
        found = now.get(name)
        if found != expected:
            state = "is missing" if found is None else f"has {found['bytes']} bytes (attach wrote {expected['bytes']})"
            if found is not None and found["bytes"] == expected["bytes"]:
                state = "has the size attach wrote but other contents"
            raise LanguageModelError(
                f"{os.path.join(model_dir, 'language_model', name)} {state}: the folder's LM is damaged. Attach it "
                f"again (`distilxlsr-lm attach {model_dir} LM_DIR`), or decode greedily with --no_lm."
            )


def load_folder_decoder(model_dir: str):
    """The pyctcdecode decoder an ASR folder ships (`language_model/` + `alphabet.json`), its files checked against
    the digests `attach` recorded."""
    from pyctcdecode import BeamSearchDecoderCTC  # lazy: optional dependency

    check_lm_files(model_dir)
    folder = os.path.join(model_dir, "language_model")
    models = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith((".arpa", ".bin"))]
    if not models:
        raise LanguageModelError(f"{folder} holds no KenLM model (.arpa or .bin).")
    return _loading(models[0], lambda: BeamSearchDecoderCTC.load_from_dir(model_dir))


def load_lm_decoder(tokenizer=None, lm_path: str | None = None, model_dir: str | None = None):
    """The beam-search decoder over an external KenLM file (`lm_path`, with the tokenizer's characters) or the one
    `model_dir` ships; `LanguageModelError` saying what is missing or broken otherwise."""
    try:  # imported, not only looked up: a broken install must say so here, not at the first decode
        import kenlm  # noqa: F401  (lazy: optional dependency, the lm extra)
        import pyctcdecode  # noqa: F401  (lazy: optional dependency, requirements-lm.txt)
    except ImportError as err:
        raise LanguageModelError(
            f"LM decoding needs pyctcdecode and kenlm ({err}): `bash install.sh`, or "
            "`pip install --no-deps -r requirements-lm.txt`. --no_lm decodes greedily."
        ) from err
    return build_decoder(tokenizer, lm_path) if lm_path else load_folder_decoder(model_dir)


def split_words_at_pauses(logits: np.ndarray, blank_id: int, delimiter_id: int, min_frames: int) -> np.ndarray:
    """`logits` where every run of at least `min_frames` blank frames between two letters of one word gets the word
    delimiter in its middle frame (that frame's blank and delimiter scores swapped, so it stays a distribution for
    beam search). Only `|` ends a word in CTC decoding, and a model trained on connected speech often emits blanks,
    not `|`, across a pause: without this a word runs across a 1 s pause (`passadaquoal`)."""
    best = logits.argmax(-1)
    letters = np.flatnonzero(best != blank_id)
    if len(letters) < 2 or min_frames <= 0:
        return logits
    edited = None
    for left, right in zip(letters[:-1], letters[1:], strict=True):
        if right - left - 1 < min_frames or delimiter_id in (best[left], best[right]):
            continue
        if edited is None:
            edited = logits.copy()
        middle = (left + right) // 2
        edited[middle, [blank_id, delimiter_id]] = edited[middle, [delimiter_id, blank_id]]
    return logits if edited is None else edited


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def segment_scores(logits: np.ndarray, text: str, blank_id: int) -> dict:
    """What OpenAI's verbose_json gives each segment, for a CTC decode: `tokens` (the greedy path's labels, repeats
    merged and blanks dropped), `avg_logprob` (the mean log-probability of the frames that emitted them; Whisper's is
    the mean over its sampled tokens), `compression_ratio` (the text's length over its zlib-compressed length, as
    Whisper computes it: repetitive gibberish scores high) and `temperature` (0: no sampling)."""
    log_probs = log_softmax(logits.astype(np.float64))
    best = log_probs.argmax(-1)
    emitted = [t for t in range(len(best)) if best[t] != blank_id and (t == 0 or best[t] != best[t - 1])]
    data = text.encode("utf-8")
    return {
        "tokens": [int(best[t]) for t in emitted],
        "avg_logprob": round(float(np.mean([log_probs[t, best[t]] for t in emitted])), 4) if emitted else 0.0,
        "compression_ratio": round(len(data) / len(zlib.compress(data)), 4) if data else 0.0,
        "temperature": 0.0,
    }


class CTCDecoder:
    """Logits of one utterance (frames x vocabulary) -> `{"text"}`, plus `{"chunks": [{"text", "timestamp": (start,
    end)}]}` with `timestamps` "word" or "char" (seconds, rounded to 10 ms as the pipeline rounds them). Greedy: the
    tokenizer's CTC decode (repeats merged, blanks dropped) and its offsets. With `lm` (pyctcdecode): the best beam
    of `decode_beams(**beam_options)` and its word frames. `confidence`: each greedy word chunk also gets the mean
    probability of its frames' labels (LM decoding gives none: its beam scores are not per-word probabilities).
    Either way a run of `word_pause_s` of blank frames inside a word splits it (`split_words_at_pauses`).
    `decode_regions` decodes a file's speech regions one by one and joins them, with a segment per region; with a
    `formatter` (`text_format`: written numbers) each region's text and words are written by it, the raw text kept
    as "raw_text"."""

    def __init__(self, tokenizer, lm=None, beam_options: dict | None = None, timestamps: str | None = None,
                 frame_seconds: float = 0.02, confidence: bool = False,
                 word_pause_s: float = WORD_PAUSE_SECONDS, calibration=None, formatter=None):  # fmt: skip
        if timestamps not in (None, "word", "char"):
            raise ValueError(f"timestamps must be None, 'word' or 'char', got {timestamps!r}")
        if lm is not None and timestamps == "char":
            raise ValueError("character timestamps need greedy decoding (--no_lm); the LM decoder gives words")
        self.tokenizer, self.lm, self.beam_options = tokenizer, lm, beam_options or {}
        self.timestamps, self.frame_seconds, self.confidence = timestamps, frame_seconds, confidence
        self.calibration = calibration  # a `confidence.ConfidenceCalibration`: calibrated words, a transcript score
        self.formatter = formatter
        self.blank_id = tokenizer.pad_token_id
        self.delimiter_id = tokenizer.get_vocab().get(getattr(tokenizer, "word_delimiter_token", None))
        splits = word_pause_s and self.delimiter_id is not None and self.blank_id is not None
        self.pause_frames = round(word_pause_s / frame_seconds) if splits else 0

    def _seconds(self, frame: int) -> float:
        return round(frame * self.frame_seconds, 2)

    def __call__(self, logits: np.ndarray) -> dict:
        logits = split_words_at_pauses(logits, self.blank_id, self.delimiter_id, self.pause_frames)
        if self.lm is not None:
            text, _, word_frames, *_ = self.lm.decode_beams(logits, **self.beam_options)[0]
            return self._beam_result(text, word_frames)
        ids = logits.argmax(-1)
        if not self.timestamps:
            return {"text": self.tokenizer.decode(ids)}
        words = self.timestamps == "word"
        decoded = self.tokenizer.decode(ids, output_word_offsets=words, output_char_offsets=not words)
        key = "word" if words else "char"
        offsets = decoded["word_offsets" if words else "char_offsets"]
        chunks = [
            {"text": item[key], "timestamp": (self._seconds(item["start_offset"]), self._seconds(item["end_offset"]))}
            for item in offsets
        ]
        if self.confidence and self.calibration is not None and words:
            _, features, _ = self.word_features(logits, ids, offsets)
            for chunk, row in zip(chunks, features, strict=True):
                chunk["confidence"] = round(self.calibration.word(row), 4)
        elif self.confidence:  # the mean, over the word's frames, of the probability of the label greedy decoding chose
            best = softmax(logits, axis=-1).max(-1)
            for chunk, item in zip(chunks, offsets, strict=True):
                frames = best[item["start_offset"] : max(item["end_offset"], item["start_offset"] + 1)]
                chunk["confidence"] = round(float(frames.mean()), 4)
        return {"text": decoded["text"], "chunks": chunks}

    def alternatives(self, logits: np.ndarray, n: int) -> list[dict]:
        """Up to `n` transcripts of one utterance, best first, each {"text", "confidence", "chunks"?}: with an LM, the
        beam search's n best (`confidence`: the beam's score, the acoustic and LM log-probabilities combined, as
        Vosk's alternatives carry a score); greedy decoding has one path (`confidence`: its words' mean)."""
        if self.lm is None:
            best = self(logits)
            confidences = [c["confidence"] for c in best.get("chunks", []) if c.get("confidence") is not None]
            return [{**best, "confidence": round(float(np.mean(confidences)), 4) if confidences else None}]
        logits = split_words_at_pauses(logits, self.blank_id, self.delimiter_id, self.pause_frames)
        width = max(n, self.beam_options.get("beam_width", DEFAULT_BEAM_WIDTH))
        # pyctcdecode drops beams 10 nats behind the best (an unknown word costs that much): an n-best keeps them
        options = {"beam_prune_logp": -10.0 * n, **self.beam_options, "beam_width": width}
        beams = self.lm.decode_beams(logits, **options)
        out = []
        for text, _, word_frames, _, score in beams[:n]:
            out.append({**self._beam_result(text, word_frames), "confidence": round(float(score), 3)})
        return out

    def _beam_result(self, text: str, word_frames) -> dict:
        """One pyctcdecode beam as {"text", "chunks"?}: its words' frames in seconds."""
        result = {"text": text}
        if self.timestamps:
            result["chunks"] = [{"text": word, "timestamp": (self._seconds(start), self._seconds(end))}
                                for word, (start, end) in word_frames]  # fmt: skip
        return result

    def word_features(self, logits: np.ndarray, ids: np.ndarray | None = None, offsets: list | None = None):
        """(words, each word's `confidence.WORD_FEATURES`, the utterance's sums) of one region's greedy decode:
        what a calibration scores, and what `benchmarks/confidence.py` fits it on."""
        if ids is None:
            logits = split_words_at_pauses(logits, self.blank_id, self.delimiter_id, self.pause_frames)
            ids = logits.argmax(-1)
            offsets = self.tokenizer.decode(ids, output_word_offsets=True)["word_offsets"]
        log_probs = log_softmax(logits.astype(np.float64))
        words = [o["word"] for o in offsets]
        sums = utterance_sums(log_probs, self.blank_id, self.delimiter_id, words)
        context = transcript_features(sums)
        emitting = emitting_frames(ids, self.blank_id, self.delimiter_id)
        rows = [
            word_features(log_probs, o["start_offset"], o["end_offset"], len(o["word"]), emitting)
            | {"utt_entropy": context["utt_entropy"], "utt_margin": context["utt_margin"]}
            | lexicon_features(o["word"])
            for o in offsets
        ]
        return words, rows, sums

    def written_region(self, logits: np.ndarray) -> dict:
        """One speech region decoded and written by the formatter, as `decode_regions` writes each of a file's
        regions: for streams that answer a region at a time."""
        piece = self(logits)
        if self.formatter is not None and piece["text"].strip():
            piece = formatted_piece(piece, self.formatter)
        return piece

    def decode_regions(self, regions: list, logits: list[np.ndarray], sampling_rate: int) -> dict:
        """One file's result from the logits of each of its speech regions (`audio.vad.SpeechRegion`s, in order):
        the texts joined, word chunks in the file's time, and one OpenAI-style segment per region that holds words
        (`no_speech_prob`: one minus the VAD's mean speech probability over the region)."""
        result = {"text": "", "segments": []}
        if self.timestamps:
            result["chunks"] = []
        texts, raw_texts, sums = [], [], np.zeros(6)
        for region, region_logits in zip(regions, logits, strict=True):
            piece = self(region_logits)
            if not piece["text"].strip():
                continue
            scores = segment_scores(region_logits, piece["text"], self.blank_id)  # of the model's own text
            if self.calibration is not None:  # a region without text adds nothing to the transcript's sums
                log_probs = log_softmax(region_logits.astype(np.float64))
                sums += utterance_sums(log_probs, self.blank_id, self.delimiter_id, piece["text"].split())
            raw_texts.append(piece["text"])
            if self.formatter is not None:
                piece = formatted_piece(piece, self.formatter)
            texts.append(piece["text"])
            offset = region.start / sampling_rate
            for chunk in piece.get("chunks", []):
                start, end = chunk["timestamp"]
                result["chunks"].append({**chunk, "timestamp": (round(start + offset, 2), round(end + offset, 2))})
            result["segments"].append(
                {
                    "start": round(offset, 2),
                    "end": round(region.end / sampling_rate, 2),
                    "text": piece["text"],
                    "no_speech_prob": round(1.0 - region.speech_prob, 4),
                    **scores,
                }
            )
        result["text"] = " ".join(texts)
        if self.formatter is not None:
            result["raw_text"] = " ".join(raw_texts)
        if self.calibration is not None:  # P(the transcript is within CER 0.2 of what was said)
            result["transcript_score"] = round(self.calibration.transcript(transcript_features(sums)), 4)
            result["understood"] = bool(texts) and result["transcript_score"] >= 0.5
        return result


def greedy_transcripts(model, batch: dict, tokenizer) -> list[str]:
    """A padded batch's argmax CTC transcripts (repeats merged, blanks dropped), each item's padded frames left
    out: its real frames follow from the config's kernels and strides."""
    logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    real = frame_attention_mask(model.config, batch["attention_mask"], logits.shape[1])
    ids = logits.argmax(-1).masked_fill(~real, tokenizer.pad_token_id)
    return tokenizer.batch_decode(ids.cpu().numpy())

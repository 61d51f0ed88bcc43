"""Transcribe audio files or folders with a fine-tuned CTC model.

    python transcribe.py MODEL_DIR_OR_HUB_ID audio/ more.wav [--format text|jsonl|csv] [--output FILE]
                         [--batch_size 8] [--chunk_length_s 20] [--return_timestamps word] [--lm lm.arpa]

Any sample rate and channel count (decoded with soundfile, mixed to mono, resampled to 16 kHz); long audio is cut into
overlapping chunks by the transformers ASR pipeline, so an hour-long file needs no more memory than a 20 s one.
Unreadable files are reported on stderr and counted; the rest are transcribed.
"""

import argparse
import csv
import json
import os
import sys
from collections import deque

import numpy as np

from modeling_distilxlsr.data import AUDIO_EXTENSIONS, SAMPLING_RATE, AudioDecodeError, SkipCounter, load_audio


def list_audio_files(inputs: list[str]) -> list[str]:
    files = []
    for path in inputs:
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                files.extend(os.path.join(root, n) for n in sorted(names) if n.lower().endswith(AUDIO_EXTENSIONS))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    return sorted(files)


def build_lm_decoder(tokenizer, lm_path: str | None):
    """A pyctcdecode beam-search decoder over the tokenizer's characters, with a KenLM n-gram (ARPA or binary)."""
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError as err:
        raise SystemExit(
            "--lm needs pyctcdecode and kenlm: `pip install pyctcdecode kenlm` (kenlm builds from source and needs "
            "cmake, a C++ compiler and the Boost/zlib headers)."
        ) from err
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    labels = [
        " " if token == tokenizer.word_delimiter_token else "" if token == tokenizer.pad_token else token
        for token, _ in vocab
    ]
    return build_ctcdecoder(labels, kenlm_model_path=lm_path)


def transcribe(model, inputs, batch_size=8, chunk_length_s=20.0, return_timestamps=None, lm=None, device=None):
    """Yields (path, result, None) for every audio file under `inputs`, or (path, None, error) for unreadable ones.
    Files are decoded lazily, one batch ahead of the model: a folder of long recordings is never all in memory."""
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=model, trust_remote_code=True, device=device)
    if lm:
        asr = pipeline(
            "automatic-speech-recognition",
            model=asr.model,
            tokenizer=asr.tokenizer,
            feature_extractor=asr.feature_extractor,
            decoder=build_lm_decoder(asr.tokenizer, lm),
            device=device,
        )
    pending, failed = deque(), deque()

    def audio_stream():
        for path in list_audio_files(inputs):
            try:
                audio = load_audio(path)
            except AudioDecodeError as err:
                failed.append((path, str(err)))
                continue
            pending.append(path)
            yield {"raw": audio, "sampling_rate": SAMPLING_RATE}

    options = dict(batch_size=batch_size, chunk_length_s=chunk_length_s)
    if return_timestamps:
        options["return_timestamps"] = return_timestamps
    for result in asr(audio_stream(), **options):
        yield from _drain(failed)
        yield pending.popleft(), result, None
    yield from _drain(failed)


def onnx_logits(session, audio, chunk_samples: int | None, ratio: int = 320) -> np.ndarray:
    """CTC logits of one utterance; long audio in overlapping chunks whose overlaps (a sixth of a chunk on each
    side) are dropped before the logits are joined, as the transformers pipeline does."""
    from modeling_distilxlsr.data import normalize
    from modeling_distilxlsr.onnx_export import run_onnx

    if not chunk_samples or len(audio) <= chunk_samples:
        return run_onnx(session, [normalize(audio)])[0]
    stride = (chunk_samples // 6) // ratio * ratio
    step = chunk_samples - 2 * stride
    pieces = []
    for start in range(0, len(audio), step):
        chunk = audio[max(0, start - stride) : start + step + stride]
        if len(chunk) < 400:
            break
        logits = run_onnx(session, [normalize(chunk)])[0]
        left = (start - max(0, start - stride)) // ratio
        keep = logits[left : left + max(1, step // ratio)] if start + step < len(audio) else logits[left:]
        pieces.append(keep)
    return np.concatenate(pieces)


def transcribe_onnx(model_dir, inputs, chunk_length_s=20.0):
    """The same as `transcribe`, with ONNX Runtime (model_int8.onnx if present, else model.onnx) and greedy CTC."""
    from transformers import Wav2Vec2CTCTokenizer

    from modeling_distilxlsr.onnx_export import onnx_session

    int8 = os.path.join(model_dir, "model_int8.onnx")
    session = onnx_session(int8 if os.path.exists(int8) else os.path.join(model_dir, "model.onnx"))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(model_dir)
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    for path in list_audio_files(inputs):
        try:
            audio = load_audio(path)
        except AudioDecodeError as err:
            yield path, None, str(err)
            continue
        ids = onnx_logits(session, audio, chunk_samples).argmax(-1)
        yield path, {"text": tokenizer.decode(ids)}, None


def _drain(failed: deque):
    while failed:
        path, error = failed.popleft()
        yield path, None, error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Fine-tuned model folder or Hub id.")
    parser.add_argument("inputs", nargs="+", help="Audio files and/or folders (searched recursively).")
    parser.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
    parser.add_argument("--output", help="Write here instead of stdout.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--chunk_length_s", type=float, default=20.0, help="0 to disable chunking.")
    parser.add_argument("--return_timestamps", choices=["char", "word"])
    parser.add_argument("--lm", help="KenLM n-gram (ARPA or binary) for beam-search decoding with pyctcdecode.")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda:0")
    parser.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="onnx: a folder written by `python -m modeling_distilxlsr.onnx_export` (greedy decoding).",
    )
    args = parser.parse_args(argv)
    if args.backend == "onnx" and (args.lm or args.return_timestamps):
        parser.error("--backend onnx supports neither --lm nor --return_timestamps.")

    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    writer = csv.writer(out) if args.format == "csv" else None
    if writer:
        writer.writerow(["path", "text", "error"])
    skips = SkipCounter()
    if args.backend == "onnx":
        results = transcribe_onnx(args.model, args.inputs, args.chunk_length_s or None)
    else:
        results = transcribe(
            args.model,
            args.inputs,
            args.batch_size,
            args.chunk_length_s or None,
            args.return_timestamps,
            args.lm,
            args.device,
        )
    for path, result, error in results:
        skips.total += 1
        text = result["text"] if result else ""
        if error:
            skips.skip(error.split(":")[0], path)
            print(f"could not read {path}: {error}", file=sys.stderr)
        if args.format == "jsonl":
            row = {"path": path, "text": text}
            if error:
                row["error"] = error
            if result and "chunks" in result:
                row["chunks"] = [{"text": c["text"], "timestamp": list(c["timestamp"])} for c in result["chunks"]]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif writer:
            writer.writerow([path, text, error or ""])
        else:
            out.write(f"{path}\t{text}\n")
    if args.output:
        out.close()
    print(skips.summary(), file=sys.stderr)


if __name__ == "__main__":
    main()

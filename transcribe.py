"""Transcribe audio files or folders with a fine-tuned CTC model.

    python transcribe.py MODEL_DIR_OR_HUB_ID audio/ more.wav [--format text|jsonl|csv] [--output FILE]
                         [--batch_size 8] [--chunk_length_s 20] [--return_timestamps word]
                         [--beam_width 32] [--hotwords W...] [--no_lm] [--lm lm.arpa]
                         [--backend auto|torch|onnx] [--dtype fp32|bf16|int8]

Any sample rate and channel count (decoded with soundfile, mixed to mono, resampled to 16 kHz); long audio is cut into
overlapping chunks by the transformers ASR pipeline, so an hour-long file needs no more memory than a 20 s one.
Every file gets its own result or its own reported failure (unreadable, empty, too short for the model...): on
stderr, counted in the summary, and as `status`/`error` fields in JSONL and CSV; no result ever moves to another file.
A folder that ships an n-gram LM (`python -m modeling_distilxlsr.lm attach`) is decoded with it by beam search, on
both backends; `--no_lm` decodes greedily. DistilXLSR folders load with this package's own code; any other custom
model code runs only with --trust_remote_code.

`--backend auto` (the default) runs the fastest path this model and machine offer: torch fp32, torch bf16 autocast
(on CPUs with native bf16) and, when the folder holds them, its ONNX fp32/int8 graphs, timed once on 10 s of the
input and cached per model and CPU (`modeling_distilxlsr/backends.py`). Files are batched by length, as many per batch
as a quarter of the free memory holds; the last line reports the throughput in audio-hours per hour.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch

from modeling_distilxlsr.audio_format import SAMPLING_RATE
from modeling_distilxlsr.backends import BACKENDS, ONNX_FILES, auto_backend
from modeling_distilxlsr.batching import Throughput, length_sorted_batches, memory_budget
from modeling_distilxlsr.configuration_distilxlsr import cnn_receptive_field
from modeling_distilxlsr.cpu_features import check_bf16
from modeling_distilxlsr.data import AUDIO_EXTENSIONS, AudioDecodeError, SkipCounter, load_audio
from modeling_distilxlsr.lm import LanguageModelError, build_decoder, has_lm, load_folder_decoder
from modeling_distilxlsr.lm_tune import DEFAULT_BEAM_WIDTH
from modeling_distilxlsr.teacher import load_config


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


def lm_decoder_or_exit(tokenizer=None, lm_path: str | None = None, model_dir: str | None = None):
    """The beam-search decoder for an external KenLM file (`--lm`) or the one a folder ships, or a clear exit."""
    try:
        import kenlm  # noqa: F401
        import pyctcdecode  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"LM decoding needs pyctcdecode and kenlm ({err}): `bash install.sh`, or `pip install --no-deps "
            "-r requirements-lm.txt`. --no_lm decodes greedily."
        ) from err
    try:
        return build_decoder(tokenizer, lm_path) if lm_path else load_folder_decoder(model_dir)
    except LanguageModelError as err:
        raise SystemExit(f"error: {err}") from err


def read_for_transcription(path: str, min_samples: int) -> np.ndarray:
    """16 kHz mono float audio of one file, or `AudioDecodeError` saying why it cannot be transcribed (unreadable,
    no audio frames, NaN, shorter than the CNN's receptive field). Checked per file, before batching, so that a bad
    file fails alone and never shifts another file's result."""
    audio = load_audio(path)
    if len(audio) == 0:
        raise AudioDecodeError("empty (no audio frames)")
    if len(audio) < min_samples:
        raise AudioDecodeError("too short", f"{len(audio)} samples at 16 kHz, the model needs {min_samples}")
    return audio


def load_asr_pipeline(model, lm=None, device=None, trust_remote_code=False, use_lm=True):
    """The transformers ASR pipeline for `model`. DistilXLSR folders load with this package's own classes (registered
    with the Auto classes on import), so their Python files are never run; other custom code only with
    `trust_remote_code`. A folder that ships an LM (`lm attach`) decodes with it (beam search); `lm` is an external
    KenLM file instead; `use_lm=False` decodes greedily either way."""
    from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer, pipeline

    # Objects rather than the folder's name, with the decoder loaded here: the pipeline would fall back to greedy
    # decoding with only a warning when pyctcdecode is missing, and load a corrupt LM without a clear error.
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    decoder = None
    if use_lm and (lm or has_lm(model)):
        decoder = lm_decoder_or_exit(tokenizer, lm, model)
    return pipeline(
        "automatic-speech-recognition",
        model=AutoModelForCTC.from_pretrained(model, trust_remote_code=trust_remote_code),
        tokenizer=tokenizer,
        feature_extractor=AutoFeatureExtractor.from_pretrained(model, trust_remote_code=trust_remote_code),
        decoder=decoder,
        device=device,
    )


def transcribe(
    asr,
    inputs,
    batch_size=None,
    chunk_length_s=20.0,
    return_timestamps=None,
    decoder_kwargs=None,
    dtype="fp32",
    throughput=None,
):
    """Yields (path, result, None) for every audio file under `inputs`, or (path, None, error) for one that cannot be
    transcribed, in input order. Files are decoded a batch at a time (a folder of long recordings is never all in
    memory), batched by length (`batching.length_sorted_batches`: `batch_size` files, or as many as the memory
    allows when it is None). Each batch is sent to the pipeline as a list, whose results come back as a list of the
    same length; a batch that fails is retried file by file, so one bad file costs only its own result."""
    from modeling_distilxlsr import DistilXLSRForCTC

    config = asr.model.config
    min_samples = cnn_receptive_field(config)
    # The pipeline decodes every frame of a padded batch: only our CTC model turns padded frames into blanks, so any
    # other model (a plain Wav2Vec2ForCTC, an export of ours included) runs one file at a time, or a short file's
    # transcript would gain characters made up from the padding.
    batched = isinstance(asr.model, DistilXLSRForCTC)
    options = dict(chunk_length_s=chunk_length_s)
    if return_timestamps:
        options["return_timestamps"] = return_timestamps
    if getattr(asr, "decoder", None) is not None and decoder_kwargs:
        options["decoder_kwargs"] = decoder_kwargs
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    budget = memory_budget(str(asr.device)) if batch_size is None else None
    # bf16 autocast: matmuls and convolutions in bf16, reductions and the CTC decode in fp32.
    bf16 = dtype == "bf16"
    files = list_audio_files(inputs)
    for window, batches in length_sorted_batches(files, batch_size if batched else 1, config, chunk_samples, budget):
        outcomes: dict[str, tuple] = {}
        for group in batches:
            decoded = read_batch(group, min_samples, outcomes)
            options["batch_size"] = max(1, len(decoded)) if batched else 1
            with torch.autocast(asr.device.type, dtype=torch.bfloat16, enabled=bf16):
                for path, result, error in _run_pipeline(asr, decoded, options):
                    outcomes[path] = (result, error)
                    if throughput is not None and result is not None:
                        throughput.add(len(decoded[path]))
        for path in window:
            yield path, *outcomes[path]


def read_batch(paths: list[str], min_samples: int, outcomes: dict) -> dict[str, np.ndarray]:
    """The audio of each file of a batch that can be transcribed; the others get their error in `outcomes`."""
    decoded = {}
    for path in paths:
        try:
            decoded[path] = read_for_transcription(path, min_samples)
        except AudioDecodeError as err:
            outcomes[path] = (None, str(err))
    return decoded


def _run_pipeline(asr, decoded: dict, options: dict):
    paths = list(decoded)
    if not paths:
        return
    try:
        results = asr([{"raw": decoded[p], "sampling_rate": SAMPLING_RATE} for p in paths], **options)
        if len(results) != len(paths):  # never pair a result with the wrong file
            raise RuntimeError(f"the pipeline returned {len(results)} results for {len(paths)} files")
        yield from ((path, result, None) for path, result in zip(paths, results, strict=True))
    except Exception as err:  # isolate the file that fails
        if len(paths) == 1:
            yield paths[0], None, f"inference failed: {type(err).__name__}: {err}"
            return
        for path in paths:
            yield from _run_pipeline(asr, {path: decoded[path]}, options)


def transcribe_onnx(
    model_dir,
    inputs,
    chunk_length_s=20.0,
    decoder=None,
    decoder_kwargs=None,
    onnx_file=None,
    batch_size=None,
    throughput=None,
):
    """The same as `transcribe`, with ONNX Runtime running `onnx_file` (default: model_int8.onnx if present, else
    model.onnx); greedy CTC, or beam search with `decoder` (pyctcdecode)."""
    from transformers import Wav2Vec2CTCTokenizer

    from modeling_distilxlsr.onnx_export import onnx_batch_logits, onnx_session

    if onnx_file is None:
        onnx_file = "model_int8.onnx" if os.path.exists(os.path.join(model_dir, "model_int8.onnx")) else "model.onnx"
    session = onnx_session(os.path.join(model_dir, onnx_file))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(model_dir)
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    config = load_config(model_dir)
    min_samples = cnn_receptive_field(config)
    budget = memory_budget() if batch_size is None else None
    for window, batches in length_sorted_batches(list_audio_files(inputs), batch_size, config, chunk_samples, budget):
        outcomes: dict[str, tuple] = {}
        for group in batches:
            decoded = read_batch(group, min_samples, outcomes)
            for path, logits, error in onnx_batch_logits(session, decoded, chunk_samples, config):
                if error is None:
                    try:
                        kwargs = decoder_kwargs or {}
                        text = decoder.decode(logits, **kwargs) if decoder else tokenizer.decode(logits.argmax(-1))
                    except Exception as err:  # one file's failure is that file's result
                        error = f"decoding failed: {type(err).__name__}: {err}"
                outcomes[path] = (None, error) if error else ({"text": text}, None)
                if throughput is not None and error is None:
                    throughput.add(len(decoded[path]))
        for path in window:
            yield path, *outcomes[path]


def calibration_waves(files: list[str], min_samples: int, max_files: int = 4, max_seconds: float = 10.0):
    """The first few files that can be transcribed, each cut to `max_seconds`: what `--backend auto` measures on."""
    waves = []
    for path in files:
        try:
            waves.append(read_for_transcription(path, min_samples)[: int(max_seconds * SAMPLING_RATE)])
        except AudioDecodeError:
            continue
        if len(waves) == max_files:
            break
    return waves


def local_model_dir(model: str) -> str:
    """A local folder for `model` (a Hub id is downloaded, or found in the Hub cache): `--backend auto` keys its cache
    and finds the ONNX graphs there."""
    if os.path.isdir(model):
        return model
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model)
    except Exception as err:
        raise SystemExit(f"error: cannot load {model!r}: {type(err).__name__}: {err}") from err


def pick_backend(args, files: list[str]) -> tuple[str, str, str]:
    """(model folder, backend, dtype) of the run: `--backend auto` measures (or reads from its cache) the paths this
    folder and machine offer and takes the fastest within `--max_cer_change` of fp32's transcripts."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.backend != "auto":
        return args.model, args.backend, args.dtype or ("fp32" if args.backend == "torch" else None)
    model_dir = local_model_dir(args.model)
    allowed = ("torch-fp32", "torch-bf16") if args.return_timestamps else tuple(BACKENDS)
    try:
        min_samples = cnn_receptive_field(load_config(model_dir))
    except ValueError:  # a model type of its own: the pipeline's loader says what it needs (--trust_remote_code)
        print("backend: torch-fp32 (not a wav2vec2-family config: nothing else to time)", file=sys.stderr)
        return model_dir, "torch", "fp32"
    try:
        name = auto_backend(
            model_dir,
            lambda: calibration_waves(files, min_samples),
            device,
            args.max_cer_change,
            log=lambda message: print(message, file=sys.stderr),
            allowed=allowed,
            trust_remote_code=args.trust_remote_code,
        )
    except (RuntimeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    return (model_dir, *BACKENDS[name])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Fine-tuned model folder or Hub id.")
    parser.add_argument("inputs", nargs="+", help="Audio files and/or folders (searched recursively).")
    parser.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
    parser.add_argument("--output", help="Write here instead of stdout.")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="Files per batch (batched by length). Default: as many as a quarter of the available memory holds.",
    )
    parser.add_argument("--chunk_length_s", type=float, default=20.0, help="0 to disable chunking.")
    parser.add_argument("--return_timestamps", choices=["char", "word"])
    parser.add_argument(
        "--lm", help="An external KenLM n-gram (ARPA or binary) to beam-search with, instead of the folder's own."
    )
    parser.add_argument("--no_lm", action="store_true", help="Greedy CTC even when the folder ships an LM.")
    parser.add_argument("--beam_width", type=int, default=DEFAULT_BEAM_WIDTH, help="Beam width of LM decoding.")
    parser.add_argument("--hotwords", nargs="+", help="Words to favour in LM decoding (pyctcdecode hotwords).")
    parser.add_argument("--hotword_weight", type=float, default=10.0)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda:0")
    parser.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto: the fastest of torch fp32/bf16 and the folder's ONNX graphs (`python -m "
        "modeling_distilxlsr.onnx_export MODEL MODEL --quantize dynamic` adds them), timed once per model and machine "
        "and cached. onnx: a folder written by onnx_export (with the folder's LM, if any).",
    )
    parser.add_argument(
        "--dtype",
        choices=["fp32", "bf16", "int8"],
        default=None,
        help="Picks the path by hand (without --backend: int8 means onnx, the others torch). With --backend torch: "
        "fp32 (default) or bf16 autocast, where the hardware runs bf16 natively "
        "(AVX512-BF16 or AMX on a CPU; refused elsewhere). With --backend onnx: fp32 (model.onnx) or int8 "
        "(model_int8.onnx; the default when present). Speed and accuracy: benchmarks/README.md.",
    )
    parser.add_argument(
        "--max_cer_change",
        type=float,
        default=0.01,
        help="--backend auto: the largest character error rate of a path's transcripts against torch fp32's.",
    )
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Run the Python files of a model folder that is not a DistilXLSR or transformers model (DistilXLSR "
        "folders never need it: this package's own classes load them).",
    )
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch_size must be at least 1.")
    if (
        args.backend == "auto" and args.dtype
    ):  # a dtype alone picks the path by hand: int8 is ONNX's, the others torch's
        args.backend = "onnx" if args.dtype == "int8" else "torch"
    if args.backend == "onnx" and (args.return_timestamps or args.dtype == "bf16"):
        parser.error("--backend onnx supports neither --return_timestamps nor --dtype bf16.")
    if args.backend == "torch" and args.dtype == "int8":
        parser.error("--dtype int8 is ONNX Runtime's: export with `onnx_export --quantize dynamic`, --backend onnx.")
    if args.dtype == "bf16":
        try:
            check_bf16(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except ValueError as err:
            parser.error(str(err))
    decoder_kwargs = {"beam_width": args.beam_width}
    if args.hotwords:
        decoder_kwargs.update(hotwords=args.hotwords, hotword_weight=args.hotword_weight)
    try:
        files = list_audio_files(args.inputs)
    except FileNotFoundError as err:
        parser.error(str(err))
    model, backend, dtype = pick_backend(args, files)
    use_lm = not args.no_lm and (bool(args.lm) or has_lm(model))
    print(f"decoding: {'beam search with an n-gram LM' if use_lm else 'greedy CTC'}", file=sys.stderr)

    throughput = Throughput()
    if backend == "onnx":
        decoder = None
        if use_lm:
            from transformers import Wav2Vec2CTCTokenizer

            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(model) if args.lm else None
            decoder = lm_decoder_or_exit(tokenizer, args.lm, model)
        onnx_file = ONNX_FILES[dtype] if dtype else None
        chunk = args.chunk_length_s or None
        results = transcribe_onnx(model, files, chunk, decoder, decoder_kwargs, onnx_file, args.batch_size, throughput)
    else:
        asr = load_asr_pipeline(model, args.lm, args.device, args.trust_remote_code, use_lm=not args.no_lm)
        throughput = Throughput()  # from here: model loading is not transcription
        results = transcribe(
            asr,
            files,
            args.batch_size,
            args.chunk_length_s or None,
            args.return_timestamps,
            decoder_kwargs,
            dtype,
            throughput,
        )
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    writer = csv.writer(out) if args.format == "csv" else None
    if writer:
        writer.writerow(["path", "text", "status", "error"])
    skips = SkipCounter()
    for path, result, error in results:
        skips.total += 1
        text = result["text"] if result else ""
        status = "failed" if error else "ok"
        if error:
            skips.skip(error.split(":")[0], path)
            print(f"could not transcribe {path}: {error}", file=sys.stderr)
        if args.format == "jsonl":
            row = {"path": path, "text": text, "status": status}
            if error:
                row["error"] = error
            if result and "chunks" in result:
                row["chunks"] = [{"text": c["text"], "timestamp": list(c["timestamp"])} for c in result["chunks"]]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif writer:
            writer.writerow([path, text, status, error or ""])
        else:
            if not error:  # text: one line per transcript; failures are on stderr and in the summary
                out.write(f"{path}\t{text}\n")
        out.flush()
    if args.output:
        out.close()
    print(skips.summary(), file=sys.stderr)
    print(throughput.summary(), file=sys.stderr)
    return 1 if skips.reasons and skips.total == sum(skips.reasons.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Transcribe audio files or folders with a fine-tuned CTC model.

    python transcribe.py MODEL_DIR_OR_HUB_ID audio/ more.wav [--format text|jsonl|csv|srt|vtt] [--output FILE]
                         [--batch_size 8] [--chunk_length_s 20] [--return_timestamps word] [--no_vad] [--raw_text]
                         [--beam_width 32] [--hotwords W...] [--no_lm] [--lm lm.arpa]
                         [--backend auto|torch|onnx] [--dtype fp32|bf16|int8]

Any sample rate and channel count (decoded with soundfile, mixed to mono, resampled to 16 kHz). Each file's speech
regions (Silero VAD) are decoded one by one, so silence costs no accuracy and no word runs across a pause; a region
longer than a chunk is cut into overlapping chunks (the transformers ASR pipeline's rule), so an hour-long file needs
no more memory than a 20 s one. Every file gets its own result or its own reported failure (unreadable, empty, too
short for the model...): on stderr, counted in the summary, and as `status`/`error` fields in JSONL and CSV; no result
ever moves to another file. A folder that ships an n-gram LM (`distilxlsr-lm attach`) is decoded with it by beam
search, on every backend; `--no_lm` decodes greedily. DistilXLSR folders load with this package's own code; any other
custom model code runs only with --trust_remote_code.

`--backend auto` (the default) runs the fastest path this model and machine offer: torch fp32, torch bf16 autocast (on
CPUs with native bf16) and, when the folder holds them, its ONNX fp32/int8 graphs, timed once on 10 s of the input and
cached per model and CPU (`modeling_distilxlsr/inference/backend_choice.py`). Files are batched by length, as many per
batch as a quarter of the free memory holds; the last line reports the throughput in audio-hours per hour.
"""

import argparse
import os
import sys
from datetime import timedelta

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env

from modeling_distilxlsr.audio.sources import SkipCounter, list_audio_files
from modeling_distilxlsr.errors import OptionsError
from modeling_distilxlsr.inference.backend_choice import auto_backend, local_model_dir, timing_waves
from modeling_distilxlsr.inference.backends import BACKENDS, backend_name, load_backend
from modeling_distilxlsr.inference.batching import Throughput
from modeling_distilxlsr.inference.confidence import ConfidenceCalibration
from modeling_distilxlsr.inference.cpu_features import check_bf16
from modeling_distilxlsr.inference.decoding import (
    DEFAULT_BEAM_WIDTH,
    CTCDecoder,
    LanguageModelError,
    has_lm,
    load_lm_decoder,
)
from modeling_distilxlsr.inference.subtitles import subtitle_paths, subtitle_text
from modeling_distilxlsr.inference.text_format import bp_formatter
from modeling_distilxlsr.inference.transcript_files import (
    RowWriter,
    check_settings,
    existing_shards,
    make_row,
    read_jsonl_rows,
    read_output,
    resumed_order,
    rows_done,
    shard_path,
    split_by_length,
    write_output,
)
from modeling_distilxlsr.inference.transcription import transcribe
from modeling_distilxlsr.models.configuration_distilxlsr import cnn_receptive_field
from modeling_distilxlsr.models.folder import ONNX_FILES, load_config

COLLECTIVE_TIMEOUT_HOURS = 6
SUBTITLE_FORMATS = ("srt", "vtt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Fine-tuned model folder or Hub id.")
    parser.add_argument("inputs", nargs="+", help="Audio files and/or folders (searched recursively).")
    parser.add_argument(
        "--format",
        choices=["text", "jsonl", "csv", "srt", "vtt"],
        default="text",
        help="srt/vtt: subtitles from the word times, one file per input (cues cut at pauses and at 42 characters).",
    )
    parser.add_argument(
        "--output",
        help="Write here instead of stdout (needed with several processes: `accelerate launch`). With --format "
        "srt|vtt: the folder the subtitle files go to (needed for several files).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Keep the files --output (and the shards of a killed run) already holds; transcribe only the others.",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="Files per batch (batched by length). Default: as many as a quarter of the available memory holds.",
    )
    parser.add_argument("--chunk_length_s", type=float, default=20.0, help="0 to disable chunking.")
    parser.add_argument(
        "--no_vad",
        action="store_true",
        help="Decode each file whole. By default each file's speech regions (Silero VAD) are decoded one by one: "
        "silence costs no accuracy, and segments, rows' `segments` and subtitle cues follow the regions.",
    )
    raw = "The model's own text: lowercase, no marks, numbers spelt out (WER scoring). Default: R$ 1.500, marks."
    parser.add_argument("--raw_text", action="store_true", help=raw)
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
        help="auto: the fastest of torch fp32/bf16 and the folder's ONNX graphs (`distilxlsr-onnx MODEL MODEL "
        "--quantize dynamic` adds them), timed once per model and machine and cached. onnx: a folder written by "
        "distilxlsr-onnx (with the folder's LM, if any).",
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
    return parser


def parse_arguments(argv=None) -> argparse.Namespace:
    """The flags, checked against each other: a usage error names the conflict before anything is loaded."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch_size must be at least 1.")
    if args.backend == "auto" and args.dtype:  # a dtype alone picks the path by hand: int8 is ONNX's, others torch's
        args.backend = "onnx" if args.dtype == "int8" else "torch"
    if args.backend == "onnx" and args.dtype == "bf16":
        parser.error("--backend onnx has no bf16 path: --dtype fp32 or int8.")
    graph = os.path.join(args.model, ONNX_FILES.get(args.dtype or "fp32", ONNX_FILES["fp32"]))
    if args.backend == "onnx" and args.dtype and not os.path.exists(graph):
        parser.error(f"--backend onnx --dtype {args.dtype}: no {graph} (distilxlsr-onnx MODEL MODEL).")
    if args.backend == "torch" and args.dtype == "int8":
        parser.error(
            "--dtype int8 is ONNX Runtime's: export with `distilxlsr-onnx --quantize dynamic`, --backend onnx."
        )
    if args.return_timestamps == "char" and (args.lm or has_lm(args.model)) and not args.no_lm:
        parser.error("--return_timestamps char needs greedy decoding: add --no_lm (LM decoding gives word times).")
    if args.dtype == "bf16":
        try:
            check_bf16(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except ValueError as err:
            parser.error(str(err))
    try:
        args.files = list_audio_files(args.inputs)
    except FileNotFoundError as err:
        parser.error(str(err))
    if args.format in SUBTITLE_FORMATS:
        if args.return_timestamps == "char":
            parser.error(f"--format {args.format} cues are words: leave out --return_timestamps char.")
        if args.resume:
            parser.error(f"--format {args.format} writes one file per input: --resume is for text/jsonl/csv output.")
        if len(args.files) > 1 and not args.output:
            parser.error(f"--format {args.format} with several files needs --output DIR (one subtitle file each).")
        args.return_timestamps = "word"
        if args.output:
            try:
                args.subtitle_paths = subtitle_paths(args.files, args.output, args.format)
            except ValueError as err:
                parser.error(str(err))
    return args


def pick_backend(args, files: list[str]) -> tuple[str, str]:
    """(model folder, backend name) of the run: by hand, or `--backend auto`'s measured (or cached) choice among the
    paths this folder and machine offer, the fastest within `--max_cer_change` of fp32's transcripts."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.backend != "auto":
        return args.model, backend_name(args.backend, args.dtype)
    try:
        model_dir = local_model_dir(args.model)
    except OptionsError as err:
        raise SystemExit(f"error: {err}") from err
    try:
        min_samples = cnn_receptive_field(load_config(model_dir))
    except ValueError:  # a model type of its own: the torch loader says what it needs (--trust_remote_code)
        print("backend: torch-fp32 (not a wav2vec2-family config: nothing else to time)", file=sys.stderr)
        return model_dir, "torch-fp32"
    try:
        name = auto_backend(
            model_dir,
            lambda: timing_waves(files, min_samples),
            device,
            args.max_cer_change,
            log=lambda message: print(message, file=sys.stderr),
            allowed=tuple(BACKENDS),
            trust_remote_code=args.trust_remote_code,
        )
    except (RuntimeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    return model_dir, name


def load_decoder(args, backend, model: str) -> CTCDecoder:
    """Greedy CTC, or beam search with the folder's LM (or `--lm`), with `--return_timestamps`; a missing or broken
    LM is a clear exit."""
    lm = None
    if not args.no_lm and (args.lm or has_lm(model)):
        try:
            lm = load_lm_decoder(backend.tokenizer, args.lm, model)
        except LanguageModelError as err:
            raise SystemExit(f"error: {err}") from err
    beam_options = {"beam_width": args.beam_width}
    if args.hotwords:
        beam_options.update(hotwords=args.hotwords, hotword_weight=args.hotword_weight)
    try:  # the folder's confidence calibration (benchmarks/confidence.py --write_calibration), if it has one
        calibration = ConfidenceCalibration.load(model)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    formatter = bp_formatter(args.raw_text, log=lambda message: print(message, file=sys.stderr))
    return CTCDecoder(backend.tokenizer, lm, beam_options, args.return_timestamps, backend.frame_seconds,
                      calibration=calibration, formatter=formatter)  # fmt: skip


def run_settings(args) -> dict:
    """What makes two runs' transcripts comparable: a resume must use the same (checked by transcript_files)."""
    keys = ("model", "backend", "dtype", "lm", "no_lm", "beam_width", "hotwords", "hotword_weight", "chunk_length_s")
    keys += ("no_vad", "format", "raw_text")  # format: a resume reads the rows OUT holds, in OUT's format
    return {key: getattr(args, key) for key in keys} | {"return_timestamps": args.return_timestamps}


def previous_rows(args, files: list[str], is_main_process: bool) -> dict[str, dict]:
    """With --resume, the rows --output and its shards already hold (the main process folds the shards into it,
    in input order, so the others read one file); without, stale shards of an earlier run are removed."""
    if not is_main_process:
        return read_output(args.output, args.format) if args.resume else {}
    try:
        check_settings(args.output, run_settings(args), args.resume)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    if not args.resume:
        for stale in existing_shards(args.output):
            print(f"removing {stale}, left by an earlier run (--resume keeps its rows)", file=sys.stderr)
            os.remove(stale)
        return {}
    rows, torn, out_order = rows_done(args.output, args.format)
    if torn:
        print(
            f"--resume: {torn} line(s) torn by a kill are dropped; their files are transcribed again", file=sys.stderr
        )
    inputs = set(files)
    others = sum(path not in inputs for path in rows)
    print(
        f"--resume: {len(rows)} row(s) kept from {args.output} ({others} of files not among this run's inputs, kept "
        f"first, in place); {sum(path not in rows for path in files)} input file(s) to transcribe; this run's inputs "
        "in input order",
        file=sys.stderr,
    )
    write_output(args.output, args.format, resumed_order(out_order, files, rows), rows)
    return {path: row for path, row in rows.items() if path in inputs}


def write_rows(results, out, fmt: str) -> SkipCounter:
    """Writes each file's row as it comes (a failure on stderr too); returns the counts for the summary."""
    writer = RowWriter(out, fmt)
    skips = SkipCounter()
    not_understood = 0
    for path, result, error in results:
        skips.total += 1
        if error:
            skips.skip(error.split(":")[0], path)
            print(f"could not transcribe {path}: {error}", file=sys.stderr)
        elif result.get("understood") is False and result["text"]:
            not_understood += 1
            print(f"{path}: probably not understood (transcript score {result['transcript_score']})", file=sys.stderr)
        writer.write(make_row(path, result, error))
    if not_understood:
        print(f"{not_understood} transcript(s) probably not understood: check them before use", file=sys.stderr)
    return skips


def write_subtitles(results, args) -> SkipCounter:
    """One .srt/.vtt per transcribed file into --output (stdout for a single file without it); failures as for the
    other formats: on stderr and in the summary."""
    skips = SkipCounter()
    if args.output:
        os.makedirs(args.output, exist_ok=True)
    for path, result, error in results:
        skips.total += 1
        if error:
            skips.skip(error.split(":")[0], path)
            print(f"could not transcribe {path}: {error}", file=sys.stderr)
            continue
        text = subtitle_text(result, args.format)
        if not args.output:
            sys.stdout.write(text)
            continue
        with open(args.subtitle_paths[path], "w", encoding="utf-8") as f:
            f.write(text)
    return skips


def merge_shards(args, files: list[str], kept: int, todo: int, num_processes: int) -> int:
    """The main process folds every process' shard into --output (a fresh run: this run's files in input order; a
    resume: `resumed_order`, which keeps every earlier row); the exit status of the run."""
    if args.resume:
        rows, _, out_order = rows_done(args.output, args.format)
        paths = resumed_order(out_order, files, rows)
    else:  # OUT of an earlier run is replaced, not merged
        rows = {p: r for shard in existing_shards(args.output) for p, r in read_jsonl_rows(shard)[0].items()}
        paths = files
    write_output(args.output, args.format, paths, rows)
    failed = sum(rows[p]["status"] != "ok" for p in files if p in rows)
    print(
        f"{args.output}: {len(paths)} rows; of this run's {len(files)} files {len(files) - failed} transcribed, "
        f"{failed} failed ({kept} kept from the earlier run, {todo} done now by {num_processes} process(es))",
        file=sys.stderr,
    )
    return 1 if files and failed == len(files) else 0


def main(argv=None) -> int:
    args = parse_arguments(argv)
    files = args.files
    # One process, or one of several under `accelerate launch` (gloo on CPUs, NCCL on GPUs); the long timeout lets a
    # process wait at the final barrier for the others' last, longest files.
    state = PartialState(
        cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=timedelta(hours=COLLECTIVE_TIMEOUT_HOURS)
    )
    if state.is_main_process:  # `accelerate launch --num_processes 2` alone gives one process on a CPU: said here
        print(f"transcribe: {state.num_processes} process(es), {state.distributed_type}", file=sys.stderr)
    if args.format in SUBTITLE_FORMATS and state.num_processes > 1:
        build_parser().error(f"--format {args.format} runs in one process (use jsonl/csv to shard an archive).")
    if state.num_processes > 1 and not args.output:
        build_parser().error("several processes need --output: each writes its own shard, merged into it at the end.")
    done = {}
    with state.main_process_first():  # the main process folds a killed run's shards into --output first
        if args.output and args.format not in SUBTITLE_FORMATS:
            done = previous_rows(args, files, state.is_main_process)
    todo = [path for path in files if path not in done]
    choice = [pick_backend(args, todo or files) if state.is_main_process else None]
    if state.num_processes > 1:  # every process runs the path the main process chose
        broadcast_object_list(choice)
    model, name = choice[0]
    device = args.device or (str(state.device) if state.device.type == "cuda" else "cpu")  # one GPU per process
    mine = split_by_length(todo, state.num_processes)[state.process_index] if state.num_processes > 1 else todo

    try:
        backend = load_backend(model, name, device, args.trust_remote_code)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: cannot load {model!r} for {name}: {err}") from err
    decoder = load_decoder(args, backend, model)
    if state.is_main_process:
        print(f"decoding: {'beam search with an n-gram LM' if decoder.lm else 'greedy CTC'}", file=sys.stderr)
    throughput = Throughput()  # from here: model loading is not transcription
    results = transcribe(
        backend, mine, decoder, args.batch_size, args.chunk_length_s or None, throughput, vad=not args.no_vad
    )
    if args.format in SUBTITLE_FORMATS:
        skips = write_subtitles(results, args)
        print(f"{skips.summary()}\n{throughput.summary()}", file=sys.stderr)
        return 1 if skips.reasons and skips.total == sum(skips.reasons.values()) else 0
    shard = shard_path(args.output, state.process_index, state.num_processes) if args.output else None
    out = open(shard, "w", encoding="utf-8") if shard else sys.stdout
    rank = f"process {state.process_index}: " if state.num_processes > 1 else ""
    skips = write_rows(results, out, "jsonl" if shard else args.format)
    print(f"{rank}{skips.summary()}\n{rank}{throughput.summary()}", file=sys.stderr)
    if not shard:
        return 1 if skips.reasons and skips.total == sum(skips.reasons.values()) else 0
    out.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    return merge_shards(args, files, len(done), len(todo), state.num_processes)


def cli() -> None:
    """`distilxlsr-transcribe` and `python transcribe.py`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()

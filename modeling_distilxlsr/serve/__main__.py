"""`distilxlsr-serve MODEL_DIR`: the OpenAI-compatible transcription server (`app.py`) on one loaded model.

    distilxlsr-serve out/asr --host 127.0.0.1 --port 8000 [--backend auto|torch|onnx] [--dtype fp32|bf16|int8]
                     [--no_lm] [--max_batch 8] [--batch_window_ms 20] [--max_queue 16] [--max_upload_mb 100]
                     [--max_audio_s 3600] [--timeout_s 300] [--api_key KEY] [--allowed_origins URL...]
                     [--ssl_certfile cert.pem --ssl_keyfile key.pem] [--docs] [--no_vad] [--raw_text]

The model loads as `transcribe.py` loads it (this package's classes, never a folder's code; the folder's LM unless
--no_lm), and `--backend auto` is `transcribe.py`'s choice: the cached one for this model and CPU when transcribe.py
measured it, else measured once at start on seeded stand-in signals (or on --calibration_audio files).
"""

import argparse
import logging
import os
import sys

import torch
import uvicorn

from ..audio.decode import AudioDecodeError, read_for_transcription
from ..audio.stand_in import stand_in_signals
from ..inference.backend_choice import auto_backend
from ..inference.backends import BACKENDS, backend_name, load_backend
from ..inference.confidence import ConfidenceCalibration
from ..inference.decoding import DEFAULT_BEAM_WIDTH, CTCDecoder, LanguageModelError, has_lm, load_lm_decoder
from ..inference.text_format import bp_formatter
from .access import AccessRules
from .app import ServerLimits, create_app

logger = logging.getLogger("distilxlsr.serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A fine-tuned CTC folder (ours, or any Wav2Vec2ForCTC).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model_name", help="The id /v1/models gives (default: the folder's name).")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "int8"], default=None)
    parser.add_argument("--max_cer_change", type=float, default=0.01)
    parser.add_argument("--calibration_audio", nargs="+", help="Files --backend auto times on (default: stand-ins).")
    parser.add_argument("--no_lm", action="store_true", help="Greedy CTC even when the folder ships an LM.")
    parser.add_argument("--beam_width", type=int, default=DEFAULT_BEAM_WIDTH)
    parser.add_argument("--device", default=None)
    parser.add_argument("--max_batch", type=int, default=8, help="Clips per forward pass, at most.")
    parser.add_argument("--batch_window_ms", type=float, default=20.0, help="How long a batch waits for company.")
    parser.add_argument("--max_queue", type=int, default=16, help="Waiting clips before 503 + Retry-After.")
    parser.add_argument("--max_upload_mb", type=float, default=100.0)
    parser.add_argument("--max_audio_s", type=float, default=3600.0)
    parser.add_argument("--timeout_s", type=float, default=300.0)
    parser.add_argument("--chunk_length_s", type=float, default=20.0)
    parser.add_argument("--no_vad", action="store_true", help="Decode uploads whole, not speech region by region.")
    raw = "Answer the model's own text: lowercase, no marks, numbers spelt out."
    parser.add_argument("--raw_text", action="store_true", help=raw)
    parser.add_argument("--stream_idle_s", type=float, default=30.0, help="A WebSocket silent this long is closed.")
    parser.add_argument("--max_stream_s", type=float, default=3600.0, help="A WebSocket open this long is closed.")
    parser.add_argument("--upload_idle_s", type=float, default=30.0, help="An upload stalled this long gets 408.")
    parser.add_argument(
        "--max_connections", type=int, default=256, help="Connections in flight; beyond, 503 at once (uvicorn)."
    )
    parser.add_argument(
        "--max_frame_mb", type=float, default=16.0,
        help="A WebSocket frame larger than this closes its stream (1009) unread: a bound on what one client holds "
        "(16 MiB: 8 min of 16 kHz PCM; Vosk clients send 0.1-0.5 s frames).",
    )  # fmt: skip
    parser.add_argument("--endpoint_silence_s", type=float, default=0.6, help="Trailing silence that ends a result.")
    parser.add_argument("--partial_every_s", type=float, default=0.5, help="New audio between two live partials.")
    parser.add_argument("--log_level", default="info")
    parser.add_argument(
        "--api_key",
        action="append",
        help="A key clients must send (`Authorization: Bearer KEY`; repeat for several). Default: "
        "$DISTILXLSR_API_KEYS (comma-separated), else none: fine on localhost, never on an open address.",
    )
    parser.add_argument(
        "--allowed_origins",
        nargs="+",
        default=[],
        help="Web origins whose pages may use this server besides its own: the live WebSocket, and the HTTP API by "
        "CORS (off when none is named; `*`: any).",
    )
    parser.add_argument("--ssl_certfile", help="Serve HTTPS/WSS with this certificate (PEM): browsers give the "
                        "microphone only to https pages or localhost.")  # fmt: skip
    parser.add_argument("--ssl_keyfile", help="The certificate's private key (PEM).")
    parser.add_argument("--docs", action="store_true", help="Serve /docs, /redoc and /openapi.json (off by default).")
    return parser


def choose_backend(args, device: str) -> str:
    if args.backend != "auto" or args.dtype:  # by hand, as transcribe.py names the paths
        return backend_name(args.backend, args.dtype)

    def waves():
        if not args.calibration_audio:
            return stand_in_signals()
        found = []
        for path in args.calibration_audio:
            try:
                found.append(read_for_transcription(path, 400))
            except AudioDecodeError as err:
                logger.warning("--calibration_audio %s: %s", path, err)
        return found

    return auto_backend(args.model, waves, device, args.max_cer_change, log=logger.info, allowed=tuple(BACKENDS))


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not os.path.isdir(args.model):
        sys.exit(f"error: {args.model} is not a model folder")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        name = choose_backend(args, device)
        backend = load_backend(args.model, name, device)
        lm = None if args.no_lm or not has_lm(args.model) else load_lm_decoder(backend.tokenizer, None, args.model)
    except (OSError, ValueError, RuntimeError, LanguageModelError) as err:
        sys.exit(f"error: cannot serve {args.model}: {err}")
    try:
        calibration = ConfidenceCalibration.load(args.model)
    except ValueError as err:
        sys.exit(f"error: {err}")
    formatter = bp_formatter(args.raw_text, log=logger.warning)  # uploads' text; Vosk streams stay raw, as Vosk's are
    decoder = CTCDecoder(backend.tokenizer, lm, {"beam_width": args.beam_width}, "word", backend.frame_seconds,
                         confidence=True, calibration=calibration, formatter=formatter)  # fmt: skip
    limits = ServerLimits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_audio_seconds=args.max_audio_s,
        request_timeout_seconds=args.timeout_s,
        max_batch=args.max_batch,
        vad=not args.no_vad,
        batch_window_ms=args.batch_window_ms,
        max_queue=args.max_queue,
        chunk_length_s=args.chunk_length_s,
        stream_idle_seconds=args.stream_idle_s,
        max_stream_seconds=args.max_stream_s,
        upload_idle_seconds=args.upload_idle_s,
        endpoint_silence_seconds=args.endpoint_silence_s,
        partial_every_seconds=args.partial_every_s,
    )
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        sys.exit("error: --ssl_certfile and --ssl_keyfile go together")
    keys = args.api_key or [k.strip() for k in os.environ.get("DISTILXLSR_API_KEYS", "").split(",") if k.strip()]
    access = AccessRules(api_keys=tuple(keys), allowed_origins=tuple(args.allowed_origins))
    if not keys and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s without an API key: anyone who reaches it can use it (--api_key)", args.host)
    model_name = args.model_name or os.path.basename(os.path.normpath(args.model))
    scheme = "https" if args.ssl_certfile else "http"
    logger.info("serving %s (%s, %s) on %s://%s:%d", model_name, backend.name, "LM" if lm else "greedy", scheme,
                args.host, args.port)  # fmt: skip
    app = create_app(backend, decoder, model_name, limits, access, docs=args.docs)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, ssl_certfile=args.ssl_certfile,
                ssl_keyfile=args.ssl_keyfile, limit_concurrency=args.max_connections,
                ws_max_size=int(args.max_frame_mb * 2**20))  # fmt: skip


if __name__ == "__main__":
    main()

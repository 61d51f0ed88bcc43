"""The HTTP server: OpenAI's audio transcription API over a CTC model folder, so that the `openai` client, curl and
tools written for faster-whisper behind speaches / faster-whisper-server work unchanged.

    POST /v1/audio/transcriptions   form: file, model (any id: one model is served), language, response_format
                                    (json | text | srt | vtt | verbose_json), timestamp_granularities[] (word |
                                    segment), stream (OpenAI's transcript.text.delta / .done events, one delta per
                                    speech region), prompt, temperature, include[] (subtitles: json and verbose_json
                                    also carry the SRT and VTT of the same result, so the page transcribes once)
    POST /v1/audio/translations     400 in OpenAI's shape: this model transcribes; it does not translate
    GET  /v1/models, /v1/models/ID  the one model served (under the id asked for)
    GET  /metrics                   Prometheus' text format (`metrics.py`)
    GET  /health                    {"status": "ok", queue and batch figures}
    GET  /                          a web page: microphone (live) or a dropped file, words with times, SRT/VTT
    WS   /v1/audio/stream, /        live transcription, Vosk-server's protocol (`streaming.py`; / is where Vosk
                                    clients connect by default)

With API keys (`access.py`) every route but the page and /health needs one; WebSockets are taken only from the
page's own origin unless others are allowed; /docs, /redoc and /openapi.json are served only with `docs=True`.

FastAPI + uvicorn: the stack speaches itself uses, with multipart uploads (python-multipart) and an asyncio loop the
dynamic batcher (`batcher.py`) shares. Audio is decoded exactly as `transcribe.py` decodes it (soundfile, else
ffmpeg: any format, rate and channel count), long files in the same overlapping chunks, decoded with the same
`CTCDecoder` (the folder's LM when it ships one), speech region by speech region (`audio/vad.py`; `vad=False` in
`ServerLimits`, `--no_vad`, decodes uploads whole). Errors use OpenAI's shape, `{"error": {"message", "type",
"code"}}`: 400 unreadable audio (naming the cause) or a bad field, 413 an upload or a duration over the limits, 503
with Retry-After when the queue is full, 504 past the request timeout.
"""

import asyncio
import json
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import psutil
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, StreamingResponse

from ..inference.transcription import regions_of
from ..models.audio_format import SAMPLING_RATE
from .access import AccessControl, AccessRules
from .batcher import DynamicBatcher, QueueFull
from .metrics import CountRequests, ServerMetrics
from .responses import format_result, sse_event, token_usage
from .streaming import StreamProtocolError, StreamSession
from .uploads import ApiError, UploadLimit, decode_upload, error_response

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
# `include[]`: OpenAI's field for extra outputs (`logprobs`, gpt-4o-transcribe's only value, is not offered: a CTC
# model's are per frame, not per token). "subtitles": this server's own, the SRT and VTT of the one transcription.
INCLUDES = ("subtitles",)
LANGUAGES = ("pt", "portuguese", "pt-br", "pt_br")


@dataclass
class ServerLimits:
    max_upload_bytes: int = 100 * 1024 * 1024
    max_audio_seconds: float = 3600.0
    request_timeout_seconds: float = 300.0
    max_batch: int = 8
    batch_window_ms: float = 20.0
    max_queue: int = 16
    chunk_length_s: float = 20.0
    stream_idle_seconds: float = 30.0  # a WebSocket that sends nothing for this long is closed
    max_stream_seconds: float = 3600.0  # a WebSocket open this long is closed (after its last result)
    upload_idle_seconds: float = 30.0  # an upload of which nothing arrives for this long gets 408
    endpoint_silence_seconds: float = 0.6
    partial_every_seconds: float = 0.5  # new audio between two partials: lower is quicker captions, more compute
    vad: bool = True  # decode an upload's speech regions one by one (silence costs no accuracy)


def create_app(backend, decoder, model_name: str, limits: ServerLimits | None = None,
               access: AccessRules | None = None, docs: bool = False) -> FastAPI:  # fmt: skip
    """The app for one loaded backend (`inference.backends`) and its `CTCDecoder` (word timestamps on)."""
    limits = limits or ServerLimits()
    created = int(time.time())
    chunk_samples = int(limits.chunk_length_s * SAMPLING_RATE) if limits.chunk_length_s else None
    batcher = DynamicBatcher(
        backend, chunk_samples, limits.max_batch, limits.batch_window_ms, limits.max_queue, SAMPLING_RATE
    )

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    urls = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="DistilXLSR transcription server", lifespan=lifespan, **urls)
    app.state.batcher = batcher
    metrics = ServerMetrics(lambda: batcher.waiting)
    batcher.on_batch = metrics.batch_clips.observe
    app.add_middleware(UploadLimit, max_bytes=limits.max_upload_bytes, idle_seconds=limits.upload_idle_seconds)
    access = access or AccessRules()
    app.add_middleware(AccessControl, rules=access)
    if access.allowed_origins:  # CORS, off unless origins are named: the pages the WebSocket accepts may fetch too
        app.add_middleware(CORSMiddleware, allow_origins=list(access.allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip
    app.add_middleware(CountRequests, metrics=metrics)  # outermost: refusals are counted too

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return error_response(err.status, err.message, err.code, err.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request, err: RequestValidationError):  # FastAPI's 422 {"detail"}, in OpenAI's shape
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in err.errors())
        missing = all(e["type"] == "missing" for e in err.errors())
        return error_response(400, f"Invalid request: {problems}.", "missing_field" if missing else "bad_field")

    page = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html"), encoding="utf-8").read()

    @app.get("/", response_class=HTMLResponse)
    async def index():
        """The web page: record from the microphone (live, over the WebSocket) or drop a file; words clickable."""
        return page

    @app.get("/health")
    async def health():
        stats = batcher.stats
        return {
            "status": "ok",
            "model": model_name,
            "backend": backend.name,
            "queue": batcher.waiting,
            "max_queue": limits.max_queue,
            "batches": stats.batches,
            "clips": stats.clips,
            "largest_batch": stats.largest_batch,
            "memory_mb": round(psutil.Process().memory_info().rss / 2**20, 1),  # resident: to watch it after a burst
        }

    def model_card(model_id: str) -> dict:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "distilxlsr"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(model_name)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        """Any id: whatever model an app asks for, this server transcribes with the one it serves."""
        return model_card(model_id)

    @app.get("/metrics")
    async def prometheus_metrics():
        return metrics.response()

    @app.post("/v1/audio/translations")
    async def translations():
        message = f"{model_name} transcribes Portuguese speech; it does not translate (use /v1/audio/transcriptions)."
        raise ApiError(400, message, "translation_not_supported")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File()],
        model: Annotated[str | None, Form()] = None,
        language: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        prompt: Annotated[str | None, Form()] = None,  # accepted for compatibility; a CTC model takes no prompt
        temperature: Annotated[float | None, Form()] = None,  # likewise: CTC decoding has no sampling
        stream: Annotated[bool, Form()] = False,
        include: Annotated[list[str] | None, Form(alias="include[]")] = None,
    ):
        started = time.perf_counter()
        check_fields(language, response_format, granularities or [], include or [])
        audio = await decode_upload(file, backend.min_samples, limits.max_audio_seconds)
        regions = await run_in_threadpool(regions_of, audio, limits.vad, backend.min_samples)
        pieces = [audio[r.start : r.end] for r in regions]
        metrics.audio_seconds.inc(len(audio) / SAMPLING_RATE)
        if stream:
            return StreamingResponse(stream_events(request, pieces), media_type="text/event-stream")
        logits = await regions_logits(request, pieces)
        result = await run_in_threadpool(decoder.decode_regions, regions, logits, SAMPLING_RATE)
        metrics.latency.observe(time.perf_counter() - started)
        duration = len(audio) / SAMPLING_RATE
        return format_result(result, response_format, granularities or ["segment"], duration, include or [])

    async def stream_events(request: Request, pieces: list):
        """OpenAI's streamed transcription (`stream=true`, as for gpt-4o-transcribe): a `transcript.text.delta`
        per speech region as soon as it is decoded, then `transcript.text.done` with the whole text. Written as
        SSE lines by hand: the format is one `data:` line per event (sse-starlette would add a dependency for
        it). An error after the stream started is an `error` event: the status line has already gone."""
        texts, frames = [], 0
        try:
            for first in range(0, len(pieces), limits.max_batch):
                for region_logits in await regions_logits(request, pieces[first : first + limits.max_batch]):
                    frames += len(region_logits)
                    text = (await run_in_threadpool(decoder.written_region, region_logits))["text"]
                    if text.strip():
                        delta = text if not texts else " " + text
                        texts.append(text)
                        yield sse_event({"type": "transcript.text.delta", "delta": delta})
        except ApiError as err:
            yield sse_event({"type": "error", "error": {"message": err.message, "code": err.code}})
            return
        text = " ".join(texts)
        yield sse_event({"type": "transcript.text.done", "text": text, "usage": token_usage(frames, len(text))})

    async def regions_logits(request: Request, pieces: list) -> list:
        """The logits of an upload's speech regions, `max_batch` of them in the queue at a time (a long recording's
        hundred regions never fill the queue others wait in); 503 with Retry-After when it is full."""
        deadline = asyncio.get_running_loop().time() + limits.request_timeout_seconds
        logits = []
        for first in range(0, len(pieces), limits.max_batch):
            try:
                futures = [batcher.submit(piece) for piece in pieces[first : first + limits.max_batch]]
            except QueueFull as err:
                message = f"The server is busy ({err}); retry shortly."
                raise ApiError(503, message, "queue_full", {"Retry-After": "1"}) from None
            for future in futures:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    logits.append(await wait_or_leave(request, future, left, limits.request_timeout_seconds))
                except ApiError:
                    for other in futures:
                        other.cancel()
                    raise
        return logits

    @app.websocket("/v1/audio/stream")
    @app.websocket("/")
    async def live(websocket: WebSocket):
        """Vosk-server's protocol (`streaming.py`): partials while speaking, a result at each endpoint."""
        await websocket.accept()
        metrics.streams.inc()
        try:
            await live_session(websocket)
        finally:
            metrics.streams.dec()

    async def live_session(websocket: WebSocket):
        session = StreamSession(
            decoder,
            endpoint_silence_s=limits.endpoint_silence_seconds,
            partial_every_s=limits.partial_every_seconds,
            frame_samples=round(backend.frame_seconds * SAMPLING_RATE),
        )
        last_partial = {"partial": ""}

        async def logits_of(audio):
            if audio is None or len(audio) < backend.min_samples:
                return None
            return await batcher.submit(audio)  # QueueFull: answered below

        opened = time.monotonic()
        try:
            while True:
                message = await asyncio.wait_for(websocket.receive(), limits.stream_idle_seconds)
                if message["type"] == "websocket.disconnect":
                    return
                if time.monotonic() - opened > limits.max_stream_seconds:  # the last result, then close
                    await websocket.send_json(session.result(await logits_of(session.finish())))
                    message = f"This stream reached the server's limit of {limits.max_stream_seconds:.0f} s."
                    await websocket.send_json({"error": message})
                    await websocket.close(code=1000)
                    return
                if message.get("bytes") is not None:
                    metrics.audio_seconds.inc(len(message["bytes"]) / 2 / session.client_rate)
                    kind, audio = session.feed(message["bytes"])
                    if kind == "final":
                        await websocket.send_json(session.result(await logits_of(audio)))
                        last_partial = {"partial": ""}
                        continue
                    if kind == "partial":
                        last_partial = session.partial(await logits_of(audio))
                    await websocket.send_json(last_partial)
                    continue
                text = message.get("text") or ""
                if _is_eof(text):
                    audio = session.finish()
                    await websocket.send_json(session.result(await logits_of(audio)))
                    await websocket.close()
                    return
                session.configure(text)
        except StreamProtocolError as err:
            await websocket.send_json({"error": str(err)})
            await websocket.close(code=1003)
        except QueueFull as err:
            await websocket.send_json({"error": f"The server is busy ({err}); reconnect shortly."})
            await websocket.close(code=1013)
        except TimeoutError:
            await websocket.send_json({"error": f"Nothing received for {limits.stream_idle_seconds:.0f} s."})
            await websocket.close(code=1000)
        except WebSocketDisconnect:  # the client went away mid-utterance: its audio is simply dropped
            return

    return app


def _is_eof(text: str) -> bool:
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and bool(data.get("eof"))


def check_fields(language, response_format: str, granularities: list[str], include: list[str] = ()) -> None:
    """The form's fields this server can honour; `model` is not among them: any id is transcribed with the one model
    served (apps default to whisper-1, gpt-4o-transcribe, Systran/faster-whisper-small...)."""
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(
            400, f"response_format {response_format!r}: use one of {', '.join(RESPONSE_FORMATS)}.", "bad_field"
        )
    unknown = [g for g in granularities if g not in GRANULARITIES]
    if unknown:
        raise ApiError(400, f"timestamp_granularities[] {unknown}: use word and/or segment.", "bad_field")
    unknown = [i for i in include if i not in INCLUDES]
    if unknown:
        raise ApiError(400, f"include[] {unknown}: this server offers {', '.join(INCLUDES)}.", "bad_field")
    if include and response_format not in ("json", "verbose_json"):
        raise ApiError(400, "include[] needs response_format json or verbose_json.", "bad_field")
    if language and language.lower() not in LANGUAGES:
        raise ApiError(400, f"language {language!r}: this model transcribes Portuguese (pt).", "unsupported_language")


async def wait_or_leave(request: Request, future: asyncio.Future, timeout: float, whole_timeout: float | None = None):
    """The clip's logits; the future is cancelled (its work dropped if not started) when the client disconnects or
    `timeout` passes (the request's `whole_timeout` is what the 504 names)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(future), 0.25)
        except TimeoutError:
            if await request.is_disconnected():
                future.cancel()
                raise ApiError(499, "The client disconnected.", "client_closed") from None
            if loop.time() > deadline:
                future.cancel()
                limit = whole_timeout or timeout
                raise ApiError(504, f"Not transcribed within {limit:.0f} s.", "timeout") from None
        except RuntimeError as err:  # the batch's error for this clip
            raise ApiError(500, str(err), "inference_failed") from err

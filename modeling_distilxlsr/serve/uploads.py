"""What the server does with a request body before it is transcribed: OpenAI's error shape, the upload limits
(size while it arrives, a cut-off multipart body), and the upload decoded as transcribe.py decodes files."""

import asyncio
import os
import tempfile

from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..audio.decode import AudioDecodeError, audio_seconds, read_for_transcription
from ..models.audio_format import SAMPLING_RATE


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def error_response(status: int, message: str, code: str, headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status, headers=headers)


def multipart_boundary(headers: dict) -> bytes | None:
    """The boundary of a multipart/form-data request, from its Content-Type."""
    kind = headers.get(b"content-type", b"")
    if not kind.lower().startswith(b"multipart/form-data"):
        return None
    for part in kind.split(b";")[1:]:
        name, _, value = part.strip().partition(b"=")
        if name.lower() == b"boundary" and value:
            return value.strip(b'"')
    return None


class UploadLimit:
    """ASGI middleware over request bodies: one over `max_bytes` is refused with 413 before it is read into memory or
    onto disk (at once from its Content-Length, or as soon as a chunked upload passes the limit), and a multipart
    body that ends before its closing boundary (a cut-off upload: python-multipart hands the form what arrived) with
    400, before any of it is transcribed; one of which nothing arrives for `idle_seconds` with 408 (uvicorn waits
    for a stalled body forever, holding its connection and its temporary file)."""

    def __init__(self, app, max_bytes: int, idle_seconds: float = 30.0):
        self.app, self.max_bytes, self.idle_seconds = app, max_bytes, idle_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(int(length), send)
        boundary = multipart_boundary(headers)
        closing = b"--" + boundary + b"--" if boundary else None
        seen, tail, refusal = 0, b"", None

        async def counting_receive():
            nonlocal seen, tail, refusal
            try:
                message = await asyncio.wait_for(receive(), self.idle_seconds)
            except TimeoutError:
                refusal = (408, f"No part of the upload arrived for {self.idle_seconds:g} s.", "upload_timeout")
                raise ApiError(*refusal) from None
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen += len(body)
                tail = (tail + body)[-(len(closing) + 1024) :] if closing else b""
                if seen > self.max_bytes:
                    refusal = (413, self._message(seen), "upload_too_large")
                elif closing and not message.get("more_body", False) and closing not in tail:
                    message_text = "The upload ended before the form's closing boundary (a cut-off request)."
                    refusal = (400, message_text, "incomplete_upload")
                if refusal:
                    raise ApiError(*refusal)
            elif message["type"] == "http.disconnect" and closing and seen and closing not in tail:
                refusal = (400, "The client went away before its upload was complete.", "incomplete_upload")
                raise ApiError(*refusal)
            return message

        async def send_unless_refused(message):
            # FastAPI's form parser turns the error raised above into its own 400 "error parsing the body": once
            # the body is refused, whatever the app answers is dropped for the refusal below.
            if not refusal:
                await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_refused)
        except Exception:
            if not refusal:
                raise
        if refusal:
            await error_response(*refusal)(scope, receive, send)

    def _message(self, size: int) -> str:
        return f"The upload is {size / 1e6:.1f} MB or more; this server takes at most {self.max_bytes / 1e6:.1f} MB."

    async def _refuse(self, size: int, send):
        response = error_response(413, self._message(size), "upload_too_large")
        await response({"type": "http"}, None, send)


async def decode_upload(file: UploadFile, min_samples: int, max_seconds: float):
    """The upload as 16 kHz mono float audio, decoded as transcribe.py decodes files (a temporary file: ffmpeg
    needs to seek in MP4/M4A); 400 naming why it cannot be, 413 over the duration limit."""
    # the client's name never goes into a path (a NUL byte, a slash...): only its extension's letters and digits,
    # which ffmpeg reads the container from
    extension = "".join(c for c in os.path.splitext(file.filename or "")[1] if c.isascii() and c.isalnum())[:12]
    suffix = f".{extension}" if extension else ""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        while block := await file.read(1 << 20):
            tmp.write(block)
        tmp.flush()
        if tmp.tell() == 0:
            raise ApiError(400, "The uploaded file is empty.", "empty_file")
        declared = await run_in_threadpool(audio_seconds, tmp.name)
        if declared is not None and declared > max_seconds:  # refused before decoding: no memory spent on it
            raise ApiError(413, too_long(declared, max_seconds, "by its header"), "audio_too_long")
        try:
            audio = await run_in_threadpool(read_for_transcription, tmp.name, min_samples)
        except AudioDecodeError as err:
            reason = str(err).replace(tmp.name, file.filename or "the upload")  # the client's name, not our temp file
            raise ApiError(400, f"Cannot transcribe {file.filename!r}: {reason}", "unreadable_audio") from err
    seconds = len(audio) / SAMPLING_RATE
    if seconds > max_seconds:  # a header that understated the length
        raise ApiError(413, too_long(seconds, max_seconds), "audio_too_long")
    return audio


def too_long(seconds: float, max_seconds: float, told: str = "decoded") -> str:
    return f"The audio is {seconds:.0f} s long ({told}); this server takes at most {max_seconds:.0f} s."

"""`distilxlsr-serve`: the real server in a subprocess on a free loopback port, talked to by httpx and the `openai`
client: every response format, the same transcript as transcribe.py, bad uploads answered with clear HTTP errors,
a burst against a small queue answered with results or 503 + Retry-After while /health stays up."""

import asyncio
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, run_script, speech
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.slow  # a real server per test module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir, *extra):
        self.port = _free_port()
        self.url = f"{'https' if '--ssl_certfile' in extra else 'http'}://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "modeling_distilxlsr.serve", str(model_dir), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--backend", "torch", *map(str, extra)],
            cwd=REPO_ROOT,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError("the server did not answer /health within 120 s")

    def stop(self) -> str:
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out


def _wav(seconds: float, seed: int, rate: int = 16000, channels: int = 1) -> bytes:
    audio = np.stack([speech(seconds, seed, rate)] * channels, 1)
    buffer = io.BytesIO()
    sf.write(buffer, audio.squeeze(), rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tiny_ctc_dir):
    model_dir, _ = tiny_ctc_dir
    running = Server(
        model_dir, "--max_upload_mb", 1, "--max_audio_s", 20, "--max_queue", 4, "--max_batch", 4, "--stream_idle_s", 3
    )
    yield running
    running.stop()


def _post(server, data: bytes, name="clip.wav", **fields):
    files = {"file": (name, data, "application/octet-stream")}
    return httpx.post(f"{server.url}/v1/audio/transcriptions", files=files, data=fields, timeout=120)


def test_health_models_and_every_response_format(server, tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["data"][0]["id"] == os.path.basename(str(model_dir))
    clip = _wav(2.0, 1, rate=44100, channels=2)  # any rate and channel count
    (tmp_path / "clip.wav").write_bytes(clip)
    reference = run_script(
        [sys.executable, "transcribe.py", str(model_dir), str(tmp_path / "clip.wav"), "--format", "jsonl"]
        + ["--backend", "torch", "--return_timestamps", "word"]
    )
    expected = json.loads(reference.stdout.splitlines()[-1])
    as_json = _post(server, clip).json()
    assert as_json == {"text": expected["text"], "usage": {"type": "duration", "seconds": 2}}  # transcribe.py's text
    assert _post(server, clip, response_format="text").text == expected["text"] + "\n"
    verbose = _post(server, clip, response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]})
    body = verbose.json()
    assert body["text"] == expected["text"] and body["duration"] == pytest.approx(2.0, abs=0.01)
    assert [w["word"] for w in body["words"]] == [c["text"] for c in expected["chunks"]]
    assert [[w["start"], w["end"]] for w in body["words"]] == [c["timestamp"] for c in expected["chunks"]]
    assert all(0 < w["confidence"] <= 1 for w in body["words"]) and body["segments"]
    srt = _post(server, clip, response_format="srt").text
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = _post(server, clip, response_format="vtt")
    assert vtt.text.startswith("WEBVTT\n\n") and vtt.headers["content-type"].startswith("text/vtt")


def test_the_openai_client_works_unchanged(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="not-needed")
    clip = _wav(1.5, 2)
    plain = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", clip))
    assert isinstance(plain.text, str)
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", clip), response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert verbose.text == plain.text and [w.word for w in verbose.words] == plain.text.split()
    # any model id an app defaults to is served by the one model, and retrieve() finds it
    for model in ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "Systran/faster-whisper-small"):
        assert client.audio.transcriptions.create(model=model, file=("a.wav", clip)).text == plain.text
        assert client.models.retrieve(model).id == model
    assert client.models.list().data[0].created > 0
    # Whisper clients' usual filter runs on the segments
    segments = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", clip), response_format="verbose_json"
    ).segments
    kept = [s for s in segments if s.no_speech_prob < 0.6 and s.avg_logprob > -100]
    assert segments and len(kept) == len(segments) and all(isinstance(s.tokens, list) for s in segments)
    assert all(s.temperature == 0.0 and s.compression_ratio > 0 for s in segments)
    # stream=True: OpenAI's events, a delta per speech region, then the whole text
    two_regions = _two_utterances()
    events = list(client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("b.wav", two_regions),
                                                     stream=True))  # fmt: skip
    assert [e.type for e in events][-1] == "transcript.text.done" and events[-1].usage.output_tokens > 0
    assert plain.usage.type == "duration" and plain.usage.seconds == 2
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) == 2 and "".join(deltas) == events[-1].text
    assert events[-1].text == client.audio.transcriptions.create(model="x", file=("b.wav", two_regions)).text
    with pytest.raises(Exception, match="does not translate"):
        client.audio.translations.create(model="whisper-1", file=("a.wav", clip))


def _two_utterances() -> bytes:
    audio = np.concatenate([speech(1.5, 0), np.zeros(16000, np.float32), speech(1.5, 4)])
    buffer = io.BytesIO()
    sf.write(buffer, audio, 16000, format="WAV")
    return buffer.getvalue()


def test_an_ffmpeg_format_is_transcribed(server, tmp_path):
    (tmp_path / "a.wav").write_bytes(_wav(1.5, 3))
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "a.wav"), str(tmp_path / "a.m4a")], check=True)
    response = _post(server, (tmp_path / "a.m4a").read_bytes(), name="a.m4a")
    assert response.status_code == 200 and isinstance(response.json()["text"], str)


BAD_UPLOADS = [
    ("empty upload", b"", {}, 400, "The uploaded file is empty"),
    ("text named .wav", b"just some text, not audio\n" * 20, {}, 400, "Cannot transcribe 'clip.wav': unreadable"),
    ("0-frame WAV", None, {}, 400, "empty (no audio frames)"),
    ("unknown response format", "ok", {"response_format": "mp3"}, 400, "response_format 'mp3'"),
    ("another language", "ok", {"language": "en"}, 400, "transcribes Portuguese"),
    ("no file", "none", {}, 400, "Invalid request: file: Field required"),
    ("over the upload limit", "2MB", {}, 413, "at most 1.0 MB"),
    ("over the duration limit", "25s", {}, 413, "this server takes at most 20 s"),
    ("a 2-hour file", "2h", {}, 413, "The audio is 7200 s long (by its header)"),  # 180 KB FLAC: never decoded
    ("a FLAC cut to a third", "cut", {}, 400, "truncated: decoded"),
]


@pytest.mark.parametrize("name, data, fields, status, message", BAD_UPLOADS, ids=[case[0] for case in BAD_UPLOADS])
def test_bad_uploads_get_clear_http_errors_and_the_server_stays_up(server, name, data, fields, status, message):
    if data is None:
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(0, np.float32), 16000, format="WAV")
        data = buffer.getvalue()
    elif data == "ok":
        data = _wav(1.0, 4)
    elif data == "2MB":
        data = _wav(70.0, 5)  # 2.2 MB of 16-bit WAV
    elif data == "25s":
        data = _wav(25.0, 6, rate=8000)  # 0.4 MB: under the upload limit, over the duration limit
    elif data == "2h":
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
            for _ in range(12):
                f.write(np.zeros(8000 * 600, np.int16))
        data = buffer.getvalue()
    elif data == "none":
        response = httpx.post(f"{server.url}/v1/audio/transcriptions", data={"model": "whisper-1"}, timeout=60)
        assert response.status_code == status and response.json()["error"]["code"] == "missing_field"
        assert message in response.json()["error"]["message"]
        return
    elif data == "cut":
        buffer = io.BytesIO()
        sf.write(buffer, speech(3.0, 2), 16000, format="FLAC")
        data = buffer.getvalue()[: len(buffer.getvalue()) // 3]
    response = _post(server, data, **fields)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def _raw_post(server, body: bytes, boundary: str) -> tuple[int, dict]:
    """A request written byte by byte (httpx always ends a form properly): its status and JSON body."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(head.encode() + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def _form(boundary: str, filename: str, data: bytes, closed: bool = True) -> bytes:
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    return part + data + (f"\r\n--{boundary}--\r\n".encode() if closed else b"")


def test_a_cut_off_upload_is_an_error_and_a_nul_byte_in_its_name_is_just_a_name(server):
    boundary = "xYzBoundary42"
    clip = _wav(2.0, 3)
    status, body = _raw_post(server, _form(boundary, "clip.wav", clip[: len(clip) // 2], closed=False), boundary)
    assert status == 400 and body["error"]["code"] == "incomplete_upload", body
    assert _raw_post(server, _form(boundary, "clip.wav", clip), boundary)[0] == 200  # the same, whole
    status, body = _raw_post(server, _form(boundary, "a\x00b.wav", clip), boundary)
    assert status == 200 and isinstance(body["text"], str), body
    status, body = _raw_post(server, _form(boundary, "../../etc/x\x00.w\x00av", clip), boundary)
    assert status == 200, body
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_a_burst_against_a_small_queue_gets_results_or_503_and_batches_dynamically(server):
    clip = _wav(3.0, 7)

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            files = {"file": ("c.wav", clip, "audio/wav")}
            requests = [client.post(f"{server.url}/v1/audio/transcriptions", files=files) for _ in range(24)]
            return await asyncio.gather(*requests)

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 4 and 503 in statuses
    assert all(r.headers.get("retry-after") == "1" for r in responses if r.status_code == 503)
    texts = {r.json()["text"] for r in responses if r.status_code == 200}
    assert len(texts) == 1  # batched with others or not, the same clip gets the same transcript
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["largest_batch"] > 1 and health["queue"] == 0
    metrics = httpx.get(f"{server.url}/metrics").text  # clips per forward pass, as an operator graphs them
    passes = float(re.search(r"^distilxlsr_batch_clips_count ([\d.]+)$", metrics, re.M)[1])
    clips = float(re.search(r"^distilxlsr_batch_clips_sum ([\d.]+)$", metrics, re.M)[1])
    assert 0 < passes < clips and clips >= statuses.count(200)


def test_a_1_gb_upload_is_refused_as_it_passes_the_limit_and_never_held(server):
    def one_gigabyte():  # a multipart upload of a 1 GB "WAV", made as it is sent (chunked, no Content-Length)
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        block = b"\0" * (1 << 20)
        for _ in range(1024):
            yield block

    memory_before = httpx.get(f"{server.url}/health").json()["memory_mb"]
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    try:
        response = httpx.post(f"{server.url}/v1/audio/transcriptions", content=one_gigabyte(), headers=headers,
                              timeout=120)  # fmt: skip
        assert response.status_code == 413 and "at most 1.0 MB" in response.json()["error"]["message"], response.text
    except httpx.TransportError:  # the server answered 413 and closed while the client was still sending
        pass
    # told the size up front (Content-Length), it answers before a byte of the body is sent
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        raw.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                    b"boundary=xyz\r\nContent-Length: %d\r\n\r\n" % (1 << 30))  # fmt: skip
        answer = b""
        while b"MB or more" not in answer and (data := raw.recv(65536)):  # headers and body may come apart
            answer += data
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413") and "1073.7 MB or more" in answer
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["memory_mb"] < memory_before + 50


def test_a_hundred_clients_against_a_queue_of_16_get_results_or_503_and_memory_returns(tiny_ctc_dir):
    model_dir, _ = tiny_ctc_dir
    busy = Server(model_dir, "--max_queue", 16, "--max_batch", 4)
    clip = _wav(2.0, 8)

    async def burst(clients: int):
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
            files = {"file": ("c.wav", clip, "audio/wav")}
            requests = [client.post(f"{busy.url}/v1/audio/transcriptions", files=files) for _ in range(clients)]
            health = [client.get(f"{busy.url}/health") for _ in range(5)]  # answered during the burst
            return await asyncio.gather(*requests, *health)

    try:
        asyncio.run(burst(20))  # warm-up: the allocator's pools, uvicorn's workers
        memory_before = httpx.get(f"{busy.url}/health").json()["memory_mb"]
        responses = asyncio.run(burst(100))
        statuses = [r.status_code for r in responses[:100]]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 16 and 503 in statuses
        assert all(r.status_code == 200 and r.json()["status"] == "ok" for r in responses[100:])
        time.sleep(1)
        health = httpx.get(f"{busy.url}/health").json()
        assert health["queue"] == 0 and health["memory_mb"] < memory_before * 1.1 + 30, (memory_before, health)
    finally:
        busy.stop()


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts at a syllable rate: what webrtcvad calls speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (rng.standard_normal(t.size) * 0.2 * (0.3 + 0.7 * np.sin(2 * np.pi * 3 * t) ** 2)).astype(np.float32)


def _pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def _stream(url: str, audio: np.ndarray, chunk_seconds: float = 0.25, config=None):
    import websockets

    messages = []
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"config": config or {"sample_rate": 16000}}))
        step = int(chunk_seconds * 16000)
        for start in range(0, len(audio), step):
            await ws.send(_pcm(audio[start : start + step]))
            messages.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"eof": 1}))
        messages.append(json.loads(await ws.recv()))
    return messages


@pytest.fixture(scope="module")
def exposed(tiny_ctc_dir, tmp_path_factory):
    """A server as one exposes it: TLS (a self-signed certificate made here), two API keys, one allowed origin."""
    model_dir, _ = tiny_ctc_dir
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    running = Server(model_dir, "--ssl_certfile", cert, "--ssl_keyfile", key, "--api_key", "k-one", "--api_key",
                     "k-two", "--allowed_origins", "https://app.example", "--upload_idle_s", 2,
                     "--max_connections", 4)  # fmt: skip
    yield running
    running.stop()


def test_an_exposed_server_asks_every_route_and_the_websocket_for_a_key_and_speaks_tls(exposed):
    import ssl

    import websockets

    url, clip = exposed.url, _wav(1.0, 2)
    assert url.startswith("https://")

    def call(method, path, key=None, **kwargs):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, f"{url}{path}", headers=headers, verify=False, timeout=60, **kwargs)

    upload = {"files": {"file": ("a.wav", clip, "audio/wav")}}
    routes = [("GET", "/v1/models", {}), ("GET", "/v1/models/whisper-1", {}), ("GET", "/metrics", {}),
              ("POST", "/v1/audio/transcriptions", upload), ("POST", "/v1/audio/translations", upload)]  # fmt: skip
    for method, path, kwargs in routes:
        for key in (None, "wrong"):
            refused = call(method, path, key, **kwargs)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key", path
    assert call("POST", "/v1/audio/transcriptions", "k-two", **upload).status_code == 200
    assert call("GET", "/v1/models", "k-one").json()["data"]
    assert call("GET", "/").status_code == call("GET", "/health").status_code == 200  # the page and health stay open
    for path in ("/docs", "/redoc", "/openapi.json"):  # off on a server meant to be exposed
        assert call("GET", path, "k-one").status_code == 404
    metrics = call("GET", "/metrics", "k-one").text
    assert 'distilxlsr_requests_total{route="/v1/audio/transcriptions",status="200"}' in metrics
    assert 'status="401"' in metrics and "distilxlsr_audio_seconds_total" in metrics

    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    ws = url.replace("https", "wss")

    async def handshake(path, origin=None):
        try:
            async with websockets.connect(f"{ws}{path}", ssl=tls, origin=origin) as socket:
                await socket.send(json.dumps({"eof": 1}))
                return json.loads(await socket.recv())
        except websockets.exceptions.InvalidStatus as err:
            return err.response.status_code

    assert asyncio.run(handshake("/v1/audio/stream")) == 403  # no key
    assert asyncio.run(handshake("/v1/audio/stream?api_key=wrong")) == 403
    assert "text" in asyncio.run(handshake("/v1/audio/stream?api_key=k-one"))
    assert "text" in asyncio.run(handshake("/?api_key=k-one"))  # Vosk clients' default path
    assert asyncio.run(handshake("/v1/audio/stream?api_key=k-one", origin="https://evil.example")) == 403
    assert "text" in asyncio.run(handshake("/v1/audio/stream?api_key=k-one", origin="https://app.example"))
    assert "text" in asyncio.run(handshake("/v1/audio/stream?api_key=k-one", origin=url))  # the page's own


def test_cors_is_off_by_default_and_answers_only_the_named_origins(server, exposed):
    """A browser page on another origin may call the API only when `--allowed_origins` names it (the origins the
    WebSocket accepts): preflights answered for it, refused for others, and its answers (errors too) readable."""
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}

    def options(running, origin):
        return httpx.options(f"{running.url}/v1/audio/transcriptions", headers={"Origin": origin, **preflight},
                             verify=False)  # fmt: skip

    assert "access-control-allow-origin" not in options(server, "https://app.example").headers  # off by default
    allowed = options(exposed, "https://app.example")
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = options(exposed, "https://evil.example")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    for key, status in (("k-one", 200), ("wrong", 401)):  # the page can read a refusal's message too
        answer = httpx.get(f"{exposed.url}/v1/models", verify=False,
                           headers={"Origin": "https://app.example", "Authorization": f"Bearer {key}"})  # fmt: skip
        assert answer.status_code == status and answer.headers["access-control-allow-origin"] == "https://app.example"


def test_a_stopped_server_finishes_the_upload_it_is_receiving_then_exits(tiny_ctc_dir):
    """SIGTERM (what `docker stop` and systemd send) while an upload is half-way: uvicorn stops taking new
    connections, the upload in flight is received, transcribed and answered, and then the process exits cleanly."""
    import signal
    import threading

    model_dir, _ = tiny_ctc_dir
    stopping = Server(model_dir)
    boundary, clip = "gracefulBoundary", _wav(2.0, 4)
    body = _form(boundary, "clip.wav", clip)
    answer = {}

    def upload():
        def body_in_two_halves():
            yield body[: len(body) // 2]
            stopping.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # the server is shutting down while the rest is on its way
            yield body[len(body) // 2 :]

        answer["response"] = httpx.post(f"{stopping.url}/v1/audio/transcriptions", content=body_in_two_halves(),
                                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                        timeout=60)  # fmt: skip

    sender = threading.Thread(target=upload)
    sender.start()
    sender.join(60)
    try:
        response = answer["response"]
        assert response.status_code == 200 and response.json()["text"] is not None
        # uvicorn shuts down, then re-raises the signal it caught, so that a supervisor sees the process end by it
        assert stopping.process.wait(timeout=30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):  # and then it is gone
            httpx.get(f"{stopping.url}/health", timeout=2)
    finally:
        log = stopping.stop()
    assert "Shutting down" in log and "Finished server process" in log, log[-2000:]


def test_stalled_uploads_time_out_and_connections_in_flight_are_capped(exposed):
    """Uploads that stop half-way get 408 after --upload_idle_s (2 s), and while they hold the connections
    --max_connections (4) allows (uvicorn counts the new one too: 3 held and a fourth is one too many), another
    request is turned away at once with 503 instead of queueing without bound."""
    import ssl

    host, port = exposed.url.removeprefix("https://").split(":")
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    boundary = "stalledBoundary"
    body = _form(boundary, "a.wav", _wav(2.0, 1))
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer k-one\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    stalled = []
    for _ in range(3):
        connection = tls.wrap_socket(socket.create_connection((host, int(port)), timeout=30))
        connection.sendall(head + body[: len(body) // 2])  # half the body, then nothing
        stalled.append(connection)
    time.sleep(0.5)
    busy = httpx.get(f"{exposed.url}/health", verify=False, timeout=10)
    assert busy.status_code == 503  # uvicorn's limit: the stalled uploads hold every slot
    started = time.time()
    for connection in stalled:
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        connection.close()
        assert answer.startswith(b"HTTP/1.1 408") and b"upload_timeout" in answer, answer[:300]
    assert time.time() - started < 10
    assert httpx.get(f"{exposed.url}/health", verify=False, timeout=10).status_code == 200  # slots freed


def test_live_stream_gives_partials_and_a_result_at_each_pause(server):
    silence = np.zeros(int(0.8 * 16000), np.float32)
    audio = np.concatenate([silence, _speech_like(1.5, 1), silence, silence, _speech_like(1.2, 2), silence])
    url = server.url.replace("http", "ws") + "/v1/audio/stream"
    messages = asyncio.run(_stream(url, audio))
    finals = [m for m in messages if "result" in m]
    partials = [m["partial"] for m in messages if "partial" in m]
    assert len(finals) >= 2 and any(partials)  # two utterances, each ended by its pause (or the eof)
    first = finals[0]["result"]
    # stream time: from 0.3 s (the pre-roll) before the burst at 0.8 s, to before the second burst (the utterance
    # keeps 0.3 s of its trailing silence)
    assert first and first[0]["start"] >= 0.45 and first[-1]["end"] <= 3.1
    assert all(0 < w["conf"] <= 1 for final in finals for w in final["result"])
    second = [w for final in finals[1:] for w in final["result"]]
    assert second and second[0]["start"] >= 3.55  # the second burst starts at 3.9 s
    # 8 kHz PCM is resampled: the same utterance boundaries
    import librosa

    at_8k = librosa.resample(audio, orig_sr=16000, target_sr=8000)
    finals_8k = [m for m in asyncio.run(_stream(url, at_8k, config={"sample_rate": 8000})) if "result" in m]
    assert len(finals_8k) == len(finals)
    # Vosk's n-best: with max_alternatives each result is {"alternatives": [...]}; greedy decoding (no LM here) has
    # one path, the result above (test_lm.py checks the LM's n best)
    messages = asyncio.run(_stream(url, audio, config={"sample_rate": 16000, "max_alternatives": 3}))
    alternatives = [m["alternatives"] for m in messages if "alternatives" in m]
    assert len(alternatives) == len(finals) and all(len(a) == 1 for a in alternatives)
    assert [a[0]["text"] for a in alternatives] == [f["text"] for f in finals]
    words = [[w["word"] for w in a[0]["result"]] for a in alternatives]
    assert words == [[w["word"] for w in f["result"]] for f in finals]


def test_a_bad_or_silent_or_vanishing_stream_gets_an_error_and_the_server_stays_up(server):
    import websockets

    url = server.url.replace("http", "ws") + "/v1/audio/stream"

    async def garbage():
        async with websockets.connect(url) as ws:
            await ws.send("{not json")
            reply = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return reply, closed.value.rcvd.code

    reply, code = asyncio.run(garbage())
    assert "not JSON" in reply["error"] and code == 1003

    async def unsupported(config):  # Vosk's grammar, and a bad n-best count: said, not silently ignored
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": 16000, **config}}))
            reply = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return reply["error"], closed.value.rcvd.code

    assert asyncio.run(unsupported({"phrase_list": ["sim", "não"]})) == (
        "config.phrase_list is not supported: this server decodes free text only",
        1003,
    )
    assert "give a whole number from 0 to 20" in asyncio.run(unsupported({"max_alternatives": "three"}))[0]

    async def silent():
        async with websockets.connect(url) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 20))

    assert "Nothing received for 3 s" in asyncio.run(silent())["error"]

    async def vanish():
        ws = await websockets.connect(url)
        await ws.send(_pcm(_speech_like(1.0, 3)))
        await ws.recv()
        await ws.close()  # mid-utterance

    asyncio.run(vanish())

    async def odd_bytes():
        async with websockets.connect(url) as ws:
            await ws.send(b"\x00\x01\x02")
            return json.loads(await ws.recv())

    assert "16-bit PCM (an even number of bytes)" in asyncio.run(odd_bytes())["error"]

    async def oversized_frame():  # over --max_frame_mb (16 MiB): closed unread, not held (the soak's refused frame)
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(bytes(16 * 2**20 + 2))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
            return closed.value.rcvd.code

    assert asyncio.run(oversized_frame()) == 1009  # "message too big"
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_include_subtitles_gives_the_srt_and_vtt_of_the_same_transcription_in_one_response(server):
    clip = _wav(3.0, 11)
    fields = {"response_format": "verbose_json", "include[]": "subtitles", "timestamp_granularities[]": "word"}
    body = _post(server, clip, **fields).json()
    assert body["subtitles"]["srt"] == _post(server, clip, response_format="srt").text
    assert body["subtitles"]["vtt"] == _post(server, clip, response_format="vtt").text
    assert _post(server, clip, response_format="json", **{"include[]": "subtitles"}).json()["subtitles"]["srt"]
    assert "subtitles" not in _post(server, clip, response_format="verbose_json").json()
    refusals = [({"include[]": "logprobs"}, "this server offers subtitles"),
                ({"include[]": "subtitles", "response_format": "srt"}, "needs response_format json")]  # fmt: skip
    for bad, message in refusals:
        refused = _post(server, clip, **bad)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"]


def _chromium(tmp_path):
    """Headless Debian Chromium through selenium, with a WAV (speech between silences) as its fake microphone."""
    silence = np.zeros(int(0.8 * 16000), np.float32)
    microphone = tmp_path / "microphone.wav"
    sf.write(microphone, np.concatenate([silence, _speech_like(1.5, 5), silence, silence]), 16000, subtype="PCM_16")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
                 "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def test_the_page_says_within_two_seconds_that_the_server_went_away_and_offers_to_reconnect(tiny_ctc_dir, tmp_path):
    running = Server(tiny_ctc_dir[0])
    driver = _chromium(tmp_path)
    try:
        driver.get(running.url + "/")
        driver.find_element(By.ID, "record").click()
        WebDriverWait(driver, 30).until(lambda d: "gravando" in d.find_element(By.ID, "status").text)
        running.process.kill()  # gone at once, as a crashed or unplugged server
        gone = time.monotonic()
        WebDriverWait(driver, 5, poll_frequency=0.05).until(
            lambda d: "conexão com o servidor caiu" in d.find_element(By.ID, "status").text
        )
        assert time.monotonic() - gone < 2.0
        assert driver.find_element(By.ID, "reconnect").is_displayed()
        assert driver.find_element(By.ID, "download-wav").get_attribute("href").startswith("blob:")  # kept
    finally:
        driver.quit()
        running.stop()


def _transcriptions_answered(server) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    pattern = r'^distilxlsr_requests_total\{route="/v1/audio/transcriptions",status="200"\} ([\d.]+)$'
    found = re.search(pattern, metrics, re.M)
    return float(found[1]) if found else 0.0


def test_the_web_page_in_a_real_browser_transcribes_the_microphone_live_and_a_dropped_file(server, tmp_path):
    """Headless Chromium (Debian's, through selenium and chromedriver) fed a WAV as its fake microphone: the page
    streams it over the WebSocket and shows words with their times; stopped, the recording is transcribed once and
    offered as .wav/.txt/.srt/.vtt. A chosen file costs one transcription request (the server's own metrics count
    them) and gets lines with their times and the same downloads, the SRT the server's own. A screenshot of each is
    kept in the test's folder."""
    driver = _chromium(tmp_path)
    try:
        driver.get(server.url + "/")
        assert "DistilXLSR" in driver.title
        icon = driver.execute_script("return document.querySelector('link[rel=icon]').href")
        assert icon.startswith("data:image/svg+xml")  # drawn, not an emoji: no font needed
        driver.find_element(By.ID, "record").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#words .word"))
        live = driver.find_elements(By.CSS_SELECTOR, "#words .word")
        assert live and all(float(w.get_attribute("data-start")) >= 0 for w in live)
        driver.save_screenshot(str(tmp_path / "page_live.png"))
        driver.find_element(By.ID, "stop").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "download-wav"))  # after its transcription
        for name in ("wav", "txt", "srt", "vtt"):
            link = driver.find_element(By.ID, f"download-{name}")
            assert link.get_attribute("href").startswith("blob:") and link.get_attribute("download").endswith(name)
        assert driver.execute_script("return document.getElementById('player').src").startswith("blob:")

        clip = tmp_path / "clip.wav"
        clip.write_bytes(_wav(2.0, 8))
        before = _transcriptions_answered(server)
        driver.find_element(By.ID, "file").send_keys(str(clip))
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "download-vtt"))
        assert _transcriptions_answered(server) == before + 1  # lines, text and subtitles from one transcription
        words = driver.find_elements(By.CSS_SELECTOR, "#words .word")
        expected = _post(
            server, clip.read_bytes(), response_format="verbose_json", **{"timestamp_granularities[]": "word"}
        )
        assert [float(w.get_attribute("data-start")) for w in words] == [x["start"] for x in expected.json()["words"]]
        assert "pronto:" in driver.find_element(By.ID, "status").text
        times = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#words .segment .time")]
        assert times and all(re.fullmatch(r"\d+:\d\d\.\d", t) for t in times)
        srt_url = driver.find_element(By.ID, "download-srt").get_attribute("href")
        page_srt = driver.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then((r) => r.text()).then(done);", srt_url
        )
        assert page_srt == _post(server, clip.read_bytes(), response_format="srt").text
        words[0].click()  # seeks the audio to the word
        assert driver.execute_script("return document.getElementById('player').src").startswith("blob:")
        driver.save_screenshot(str(tmp_path / "page_file.png"))
        assert (tmp_path / "page_file.png").stat().st_size > 10_000

        broken = tmp_path / "broken.wav"
        broken.write_bytes(b"not audio at all" * 64)
        driver.find_element(By.ID, "file").send_keys(str(broken))
        WebDriverWait(driver, 30).until(lambda d: "erro:" in d.find_element(By.ID, "status").text)
        assert "não foi possível ler o áudio" in driver.find_element(By.ID, "status").text  # the page's own words
    finally:
        driver.quit()

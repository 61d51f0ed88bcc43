"""`GET /metrics` in Prometheus' text format (prometheus-client): what an operator graphs and alerts on. Requests
by route and status, request latency, audio seconds transcribed, clips per forward pass, clips waiting, live streams
open. One registry per
app (not the library's global one), so that two apps in one process (the tests) never share counters."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServerMetrics:
    def __init__(self, waiting):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "distilxlsr_requests", "HTTP requests answered, by route and status", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "distilxlsr_request_seconds", "Time to answer a transcription request", buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.audio_seconds = Counter(
            "distilxlsr_audio_seconds", "Seconds of audio transcribed (uploads and streams)", registry=self.registry
        )
        self.batch_clips = Histogram(
            "distilxlsr_batch_clips", "Clips in each forward pass (dynamic batching)", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.streams = Gauge("distilxlsr_streams_open", "Live WebSocket streams open", registry=self.registry)
        queue = Gauge("distilxlsr_queue_clips", "Clips waiting for a forward pass", registry=self.registry)
        queue.set_function(waiting)

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class CountRequests:
    """ASGI middleware: every HTTP answer counted by its route (the path template, so that ids do not make new
    series) and status."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def noting_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, str(status["code"])).inc()

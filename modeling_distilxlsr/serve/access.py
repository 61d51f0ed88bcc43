"""Who may use the server: API keys (OpenAI's `Authorization: Bearer KEY`) on every route but the page and
/health, and WebSockets only from the server's own page (or origins named with `--allowed_origins`), so that a
server reachable from other machines can be exposed without serving strangers.

ASGI middleware rather than FastAPI dependencies: one check covers every HTTP route and the WebSocket alike (a
dependency would have to be repeated on each), and a refused WebSocket is refused at the handshake, before
`accept`. Browsers cannot set headers on a WebSocket, so there the key may come as `?api_key=KEY` (the page passes
its own `?api_key=` on); keys are compared in constant time.
"""

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fastapi.responses import JSONResponse

OPEN_PATHS = ("/", "/health")  # the page (it asks for nothing by itself) and load balancers' health checks


@dataclass(frozen=True)
class AccessRules:
    api_keys: tuple[str, ...] = ()  # none: no key asked (a server on localhost)
    allowed_origins: tuple[str, ...] = ()  # WebSocket origins besides the server's own, e.g. https://app.example


def offered_key(scope) -> str | None:
    headers = dict(scope.get("headers", []))
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("api_key", [None])[0]


def key_accepted(scope, keys: tuple[str, ...]) -> bool:
    if not keys:
        return True
    offered = offered_key(scope)
    return offered is not None and any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys)


def origin_accepted(scope, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the server's own (same host and port), or one of `allowed` (`*`: any)."""
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin-1")
    if not origin or "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    return urlsplit(origin).netloc.lower() == headers.get(b"host", b"").decode("latin-1").lower()


def unauthorized(message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
    return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})


class AccessControl:
    """ASGI middleware: 401 in OpenAI's error shape for a request without a valid key; a WebSocket without a valid
    key or from a foreign origin is closed at the handshake (HTTP 403)."""

    def __init__(self, app, rules: AccessRules):
        self.app, self.rules = app, rules

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            if not (origin_accepted(scope, self.rules.allowed_origins) and key_accepted(scope, self.rules.api_keys)):
                await receive()  # the connect message
                return await send({"type": "websocket.close", "code": 1008})
        elif scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            if not key_accepted(scope, self.rules.api_keys):
                wrong = offered_key(scope) is not None
                message = "Incorrect API key provided." if wrong else "No API key: send `Authorization: Bearer KEY`."
                return await unauthorized(message)(scope, receive, send)
        return await self.app(scope, receive, send)

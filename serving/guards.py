"""What stands before the service's endpoints, as ASGI middleware (BentoML 1.4 has settings for
neither): an API key and a request-size limit. Both leave GET requests alone (health, readiness,
metrics, the Swagger page)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiKey:
    """With a key configured, a POST without the same key in ``X-API-Key`` gets 401. The comparison
    takes the same time wherever the keys differ (``hmac.compare_digest``)."""

    def __init__(self, app: App, key: str | None) -> None:
        self.app, self.key = app, key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is not None and scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
            if not hmac.compare_digest(given, self.key):
                await _answer(send, 401, "a valid X-API-Key header is required")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads each request body itself, counting the bytes as they stream in (chunked bodies, which
    carry no Content-Length, included), answers 413 as soon as the limit is passed, and otherwise
    hands the body on unchanged. Bodies here are small JSON objects: holding one is cheap."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > self.max_bytes:
                await _answer(send, 413, self._too_large())
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, handed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only the disconnect is left to wait for

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the request body is larger than the service accepts ({self.max_bytes:,} bytes)"


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

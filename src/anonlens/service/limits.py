"""The service's guards: a cap on the request body (413 before anything is parsed) and a cap on
the requests being worked on at once (503 when busy)."""

from __future__ import annotations

import json
import threading
from typing import Any, Awaitable, Callable

__all__ = ["BodyLimit", "Admission", "Busy"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _TooLarge(Exception):
    pass


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


class BodyLimit:
    """Pure ASGI middleware: a request whose body is over ``max_bytes`` gets 413 with a JSON
    error, from its Content-Length before a byte is read, or as soon as a chunked body passes
    the limit. Nothing of the body is kept."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def _reject(self, send: Send, detail: str) -> None:
        body = json.dumps({"error": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._reject(send, f"the request is {_mb(declared)}, over the limit of {_mb(limit)}")
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, f"the request is over the limit of {_mb(limit)}")


class Busy(Exception):
    """More requests are being worked on than the service admits."""


class Admission:
    """At most ``limit`` requests at once; one more is refused at once (the caller answers 503)."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    def __enter__(self) -> "Admission":
        with self._lock:
            if self._active >= self.limit:
                raise Busy(f"busy: {self._active} requests are being worked on (the limit is {self.limit}); retry shortly")
            self._active += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._active -= 1

"""The service's guards: the Host header checked against the allowed names (400: a guard against
DNS rebinding), a cap on the request body (413 before anything is parsed, or as soon as a chunked
body passes it) and a cap on the requests being worked on at once (503 when busy)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import threading
from typing import Any, Awaitable, Callable, Iterable

__all__ = ["AllowedHosts", "BodyLimit", "Admission", "Busy", "DEFAULT_ALLOWED_HOSTS", "host_name", "allowed_host"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


#: the names this machine answers to by default (``anonlens serve`` adds the address it listens on)
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")
#: a Host header: a name or IPv4 address, or an IPv6 address in brackets; an optional port
_HOST_RE = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?)(?::(?P<port>[0-9]{1,5}))?")
_ERROR_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]


def host_name(value: str) -> str | None:
    """The host a Host header names, in one spelling: lower case, no port, no final dot, an IPv6
    address in brackets and compressed (``"Example.ORG.:8000"`` -> ``"example.org"``,
    ``"[0::1]:80"`` -> ``"[::1]"``); None when ``value`` is not ``host[:port]``."""
    m = _HOST_RE.fullmatch(value.strip().lower())
    if m is None:
        return None
    host = m["host"]
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    return host.rstrip(".")


def allowed_host(name: str) -> str:
    """An allowed name as a user writes it (``example.org``, ``10.0.0.5``, ``::1``, ``[::1]``, or
    ``*``: any, which turns the check off) in :func:`host_name`'s spelling; ValueError if it is
    not a host name (an address of every interface, ``0.0.0.0`` or ``::``, is not one)."""
    name = name.strip()
    if name == "*":
        return "*"
    host = None
    if ":" in name and not name.startswith("["):  # a bare IPv6 address
        try:
            host = f"[{ipaddress.IPv6Address(name).compressed}]"
        except ValueError:
            pass
    host = host or host_name(name)
    if not host or host in ("[::]", "0.0.0.0"):
        raise ValueError(f"{name!r} is not a host name (give a name such as anonymize.example.org, or an address)")
    return host


async def _json_error(send: Send, status: int, detail: str, *, more_body: bool = False) -> None:
    body = json.dumps({"error": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [*_ERROR_HEADERS, (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


class AllowedHosts:
    """Pure ASGI middleware: a request whose Host header is not one of ``hosts`` (any port) gets
    400 with a one-line JSON error, before anything else. A web page the user visits can make
    its own domain name resolve to 127.0.0.1 (DNS rebinding) and then read this service as its
    own origin; its requests still say its name in the Host header, so they are refused here.
    A request with no Host header, or more than one, is refused too."""

    def __init__(self, app, hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS):
        self.app = app
        self.hosts = frozenset(allowed_host(h) for h in hosts)
        self.any = "*" in self.hosts

    def problem(self, scope: Scope) -> str | None:
        """Why the request's Host header is refused, or None."""
        values = [v for n, v in scope.get("headers", []) if n == b"host"]
        if not values:
            return "the request has no Host header"
        if len(values) > 1:
            return "the request has more than one Host header"
        raw = values[0].decode("latin-1")
        host = host_name(raw)
        if host is None:
            return f"the Host header {raw[:80]!r} is not host[:port]"
        if host not in self.hosts:
            return (f"host {host!r} is not allowed (a guard against DNS rebinding); to serve under that name, "
                    f"start anonlens serve with --allowed-host {host}")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await _json_error(send, 400, problem)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


class BodyLimit:
    """Pure ASGI middleware: a request whose body is over ``max_bytes`` gets 413 with a JSON
    error, from its Content-Length before a byte is read, or, for a chunked body (no length), as
    soon as the bytes received pass the limit, whatever the app is doing with them (FastAPI would
    turn an exception raised while it parses a form into 400). Nothing of the body is kept.

    The 413 is sent at once; the rest of the body is then read and dropped for at most
    ``drain_seconds`` before the connection is closed, so that a client that sends its whole body
    before it reads (most do) gets the answer rather than a connection reset."""

    def __init__(self, app, max_bytes: int, drain_seconds: float = 5.0):
        self.app, self.max_bytes, self.drain_seconds = app, int(max_bytes), float(drain_seconds)

    async def _reject(self, receive: Receive, send: Send, detail: str, *, drain: bool) -> None:
        await _json_error(send, 413, detail, more_body=drain)
        if drain:  # the answer is out (its length is known); drop what the client still sends, for a while
            try:
                await asyncio.wait_for(_drain(receive), self.drain_seconds)
            except asyncio.TimeoutError:
                pass
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        expects_continue = False
        for name, value in scope.get("headers", []):
            if name == b"expect" and value.strip().lower() == b"100-continue":
                expects_continue = True
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    # a client that waits for "100 Continue" has sent nothing: do not invite the body
                    await self._reject(receive, send, f"the request is {_mb(declared)}, over the limit of {_mb(limit)}",
                                       drain=not expects_continue)
                    return
        seen = 0
        over = False  # the body passed the limit: the app reads no more of it
        started = False  # the app has started its response
        answered = False  # this middleware has answered 413: the app's answer is dropped

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, over, answered
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    if not started:
                        answered = True
                        await self._reject(receive, send, f"the request is over the limit of {_mb(limit)}",
                                           drain=message.get("more_body", False))
                    # the app sees a client that went away
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a request body."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


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

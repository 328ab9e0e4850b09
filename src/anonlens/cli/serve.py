"""``anonlens serve``: the web service and page (a thin shell over :mod:`anonlens.service`)."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import AnonlensError
from .kit import app, err_console, fail, require


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on. The default is this machine only; to serve others, put a "
                                               "reverse proxy with TLS in front (docs/service.md) rather than 0.0.0.0."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port."),
    max_upload_mb: float = typer.Option(25.0, min=0.001, help="Largest image accepted, in MB (413 above)."),
    max_pixels: int = typer.Option(40_000_000, min=1, help="Most pixels in an image (413 above; a decompression-bomb guard)."),
    max_concurrent: int = typer.Option(4, min=1, help="Requests worked on at once; one more gets 503 (busy). Images are "
                                                      "processed one at a time, each with every core."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="uvicorn's access log: method, path, status, "
                                                                                "client address (never file names or pixels)."),
    allowed_host: Optional[List[str]] = typer.Option(None, "--allowed-host", metavar="NAME", help="Another name the Host header may say "
                                                     "(repeatable), e.g. the name a reverse proxy serves. Allowed by default: "
                                                     "the --host address, localhost, 127.0.0.1 and [::1]; any other gets 400 "
                                                     "(a guard against DNS rebinding). '*' allows any."),
) -> None:
    """Serve the API (POST /anonymize, POST /check, GET /health; its OpenAPI description at /openapi.json) and the page
    at / : anonymize and check images from a browser. Uploads are processed in memory and never stored or logged."""
    require("service", "anonlens serve")
    import uvicorn

    from ..service import ServiceSettings, create_app
    from ..service.limits import DEFAULT_ALLOWED_HOSTS, allowed_host as _host_spelling

    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning[/] listening on {host}: anyone who can reach it can send images. Plain HTTP: "
                          "put a reverse proxy with TLS in front (docs/service.md).")
    hosts = list(DEFAULT_ALLOWED_HOSTS)
    try:
        hosts.append(_host_spelling(host))  # the address it listens on
    except ValueError:
        pass  # 0.0.0.0 or :: (every interface): not a name clients use
    for name in allowed_host or []:
        try:
            _host_spelling(name)
        except ValueError as exc:
            fail(f"--allowed-host {exc}")
        hosts.append(name)
    if host in ("0.0.0.0", "::") and not allowed_host:
        err_console.print("[yellow]warning[/] only requests whose Host header says localhost, 127.0.0.1 or [::1] are answered: "
                          "add --allowed-host NAME for each name clients use to reach this machine.")
    try:
        settings = ServiceSettings(max_upload_bytes=int(max_upload_mb * (1 << 20)), max_pixels=max_pixels,
                                   max_concurrent=max_concurrent, allowed_hosts=tuple(hosts))
    except AnonlensError as exc:
        fail(str(exc))
    err_console.print(f"loading models, then serving on http://{host}:{port}/ (Ctrl-C stops)")
    try:
        uvicorn.run(create_app(settings), host=host, port=port, access_log=access_log, server_header=False,
                    log_level="info", limit_concurrency=max_concurrent * 4 + 16, timeout_graceful_shutdown=10)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

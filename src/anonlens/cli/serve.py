"""``anonlens serve``: the web service and page (a thin shell over :mod:`anonlens.service`)."""

from __future__ import annotations

import typer

from .main import _fail, _require, app, err_console


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on. The default is this machine only; to serve others, put a "
                                               "reverse proxy with TLS in front (README: 'Web service') rather than 0.0.0.0."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port."),
    max_upload_mb: float = typer.Option(25.0, min=0.001, help="Largest image accepted, in MB (413 above)."),
    max_pixels: int = typer.Option(40_000_000, min=1, help="Most pixels in an image (413 above; a decompression-bomb guard)."),
    max_concurrent: int = typer.Option(4, min=1, help="Requests worked on at once; one more gets 503 (busy). Images are "
                                                      "processed one at a time, each with every core."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="uvicorn's access log: method, path, status, "
                                                                                "client address (never file names or pixels)."),
) -> None:
    """Serve the API (POST /anonymize, POST /check, GET /health; OpenAPI at /openapi.json, docs at /docs) and the page
    at / : anonymize and check images from a browser. Uploads are processed in memory and never stored or logged."""
    _require("service", "anonlens serve")
    import uvicorn

    from ..service import ServiceSettings, create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning[/] listening on {host}: anyone who can reach it can send images. Plain HTTP: "
                          "put a reverse proxy with TLS in front (README: 'Web service').")
    settings = ServiceSettings(max_upload_bytes=int(max_upload_mb * (1 << 20)), max_pixels=max_pixels, max_concurrent=max_concurrent)
    err_console.print(f"loading models, then serving on http://{host}:{port}/ (Ctrl-C stops)")
    try:
        uvicorn.run(create_app(settings), host=host, port=port, access_log=access_log, server_header=False,
                    log_level="info", limit_concurrency=max_concurrent * 4 + 16, timeout_graceful_shutdown=10)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

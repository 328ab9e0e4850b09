"""The service's hardening (issue #25, items 9, 10, 12, 13, 14): 413 for any oversized body,
chunked or not, from a real uvicorn server; the allowed-hosts check (DNS rebinding); no /docs page
that loads a CDN; bad option values answered 422 in one line; and one GIF rule for CLI and
service (refused by content, whatever the name)."""

from __future__ import annotations

import http.client
import io
import json
import re
import select
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from anonlens.cli.main import app as cli_app  # noqa: E402
from anonlens.samples import face_scene  # noqa: E402
from anonlens.service import ServiceSettings, create_app  # noqa: E402

from tests.helpers import encode  # noqa: E402

LIMIT = 1 << 20  # 1 MB per image: the request limit is 2 MB + 256 KB
GIF_MESSAGE = "GIF images are not supported: convert the file to PNG"


def _settings(**kw) -> ServiceSettings:
    return ServiceSettings(max_upload_bytes=LIMIT, max_pixels=4_000_000, max_concurrent=2, preload=False, **kw)


def _one_line_error(r) -> str:
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"], body
    return body["error"]


# -- a real server on 127.0.0.1 -----------------------------------------------------------------


class _Server:
    """uvicorn serving ``app`` on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def server():
    with _Server(create_app(_settings())) as s:
        yield s


def _read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the HTTP response on ``sock`` (read until the body is complete
    by its Content-Length, or the connection ends)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _multipart_head(boundary: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n"


def test_a_chunked_upload_over_the_limit_gets_413_as_soon_as_the_limit_is_passed(server):
    """The reproduction: 60 MB sent chunked (no Content-Length) was answered 400 "error parsing the
    body". Now 413, and the answer is there before the client has sent much more than the limit."""
    limit = _settings().max_request_bytes
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(b"POST /anonymize HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
        piece = _multipart_head("xyz") + b"\0" * (64 << 10)
        sent, answered_at = 0, None
        while sent < 60 << 20:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
            piece = b"\0" * (64 << 10)
            if answered_at is None and select.select([sock], [], [], 0)[0]:
                answered_at = sent
                break
        if answered_at is None:  # the answer only came once everything was sent
            answered_at = sent
        status, headers, body = _read_response(sock)
    finally:
        sock.close()
    assert status == 413, (status, body)
    assert "over the limit" in json.loads(body)["error"]
    assert headers["content-type"] == "application/json"
    # answered while the upload was still under way (the socket buffers hold a few MB)
    assert answered_at < limit + (16 << 20), (answered_at, limit)


@pytest.mark.parametrize("chunked", [True, False])
def test_an_oversized_body_gets_a_readable_413_from_a_client_that_sends_it_all(server, chunked):
    """http.client sends the whole 60 MB before it reads: the server answers 413 at once and keeps
    reading (and dropping) the rest for a moment, so the client gets the answer, not a reset."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    if chunked:
        def body():
            yield _multipart_head("xyz")
            for _ in range(60 * 16):
                yield b"\0" * (64 << 10)

        conn.request("POST", "/anonymize", body=body(), headers=headers, encode_chunked=True)
    else:
        conn.request("POST", "/anonymize", body=_multipart_head("xyz") + b"\0" * (60 << 20), headers=headers)
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    assert r.status == 413, payload
    assert "over the limit" in json.loads(payload)["error"]


def test_a_body_just_under_the_limit_is_still_parsed(server):
    """The guard does not refuse what fits: a chunked upload of a non-image under the limit gets the
    service's own answer (415), not 413."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    boundary = "xyz"
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n").encode() \
        + b"just some text" * 1000 + f"\r\n--{boundary}--\r\n".encode()

    def body():
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    conn.request("POST", "/anonymize", body=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                 encode_chunked=True)
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    assert r.status == 415, payload


def test_a_chunked_upload_over_the_limit_gets_413_in_process():
    client = TestClient(create_app(_settings()), base_url="http://127.0.0.1")

    def body():
        yield _multipart_head("xyz")
        for _ in range(60):  # 60 x 64 KB: past the 2.25 MB request limit
            yield b"\0" * (64 << 10)

    r = client.post("/anonymize", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert "over the limit" in _one_line_error(r)


# -- allowed hosts ------------------------------------------------------------------------------


def test_a_foreign_host_header_is_refused():
    app = create_app(_settings())
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://LOCALHOST", "http://[::1]:8000", "http://localhost."):
        r = TestClient(app, base_url=base).get("/health")
        assert r.status_code == 200, (base, r.text)
    for base in ("http://attacker.example", "http://attacker.example:8000", "http://localhost.attacker.example",
                 "http://127.0.0.1.nip.io:8000", "http://testserver"):
        r = TestClient(app, base_url=base).get("/health")
        assert r.status_code == 400, (base, r.text)
        error = _one_line_error(r)
        assert "not allowed" in error and "--allowed-host" in error, error
        assert r.headers["cache-control"] == "no-store"
    # the page and the API alike
    evil = TestClient(app, base_url="http://attacker.example")
    assert evil.get("/").status_code == 400
    assert evil.post("/anonymize", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")}).status_code == 400


def test_a_foreign_host_header_is_refused_by_the_real_server(server):
    for host, status in ((b"attacker.example", 400), (b"127.0.0.1:%d" % server.port, 200), (b"localhost", 200), (None, 400)):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host else b"") + b"Connection: close\r\n\r\n")
            got, _, body = _read_response(sock)
        assert got == status, (host, got, body)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # two Host headers: refused
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\nConnection: close\r\n\r\n")
        got, _, body = _read_response(sock)
    assert got == 400, body


def test_allowed_hosts_are_configurable_for_a_proxy():
    app = create_app(_settings(allowed_hosts=("anonymize.example.org", "localhost")))
    assert TestClient(app, base_url="https://anonymize.example.org").get("/health").status_code == 200
    assert TestClient(app, base_url="http://localhost:8000").get("/health").status_code == 200
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/health").status_code == 400
    assert TestClient(app, base_url="http://evil.example.org").get("/health").status_code == 400


def test_serve_allows_the_bound_host_localhost_and_each_allowed_host(monkeypatch):
    import uvicorn

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append((app, kw)))
    runner = CliRunner()
    r = runner.invoke(cli_app, ["serve", "--host", "10.1.2.3", "--port", "8123", "--allowed-host", "anonymize.example.org",
                                "--allowed-host", "other.example.org"])
    assert r.exit_code == 0, r.output
    app, kw = apps[-1]
    assert kw["host"] == "10.1.2.3" and kw["port"] == 8123
    for host in ("10.1.2.3:8123", "localhost:8123", "127.0.0.1", "[::1]:8123", "anonymize.example.org", "other.example.org"):
        assert TestClient(app, base_url=f"http://{host}").get("/health").status_code == 200, host
    assert TestClient(app, base_url="http://attacker.example").get("/health").status_code == 400
    # the default: the bound address and localhost only
    r = runner.invoke(cli_app, ["serve"])
    assert r.exit_code == 0, r.output
    app, _ = apps[-1]
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/health").status_code == 200
    assert TestClient(app, base_url="http://anonymize.example.org").get("/health").status_code == 400
    # a name that is not a host name is refused in one line, exit 2
    r = runner.invoke(cli_app, ["serve", "--allowed-host", "http://example.org/"])
    assert r.exit_code == 2 and "--allowed-host" in r.output and len(r.output.strip().splitlines()) == 1, r.output


# -- /docs and external hosts -------------------------------------------------------------------


def test_no_docs_page_and_nothing_refers_to_another_host():
    client = TestClient(create_app(_settings()), base_url="http://127.0.0.1")
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json")
    assert spec.status_code == 200 and "/anonymize" in spec.json()["paths"]
    page = client.get("/")
    texts = {"/": page.text, "/openapi.json": spec.text}
    for ref in re.findall(r'(?:href|src)="([^"]+)"', page.text):  # every link on the page works
        assert not re.match(r"^[a-z]+:|^//", ref), ref
        r = client.get(ref)
        assert r.status_code == 200, ref
        texts[ref] = r.text
    assert {"/static/app.js", "/static/style.css", "/openapi.json"} <= set(texts)
    for path, text in texts.items():
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), (path, re.findall(r"https?://\S+", text)[:3])


# -- bad option values: 422 in one line -----------------------------------------------------------


@pytest.fixture(scope="module")
def local():
    with TestClient(create_app(_settings()), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize("data, name", [
    ({"threshold": "1.0"}, "threshold"),
    ({"threshold": "0"}, "threshold"),
    ({"threshold": "abc"}, "threshold"),
    ({"detector_option": "threshold=1.0"}, "threshold"),
    ({"detector_option": "threshold=0"}, "threshold"),
    ({"detector_option": "threshold=abc"}, "threshold"),
    ({"operator_option": "strength=abc"}, "strength"),
    ({"operator": "pixelate", "operator_option": "blocks=-3"}, "blocks"),
])
def test_bad_option_values_get_422_in_one_line(local, data, name):
    scene, _ = face_scene(320, 240, 80)
    r = local.post("/anonymize", files={"file": ("s.png", encode(scene), "image/png")}, data=data)
    assert r.status_code == 422, (data, r.status_code, r.text)
    error = _one_line_error(r)
    assert name in error, error
    assert "internal error" not in error


def test_a_bad_form_value_still_gets_the_validation_detail(local):
    r = local.post("/anonymize", data={"scope": "face"})  # no file
    assert r.status_code == 422
    assert "'file'" in _one_line_error(r) and r.json()["detail"][0]["loc"][-1] == "file"


# -- GIF: refused by content, CLI and service alike ---------------------------------------------


def _gif(astronaut) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(astronaut).convert("P").save(buf, "GIF")
    return buf.getvalue()


def test_a_gif_named_png_is_refused_by_the_cli(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    (src / "x.png").write_bytes(_gif(astronaut))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli_app, ["anonymize", str(src / "x.png"), "-o", str(out), "-q"])
    assert r.exit_code == 1, r.output
    assert GIF_MESSAGE in r.output and "x.png" in r.output
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".json" and "audit" not in str(p)]
    # a GIF without an image name, in a folder, is refused the same way
    (src / "x.png").unlink()
    (src / "camera-upload").write_bytes(_gif(astronaut))
    r = CliRunner().invoke(cli_app, ["anonymize", str(src), "-o", str(tmp_path / "out2"), "-q"])
    assert r.exit_code == 1 and "GIF" in r.output and "failed" in r.output, r.output
    assert not (tmp_path / "out2" / "camera-upload.png").exists() and not (tmp_path / "out2" / "camera-upload").exists()


def test_a_gif_is_refused_by_the_service_with_the_same_message(astronaut):
    client = TestClient(create_app(_settings()), base_url="http://127.0.0.1")
    for name in ("x.png", "x.gif", "x"):
        r = client.post("/anonymize", files={"file": (name, _gif(astronaut), "image/png")})
        assert r.status_code == 415 and GIF_MESSAGE in _one_line_error(r), r.text
    r = client.post("/check", files={"original": ("o.png", _gif(astronaut)), "anonymized": ("a.png", _gif(astronaut))})
    assert r.status_code == 415 and GIF_MESSAGE in _one_line_error(r), r.text


def test_decode_image_refuses_gif_content():
    from anonlens.errors import ImageReadError
    from anonlens.io import decode_image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "GIF")
    with pytest.raises(ImageReadError, match=GIF_MESSAGE):
        decode_image(buf.getvalue(), name="x.png")

"""No network, ever, unless asked (issue #25, item 3; docs/install.md: "No network").

``import openvino`` ran OpenVINO's telemetry: every ``anonymize`` and ``serve`` run sent
``CONNECT www.google-analytics.com:443`` and wrote ``~/intel/openvino_ga_cid`` and ``~/intel/stats``.
Here ``anonymize``, ``check`` and ``serve`` run in child processes with

- a fresh home folder, checked afterwards for anything written into it;
- a proxy listener on 127.0.0.1 named in ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``: it records
  every request that reaches it (a library honouring the proxy variables connects there);
- a socket guard (``sitecustomize`` on ``PYTHONPATH``, inherited by worker processes) that records
  and refuses every connect to an address off this machine and every name lookup of another host
  (a library ignoring the proxy variables is caught there);
- ``CI``, ``TF_BUILD`` and ``JENKINS_URL`` removed: OpenVINO's telemetry stays silent in CI
  (CI runs with ``CI=true``), so with them the test would prove nothing.
"""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import encode, run_anonlens, serving

pytestmark = pytest.mark.slow

#: what `anonymize`, `check` and `serve` may write into the home folder (docs/install.md: "No network"): nothing
ALLOWED_IN_HOME: tuple[str, ...] = ()

#: variables that make a library believe it runs in CI (OpenVINO's telemetry is silent there), or
#: that would send traffic past the proxy listener, or would move caches out of the home folder
DROPPED = ("CI", "TF_BUILD", "JENKINS_URL", "GITHUB_ACTIONS", "GITLAB_CI", "NO_PROXY", "no_proxy",
           "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TORCH_HOME", "MPLCONFIGDIR", "HF_HOME",
           "RAY_USAGE_STATS_ENABLED", "ANONLENS_ALLOW_TELEMETRY")

GUARD = textwrap.dedent('''
    """Test guard (tests/integration/test_no_network.py): record and refuse connections off this machine."""
    import ipaddress
    import os
    import socket

    _LOG = os.environ["ANONLENS_GUARD_LOG"]
    _LOCAL_NAMES = {None, "", b"", "localhost", "ip6-localhost", socket.gethostname()}


    def _record(what):
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {what}\\n")


    def _ip(host):
        try:
            return ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            return None


    def _local_host(host):
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        if host in _LOCAL_NAMES:
            return True
        ip = _ip(host)
        return ip is not None and (ip.is_loopback or ip.is_unspecified)


    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local_host(address[0]):
            _record(f"connect {address!r}")
            raise OSError(101, "network is unreachable (blocked by the test guard)")


    _connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


    def connect(self, address):
        _check(self, address)
        return _connect(self, address)


    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)


    def getaddrinfo(host, *args, **kwargs):
        if not _local_host(host) and _ip(host) is None:  # a numeric address needs no lookup (connect is guarded)
            _record(f"resolve {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, "name lookup blocked by the test guard")
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    _record("guard on")
''')


class ProxyListener:
    """An HTTP proxy on 127.0.0.1 that records each request's first line and refuses it."""

    def __init__(self):
        self.requests: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
                except OSError as exc:
                    first = f"<connection, nothing read: {exc}>"
                self.requests.append(first or "<connection, nothing sent>")
                try:
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self._server.close()


@pytest.fixture
def offline(tmp_path_factory):
    """(environment for the children, their home folder, the proxy listener, the guard's log), new for each test."""
    root = tmp_path_factory.mktemp("no-network")
    home, site, log = root / "home", root / "guard", root / "guard.log"
    home.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD)
    proxy = ProxyListener()
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update({name: proxy.url for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")})
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
               ANONLENS_GUARD_LOG=str(log), PYTHONUNBUFFERED="1")
    yield env, home, proxy, log
    proxy.close()


def photo_jpeg() -> bytes:
    from skimage import data

    return encode(data.astronaut(), "JPEG", quality=90)


def guard_records(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def home_contents(home: Path) -> list[str]:
    return sorted(rel for rel in (str(p.relative_to(home)) for p in home.rglob("*")) if not rel.startswith(ALLOWED_IN_HOME))


def assert_nothing_left(env, home, proxy, log, what):
    time.sleep(0.5)  # a sender runs in a thread: give a late one its chance to reach the listener
    blocked = [r for r in guard_records(log) if not r.endswith(" guard on")]
    assert any(r.endswith(" guard on") for r in guard_records(log)), "the socket guard did not load in the child"
    assert proxy.requests == [], f"{what}: a request reached the proxy listener: {proxy.requests}"
    assert blocked == [], f"{what}: the socket guard refused connections off this machine: {blocked}"
    assert home_contents(home) == [], f"{what}: written into the home folder: {home_contents(home)}"


def test_anonymize_and_check_send_nothing_and_write_nothing_in_home(offline, tmp_path):
    env, home, proxy, log = offline
    src = tmp_path / "in"
    src.mkdir()
    (src / "portrait.jpg").write_bytes(photo_jpeg())
    out = tmp_path / "out"
    # twice with the same home: OpenVINO's telemetry keeps a client id there and sends on every run
    for attempt in range(2):
        # faces and text: the name tag is anonymized too, so the check below (text models included) passes
        result = run_anonlens("anonymize", "--scope", "face,text", str(src), "-o", str(out), "-q", "--overwrite", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_nothing_left(env, home, proxy, log, f"anonymize (run {attempt + 1})")
    result = run_anonlens("check", str(out), "-q", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("PASS"), result.stdout
    assert_nothing_left(env, home, proxy, log, "check")


def test_anonymize_without_proxy_variables_looks_up_no_host(offline, tmp_path):
    """Without the proxy variables a sender resolves its host itself: the guard sees the lookup."""
    env, home, proxy, log = offline
    env = {k: v for k, v in env.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy")}
    (tmp_path / "portrait.jpg").write_bytes(photo_jpeg())
    result = run_anonlens("anonymize", "--on-text", "accept", str(tmp_path / "portrait.jpg"), "-o", str(tmp_path / "out"), "-q", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_nothing_left(env, home, proxy, log, "anonymize without proxy variables")


def _multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_serve_sends_nothing_and_writes_nothing_in_home(offline):
    pytest.importorskip("fastapi")
    env, home, proxy, log = offline
    with serving(env) as server:
        body, content_type = _multipart("file", "portrait.jpg", photo_jpeg(), "image/jpeg")
        status, headers, payload = server.request("POST", "/anonymize", body, {"Content-Type": content_type})
        assert status == 200, payload[:500]
        # the face passes; the astronaut's name tag may be left legible by the face scope (a review, not a refusal)
        assert headers.get("x-anonlens-verdict") in ("passed", "text-readable") and payload[:2] == b"\xff\xd8"
    assert_nothing_left(env, home, proxy, log, "serve")


def test_openvino_runs_on_its_own_telemetry_stub():
    """The mechanism itself: after ``import anonlens``, ``openvino_telemetry`` cannot be imported,
    so OpenVINO uses the no-op stand-in it ships; ANONLENS_ALLOW_TELEMETRY=1 leaves it as shipped."""
    code = textwrap.dedent("""
        import sys, anonlens, openvino
        from openvino.tools.ovc import telemetry_utils
        print(telemetry_utils.tm.__name__, "openvino_telemetry" in sys.modules and sys.modules["openvino_telemetry"] is not None)
    """)
    env = {k: v for k, v in os.environ.items() if k != "ANONLENS_ALLOW_TELEMETRY"}
    env["HOME"] = "/nonexistent-home"  # the telemetry, if it ran, could not write or send with no home
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "False"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ANONLENS_ALLOW_TELEMETRY": "1"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["openvino_telemetry", "True"]


def test_keep_offline_names_what_was_imported_too_early():
    code = "import openvino_telemetry, anonlens.privacy as p; print(p.keep_offline())"
    env = {k: v for k, v in os.environ.items() if k != "ANONLENS_ALLOW_TELEMETRY"}
    env["HOME"] = "/nonexistent-home"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['openvino_telemetry']"

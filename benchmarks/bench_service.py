"""The web service under load: requests per second, latency percentiles and the server's peak
memory for ``POST /anonymize`` on 1280x720 photos (1-3 real faces each), with 1, 4 and 16
concurrent clients on loopback. The load tool is ApacheBench (``ab``, Debian's apache2-utils),
bounded in count (``-n``) and time (``-t``; given first, so that ``-n`` still counts).

The server is ``anonlens serve`` in its own process, with ``--max-concurrent`` at least the client
count so that every request is served (queued behind the models); with the default (4), a 16-client
load gets 503 for the requests beyond 4 at once, which is counted too (``--max-concurrent 4``).
Peak memory is the server's VmHWM (peak resident set) from /proc.

    apt-get install apache2-utils        # ab
    pip install -e '.[service]'
    python benchmarks/bench_service.py
    python benchmarks/bench_service.py --requests 200 --clients 1 4 16 --max-concurrent 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _scenes import make_scenes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _multipart(photo: Path, folder: Path) -> tuple[Path, str]:
    boundary = "anonlensbenchboundary7d9f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    path = folder / "body.bin"
    path.write_bytes(body)
    return path, f"multipart/form-data; boundary={boundary}"


def _ab(url: str, body: Path, ctype: str, n: int, c: int, seconds: int) -> dict:
    out = subprocess.run(["ab", "-q", "-t", str(seconds), "-n", str(n), "-c", str(c), "-p", str(body), "-T", ctype, "-s", "120", url],
                         capture_output=True, text=True, check=True).stdout

    def num(pattern: str, default: float = 0.0) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default

    pct = {int(p): float(ms) for p, ms in re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.M)}
    return {"clients": c, "completed": int(num(r"Complete requests:\s+(\d+)")), "non_2xx": int(num(r"Non-2xx responses:\s+(\d+)")),
            "failed": int(num(r"Failed requests:\s+(\d+)")), "requests_per_s": num(r"Requests per second:\s+([\d.]+)"),
            "p50_ms": pct.get(50), "p90_ms": pct.get(90), "p99_ms": pct.get(99), "max_ms": pct.get(100)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=120, help="requests per client count (ab -n)")
    ap.add_argument("--seconds", type=int, default=120, help="time bound per client count (ab -t)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-concurrent", type=int, default=None, help="the server's limit (default: the largest client count)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if shutil.which("ab") is None:
        sys.exit("needs ab: apt-get install apache2-utils")

    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    photo = make_scenes(work / "photos", 1, seed=3)[0]
    body, ctype = _multipart(photo, work)
    port = _free_port()
    limit = args.max_concurrent or max(args.clients)
    server = subprocess.Popen([sys.executable, "-m", "anonlens", "serve", "--port", str(port), "--max-concurrent", str(limit), "--no-access-log"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if json.load(r)["ready"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the server did not start")
            time.sleep(0.5)
        idle = _rss_mb(server.pid)
        url = f"http://127.0.0.1:{port}/anonymize"
        _ab(url, body, ctype, 5, 1, 60)  # warm-up
        print(f"{os.cpu_count()} CPUs; photo 1280x720 ({photo.stat().st_size // 1024} KB JPEG); server --max-concurrent {limit}; "
              f"idle RSS {idle:.0f} MB")
        print(f"{'clients':>7} {'done':>5} {'non-2xx':>7} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'peak RSS MB':>11}")
        rows = []
        for c in args.clients:
            row = _ab(url, body, ctype, args.requests, c, args.seconds)
            row["peak_rss_mb"] = _peak_rss_mb(server.pid)
            rows.append(row)
            print(f"{c:>7} {row['completed']:>5} {row['non_2xx']:>7} {row['requests_per_s']:>7.2f} {row['p50_ms']:>7.0f} {row['p90_ms']:>7.0f} "
                  f"{row['p99_ms']:>7.0f} {row['max_ms']:>7.0f} {row['peak_rss_mb']:>11.0f}")
        if args.json:
            args.json.write_text(json.dumps({"idle_rss_mb": idle, "max_concurrent": limit, "rows": rows}, indent=2))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

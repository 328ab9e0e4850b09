"""What the tests share (fixtures stay in ``conftest.py``): images and their encodings, boxes, file
trees and their hashes, a small annotated data set, video clips written with PyAV, and anonlens run
in a child process. Optional heavy packages (torch, av) are imported inside the helpers that need
them. Tests import it as ``tests.helpers``."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from anonlens.audit import default_audit_dir
from anonlens.extras import EXTRAS
from anonlens.samples import ASTRONAUT_FACE

__all__ = [
    "ASTRONAUT_FACE", "XMP", "iou", "encode", "noise", "exif_with_gps", "jpeg_with_everything", "png_with_everything",
    "tree_files", "tree_hashes", "manifest_of", "write_perceptanon_set", "write_clip", "decoded_frames", "free_port",
    "anonlens_command", "run_anonlens", "Served", "serving", "run_without_learn", "tiny_features",
]

# -- images ----------------------------------------------------------------------------------------


def iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    """``arr`` saved by Pillow in ``fmt`` (its mode from the array: RGB, RGBA, L, ...)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A ``(h, w, 3)`` uint8 image of uniform noise (no face, no text)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N"/></rdf:RDF></x:xmpmeta>'
)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0110] = "SecretCam 3000"  # Model
    exif[0x0132] = "2024:05:01 12:00:00"  # DateTime
    exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPS IFD
    exif[0x8769] = {0x927C: b"maker secrets", 0x9003: "2024:05:01 12:00:00"}  # MakerNote, DateTimeOriginal
    return exif


def jpeg_with_everything(arr: np.ndarray) -> bytes:
    """A JPEG with EXIF (GPS, maker note, thumbnail), XMP, a COM comment and an IPTC block."""
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    img.save(buf, "JPEG", exif=exif_with_gps(), comment=b"photographer: Jane Roe", xmp=XMP)
    data = buf.getvalue()
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x50\x00\x08Jane Roe"
    seg = b"\xff\xed" + (len(iptc) + 2).to_bytes(2, "big") + iptc
    return data[:2] + seg + data[2:]


def png_with_everything(arr: np.ndarray) -> bytes:
    """A PNG with text chunks (one compressed), XMP and EXIF with GPS."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Roe")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Location", "48.85N 2.29E", zip=True)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", pnginfo=info, exif=exif_with_gps())
    return buf.getvalue()


# -- file trees and runs ---------------------------------------------------------------------------


def tree_files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``: its relative POSIX path -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tree_hashes(folder: Path) -> dict[str, str]:
    """Every file below ``folder``: its relative POSIX path -> the SHA-256 of its bytes."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in tree_files(folder).items()}


def manifest_of(out: Path) -> dict:
    """The manifest of the run that wrote the release folder ``out`` (in its audit folder beside it)."""
    return json.loads((default_audit_dir(out) / "manifest.json").read_text())


def write_perceptanon_set(root: Path, astronaut: np.ndarray) -> Path:
    """A PerceptAnon-like data set in ``root``: 12 originals (the astronaut, shifted), each blurred or
    masked at a known strength, and ``HA2.csv`` with human-like scores that follow the strength
    (stronger = more anonymous = higher score). Returns ``root``."""
    (root / "lfw" / "orig").mkdir(parents=True)
    rows = []
    base = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    for i in range(12):
        img = np.roll(base, 5 * i, axis=1)
        (root / "lfw" / "orig" / f"{i}.png").write_bytes(encode(img))
        method = ["blurpix", "mask"][i % 2]
        strength = 1 + (i % 6)
        d = root / "lfw" / f"global_{method}"
        d.mkdir(exist_ok=True)
        anon = cv2.GaussianBlur(img, (0, 0), strength * 1.5) if method == "blurpix" else img.copy()
        if method == "mask":
            anon[30 : 30 + 10 * strength, 30 : 30 + 10 * strength] = 0
        (d / f"{i}.png").write_bytes(encode(anon))
        rows.append({
            "img1": f"lfw/orig/{i}.png", "img2": f"lfw/global_{method}/{i}.png", "dataset": "LFW", "scope": "global",
            "method": method, "ann_a": strength + 2, "ann_b": strength + 3, "score_mean": strength + 2.5,
        })
    pd.DataFrame(rows).to_csv(root / "HA2.csv", index=False)
    return root


# -- video -----------------------------------------------------------------------------------------


def write_clip(path, frames, *, fps: int = 25, clock: int = 1000, codec: str = "libx264", metadata: dict | None = None,
               rotation: int = 0, audio: bool = False, vfr: bool = False, options: dict | None = None) -> list[Fraction]:
    """A video of ``frames`` (``(H, W, 3)`` uint8 RGB) in ``codec`` written with PyAV. Timestamps count
    ``clock`` ticks a second (milliseconds by default; ``clock=fps`` numbers the frames, which
    constant-rate containers such as AVI need): ``1 / fps`` s per frame, or gaps of 20 and 70 ms with
    ``vfr``. ``metadata``: container tags;
    ``rotation``: the frames stored turned by that many degrees, with a display matrix that turns them
    upright; ``audio``: a mono AAC sine tone as long as the video; ``options``: the encoder's
    options. Returns each frame's time in seconds."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        vs = out.add_stream(codec, rate=fps)
        h, w = frames[0].shape[:2]
        vs.width, vs.height = (h, w) if rotation in (90, 270) else (w, h)
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, clock)
        if options:
            vs.codec_context.options = dict(options)
        if rotation:
            vs.set_display_rotation(rotation)
        aus = out.add_stream("aac", rate=44100) if audio else None
        t = 0
        times = []
        for i, canvas in enumerate(frames):
            if rotation:  # stored sideways; the display matrix turns it upright
                canvas = np.ascontiguousarray(np.rot90(canvas, k=-(rotation // 90)))
            frame = av.VideoFrame.from_ndarray(canvas, "rgb24")
            frame.pts, frame.time_base = t, Fraction(1, clock)
            times.append(Fraction(t, clock))
            t += clock * (20 if i % 3 else 70) // 1000 if vfr else clock // fps
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if aus is not None:
            samples = (np.sin(np.arange(44100 * len(frames) // fps) / 7.0) * 0.3).astype(np.float32)
            for k in range(0, len(samples), 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, k : k + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, k
                for p in aus.encode(af):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
    return times


def decoded_frames(path) -> list[np.ndarray]:
    """Every frame of the first video stream of ``path``, decoded to RGB."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


# -- anonlens in a child process -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anonlens_command(*args) -> list[str]:
    """The command line that runs ``anonlens ARGS`` with this interpreter."""
    return [sys.executable, "-m", "anonlens", *map(str, args)]


def run_anonlens(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``anonlens ARGS`` in a child process, its output captured as text (a hang fails at ``timeout``)."""
    return subprocess.run(anonlens_command(*args), env=env, capture_output=True, text=True, timeout=timeout)


class Served:
    """A running ``anonlens serve``: its port, requests to it, and its output once it has stopped."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.output = ""

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 120) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body); straight to the server: http.client reads no
        proxy variables."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@contextlib.contextmanager
def serving(env: dict | None = None, *, ready_within: float = 180) -> Iterator[Served]:
    """``anonlens serve`` on a free port of 127.0.0.1 in a child process (its own session), yielded
    once ``/health`` says it is ready; stopped with SIGTERM at the end (SIGKILL after 30 s), its
    output then in ``.output``."""
    served = Served(free_port())
    server = subprocess.Popen(anonlens_command("serve", "--host", "127.0.0.1", "--port", served.port, "--no-access-log"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_within
        while True:
            try:
                status, _, payload = served.request("GET", "/health", timeout=2)
                if status == 200 and json.loads(payload)["ready"]:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("anonlens serve did not start: " + (server.stdout.read().decode() if server.poll() is not None else "timeout"))
            time.sleep(0.3)
        yield served
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            output = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate()[0]
        served.output = output.decode(errors="replace")


# Runs anonlens commands in a fresh interpreter in which the 'learn' extra cannot be imported, as
# after `pip install anonlens`; prints one JSON line per command: exit code, output, and whether
# any blocked module was imported.
_WITHOUT_LEARN = textwrap.dedent(
    """
    import importlib.abc, json, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)
            return None

    sys.meta_path.insert(0, Block())
    from typer.testing import CliRunner
    from anonlens.cli.main import app

    runner = CliRunner()
    for args in json.loads(sys.argv[2]):
        r = runner.invoke(app, args)
        print(json.dumps({"args": args, "code": r.exit_code, "out": r.output,
                          "exc": None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception),
                          "imported": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
    """
)


def run_without_learn(commands: list[list[str]], cwd) -> list[dict]:
    """Each of ``commands`` (anonlens' arguments) run in one child interpreter that cannot import the
    'learn' extra's packages; one dict per command (``code``, ``out``, ``exc``, ``imported``)."""
    blocked = ",".join(sorted({m for m in EXTRAS["learn"]}))
    p = subprocess.run([sys.executable, "-c", _WITHOUT_LEARN, blocked, json.dumps(commands)], capture_output=True,
                       text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


# -- torch -----------------------------------------------------------------------------------------


def tiny_features():
    """A feature network for FID and KID in tests: each channel's mean and standard deviation."""
    import torch

    class TinyFeatures(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    return TinyFeatures()


def package_modules(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` under ``src`` (a package by
    its own name): what the architecture tests walk."""
    out = {}
    for path in (Path(src) / package).rglob("*.py"):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out

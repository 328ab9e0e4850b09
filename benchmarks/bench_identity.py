"""dlib's face-identity network: dlib-bin against anonlens' PyTorch build, in one run, on the same faces.

1. Identity scoring, pairs per second: each pair is two descriptors (the original's face and the
   anonymized image at the original's landmarks), from dlib's aligned chips. dlib-bin computes one
   face at a time; the torch network at batch 1 and at batch 16. The largest difference between the
   engines' descriptors is printed too.
2. The ``identity`` metric end to end on face photos (dlib's detector and landmarks, then the
   descriptors), pairs per second with each engine (``-m identity.engine=...``).
3. EDI-Anon per face, to the same stopping rule (identity distance at least τ + margin = 0.7),
   pixelate 16 blocks, q = 90, at most 15 iterations, on the astronaut photo's face (crops, flips,
   scales, as bench_edi.py): the black-box occlusion oracle (16 windows) on dlib-bin and on torch,
   and the white-box gradient oracle (torch). Seconds per face, final distance (measured by dlib-bin),
   SSIM of the face kept, iterations.

    python benchmarks/bench_identity.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_flags  # noqa: E402
from bench_edi import astronaut_faces  # noqa: E402

from anonlens.identity import DlibFaceEmbedder, identity_distance  # noqa: E402


def _timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def scoring(faces: list[np.ndarray]) -> dict:
    from anonlens.operators import functional as F

    t_emb, d_emb = DlibFaceEmbedder(engine="torch"), DlibFaceEmbedder(engine="dlib")
    shapes = [d_emb.locate_all(f)[0] for f in faces]
    anon = [F.blur(f, np.ones(f.shape[:2], bool), sigma=2) for f in faces]
    chips = [d_emb.chip(f, s) for f, s in zip(faces, shapes)] + [d_emb.chip(a, s) for a, s in zip(anon, shapes)]
    pairs = len(faces)
    t_dlib = _timed(lambda: d_emb.describe_chips(chips))
    t_b1 = _timed(lambda: [t_emb.describe_chips([c]) for c in chips])
    b16 = lambda: [t_emb.describe_chips(chips[i : i + 16]) for i in range(0, len(chips), 16)]  # noqa: E731
    t_b16 = _timed(b16)
    diff = float(np.abs(t_emb.describe_chips(chips) - d_emb.describe_chips(chips)).max())
    row = {"pairs": pairs, "dlib_pairs_per_s": pairs / t_dlib, "torch_b1_pairs_per_s": pairs / t_b1, "torch_b16_pairs_per_s": pairs / t_b16,
           "ms_per_face": {"dlib": 1000 * t_dlib / len(chips), "torch_b1": 1000 * t_b1 / len(chips), "torch_b16": 1000 * t_b16 / len(chips)},
           "max_descriptor_difference": diff}
    print(f"descriptors, {pairs} pairs ({len(chips)} faces): dlib-bin {row['dlib_pairs_per_s']:.1f} pairs/s "
          f"({row['ms_per_face']['dlib']:.1f} ms/face); torch batch 1 {row['torch_b1_pairs_per_s']:.1f} "
          f"({row['ms_per_face']['torch_b1']:.1f} ms/face, {t_dlib / t_b1:.1f}x); batch 16 {row['torch_b16_pairs_per_s']:.1f} "
          f"({row['ms_per_face']['torch_b16']:.1f} ms/face, {t_dlib / t_b16:.1f}x); max |difference| {diff:.1e}", flush=True)

    from anonlens.metrics import PairBatch, create_metric

    batch = PairBatch(anon, faces, [str(i) for i in range(pairs)])
    metric = {e: create_metric("identity", engine=e) for e in ("dlib", "torch")}
    t_m = {e: _timed(lambda e=e: metric[e](batch), repeats=2) for e in metric}
    row["metric_pairs_per_s"] = {e: pairs / t for e, t in t_m.items()}
    print(f"identity metric end to end (detection + landmarks + descriptors, {faces[0].shape[1]}x{faces[0].shape[0]}-ish crops): "
          f"dlib-bin {pairs / t_m['dlib']:.1f} pairs/s, torch {pairs / t_m['torch']:.1f} pairs/s ({t_m['dlib'] / t_m['torch']:.2f}x)", flush=True)
    return row


def edi(faces: list[np.ndarray]) -> dict:
    from skimage.metrics import structural_similarity

    from anonlens.edi import create_oracle, edi_anonymize
    from anonlens.operators import functional as F

    judge = DlibFaceEmbedder(engine="dlib")
    out = {}
    for label, engine, saliency, opts in (("occlusion, dlib-bin", "dlib", "occlusion", {"windows": 4}),
                                          ("occlusion, torch", "torch", "occlusion", {"windows": 4}),
                                          ("gradient, torch", "torch", "gradient", {})):
        oracle = create_oracle("dlib", threshold=0.7, engine=engine)
        t = time.perf_counter()
        results = []
        for face in faces:
            target = oracle.prepare(face)
            res = edi_anonymize(face, oracle=oracle, target=target, saliency=saliency, saliency_options=opts, q=90, max_iters=15,
                                perturb=lambda im: F.pixelate(im, np.ones(im.shape[:2], bool), block=max(1, max(im.shape[:2]) // 16)))
            results.append((face, target, res))
        seconds = (time.perf_counter() - t) / len(faces)
        dist = [identity_distance(judge._embedding(f, tg.shape).vector, judge._embedding(r.image, tg.shape).vector) for f, tg, r in results]
        ssim = [structural_similarity(f, r.image, channel_axis=2) for f, _, r in results]
        row = {"seconds_per_face": seconds, "mean_final_distance_dlib": float(np.mean(dist)), "min_final_distance_dlib": float(np.min(dist)),
               "mean_ssim": float(np.mean(ssim)), "mean_iterations": float(np.mean([r.iterations for _, _, r in results])),
               "fallbacks": int(sum(r.fallback for _, _, r in results)), "faces": len(faces)}
        out[label] = row
        print(f"EDI {label:20s}: {seconds:.2f} s/face, distance mean {row['mean_final_distance_dlib']:.3f} (min "
              f"{row['min_final_distance_dlib']:.3f}), SSIM {row['mean_ssim']:.4f}, iterations {row['mean_iterations']:.2f}, "
              f"fallbacks {row['fallbacks']}", flush=True)
    base = out["occlusion, dlib-bin"]["seconds_per_face"]
    for label, row in out.items():
        row["speedup_vs_dlib_occlusion"] = base / row["seconds_per_face"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    print(f"{os.cpu_count()} CPUs, flags {cpu_flags()}, torch {torch.__version__} ({torch.get_num_threads()} threads)", flush=True)
    faces = astronaut_faces()
    rows = {"scoring": scoring(faces), "edi": edi(faces)}
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

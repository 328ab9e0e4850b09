"""EDI-Anon: utility at matched risk, and speed against the reference's dataset-level loop.

Two attackers, each measured in one run against a reference-style loop that uses the same oracle,
operator, saliency and percentile, but works as the EDI-Anon notebooks do: the data set lives on
disk as JPEG; every iteration decodes every image, checks every image with the attacker, perturbs
the still-identified ones and writes a full copy of the data set (JPEG, quality 95) to a new folder;
it stops when the re-identification rate is at or below the target. anonlens runs each face in
memory and stops per face.

- white-box (the reference's setting): a small CNN identity classifier trained here on the 100
  LFW faces scikit-image ships (one identity each, trained on flips/crops/noise, tested on a
  held-out variant), input gradient toward the runner-up; masking with q = 99 (the reference's
  masking setting) and DP-Pix (8 px cells, eps 1) with q = 90, then the trade-off against uniform
  DP-Pix at increasing eps;
- black-box: dlib's face-identity model on the astronaut photo's face (crops, flips, scales),
  occlusion saliency (16 windows), q = 90, pixelate; once more with the ``refresh=3`` option.

For both sets it also runs ``tradeoff``: EDI's curve against the uniform operator at increasing
strengths, and the SSIM (inside the face) gap at matched re-identification rate.

    python benchmarks/bench_edi.py --json results.json   # --device cuda for the white-box attacker
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anonlens.edi import edi_anonymize, select_elements  # noqa: E402
from anonlens.edi.saliency import saliency_map  # noqa: E402
from anonlens.operators import functional as F  # noqa: E402


def lfw_identities(size: int = 64, train_variants: int = 8, seed: int = 0):
    from skimage import data

    faces = data.lfw_subset()[:100]  # the first 100 are faces (25x25 grey)
    rng = np.random.default_rng(seed)

    def variant(face):
        img = cv2.resize((face * 255).astype(np.uint8), (size + 8, size + 8), interpolation=cv2.INTER_CUBIC)
        dy, dx = rng.integers(0, 9, 2)
        img = img[dy : dy + size, dx : dx + size]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.clip(img.astype(np.float64) + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        return np.repeat(img[:, :, None], 3, axis=2)

    train = {f"id{k:03d}": [variant(f) for _ in range(train_variants)] for k, f in enumerate(faces)}
    test = [variant(f) for f in faces]
    return train, test


def astronaut_faces():
    from skimage import data

    img = data.astronaut()
    out = []
    for dy, dx, s in [(0, 0, 1.0), (-10, 6, 1.0), (8, -8, 1.0), (0, 0, 0.8), (0, 0, 1.25), (12, 12, 0.9)]:
        y1, y2, x1, x2 = 40 + dy, 220 + dy, 140 + dx, 310 + dx
        crop = img[max(0, y1) : y2, max(0, x1) : x2]
        crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        out += [np.ascontiguousarray(crop), np.ascontiguousarray(crop[:, ::-1])]
    return out


def reference_loop(faces, oracle, targets, workdir: Path, *, operator, saliency, saliency_options, q, target_risk, max_iters):
    """The reference's dataset-level loop with disk round trips (see the module docstring)."""
    from PIL import Image

    cur = workdir / "iter0"
    cur.mkdir(parents=True)
    for i, f in enumerate(faces):
        Image.fromarray(f).save(cur / f"{i:04d}.jpg", quality=95)
    rates = []
    for it in range(max_iters + 1):
        imgs = [np.asarray(Image.open(cur / f"{i:04d}.jpg").convert("RGB")) for i in range(len(faces))]
        identified = [oracle.measure(t, [im])[0].identified for t, im in zip(targets, imgs)]
        rates.append(sum(identified) / len(faces))
        if rates[-1] <= target_risk or it == max_iters:
            break
        nxt = workdir / f"iter{it + 1}"
        nxt.mkdir()
        for i, (im, ident) in enumerate(zip(imgs, identified)):
            if ident:
                cand = np.ones(im.shape[:2], bool)
                pert = operator(im, cand)
                sal = saliency_map(saliency, oracle, targets[i], im, pert, cand, rng=np.random.default_rng(i), **saliency_options)
                sel = select_elements(sal, cand, q)
                sel = sel if sel.ndim == 3 else np.broadcast_to(sel[..., None], im.shape)
                im = np.where(sel, pert, im)
            Image.fromarray(np.ascontiguousarray(im)).save(nxt / f"{i:04d}.jpg", quality=95)
        cur = nxt
    final = [np.asarray(Image.open(cur / f"{i:04d}.jpg").convert("RGB")) for i in range(len(faces))]
    return rates, final


def anonlens_loop(faces, oracle, targets, *, operator, saliency, saliency_options, q, max_iters, target_risk, **extra):
    if oracle.white_box:  # the set API: a round's gradients in one batch
        from anonlens.edi import edi_set

        cands = [np.ones(f.shape[:2], bool) for f in faces]
        res = edi_set(faces, oracle=oracle, perturbs=[lambda im, c=c: operator(im, c) for c in cands], candidates=cands, targets=targets,
                      target_risk=target_risk, max_iters=max_iters, saliency=saliency, saliency_options=saliency_options, q=q)
        return res.results
    results = []
    for i, f in enumerate(faces):
        cand = np.ones(f.shape[:2], bool)
        results.append(edi_anonymize(f, cand, oracle=oracle, perturb=lambda im, c=cand: operator(im, c), target=targets[i], max_iters=max_iters,
                                     on_fail="keep", saliency=saliency, saliency_options=saliency_options, q=q, **extra,
                                     rng=np.random.default_rng(i)))
    return results


def compare(name, faces, oracle, targets, *, operator, saliency, saliency_options, q, target_risk, max_iters, extra=None):
    """Both loops against the same attacker, which knows each face's identity (``targets``)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ref_rates, ref_final = reference_loop(faces, oracle, targets, Path(tmp), operator=operator, saliency=saliency,
                                   saliency_options=saliency_options, q=q, target_risk=target_risk, max_iters=max_iters)
        t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = anonlens_loop(faces, oracle, targets, operator=operator, saliency=saliency, saliency_options=saliency_options, q=q,
                        max_iters=max_iters, target_risk=target_risk, **(extra or {}))
    t_ours = time.perf_counter() - t0
    from anonlens.edi.loop import region_ssim

    whole = [np.ones(f.shape[:2], bool) for f in faces]
    ours_rate = sum(r.identified for r in res) / len(res)
    row = {
        "setting": name, "faces": len(faces),
        "reference_s_per_face": round(t_ref / len(faces), 4), "anonlens_s_per_face": round(t_ours / len(faces), 4),
        "speedup": round(t_ref / t_ours, 2),
        "reference_rates": [round(r, 3) for r in ref_rates], "reference_final_rate": round(ref_rates[-1], 3),
        "anonlens_final_rate": round(ours_rate, 3), "anonlens_mean_iterations": round(float(np.mean([r.iterations for r in res])), 2),
        "reference_mean_ssim": round(float(np.mean([region_ssim(f, g, w) for f, g, w in zip(faces, ref_final, whole)])), 4),
        "anonlens_mean_ssim": round(float(np.mean([region_ssim(f, r.image, w) for f, r, w in zip(faces, res, whole)])), 4),
        **({"anonlens_options": extra} if extra else {}),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-black-box", action="store_true")
    ap.add_argument("--skip-white-box", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--device", default="cpu", help="device of the white-box attacker in both loops (cpu or cuda)")
    args = ap.parse_args()
    import os

    print(f"machine: {os.cpu_count()} CPUs, attacker on {args.device}", flush=True)
    rows = {}
    if not args.skip_white_box:
        from PIL import Image

        from anonlens.edi import ClassifierOracle
        from anonlens.edi.classifier import IdentityTrainOptions, train_identity

        train, test = lfw_identities()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ids"
            for name, imgs in train.items():
                (root / name).mkdir(parents=True)
                for i, im in enumerate(imgs):
                    Image.fromarray(im).save(root / name / f"{i}.png")
            t0 = time.perf_counter()
            tr = train_identity(root, Path(tmp) / "attacker", IdentityTrainOptions(arch="tiny", input_size=64, epochs=40, lr=3e-3, batch_size=32,
                                                                                   val_fraction=0.125, device=args.device))
            oracle = ClassifierOracle(model=str(Path(tmp) / "attacker"), device=args.device)
        acc = float(np.mean([oracle.measure(k, [im])[0].identified for k, im in enumerate(test)]))
        print(f"white-box attacker: {time.perf_counter() - t0:.0f} s training, validation accuracy {tr.val_accuracy:.3f}, held-out accuracy {acc:.3f}", flush=True)
        faces = test
        targets = list(range(len(test)))  # the true identities (class k is LFW face k)
        rows["white-box"] = compare("white-box classifier, gradient, masking q=99 (the reference's masking setting)", faces, oracle, targets,
                                    operator=lambda im, c: F.fill(im, c), saliency="gradient", saliency_options={},
                                    q=99, target_risk=0.01, max_iters=30)
        rows["white-box-dp-pix"] = compare("white-box classifier, gradient, DP-Pix block 8 eps 1, q=90", faces, oracle, targets,
                                           operator=lambda im, c, r=np.random.default_rng(0): F.dp_pixelate(im, c, block=8, rng=r),
                                           saliency="gradient", saliency_options={}, q=90, target_risk=0.05, max_iters=30)
        from anonlens.edi.tradeoff import tradeoff

        tw = tradeoff(faces, oracle=oracle, targets=targets, operator="dp-pix", operator_options={"block": 8, "seed": 0}, q=90, max_iters=30,
                      saliency="gradient", target_risk=0.0, strengths=[64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0])
        rows["tradeoff-white-box"] = tw.to_dict()
        print(f"white-box trade-off, DP-Pix: EDI rounds {json.dumps(tw.edi)}", flush=True)
        print(f"uniform: {json.dumps(tw.uniform)}", flush=True)
        print(f"SSIM at matched risk: {json.dumps(tw.matched)}", flush=True)
    if not args.skip_black_box:
        from anonlens.edi import create_oracle
        from anonlens.edi.tradeoff import tradeoff

        faces = astronaut_faces()
        oracle = create_oracle("dlib")
        rows["black-box"] = compare("black-box dlib, occlusion 4x4, pixelate 16 blocks", faces, oracle, [oracle.prepare(f) for f in faces],
                                    operator=lambda im, c: F.pixelate(im, c, block=max(1, max(im.shape[:2]) // 16)),
                                    saliency="occlusion", saliency_options={"windows": 4}, q=90, target_risk=0.0, max_iters=15)
        rows["black-box-refresh"] = compare("black-box dlib, occlusion 4x4 recomputed every 3rd iteration (anonlens option refresh=3)", faces,
                                            oracle, [oracle.prepare(f) for f in faces],
                                            operator=lambda im, c: F.pixelate(im, c, block=max(1, max(im.shape[:2]) // 16)),
                                            saliency="occlusion", saliency_options={"windows": 4}, q=90, target_risk=0.0, max_iters=15,
                                            extra={"refresh": 3})
        t0 = time.perf_counter()
        tr = tradeoff(faces, oracle=oracle, operator="pixelate", operator_options={"blocks": 16}, q=90, max_iters=15,
                      saliency="occlusion", target_risk=0.0, strengths=[64, 48, 32, 24, 16, 12, 8])
        rows["tradeoff"] = tr.to_dict()
        print(f"trade-off ({time.perf_counter() - t0:.0f} s): EDI rounds {json.dumps(tr.edi)}", flush=True)
        print(f"uniform: {json.dumps(tr.uniform)}", flush=True)
        print(f"SSIM inside the face at matched risk: {json.dumps(tr.matched)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()

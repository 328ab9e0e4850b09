"""Scoring throughput of the classic metric set (MSE, PSNR, SSIM) against a per-pair loop calling
scikit-image, as the PerceptAnon reference scripts do; and peak memory over many pairs.

The reference loop, per pair: open both images with PIL, convert to float in [0, 1], call
skimage's mean_squared_error, peak_signal_noise_ratio (data_range 1) and structural_similarity
(Gaussian window, sigma 1.5, population covariance), once with the standard constants and once with
the reference's K1=0.01**2, K2=0.03**2. anonlens: `score_pairs` with metrics mse, psnr and `ssim`
or `ssim-perceptanon` (the same values), writing its CSV/JSONL table, as `anonlens score` does;
both timed as fresh processes, start-up included.

    python benchmarks/bench_score.py                    # throughput at 224x224 and 1024x768
    python benchmarks/bench_score.py --memory 5000      # also peak RSS for 500 vs 5000 pairs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_pairs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> None:
    import cv2
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    src = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    (folder / "orig").mkdir(parents=True)
    (folder / "anon").mkdir(parents=True)
    for i in range(n):
        img = cv2.resize(src[i % len(src)], size, interpolation=cv2.INTER_AREA)
        img = np.roll(img, int(rng.integers(0, size[0])), axis=1)
        anon = cv2.GaussianBlur(img, (0, 0), 1 + i % 5)
        Image.fromarray(img).save(folder / "orig" / f"{i:05d}.png", compress_level=1)
        Image.fromarray(anon).save(folder / "anon" / f"{i:05d}.png", compress_level=1)


REFERENCE_LOOP = """
import sys, time, numpy as np
from pathlib import Path
from PIL import Image
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
folder = Path(sys.argv[1]); k1, k2 = float(sys.argv[2]), float(sys.argv[3]); t = time.perf_counter(); rows = []
for p in sorted((folder / "anon").iterdir()):
    a = np.asarray(Image.open(folder / "orig" / p.name).convert("RGB"), dtype=np.float64) / 255
    b = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255
    rows.append((mean_squared_error(a, b), peak_signal_noise_ratio(a, b, data_range=1),
                 structural_similarity(a, b, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, K1=k1, K2=k2)))
print(time.perf_counter() - t, np.mean([r[2] for r in rows]))
"""

OURS = """
import sys, time, resource
from anonlens.assess import pairs_from_dirs, score_pairs, ScoreOptions
folder, ssim = sys.argv[1], sys.argv[3]; t = time.perf_counter()
pairs = pairs_from_dirs(folder + "/anon", folder + "/orig")
r = score_pairs(pairs, sys.argv[2], ScoreOptions(metrics=("mse", "psnr", ssim)))
import pandas as pd
print(time.perf_counter() - t, pd.read_csv(r.table_csv)[ssim].mean(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def run(code: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout.split()
    return [float(v) for v in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs-224", type=int, default=400)
    ap.add_argument("--pairs-1024", type=int, default=60)
    ap.add_argument("--memory", type=int, default=0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="anonlens-bench-score-"))
    try:
        print(f"machine: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")
        print("| size | SSIM constants | pairs | skimage loop pairs/s | anonlens pairs/s | ratio | mean SSIM (skimage / anonlens) |")
        print("|---|---|---:|---:|---:|---:|---|")
        for size, n in (((224, 224), args.pairs_224), ((1024, 768), args.pairs_1024)):
            folder = work / f"{size[0]}x{size[1]}"
            make_pairs(folder, n, size)
            for label, k, metric in (("standard", ("0.01", "0.03"), "ssim"), ("PerceptAnon (squared)", ("0.0001", "0.0009"), "ssim-perceptanon")):
                t_ref, ssim_ref = run(REFERENCE_LOOP, str(folder), *k)
                t_ours, ssim_ours, _ = run(OURS, str(folder), str(work / "out"), metric)
                print(f"| {size[0]}x{size[1]} | {label} | {n} | {n / t_ref:.1f} | {n / t_ours:.1f} | **{t_ref / t_ours:.1f}x** | {ssim_ref:.7f} / {ssim_ours:.7f} |")
        if args.memory:
            print("\n| pairs (224x224) | seconds | peak RSS (MiB) |\n|---:|---:|---:|")
            for n in (args.memory // 10, args.memory):
                folder = work / f"mem{n}"
                make_pairs(folder, n, (224, 224), seed=1)
                t, _, rss = run(OURS, str(folder), str(work / f"memout{n}"), "ssim")
                print(f"| {n} | {t:.1f} | {rss:.0f} |")
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Scale-out: images per second of the Ray engine against the local process pool, on the same
1280x720 photos (1-3 real faces each, see ``_scenes.py``), with 1 and 2 workers, in one run.

Printed per worker count: images/s of each engine, the ratio Ray/local, and the Ray engine's
overhead per file ((Ray seconds - local seconds) / files, start-up of Ray excluded, reported on its
own). Then a projection: from the measured cost of one photo in core-seconds at the largest worker
count (cores / images per second: every core is busy) on each engine, the cores (and 16-core
nodes) needed to anonymize 1 million 1280x720 photos in one hour, assuming the per-core rate holds on the cluster's CPUs and the shared
file system keeps up (at 1 M photos/hour it must read and write about 280 photos per second).

    pip install -e '.[ray]'
    python benchmarks/bench_ray.py                 # 120 photos, workers 1 and 2
    python benchmarks/bench_ray.py --images 400 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from _machine import cpu_flags
from _scenes import make_scenes

from anonlens.batch import BatchOptions, run_batch
from anonlens.engines import create_engine


def _run(engine_name: str, workers: int, photos: Path, work: Path, tag: str, files_per_task: int) -> tuple[float, float, dict]:
    out = work / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / f"out-{tag}.anonlens-audit", ignore_errors=True)
    options = BatchOptions(workers=workers)
    t0 = time.perf_counter()
    if engine_name == "ray":
        engine = create_engine("ray", workers=workers, files_per_task=files_per_task)
    else:
        engine = create_engine("local", workers=workers)
    with engine:
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = run_batch([photos], out, options, engine=engine)
        seconds = time.perf_counter() - t1
        info = engine.describe()
    assert report.ok and report.count("anonymized") == report.count(*report.counts), report.summary()
    return seconds, started, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--files-per-task", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    photos = work / "photos"
    make_scenes(photos, args.images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags {cpu_flags()}; "
          f"{args.images} photos 1280x720, detector centerface, operator blur")
    # warm the file cache and the one-time model conversion, outside the timings
    _run("local", 1, photos, work, "warm", args.files_per_task)
    rows = []
    print(f"{'workers':>7} {'local img/s':>12} {'ray img/s':>10} {'ray/local':>9} {'overhead ms/file':>17} {'ray start s':>11}")
    for w in args.workers:
        local_s, _, _ = _run("local", w, photos, work, f"local{w}", args.files_per_task)
        ray_s, start_s, info = _run("ray", w, photos, work, f"ray{w}", args.files_per_task)
        row = {"workers": w, "local_images_per_s": args.images / local_s, "ray_images_per_s": args.images / ray_s,
               "ratio": local_s / ray_s, "overhead_ms_per_file": 1000 * (ray_s - local_s) / args.images, "ray_start_s": start_s,
               "ray": info}
        rows.append(row)
        print(f"{w:>7} {row['local_images_per_s']:>12.2f} {row['ray_images_per_s']:>10.2f} {row['ratio']:>9.2f} "
              f"{row['overhead_ms_per_file']:>17.1f} {start_s:>11.1f}")
    # every core of this machine is busy in every run (one worker uses all cores' threads), so the
    # cost of one photo in core-seconds is cores / throughput; the largest worker count is the
    # cluster's layout (one single-threaded task per core)
    top = max(rows, key=lambda r: r["workers"])
    cores_here = os.cpu_count() or 1
    local_core_s = cores_here / top["local_images_per_s"]
    ray_core_s = cores_here / top["ray_images_per_s"]
    overhead_s = ray_core_s - local_core_s
    cores = 1_000_000 * max(ray_core_s, local_core_s) / 3600
    projection = {"core_seconds_per_image_local": local_core_s, "core_seconds_per_image_ray": ray_core_s,
                  "ray_overhead_core_seconds": overhead_s, "cores_for_1M_per_hour": cores, "nodes_16_cores": -(-cores // 16)}
    print(f"projection: {local_core_s * 1000:.0f} core-ms per 1280x720 photo locally, {ray_core_s * 1000:.0f} on Ray "
          f"({overhead_s * 1000:+.0f} core-ms) -> {cores:.0f} cores ({projection['nodes_16_cores']:.0f} nodes of 16 cores) "
          "for 1 million photos in one hour")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "projection": projection}, indent=2, default=str))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

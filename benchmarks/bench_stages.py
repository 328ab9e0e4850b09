"""Where the time of a photo batch goes, stage by stage (issue 29): the per-image core of
``anonlens anonymize`` (:func:`anonlens.batch.process_file`, what every worker runs) under cProfile
in one process, the wall time of each stage summed over the batch and divided by the images.

Stages are functions (their cumulative time; a stage's time includes the stages it calls, listed
indented under it). The photos: the real ones of ``benchmarks/photos.py`` (group photos, the street
crowd, portraits, objects) and, with ``--synthetic N``, N 1280x720 scenes of ``_scenes.py``.

    python benchmarks/photos.py fetch        # once
    python benchmarks/bench_stages.py [--synthetic 8] [--json stages.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import cpu_flags  # noqa: E402
from photos import photos  # noqa: E402

#: (label, module file suffix, function name, depth): the stages, in the order they run
STAGES = [
    ("read the file", "io/files.py", "read_regular_file", 0),
    ("decode", "io/images.py", "decode_image", 0),
    ("anonymize (all below)", "pipeline.py", "__call__", 0),
    ("find: the scope's detectors", "pipeline.py", "find", 1),
    ("operator + per-region verification", "pipeline.py", "apply_with_alpha", 1),
    ("residual probes (regions and the check's faces)", "verify/residual.py", "residual", 1),
    ("last verification (all below)", "pipeline.py", "verify_release", 1),
    ("faces: CenterFace (4 turns) + dlib", "verify/release.py", "face_boxes", 2),
    ("faces: locate (dlib landmarks)", "verify/release.py", "locate", 2),
    ("faces: identity test", "verify/release.py", "judge", 2),
    ("text: detect + read", "verify/release.py", "check_text", 2),
    ("people with no face", "verify/release.py", "people_without_faces", 2),
    ("encode", "io/images.py", "encode_image", 0),
    ("metadata check", "io/metadata.py", "metadata_problems", 0),
    ("write (atomic)", "io/files.py", "write_atomic", 0),
]


def stage_times(stats: pstats.Stats) -> dict[str, float]:
    out = {label: 0.0 for label, *_ in STAGES}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for label, suffix, name, _depth in STAGES:
            if func == name and filename.replace("\\", "/").endswith("anonlens/" + suffix):
                out[label] += ct
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", type=int, default=0, help="also N synthetic 1280x720 scenes")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    from anonlens.batch import BatchOptions, plan_tasks, process_file

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for p in photos(sources=None):
            (src / p.path.name).write_bytes(p.path.read_bytes())
        if args.synthetic:
            from _scenes import make_scenes

            make_scenes(src, args.synthetic)
        out = Path(tmp) / "out"
        out.mkdir()
        (Path(tmp) / "tmp").mkdir()
        tasks = [t for t in plan_tasks([src], out, tmp_dir=Path(tmp) / "tmp") if t.supported]
        options = BatchOptions(workers=1)
        process_file(tasks[0], options)  # models load and compile outside the measurement
        profile = cProfile.Profile()
        wall = time.perf_counter()
        profile.enable()
        records = [process_file(t, options) for t in tasks]
        profile.disable()
        wall = time.perf_counter() - wall
    n = len(records)
    times = stage_times(pstats.Stats(profile))
    print(f"cpu: {cpu_flags()}; {n} images, {wall:.1f} s wall in one process ({wall / n:.2f} s per image; profiling adds a few %)")
    print("\n| stage | s / image | share |\n|---|---|---|")
    for label, _s, _f, depth in STAGES:
        print(f"| {'&nbsp;' * 4 * depth}{label} | {times[label] / n:.3f} | {times[label] / wall:.0%} |")
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        print(f"\n{len(failed)} failed: " + "; ".join(r["error"] for r in failed))
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n, "wall": wall, "per_image": {k: v / n for k, v in times.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

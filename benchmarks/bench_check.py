"""`anonlens check` on an `anonymize` output folder (issue 29): the release gate measuring every
original again (``--remeasure``, what it did before) against reusing what the anonymize run found
in each original (the default), in one run, on the real photos of ``benchmarks/photos.py``.

Both runs must give the same verdicts, faces and texts (checked here); the ratio is the speed-up.
Wall time of the whole command (model loading included), rounds alternating.

    python benchmarks/photos.py fetch        # once
    python benchmarks/bench_check.py [--rounds 2] [--json check.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import cpu_flags  # noqa: E402
from photos import photos  # noqa: E402


def _check(out: Path, *extra: str) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "anonlens", "check", str(out), "--json", "-q", *extra], capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode not in (0, 1):
        raise SystemExit(f"check failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return took, json.loads(r.stdout)


def _same(doc: dict) -> list:
    return [(i["key"], i["verdict"], [(f["box"], f["identity"], f["reidentified"], f["residual"]) for f in i["faces"]],
             [(t["box"], t["readable"], t["detected"]) for t in i["texts"] or []], i["people"]) for i in doc["per_image"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-check-"))
    try:
        src = work / "in"
        src.mkdir()
        batch = photos()
        for p in batch:
            shutil.copy(p.path, src / p.path.name)
        out = work / "out"
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "anonlens", "anonymize", str(src), "-o", str(out), "-q", "--json"], capture_output=True, text=True)
        if r.returncode not in (0, 3):
            raise SystemExit(f"anonymize failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        anonymize_s = time.perf_counter() - t
        times: dict[str, list[float]] = {"remeasure": [], "reuse": []}
        docs = {}
        for _ in range(args.rounds):
            for mode, extra in (("remeasure", ("--remeasure",)), ("reuse", ())):
                took, docs[mode] = _check(out, *extra)
                times[mode].append(took)
        same = _same(docs["remeasure"]) == _same(docs["reuse"])
        n = len(batch)
        best = {m: min(v) for m, v in times.items()}
        result = {"photos": n, "cpu_flags": cpu_flags(), "anonymize_s": round(anonymize_s, 1),
                  "check_remeasure_s": round(best["remeasure"], 1), "check_reuse_s": round(best["reuse"], 1),
                  "per_photo_remeasure_s": round(best["remeasure"] / n, 2), "per_photo_reuse_s": round(best["reuse"] / n, 2),
                  "speedup": round(best["remeasure"] / best["reuse"], 2), "same_verdicts": same,
                  "originals_reused": docs["reuse"]["originals_reused"], "rounds": times}
        print(f"{n} photos ({cpu_flags()}): anonymize {anonymize_s:.1f} s; check --remeasure {best['remeasure']:.1f} s "
              f"({best['remeasure'] / n:.2f} s/photo), check reusing the run's measurements {best['reuse']:.1f} s "
              f"({best['reuse'] / n:.2f} s/photo): {result['speedup']:.2f}x; same verdicts, faces and texts: {same}; "
              f"originals reused {result['originals_reused']}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

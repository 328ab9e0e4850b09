"""The PerceptAnon paper's table: for every split, how well each metric ranks the test rows the
way people did (Spearman rho and Kendall tau against the human mean score).

Rows are the test sets written by ``anonlens splits`` (``dataset_splits/<HA>/<split>/test.csv``).
Every distinct pair is scored once (``score_pairs``); the per-pair metrics are PSNR, MSE, SSIM,
LPIPS (when its weights are available), the face-identity distance, and each learned model given.
FID is a set metric: it is computed per (data set, method) group of a split's test rows and
correlated with the groups' mean human score. A metric that cannot run here (weights missing) is
reported as such, never silently dropped. Correlations are the raw signed values, as in the paper
(SSIM correlates negatively with anonymity).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import AnonlensError
from ..io import atomic_writer, read_image, write_atomic
from ..learn.annotations import load_annotations
from ..metrics import create_metric, functional as F
from ..metrics.learned import LearnedScore, SemSimDistance
from . import pairs_from_csv, score_pairs
from .correlate import correlations
from .pairs import safe_join
from .score import ScoreOptions

__all__ = ["BenchmarkOptions", "BenchmarkResult", "find_split_tests", "run_benchmark"]

#: table column -> the label shown for it
PAIR_COLUMNS = {"psnr": "PSNR", "mse": "MSE", "ssim": "SSIM", "lpips": "LPIPS", "identity_distance": "identity distance"}


@dataclass(frozen=True)
class BenchmarkOptions:
    ha: str = "HA1"
    splits: tuple[str, ...] | None = None  # None: every split found
    metrics: tuple[str, ...] = ("psnr", "mse", "ssim", "lpips", "identity")
    fid: bool = True
    models: tuple[str, ...] = ()  # learned-metric checkpoints (HA1/HA2)
    semsim: tuple[str, ...] = ()  # SemSim checkpoints
    metric_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    resize: tuple[int, int] | None = None
    batch_size: int = 16
    min_group: int = 2  # FID needs at least this many pairs in a (data set, method) group


@dataclass
class BenchmarkResult:
    rows: list[dict[str, Any]]  # split, metric, n, spearman, kendall, pearson, note
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def find_split_tests(data_dir: str | os.PathLike, ha: str, splits: Sequence[str] | None = None) -> dict[str, Path]:
    base = Path(data_dir) / "dataset_splits" / ha
    if not base.is_dir():
        raise AnonlensError(f"no {base}: run `anonlens splits {data_dir}` first")
    found = {p.parent.name: p for p in sorted(base.glob("*/test.csv"))}
    if splits:
        missing = [s for s in splits if s not in found]
        if missing:
            raise AnonlensError(f"split(s) not found under {base}: {', '.join(missing)}. Found: {', '.join(found) or 'none'}")
        found = {s: found[s] for s in splits}
    if not found:
        raise AnonlensError(f"no <split>/test.csv under {base}")
    order = {"all": 0, "task-person": 1, "task-face": 2}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))


def _create_pair_metrics(options: BenchmarkOptions, notes: list[str]):
    opts = {name: dict(o) for name, o in options.metric_options}
    made, labels = [], dict(PAIR_COLUMNS)
    for name in options.metrics:
        try:
            made.append(create_metric(name, **opts.get(name, {})))
        except AnonlensError as exc:  # weights not available offline, typically
            notes.append(f"{name}: not computed: {exc}")
            labels.pop(name, None)
    for ckpt in options.models:
        col = f"learned:{Path(ckpt).with_suffix('').name}"
        made.append(LearnedScore(checkpoint=ckpt, column=col))
        labels[col] = col
    for ckpt in options.semsim:
        col = f"semsim:{Path(ckpt).with_suffix('').name}"
        made.append(SemSimDistance(checkpoint=ckpt, column=col))
        labels[col] = col
    return made, labels


def _fid_features(paths: Sequence[str], feature, batch: int = 16) -> dict[str, np.ndarray]:
    import torch

    out: dict[str, np.ndarray] = {}
    for s in range(0, len(paths), batch):
        chunk = paths[s : s + batch]
        imgs = []
        for p in chunk:
            im = torch.from_numpy(np.array(read_image(p).rgb)).permute(2, 0, 1).float().div(255)
            imgs.append(torch.nn.functional.interpolate(im[None], size=(299, 299), mode="bilinear", align_corners=False)[0])
        with torch.inference_mode():
            feats = feature(torch.stack(imgs)).double().cpu().numpy()
        out.update(dict(zip(chunk, feats)))
    return out


def run_benchmark(
    data_dir: str | os.PathLike,
    output: str | os.PathLike,
    options: BenchmarkOptions = BenchmarkOptions(),
    *,
    fid_feature=None,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkResult:
    """Score, correlate and write ``benchmark.md``, ``benchmark.csv`` and ``benchmark.png`` (plus
    the per-pair ``scores/``) to ``output``. ``fid_feature`` replaces the FID Inception network
    (any module ``(B, 3, 299, 299) -> (B, D)``)."""
    data_dir, out = Path(data_dir), Path(output)
    out.mkdir(parents=True, exist_ok=True)
    tests = find_split_tests(data_dir, options.ha, options.splits)
    frames = {s: load_annotations(p) for s, p in tests.items()}
    for df in frames.values():
        df["_orig"] = [str(safe_join(data_dir, str(v))) for v in df["original"]]
        df["_anon"] = [str(safe_join(data_dir, str(v))) for v in df["anonymized"]]
    union = pd.concat(frames.values()).drop_duplicates(subset=["_orig", "_anon"])
    pairs_csv = out / "scores" / "pairs.csv"
    pairs_csv.parent.mkdir(parents=True, exist_ok=True)
    rel = union[["original", "anonymized"]].astype(str)
    write_atomic(pairs_csv, rel.to_csv(index=False).encode())
    pairs = pairs_from_csv(pairs_csv, root=data_dir)
    bad = [p for p in pairs if p.error]
    if bad:
        raise AnonlensError(f"{len(bad)} pair(s) cannot be read, e.g. {bad[0].error}")
    notes: list[str] = []
    metrics, labels = _create_pair_metrics(options, notes)
    if progress:
        progress(f"scoring {len(pairs)} distinct pairs of {len(frames)} split(s)")
    result = score_pairs(pairs, out / "scores", ScoreOptions(metrics=(), resize=options.resize, batch_size=options.batch_size),
                         metrics=metrics)
    scores = pd.read_csv(result.table_csv)
    scores = scores.drop_duplicates(subset=["original", "anonymized"]).set_index(["original", "anonymized"])

    feats = None
    if options.fid:
        try:
            if fid_feature is None:
                from ..metrics.features import FIDInceptionV3

                fid_feature = FIDInceptionV3(**dict(dict(options.metric_options).get("fid", ())))
            if progress:
                progress("FID features")
            feats = _fid_features(sorted(set(union["_orig"]) | set(union["_anon"])), fid_feature)
        except AnonlensError as exc:
            notes.append(f"fid: not computed: {exc}")

    rows = []
    for split, df in frames.items():
        joined = scores.reindex(list(zip(df["_orig"], df["_anon"])))
        human = df["score_mean"].to_numpy(dtype=float)
        for col, label in labels.items():
            if col not in joined.columns:
                continue
            rows.append({"split": split, "metric": label, **correlations(pd.to_numeric(joined[col], errors="coerce").to_numpy(float), human)})
        if feats is not None:
            vals, hum = [], []
            gcols = [c for c in ("dataset", "method") if c in df.columns]
            for _, g in df.groupby(gcols) if gcols else [("all", df)]:
                if len(g) < max(2, options.min_group):
                    continue
                a = np.stack([feats[p] for p in g["_orig"]])
                b = np.stack([feats[p] for p in g["_anon"]])
                mu1, s1 = F.gaussian_stats(a)
                mu2, s2 = F.gaussian_stats(b)
                vals.append(F.frechet_distance(mu1, s1, mu2, s2))
                hum.append(float(g["score_mean"].mean()))
            r = correlations(np.array(vals), np.array(hum))
            r["note"] = (r["note"] + "; " if r["note"] else "") + f"per (data set, method) group, {len(vals)} groups"
            rows.append({"split": split, "metric": "FID", **r})
    res = BenchmarkResult(rows, notes)
    res.files = _write(res, out, options)
    return res


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2f}"


def _write(res: BenchmarkResult, out: Path, options: BenchmarkOptions) -> dict[str, Path]:
    df = pd.DataFrame(res.rows)
    files = {"csv": out / "benchmark.csv", "md": out / "benchmark.md", "png": out / "benchmark.png"}
    write_atomic(files["csv"], df.to_csv(index=False).encode())
    splits = list(dict.fromkeys(df["split"]))
    metrics = list(dict.fromkeys(df["metric"]))
    lines = [f"# {options.ha}: correlation with the human mean score (test rows of each split)", "",
             "| metric | " + " | ".join(f"{s} ρ | {s} τ" for s in splits) + " |",
             "|---|" + "---:|---:|" * len(splits)]
    for m in metrics:
        cells = []
        for s in splits:
            r = df[(df.split == s) & (df.metric == m)]
            cells += [_fmt(r.spearman.iloc[0]), _fmt(r.kendall.iloc[0])] if len(r) else ["", ""]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    n = {s: int(df[df.split == s].n.max()) for s in splits}
    lines += ["", "Rows per split: " + ", ".join(f"{s} {n[s]}" for s in splits) + ". FID: per (data set, method) group."]
    lines += [f"- {note}" for note in res.notes]
    write_atomic(files["md"], ("\n".join(lines) + "\n").encode())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) * max(1, len(splits)) / 2), 4), dpi=110)
    width = 0.8 / max(1, len(splits))
    for i, s in enumerate(splits):
        vals = [df[(df.split == s) & (df.metric == m)].spearman for m in metrics]
        ys = [float(v.iloc[0]) if len(v) and v.iloc[0] is not None and np.isfinite(v.iloc[0]) else 0.0 for v in vals]
        ax.bar(np.arange(len(metrics)) + i * width, ys, width, label=s)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(splits) - 1) / 2)
    ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("Spearman ρ with the human score")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"{options.ha}: metrics against people, per split")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_writer(files["png"]) as fh:
        fh.write(buf.getvalue())
    return files

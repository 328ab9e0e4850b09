"""Score (original, anonymized) pairs with any set of registered metrics, streaming.

Images are decoded in a small thread pool, grouped by size into batches for the tensor metrics,
and each pair's row is written to the output table as soon as it is complete; only the few values
needed for set-level statistics stay in memory. Memory therefore stays flat with the number of
pairs.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..engines.local import LocalEngine
from ..errors import AnonlensError
from ..identity import DLIB_MATCH_THRESHOLD
from ..io import DEFAULT_MAX_PIXELS, atomic_writer, is_video, read_image
from ..metrics import METRICS, GroupMetric, Metric, PairBatch, create_metric
from ..pool import MODELS
from ..stats import calibrate_threshold
from ..verify import check_pair, identity_figures, pair_checker
from ..video.io import paired_frames
from .pairs import Pair

__all__ = ["ScoreOptions", "ScoreResult", "score_pairs", "score_stream", "score_chunk", "chunk_metrics", "build_metrics", "reid_rate", "rank1_rate", "calibrate_threshold",
           "merge_states"]


@dataclass(frozen=True)
class ScoreOptions:
    metrics: tuple[str, ...] = ("mse", "psnr", "ssim")
    metric_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    batch_size: int = 16
    decode_threads: int = 2
    resize: tuple[int, int] | None = None  # (W, H): resize both images (aspect not kept), as the reference does
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    threshold: float = DLIB_MATCH_THRESHOLD
    #: the release gate's identity criterion for the identity columns (``rank1``, ``tau``, ``both``)
    criterion: str = "rank1"


#: the columns the release gate adds for the identity metric (:func:`gate_identity_columns`)
GATE_IDENTITY_COLUMNS = ["faces", "faces_measured", "faces_reidentified", "identity_tests", "identity_verdict"]
#: the key under which a row carries its face records to the set-level figures (never written)
_FACES = "_gate_faces"


def gate_identity_columns(batch: PairBatch, options: ScoreOptions) -> dict[str, list]:
    """The identity verdicts of a batch from the release gate itself (:mod:`anonlens.assess.gate`:
    the same detections, the same :func:`anonlens.reid.judge_image`), so that ``score``, ``check``,
    the report and the service give one answer: ``reidentified`` (a face of the image is; empty
    when the original has no face), the face counts, the identity tests applied, and the faces'
    part of the gate's verdict (``re-identified``, ``residual-face``, ``passed``, ``nothing-found``)."""
    checker = pair_checker(options.threshold, criterion=options.criterion)
    out: dict[str, list] = {c: [] for c in ["reidentified", *GATE_IDENTITY_COLUMNS, _FACES]}
    for orig, anon in zip(batch.original_images, batch.anonymized_images):
        faces, _ = check_pair(checker, orig, anon, text=False)
        tests = identity_figures(faces)["identity_tests"]
        reid = any(f["reidentified"] for f in faces)
        out["reidentified"].append(reid if faces else None)
        out["faces"].append(len(faces))
        out["faces_measured"].append(sum(f["measured"] for f in faces))
        out["faces_reidentified"].append(sum(f["reidentified"] for f in faces))
        out["identity_tests"].append("; ".join(f"{k}: {n}" for k, n in tests.items()))
        out["identity_verdict"].append("nothing-found" if not faces else "re-identified" if reid else "residual-face"
                                       if any(f["residual"] or not f["region_changed"] for f in faces) else "passed")
        out[_FACES].append([{k: f[k] for k in ("identity", "measured", "reidentified", "criterion", "tau", "tau_match")} for f in faces])
    return out


@dataclass
class ScoreResult:
    """What :func:`score_pairs` produced: the table's paths, group values, set-level summary."""

    table_csv: Path | None
    table_jsonl: Path | None
    groups: dict[str, dict[str, dict[str, Any]]]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    errors: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


@dataclass
class FramePair(Pair):
    """One sampled frame of a video pair, its pixels already decoded."""

    frames: tuple[np.ndarray | None, np.ndarray | None] = (None, None)


def _expand_videos(pairs: Sequence[Pair]) -> Iterable[Pair]:
    """Image pairs as they are; a video pair becomes its sampled frames (one per second, and the
    frames where a track of the run starts, ends or is filled in), decoded lazily, or one error."""
    for pair in pairs:
        if pair.error or not is_video(pair.anonymized):
            yield pair
            continue
        try:
            for index, orig, anon in paired_frames(pair.original, pair.anonymized, frames=pair.extra.get("frames", ())):
                yield FramePair(f"{pair.key}#frame={index}", pair.anonymized, pair.original, pair.groups,
                                {**{k: v for k, v in pair.extra.items() if k not in ("frames", "kept_text", "check_text")}, "frame": index},
                                frames=(orig, anon))
        except AnonlensError as exc:
            yield Pair(pair.key, pair.anonymized, pair.original, pair.groups, {}, str(exc))


def _load(pair: Pair, options: ScoreOptions) -> tuple[Pair, np.ndarray | None, np.ndarray | None, str | None]:
    if pair.error:
        return pair, None, None, pair.error
    try:
        if isinstance(pair, FramePair):
            orig, anon = pair.frames
            pair.frames = (None, None)
        else:
            anon = read_image(pair.anonymized, max_pixels=options.max_pixels).rgb
            orig = None if pair.original is None else read_image(pair.original, max_pixels=options.max_pixels).rgb
    except AnonlensError as exc:
        return pair, None, None, str(exc)
    if options.resize is not None:
        anon = cv2.resize(anon, options.resize, interpolation=cv2.INTER_AREA)
        orig = None if orig is None else cv2.resize(orig, options.resize, interpolation=cv2.INTER_AREA)
    elif orig is not None and orig.shape != anon.shape:
        return pair, None, None, (
            f"{pair.key}: original is {orig.shape[1]}x{orig.shape[0]}, anonymized {anon.shape[1]}x{anon.shape[0]}; "
            "use --resize WxH to compare at one size"
        )
    return pair, orig, anon, None


def _group_keys(pair: Pair) -> list[str]:
    keys = ["all"] + [f"{k}={v}" for k, v in sorted(pair.groups.items()) if k in ("dataset", "method")]
    if "dataset" in pair.groups and "method" in pair.groups:
        keys.append(f"dataset={pair.groups['dataset']},method={pair.groups['method']}")
    return keys


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def score_stream(pairs: Iterable[Pair], options: ScoreOptions, metrics: Sequence[Metric | GroupMetric]) -> Iterator[tuple]:
    """The scored rows ``(pair, values, error)`` of ``pairs`` (videos expanded to their sampled
    frames), in completion order: images are decoded in a small thread pool and grouped by size
    into batches for the tensor metrics; group metrics accumulate their features in place. The
    identity metric's face descriptors (biometric data) never leave this function: dropped after
    each batch, never in a row (rows cross processes and Ray's object store)."""
    pair_metrics = [m for m in metrics if isinstance(m, Metric)]
    group_metrics = [m for m in metrics if isinstance(m, GroupMetric)]
    identity = next((m for m in pair_metrics if m.name == "identity"), None)
    buckets: dict[tuple, list] = {}

    def flush(shape) -> Iterator[tuple]:
        items = buckets.pop(shape)
        batch = PairBatch(
            [a for _, _, a in items],
            None if items[0][1] is None else [o for _, o, _ in items],
            [p.key for p, _, _ in items],
        )
        columns_out: dict[str, list] = {}
        for m in pair_metrics:
            columns_out.update(m(batch))
        if identity is not None and batch.original_images is not None:
            columns_out.update(gate_identity_columns(batch, options))
        for gm in group_metrics:
            groups_of = [_group_keys(p) for p, _, _ in items]
            for g in sorted({g for gs in groups_of for g in gs}):
                idx = [i for i, gs in enumerate(groups_of) if g in gs]
                gm.update(g, batch.original[idx], batch.anonymized[idx])
        rows = []
        for i, (pair, _, _) in enumerate(items):
            rows.append((pair, {c: v[i] for c, v in columns_out.items()}, None))
        if identity is not None:  # its descriptors are dropped here
            identity.original_vectors.clear()
            identity.anonymized_vectors.clear()
        yield from rows

    with cf.ThreadPoolExecutor(max(1, options.decode_threads)) as pool:
        window: list[cf.Future] = []
        it = iter(_expand_videos(list(pairs)))
        exhausted = False
        while window or not exhausted:
            while not exhausted and len(window) < 4 * max(1, options.decode_threads) + options.batch_size:
                try:
                    window.append(pool.submit(_load, next(it), options))
                except StopIteration:
                    exhausted = True
            if not window:
                break
            pair, orig, anon, error = window.pop(0).result()
            if error:
                yield pair, {}, error
                continue
            shape = (anon.shape, orig is None)
            buckets.setdefault(shape, []).append((pair, orig, anon))
            if len(buckets[shape]) >= options.batch_size:
                yield from flush(shape)
        for shape in list(buckets):
            yield from flush(shape)


def _metric_specs(options: ScoreOptions) -> list[tuple[str, dict[str, Any]]]:
    """``(name, build options)`` of each metric ``options`` names."""
    opts = {name: dict(o) for name, o in options.metric_options}
    if "identity" in options.metrics:
        opts["identity"] = {"threshold": options.threshold, **opts.get("identity", {})}
    return [(name, opts.get(name, {})) for name in options.metrics]


def build_metrics(options: ScoreOptions) -> list[Metric | GroupMetric]:
    """The metrics ``options`` names, built with their options (one clear error for a bad one)."""
    return [create_metric(name, **kw) for name, kw in _metric_specs(options)]


MODELS.define("score-metrics", size=2)


def chunk_metrics(options: ScoreOptions) -> list[Metric | GroupMetric]:
    """The metrics of one scoring chunk: the stateless ones from the model pool (built once per
    process and options), the ``stateful`` ones (the identity metric's descriptors, the group
    metrics' features) new for every chunk, so that nothing of one chunk reaches the next (their
    networks are pooled where they are built)."""
    specs = _metric_specs(options)
    stateful = [getattr(METRICS.get(name).factory, "stateful", True) for name, _ in specs]
    shared = MODELS.get("score-metrics", options,
                        lambda: [None if s else create_metric(name, **kw) for (name, kw), s in zip(specs, stateful)])
    return [create_metric(name, **kw) if s else m for (name, kw), s, m in zip(specs, stateful, shared)]


def score_chunk(pairs: Sequence[Pair], options: ScoreOptions) -> tuple[list[tuple], dict[str, dict]]:
    """Score one chunk of pairs (for distributed engines) with :func:`chunk_metrics`: the rows of
    :func:`score_stream` and each group metric's collected state (see
    :meth:`GroupMetric.take_state`), to be merged on the driver."""
    metrics = chunk_metrics(options)
    rows = list(score_stream(pairs, options, metrics))
    states = {m.name: m.take_state() for m in metrics if isinstance(m, GroupMetric)}
    return rows, states


def merge_states(metrics: Sequence, states: dict[str, dict]) -> None:
    """Fold the group-metric states a remote chunk returned into ``metrics`` (by name)."""
    groups = {m.name: m for m in metrics if isinstance(m, GroupMetric)}
    for name, state in states.items():
        groups[name].merge_state(state)


def score_pairs(
    pairs: Sequence[Pair],
    output_dir: str | Path | None,
    options: ScoreOptions | None = None,
    *,
    metrics: Iterable[Metric | GroupMetric] | None = None,
    progress: Callable[[int], None] | None = None,
    engine: Any = None,
) -> ScoreResult:
    """Score ``pairs``; write ``scores.csv`` and ``scores.jsonl`` (one row per pair), ``groups.csv``
    and ``summary.json`` to ``output_dir`` (nothing is written when it is None). ``engine`` (see
    :mod:`anonlens.engines`) computes the rows; default: this process."""
    options = options or ScoreOptions()
    if metrics is None:
        metrics = build_metrics(options)
    metrics = list(metrics)
    no_original = any(p.original is None and not p.error for p in pairs)
    for m in metrics:
        if m.full_reference and no_original:
            raise AnonlensError(f"metric '{m.name}' needs the original images; give --original or a pairs CSV")
    pair_metrics = [m for m in metrics if isinstance(m, Metric)]
    group_metrics = [m for m in metrics if isinstance(m, GroupMetric)]

    videos = any(is_video(p.anonymized) for p in pairs)
    extra_cols = sorted({c for p in pairs for c in p.extra if c not in ("frames", "kept_text", "check_text")} | ({"frame"} if videos else set()))
    columns = ["key", "original", "anonymized", "dataset", "scope", "method", *extra_cols]
    for m in pair_metrics:
        columns += m.columns
        if m.name == "identity":
            columns += GATE_IDENTITY_COLUMNS
    columns.append("error")

    out = Path(output_dir) if output_dir is not None else None
    started = time.perf_counter()
    errors: list[dict[str, str]] = []
    keep: dict[str, list] = {"reidentified": [], "faces": []}
    identity = next((m for m in pair_metrics if m.name == "identity"), None)
    done = 0
    if engine is None:
        engine = LocalEngine()

    with contextlib.ExitStack() as stack:  # outputs appear atomically, and only if scoring finishes
        csv_fh = stack.enter_context(atomic_writer(out / "scores.csv")) if out else None
        jsonl_fh = stack.enter_context(atomic_writer(out / "scores.jsonl")) if out else None
        text = io.TextIOWrapper(csv_fh, encoding="utf-8", newline="") if csv_fh else None
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore") if text else None
        if writer:
            writer.writeheader()

        scored = engine.map_score(pairs, options, metrics, stream=score_stream, chunk=score_chunk, merge=merge_states)
        for pair, values, error in scored:
            faces = values.pop(_FACES, None)
            row = {
                "key": pair.key,
                "original": str(pair.original) if pair.original else "",
                "anonymized": str(pair.anonymized),
                **{g: pair.groups.get(g, "") for g in ("dataset", "scope", "method")},
                **pair.extra,
                **values,
                "error": error or "",
            }
            row = {k: _jsonable(v) for k, v in row.items()}
            if error:
                errors.append({"key": pair.key, "error": error})
            elif identity is not None:
                keep["reidentified"].append(values.get("reidentified"))
                keep["faces"] += faces or []
            if writer:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            if jsonl_fh:
                jsonl_fh.write(json.dumps(row, default=str).encode("utf-8") + b"\n")
            done += 1
            if progress:
                progress(done)
        if text:
            text.flush()
            text.detach()

    groups = {gm.name: gm.compute() for gm in group_metrics}
    summary: dict[str, Any] = {
        "pairs": done,
        "scored": done - len(errors),
        "failed": len(errors),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if identity is not None:
        summary.update(identity_summary(keep, threshold=options.threshold))
    info = [m.info() for m in metrics]
    result = ScoreResult(
        out / "scores.csv" if out else None, out / "scores.jsonl" if out else None, groups, summary, info, errors, columns
    )
    if out:
        _write_groups(out / "groups.csv", groups)
        with atomic_writer(out / "summary.json") as fh:
            fh.write(json.dumps({"summary": summary, "groups": groups, "metrics": info, "errors": errors, "engine": engine.describe()},
                                indent=2, default=str).encode())
    return result


def _write_groups(path: Path, groups: dict[str, dict[str, dict[str, Any]]]) -> None:
    rows = [{"metric": m, "group": g, **v} for m, gs in groups.items() for g, v in gs.items()]
    fields = ["metric", "group", "n", "value", "std", "error"]
    with atomic_writer(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        w = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        text.flush()
        text.detach()


# -- set-level identity statistics ---------------------------------------------------------------


def reid_rate(reidentified: Sequence[bool | None]) -> float | None:
    """Share of pairs whose face is still matched; pairs without a face in the original do not count."""
    flags = [bool(r) for r in reidentified if r is not None]
    return sum(flags) / len(flags) if flags else None


def rank1_rate(original_vectors: Sequence[np.ndarray | None], anonymized_vectors: Sequence[np.ndarray | None]) -> float | None:
    """Share of anonymized faces whose nearest original, in the gallery of all originals of the
    run, is their own source (rank-1 re-identification). Anonymized images where no face could be
    found count as not re-identified."""
    gallery_idx = [i for i, v in enumerate(original_vectors) if v is not None]
    if len(gallery_idx) < 2:
        return None
    gallery = np.stack([original_vectors[i] for i in gallery_idx])
    hits = 0
    for row, i in enumerate(gallery_idx):
        probe = anonymized_vectors[i]
        if probe is None:
            continue
        nearest = int(np.argmin(np.linalg.norm(gallery - probe, axis=1)))
        hits += nearest == row
    return hits / len(gallery_idx)


def identity_summary(keep: dict[str, list], *, threshold: float) -> dict[str, Any]:
    """The run's identity figures, from the release gate's face records with the gate's own
    function (:func:`anonlens.verify.identity_figures`): ``check`` gives the same numbers."""
    figures = identity_figures(keep["faces"])
    return {
        "identity_threshold": threshold,
        "faces_in_originals": figures["faces"],
        "images_reidentified": sum(1 for r in keep["reidentified"] if r),
        **figures,
    }

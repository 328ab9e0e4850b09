"""Anonymize many files: a plain per-file function, mapped by a local worker pool.

:func:`process_file` is a pure function of ``(FileTask, BatchOptions) -> record`` that never
raises for a bad image: the error goes into the record. That makes it safe to map with any
engine (:mod:`anonlens.engines`: the local process pool, Ray) without changes. :func:`run_batch` plans the
outputs, refuses unsafe layouts, takes the output folder's lock, checks what earlier runs left
there (see :mod:`anonlens.audit`), runs the tasks, journals every finished image (for
``--resume``) and writes the run's manifest into the audit folder beside the output folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from ._version import __version__
from .audit import AuditLayout, Journal, OutputLock, default_audit_dir, dumps_strict, load_prior, options_fingerprint, plan_start
from .audit.runs import TMP_NAME, PriorRun, existing_files
from .detectors import DETECTORS
from .edi import reid_curve
from .engines.local import LocalEngine
from .errors import AnonlensError, ImageReadError
from .extras import require_extra
from .io import (
    DEFAULT_MAX_PIXELS,
    FORMAT_BY_SUFFIX,
    SUFFIX_BY_FORMAT,
    UNSUPPORTED_IMAGE_SUFFIXES,
    atomic_writer,
    discover_inputs,
    hash_regular_file,
    is_video,
    is_within,
    max_input_bytes,
    read_regular_file,
    sha256_bytes,
    sniff_format,
    write_atomic,
)
from .pipeline import AnonymizeConfig, anonymize_encoded, anonymizer_loads, cached_anonymizer
from .video.anonymize import VideoOptions, anonymize_video

__all__ = ["BatchOptions", "FileTask", "plan_tasks", "process_file", "run_batch", "BatchReport", "check_output_dir", "effective_workers"]

Status = Literal["anonymized", "kept", "full-frame", "skipped", "resumed", "ignored", "failed"]
OK_STATUSES = {"anonymized", "kept", "full-frame", "skipped", "resumed", "ignored"}
_DONE = ("anonymized", "kept", "full-frame", "resumed")
#: what a file the decoder reported errors for (a damaged input) gets: review (written, listed,
#: exit code 3), accept (written, listed in the manifest) or fail (nothing written, exit code 1)
ON_DAMAGED = ("review", "accept", "fail")


@dataclass(frozen=True)
class BatchOptions:
    """Options of a batch run besides the per-image :class:`AnonymizeConfig`."""

    config: AnonymizeConfig = field(default_factory=AnonymizeConfig)
    keep_metadata: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    jpeg_quality: int = 95
    overwrite: bool = False
    resume: bool = False
    workers: int = 0  # 0: automatic (see effective_workers)
    threads_per_worker: int | None = None
    video: VideoOptions = field(default_factory=VideoOptions)
    on_damaged: str = "review"  # see ON_DAMAGED

    def __post_init__(self) -> None:
        if self.on_damaged not in ON_DAMAGED:
            raise AnonlensError(f"on_damaged (--on-damaged) must be one of {', '.join(ON_DAMAGED)}; got {self.on_damaged!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "config"}, "anonymize": self.config.to_dict()}


@dataclass(frozen=True)
class FileTask:
    """One input file and where its output goes. ``key`` is its path relative to its input root."""

    src: str
    dst: str
    key: str
    tmp_dir: str
    supported: bool = True
    explicit: bool = True
    note: str | None = None  # a planning problem (e.g. an output name collision): fail with it
    skip: str | None = None  # why the file is not read at all (link policy, not a regular file)
    renamed: str | None = None  # why the output's name differs from the input's
    source: str | None = None  # the key detectors look the image up by (region files), when not ``key``

    def base_record(self) -> dict[str, Any]:
        """The record's fields known before the file is read ("failed" until it succeeds)."""
        return {"input": self.src, "output": None, "key": self.key, "status": "failed"}

    def failed(self, error: str) -> dict[str, Any]:
        """The record of this task when it could not run at all (``error`` names the file and why)."""
        return {**self.base_record(), "error": error, "seconds": 0.0}


def process_file(task: FileTask, options: BatchOptions, on_frame: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Anonymize one file; return its manifest record. Never raises for a bad image.

    Fail closed: when reading, detection, the operator, encoding or the metadata check fails,
    nothing is written and the record says why. The output is encoded in the format its name
    says, whatever the input's name said; the format comes from the content.
    """
    rec = task.base_record()
    started = time.perf_counter()
    try:
        if task.skip:
            rec["status"] = "ignored"
            rec["reason"] = task.skip
            return rec
        if task.note:
            raise AnonlensError(task.note)
        if not task.supported:
            suffix = Path(task.src).suffix or "no extension"
            if task.explicit or suffix.lower() in UNSUPPORTED_IMAGE_SUFFIXES:
                raise ImageReadError(task.src, f"unsupported file type {suffix}; supported: jpg, png, bmp, tif, webp; "
                                               "videos: mp4, m4v, mov, mkv, avi, webm")
            rec["status"] = "ignored"
            rec["reason"] = f"not an image file type ({suffix})"
            return rec
        if is_video(task.src):
            return _process_video(task, options, rec, on_frame)
        data = read_regular_file(task.src, max_bytes=max_input_bytes(options.max_pixels))
        rec["input_sha256"] = sha256_bytes(data)
        if task.source is not None and task.source != task.key:
            rec["region_key"] = task.source
        made = anonymize_encoded(data, options.config, name=task.src, out_format=FORMAT_BY_SUFFIX[Path(task.dst).suffix.lower()],
                                 max_pixels=options.max_pixels, keep_metadata=options.keep_metadata, jpeg_quality=options.jpeg_quality,
                                 source=task.source or task.key, note_format_mismatch=task.renamed is None)
        damage = made.record.get("decode_errors")
        if damage and options.on_damaged == "fail":
            more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
            raise ImageReadError(task.src, f"damaged: {damage[0]}{more}; nothing written (--on-damaged fail)")
        if task.renamed:
            made.record["notes"] = [*made.record.get("notes", []), task.renamed]
        rec.update(made.record)
        if made.data is None:  # on_empty == "skip"
            return rec
        encoded = made.data
        write_atomic(task.dst, encoded, tmp_dir=task.tmp_dir)
        rec["output"] = task.dst
        rec["output_sha256"] = sha256_bytes(encoded)
    except AnonlensError as exc:
        rec["status"] = "failed"
        rec["error"] = str(exc) if isinstance(exc, ImageReadError) else f"{task.src}: {exc}"
    except MemoryError:
        rec["status"] = "failed"
        rec["error"] = f"{task.src}: out of memory (lower --max-pixels or --workers)"
    except Exception as exc:  # any other failure: fail closed for this image, keep the batch going
        rec["status"] = "failed"
        rec["error"] = f"{task.src}: {type(exc).__name__}: {exc}"
    finally:
        rec["seconds"] = round(time.perf_counter() - started, 4)
    return rec


def _process_video(task: FileTask, options: BatchOptions, rec: dict[str, Any], on_frame) -> dict[str, Any]:
    """One video (see :mod:`anonlens.video`); errors propagate to :func:`process_file`'s handlers."""
    require_extra("video", "reading videos")
    rec["input_sha256"] = hash_regular_file(task.src)
    anonymizer = cached_anonymizer(options.config)
    progress = (lambda done, total: on_frame(task.src, done, total)) if on_frame is not None else None
    result = anonymize_video(task.src, task.dst, anonymizer, options.video, tmp_dir=task.tmp_dir, on_empty=options.config.on_empty,
                             source=task.key, on_frame=progress, max_pixels=options.max_pixels, on_damaged=options.on_damaged)
    rec.update(anonymizer.describe())
    rec.update(result)
    if rec["status"] != "skipped":
        rec["output"] = task.dst
        rec["output_sha256"] = hash_regular_file(task.dst)
    return rec


# -- planning ----------------------------------------------------------------------------------


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """``output_dir`` if it can be the output folder; else a one-line :class:`AnonlensError`
    (a file, a dangling link, a path through a file)."""
    out = Path(output_dir)
    if out.is_symlink() and not out.exists():
        raise AnonlensError(f"output {out} is a dangling symbolic link (to {os.readlink(out)}); remove it or choose another -o")
    if out.exists() and not out.is_dir():
        raise AnonlensError(f"output {out} is a file, not a folder; -o names the folder the anonymized images go to")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise AnonlensError(f"output {out} cannot be created: {parent} is a file")
            break
    return out


def _check_layout(inputs: list[Path], out: Path, audit: Path) -> None:
    """Refuse outputs and records that would mix with the inputs, or records in the release."""
    if is_within(audit, out):
        raise AnonlensError(f"the audit folder {audit} is inside the output folder {out}: the release folder must hold "
                            "only anonymized images; choose an --audit folder outside it")
    for p in inputs:
        if not p.exists():
            if p.is_symlink():
                raise AnonlensError(f"input {p} is a dangling symbolic link (to {os.readlink(p)})")
            raise AnonlensError(f"input not found: {p}")
        if p.is_dir() and is_within(out, p):
            raise AnonlensError(f"refusing to write into the input folder: output {out} is inside input {p}; choose another -o")
        if is_within(p, out):
            raise AnonlensError(f"refusing to write around an input: output folder {out} contains input {p}; "
                                "choose an -o outside the inputs")
        if p.is_dir() and is_within(audit, p):
            raise AnonlensError(f"the audit folder {audit} is inside input {p}; choose another --audit")
        if is_within(p, audit):
            raise AnonlensError(f"the audit folder {audit} contains input {p}; choose another --audit")


def _sniffed(path: Path) -> str | None:
    try:
        return sniff_format(read_regular_file(path, head=32))
    except ImageReadError:
        return None


def plan_tasks(
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    tmp_dir: str | os.PathLike | None = None,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[FileTask]:
    """Map every input file to its output path, mirroring the input tree.

    Files inside a folder input keep their path relative to that folder; files named directly go
    to the top of ``output_dir``. A file whose name has no image extension but whose content is a
    supported image is anonymized too; its output gets the content's extension (and the record
    says so). Raises :class:`AnonlensError` when an input is missing; an output path claimed twice
    becomes a failing task. (:func:`run_batch` first refuses outputs inside or around an input.)
    """
    out = Path(output_dir)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise AnonlensError("no input given")
    tmp = str(tmp_dir if tmp_dir is not None else out / TMP_NAME)
    seen: dict[str, str] = {}
    tasks: list[FileTask] = []
    input_files = {str(p.resolve()) for p in inputs if p.is_file()}
    for f in discover_inputs(inputs, exclude=[out, *map(Path, exclude)]):
        dst = out / f.rel
        supported, renamed, unreadable = f.supported, None, None
        if f.skip is None and not supported and f.path.suffix.lower() not in UNSUPPORTED_IMAGE_SUFFIXES:
            fmt = _sniffed(f.path)
            if fmt in SUFFIX_BY_FORMAT:
                dst = dst.with_name(dst.name + SUFFIX_BY_FORMAT[fmt])
                supported = True
                renamed = f"the name has no image extension but the content is {fmt}: written as {dst.name}"
            elif fmt is not None:  # a photo anonlens cannot process must not pass unnoticed
                supported, unreadable = True, f"the content is {fmt}, which anonlens cannot anonymize; convert it first"
        note = unreadable
        resolved = str(dst.resolve())
        if f.skip is None and note is None:
            if resolved in seen:
                note = f"output {dst} would overwrite the output of {seen[resolved]}; rename one of the inputs"
            elif resolved == str(f.path.resolve()) or resolved in input_files:
                note = f"output {dst} is an input file; refusing to overwrite an input"
            else:
                seen[resolved] = str(f.path)
        tasks.append(FileTask(str(f.path), str(dst), f.rel, tmp, supported, f.explicit, note, f.skip, renamed))
    return tasks


# -- running -----------------------------------------------------------------------------------


_STATUSES = ("anonymized", "kept", "full-frame", "skipped", "resumed", "ignored", "failed")


@dataclass
class BatchReport:
    """Outcome of :func:`run_batch`. Holds counts and the lists a person must act on (failed
    images, images where nothing was found), not the records: those stream to the manifest, so
    memory does not grow with the number of images. :attr:`records` reads them back."""

    manifest_path: Path
    seconds: float = 0.0
    run_id: str = ""
    mode: str = "new"
    audit_dir: Path | None = None
    output_dir: Path | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STATUSES, 0))
    ignored: list[dict[str, Any]] = field(default_factory=list)  # {"input", "reason"}: never read
    replaced: list[dict[str, Any]] = field(default_factory=list)  # resume: outputs changed after their run, redone
    unmatched_regions: list[str] = field(default_factory=list)  # region-file keys that match no input
    removed: list[str] = field(default_factory=list)  # overwrite: the earlier run's outputs not rewritten, deleted
    foreign: list[str] = field(default_factory=list)  # files in the output folder no run wrote
    regions: int = 0
    #: videos among the files processed here, and their frames (the speed of a video run is in frames/s)
    videos: int = 0
    frames: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"input", "error"}
    nothing_found: list[str] = field(default_factory=list)  # inputs
    #: {"input", "errors"}: decoded with errors (damaged inputs), anonymized from what could be decoded
    damaged: list[dict[str, Any]] = field(default_factory=list)
    #: {"input", "boxes"}: outputs of a scope without text where the text review found text (a name tag identifies a person)
    text_found: list[dict[str, Any]] = field(default_factory=list)
    #: {"input", "boxes"}: a face scope's images with people whose head area holds no face (a back
    #: turned, a face hidden or missed)
    people_without_faces: list[dict[str, Any]] = field(default_factory=list)
    edi: list[dict[str, Any]] = field(default_factory=list)  # per EDI face: history, final state
    #: verification outcomes over all regions: passed / strengthened / masked, and faces found in outputs
    verification: dict[str, int] = field(default_factory=lambda: {"passed": 0, "strengthened": 0, "masked": 0, "found_by_verification": 0})

    def add(self, rec: dict[str, Any]) -> None:
        self.counts[rec["status"]] = self.counts.get(rec["status"], 0) + 1
        self.regions += len(rec.get("regions", []))
        video = rec.get("video")
        if isinstance(video, dict) and rec["status"] != "resumed":
            self.videos += 1
            self.frames += int(video.get("frames") or 0)
        per_frame = rec.get("regions_per_frame")  # a video: regions summed over its frames
        if per_frame:
            self.regions += per_frame["regions"]
            for action, n in per_frame["verification"].items():
                self.verification[action] = self.verification.get(action, 0) + n
        for region in rec.get("regions", []) + rec.get("full_frame", []):
            v = region.get("verification")
            if v is not None:
                self.verification[v["action"]] = self.verification.get(v["action"], 0) + 1
            self.verification["found_by_verification"] += region.get("found_by") == "verification"
        cfg = rec.get("edi") or {}
        # the dlib oracle stops at threshold + margin; a face that ends below it (on_fail=keep) is a warning
        limit = cfg["threshold"] + cfg.get("margin", 0.0) if cfg.get("oracle") == "dlib" and "threshold" in cfg else None
        for region in rec.get("regions", []):
            e = region.get("edi")
            if e is not None:
                within = limit is not None and e.get("identity_distance") is not None and e["identity_distance"] < limit
                below = within and e["identity_distance"] < cfg["threshold"]
                self.edi.append({"history": e["evidence_history"], "identified": e["identified"], "fallback": e["fallback"],
                                 "iterations": e["iterations"], "changed": e["changed_share_region"], "ssim_region": e.get("ssim_region"),
                                 "attribute_kept": e.get("attribute_kept"), "input": rec["input"], "box": region.get("box"),
                                 "distance": e.get("identity_distance"), "within_margin": within, "below_threshold": below})
        if rec["status"] == "failed":
            self.failed.append({"input": rec["input"], "error": rec.get("error")})
        if rec["status"] == "ignored":
            self.ignored.append({"input": rec["input"], "reason": rec.get("reason")})
        if rec.get("replaced"):
            self.replaced.append({"input": rec["input"], "output": rec.get("output"), "why": rec["replaced"]})
        if rec.get("nothing_found"):
            self.nothing_found.append(rec["input"])
        review = rec.get("text_review")
        if review and review.get("found") and rec["status"] != "failed":
            self.text_found.append({"input": rec["input"], "boxes": review["boxes"]})
        people = (rec.get("release_check") or {}).get("people_without_faces")
        if people and rec["status"] != "failed":
            self.people_without_faces.append({"input": rec["input"], "boxes": [p["box"] for p in people]})
        if rec.get("decode_errors") and rec["status"] != "failed":
            self.damaged.append({"input": rec["input"], "errors": rec["decode_errors"]})

    def lists(self) -> dict[str, list]:
        """What a person must read: the images where nothing was found, damaged (decoded with
        errors), with text left in the output (a scope without text), with people whose head holds
        no face found (a face scope), failed, not read; outputs
        redone or removed; region keys unused; files in the output folder no run wrote."""
        return {"nothing_found": self.nothing_found, "damaged": self.damaged, "text_found": self.text_found,
                "people_without_faces": self.people_without_faces, "failed": self.failed, "ignored": self.ignored,
                "replaced_outputs": self.replaced, "unmatched_region_keys": self.unmatched_regions,
                "removed_outputs": self.removed, "foreign_files": self.foreign}

    def verification_summary(self) -> dict[str, int]:
        return dict(self.verification)

    def count(self, *statuses: str) -> int:
        return sum(self.counts.get(s, 0) for s in statuses)

    @property
    def ok(self) -> bool:
        """No image failed, every region-file key matched an input, and the output folder holds
        nothing this run cannot account for."""
        return not (self.failed or self.unmatched_regions or self.foreign)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every image's record, read from the manifest (sorted by input path)."""
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))["images"]

    def edi_summary(self) -> dict[str, Any] | None:
        """Re-identification rate after each EDI iteration over all faces, and the final rate
        (after the fail-closed fallback), or None when EDI did not run."""
        if not self.edi:
            return None

        n = len(self.edi)
        ssims = [e["ssim_region"] for e in self.edi if e["ssim_region"] is not None]
        return {
            "faces": n,
            "reid_rate_per_iteration": [round(r, 6) for r in reid_curve([e["history"] for e in self.edi])],
            "final_reid_rate": round(sum(e["identified"] for e in self.edi) / n, 6),
            "fallbacks": sum(e["fallback"] for e in self.edi),
            "mean_iterations": round(sum(e["iterations"] for e in self.edi) / n, 3),
            "mean_changed_share": round(sum(e["changed"] for e in self.edi) / n, 4),
            "mean_ssim_region": round(sum(ssims) / len(ssims), 4) if ssims else None,
            "warnings": [{"input": e["input"], "box": e["box"], "distance": e["distance"],
                          "why": "fell back to the operator over the whole face" if e["fallback"] else
                          ("still re-identified (kept: on_fail=keep)" if e["below_threshold"] else "ended within the safety margin")}
                         for e in self.edi if e["fallback"] or e["within_margin"]],
            **({"attribute_agreement": round(sum(kept) / len(kept), 4)}
               if (kept := [e["attribute_kept"] for e in self.edi if e["attribute_kept"] is not None]) else {}),
        }

    def summary(self) -> dict[str, Any]:
        images = self.count(*[s for s in _STATUSES if s != "ignored"])
        return {
            "images": images,
            **{s: self.count(s) for s in _STATUSES},
            "nothing_found": len(self.nothing_found),
            "damaged": len(self.damaged),
            "text_found": len(self.text_found),
            "people_without_faces": len(self.people_without_faces),
            "regions": self.regions,
            "seconds": round(self.seconds, 2),
            "images_per_second": round(images / self.seconds, 3) if self.seconds > 0 else None,
            "videos": self.videos,
            "frames": self.frames,
            "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds > 0 and self.frames else None,
            "verification": self.verification_summary(),
            "replaced_outputs": len(self.replaced),
            "unmatched_region_keys": len(self.unmatched_regions),
            "removed_outputs": len(self.removed),
            "foreign_files": len(self.foreign),
            **({"edi": self.edi_summary()} if self.edi else {}),
        }


def effective_workers(requested: int, n_tasks: int, config: AnonymizeConfig) -> int:
    """``requested`` workers, or with 0: one process when the detector already uses every core
    itself (CenterFace on OpenVINO), else one per CPU core but no more than one per 8 images (a
    worker costs a second or two to start and load its models)."""
    if n_tasks <= 1:
        return 1
    if requested <= 0:
        name = config.detector_name
        if config.method == "edi":  # seconds of single-threaded identity checks per face
            requested = min(os.cpu_count() or 1, n_tasks)
        elif name is not None and getattr(DETECTORS.get(name).factory, "multithreaded", False):
            return 1
        else:
            requested = min(os.cpu_count() or 1, -(-n_tasks // 8))
    return max(1, min(int(requested), n_tasks))


def _precheck(task: FileTask, options: BatchOptions, prior: PriorRun | None) -> dict[str, Any] | None:
    """With ``--resume``: the record of a task the recorded run finished, after checking that its
    input is unchanged and its output is still the file that run wrote (else None: redo it; an
    output changed since is marked ``replaced``, a pending note the new record carries)."""
    if not options.resume or prior is None or task.skip or task.note or not task.supported:
        return None
    prev = prior.records.get(task.src)
    if not prev or prev.get("status") not in _DONE or not prev.get("output") or not prev.get("output_sha256"):
        return None
    try:
        current = hash_regular_file(task.src)
    except ImageReadError:
        return None
    if current != prev.get("input_sha256"):
        return None  # the input changed: anonymize it again
    try:
        written = hash_regular_file(prev["output"])
    except ImageReadError:
        return None  # the output is gone: make it again
    if written != prev["output_sha256"]:
        return {"_replace": f"the output {prev['output']} no longer matched the hash recorded by {prior.describe()} "
                            "(changed after that run); anonymized again"}
    kept = {k: v for k, v in prev.items() if k not in ("replaced", "resumed_from")}
    return {**kept, "status": "resumed", "resumed_from": prev.get("resumed_from") or prior.run_id}


def _new_run_id() -> str:
    """UTC time to the millisecond, then a random suffix: run ids sort in the order the runs began
    (two runs within one second included)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _adopt_legacy(out: Path, layout: AuditLayout) -> list[str]:
    """Move records a pre-0.3 run left inside the output folder into the audit folder."""
    moved = []
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in ("anonlens-manifest.json", "anonlens-assessment", ".anonlens"):
        src = out / name
        if src.exists():
            dst = layout.runs / f"legacy-{stamp}-{name.lstrip('.')}"
            layout.runs.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
            moved.append(str(dst))
    return moved


def run_batch(
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    options: BatchOptions | None = None,
    *,
    audit_dir: str | os.PathLike | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[str, int, int], None] | None = None,
    engine: Any = None,
) -> BatchReport:
    """Anonymize every image and video under ``inputs`` into ``output_dir``; see the module docstring.
    ``on_frame(video, done, total)`` reports a video's frames as they are written (one worker).
    ``engine`` maps the files (see :mod:`anonlens.engines`; default: the local process pool); it
    does not enter the options' fingerprint, so a run can be resumed on another engine.

    The records go to ``audit_dir`` (default: ``OUTPUT.anonlens-audit`` beside the output
    folder). ``progress`` is called with each finished record; ``on_start`` with the number of
    tasks. Raises :class:`AnonlensError` (before any image is touched) for unsafe layouts, a run
    refused by the folder's history (:class:`~anonlens.audit.RunRefused`) or a locked folder
    (:class:`~anonlens.audit.OutputLockedError`).
    """
    options = options or BatchOptions()
    if options.overwrite and options.resume:
        raise AnonlensError("--overwrite and --resume exclude each other")
    if engine is None:
        engine = LocalEngine()
    started = time.perf_counter()
    out = check_output_dir(output_dir)
    inputs = [Path(p) for p in inputs]
    layout = AuditLayout(Path(audit_dir) if audit_dir is not None else default_audit_dir(out))
    _check_layout(inputs, out, layout.root)
    anonymizer = cached_anonymizer(options.config)
    mode = "resume" if options.resume else "overwrite" if options.overwrite else "new"
    fingerprint = options_fingerprint(options.to_dict())
    with OutputLock(out, layout.lock_info):
        prior = load_prior(layout, out)
        plan_start(mode, prior, fingerprint, out)  # type: ignore[arg-type]
        nothing_yet = "nothing was written; free space there and run the command again"
        with layout.writing(layout.runs, nothing_yet):
            legacy = _adopt_legacy(out, layout) if mode != "new" else []
        tmp = layout.tmp if _same_device(out, layout.root) else out / TMP_NAME
        tasks = plan_tasks(inputs, out, tmp_dir=tmp, exclude=[layout.root])
        keys = [t.key for t in tasks if not t.skip]
        match = anonymizer.match_inputs(keys)
        if match.get("ambiguous"):
            raise AnonlensError("; ".join(match["ambiguous"]))
        sources = match.get("sources", {})
        tasks = [dataclasses.replace(t, source=sources[t.key]) if t.key in sources else t for t in tasks]
        with layout.writing(tmp, nothing_yet) if tmp == layout.tmp else contextlib.nullcontext():
            if tmp.exists():
                shutil.rmtree(tmp)  # temporary files of a killed run: never outputs
            tmp.mkdir(parents=True, exist_ok=True)
        run_id = _new_run_id()
        head = {"run_id": run_id, "mode": mode, "previous_run": None if prior is None else prior.run_id,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "fingerprint": fingerprint,
                "pid": os.getpid(), "inputs": [str(p) for p in inputs], "output_dir": str(out.absolute())}
        journal_path = layout.journal
        # the interrupted run's records were read into `prior`; this run journals afresh
        with layout.writing(layout.current, nothing_yet):
            write_atomic(layout.current, dumps_strict(head, indent=2).encode("utf-8"))
        with layout.writing(journal_path, nothing_yet):
            journal_path.unlink(missing_ok=True)
            journal = Journal(journal_path)
        report = BatchReport(layout.manifest, run_id=run_id, mode=mode, audit_dir=layout.root, output_dir=out)
        report.unmatched_regions = list(match.get("unmatched", []))
        if on_start:
            on_start(len(tasks))
        index: dict[str, int] = {}  # input -> offset of its (last) record in the journal
        outputs: dict[str, str] = {}  # input -> its output (resolved), for the leftover check
        replace_notes: dict[str, str] = {}

        def then() -> str:  # what a full audit disk mid-run leaves, and how the run is completed
            return (f"the {len(outputs)} output(s) made so far in {out} are anonymized and stay; once there is room, run the same "
                    "command with --resume: it completes the manifest from the journal (outputs verified, not redone)")

        def finish(rec: dict[str, Any]) -> None:
            if rec["input"] in replace_notes:
                rec["replaced"] = replace_notes[rec["input"]]
            if rec.get("output"):
                outputs[rec["input"]] = str(Path(rec["output"]).resolve())
            with layout.writing(journal_path, then):
                index[rec["input"]] = journal.append(rec)
            report.add(rec)
            if progress:
                progress(rec)

        todo: list[FileTask] = []
        try:
            for t in tasks:
                pre = _precheck(t, options, prior)
                if pre is not None and "_replace" in pre:
                    replace_notes[t.src] = pre["_replace"]
                    pre = None
                if pre is not None:
                    finish(pre)
                else:
                    todo.append(t)
            if todo:
                engine.map_files(todo, options, finish, on_frame, fn=process_file, loads=anonymizer_loads,
                                 workers=functools.partial(effective_workers, config=options.config))
        finally:
            journal.close()

        _account_for_leftovers(report, out, set(outputs.values()), prior, mode)
        report.seconds = time.perf_counter() - started
        report.failed.sort(key=lambda r: r["input"])
        report.nothing_found.sort()
        report.damaged.sort(key=lambda r: r["input"])
        report.text_found.sort(key=lambda r: r["input"])
        report.people_without_faces.sort(key=lambda r: r["input"])
        extra = {"engine": engine.describe(), **({"legacy_records_moved": legacy} if legacy else {})}
        history = write_manifest(report, options, head, journal_path, index, layout, extra=extra, then=then)
        shutil.rmtree(tmp, ignore_errors=True)
        journal_path.unlink(missing_ok=True)
        layout.current.unlink(missing_ok=True)
        with layout.writing(layout.history, "the manifest is complete (check and report can run); only the run history misses this run"):
            with open(layout.history, "a", encoding="utf-8") as fh:
                fh.write(dumps_strict(history) + "\n")
    return report


def _account_for_leftovers(report: BatchReport, out: Path, written: set[str], prior: PriorRun | None, mode: str) -> None:
    """Files in the output folder this run did not write: with ``--overwrite`` the earlier run's
    own outputs (path and hash as recorded) are removed; anything else is named as foreign (the
    run then fails: the folder is not a clean release)."""
    recorded = {str(Path(r["output"]).resolve()): r.get("output_sha256")
                for r in (prior.records.values() if prior else []) if r.get("output")}
    for rel in existing_files(out):
        path = out / rel
        resolved = str(path.resolve()) if not path.is_symlink() else str(path.absolute())
        if resolved in written:
            continue
        if mode == "overwrite" and resolved in recorded and not path.is_symlink():
            try:
                if hash_regular_file(path) == recorded[resolved]:
                    path.unlink()
                    report.removed.append(str(path))
                    continue
            except ImageReadError:
                pass
        report.foreign.append(str(path))


def write_manifest(
    report: BatchReport,
    options: BatchOptions,
    head: dict[str, Any],
    journal_path: Path,
    index: dict[str, int],
    layout: AuditLayout,
    *,
    extra: dict[str, Any] | None = None,
    then: Callable[[], str] | str = "run the same command with --resume to complete the manifest from the journal",
) -> dict[str, Any]:
    """Write the run's manifest (strict JSON) to ``runs/<run id>.json`` and ``manifest.json`` in
    the audit folder, atomically, streaming the records from the journal (sorted by input path,
    one record per line) so that memory stays flat however many images there are; return the
    run's line for ``history.jsonl``. A write that fails is an :class:`~anonlens.audit.AuditWriteError`
    ending with ``then`` (what the run leaves)."""
    finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    doc = {
        "anonlens_version": __version__,
        "run_id": head["run_id"],
        "mode": head["mode"],
        "previous_run": head["previous_run"],
        "created": head["started"],
        "finished": finished,
        "python": sys.version.split()[0],
        "inputs": head["inputs"],
        "output_dir": head["output_dir"],
        "audit_dir": str(layout.root.absolute()),
        "options": options.to_dict(),
        "fingerprint": head["fingerprint"],
        "summary": report.summary(),
        **report.lists(),
        **(extra or {}),
    }
    text = dumps_strict(doc, indent=2)
    run_path = layout.run_manifest(head["run_id"])
    with layout.writing(run_path, then), atomic_writer(run_path) as fh, open(journal_path, "rb") as journal:
        fh.write(text[: text.rfind("}")].rstrip().encode("utf-8") + b',\n  "images": [')
        for i, key in enumerate(sorted(index)):
            journal.seek(index[key])
            fh.write((b",\n    " if i else b"\n    ") + journal.readline().rstrip(b"\n"))
        fh.write(b"\n  ]\n}\n")
    with layout.writing(layout.manifest, then):
        write_atomic(layout.manifest, run_path.read_bytes())
    return {"run_id": head["run_id"], "mode": head["mode"], "started": head["started"], "finished": finished,
            "output_dir": head["output_dir"], "manifest": str(run_path.name),
            "counts": {k: v for k, v in report.summary().items() if isinstance(v, int) and v}}

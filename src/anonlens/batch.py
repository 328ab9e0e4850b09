"""Anonymize many files: a plain per-file function, mapped by a local worker pool.

:func:`process_file` is a pure function of ``(FileTask, BatchOptions) -> record`` that never
raises for a bad image: the error goes into the record. That makes it safe to map with any
engine (the local process pool here, Ray later) without changes. :func:`run_batch` plans the
outputs, refuses unsafe layouts, runs the tasks, journals every finished image (for ``resume``)
and writes the manifest atomically at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from ._version import __version__
from .errors import AnonlensError, ImageReadError
from .io import (
    DEFAULT_MAX_PIXELS,
    UNSUPPORTED_IMAGE_SUFFIXES,
    discover_inputs,
    atomic_writer,
    decode_image,
    encode_image,
    is_within,
    metadata_segments,
    sha256_bytes,
    write_atomic,
)
from .pipeline import AnonymizeConfig, cached_anonymizer

__all__ = ["BatchOptions", "FileTask", "plan_tasks", "process_file", "run_batch", "BatchReport", "STATE_DIR", "MANIFEST_NAME"]

STATE_DIR = ".anonlens"  # inside the output folder: journal and temporary files
MANIFEST_NAME = "anonlens-manifest.json"
Status = Literal["anonymized", "kept", "full-frame", "skipped", "exists", "resumed", "ignored", "failed"]
OK_STATUSES = {"anonymized", "kept", "full-frame", "skipped", "exists", "resumed", "ignored"}


@dataclass(frozen=True)
class BatchOptions:
    """Options of a batch run besides the per-image :class:`AnonymizeConfig`."""

    config: AnonymizeConfig = field(default_factory=AnonymizeConfig)
    keep_metadata: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    jpeg_quality: int = 95
    overwrite: bool = False
    resume: bool = False
    workers: int = 0  # 0: automatic (see _effective_workers)
    threads_per_worker: int | None = None


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


def _record_base(task: FileTask) -> dict[str, Any]:
    return {"input": task.src, "output": None, "key": task.key, "status": "failed"}


def process_file(task: FileTask, options: BatchOptions) -> dict[str, Any]:
    """Anonymize one file; return its manifest record. Never raises for a bad image.

    Fail closed: when reading, detection, the operator, encoding or the metadata check fails,
    nothing is written and the record says why.
    """
    rec = _record_base(task)
    started = time.perf_counter()
    try:
        if task.note:
            raise AnonlensError(task.note)
        if not task.supported:
            suffix = Path(task.src).suffix or "(none)"
            if task.explicit or suffix.lower() in UNSUPPORTED_IMAGE_SUFFIXES:
                raise ImageReadError(task.src, f"unsupported file type {suffix}; supported: jpg, png, bmp, tif, webp")
            rec["status"] = "ignored"
            rec["reason"] = f"not an image file type ({suffix})"
            return rec
        data = Path(task.src).read_bytes()
        rec["input_sha256"] = sha256_bytes(data)
        loaded = decode_image(data, name=task.src, max_pixels=options.max_pixels, keep_metadata=options.keep_metadata)
        rec["size"] = [int(loaded.rgb.shape[1]), int(loaded.rgb.shape[0])]
        if loaded.notes:
            rec["notes"] = loaded.notes
        anonymizer = cached_anonymizer(options.config)
        result = anonymizer(loaded.rgb, source=task.key)
        rec.update(result.record)
        rec["status"] = result.action
        rec["nothing_found"] = result.empty
        if result.image is None:  # on_empty == "skip"
            return rec
        encoded = encode_image(loaded, result.image, quality=options.jpeg_quality, keep_metadata=options.keep_metadata)
        leftover = metadata_segments(encoded)
        if leftover and not options.keep_metadata:
            raise AnonlensError(f"refusing to write: the encoded output still carries metadata ({', '.join(leftover)})")
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


# -- planning ----------------------------------------------------------------------------------


def plan_tasks(inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike) -> list[FileTask]:
    """Map every input file to its output path, mirroring the input tree.

    Files inside a folder input keep their path relative to that folder; files named directly go
    to the top of ``output_dir``. Raises :class:`AnonlensError` when the output folder is inside an
    input folder or an input is missing; an output path claimed twice becomes a failing task.
    """
    out = Path(output_dir)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise AnonlensError("no input given")
    for p in inputs:
        if not p.exists():
            raise AnonlensError(f"input not found: {p}")
        if p.is_dir() and is_within(out, p):
            raise AnonlensError(
                f"refusing to write into the input folder: output {out} is inside input {p}; choose another -o"
            )
    tmp_dir = str(out / STATE_DIR / "tmp")
    seen: dict[str, str] = {}
    tasks: list[FileTask] = []
    input_files = {str(p.resolve()) for p in inputs if p.is_file()}
    for f in discover_inputs(inputs, exclude=[out]):
        dst = out / f.rel
        note = None
        resolved = str(dst.resolve())
        if resolved in seen:
            note = f"output {dst} would overwrite the output of {seen[resolved]}; rename one of the inputs"
        elif resolved == str(f.path.resolve()) or resolved in input_files:
            note = f"output {dst} is an input file; refusing to overwrite an input"
        else:
            seen[resolved] = str(f.path)
        tasks.append(FileTask(str(f.path), str(dst), f.rel, tmp_dir, f.supported, f.explicit, note))
    return tasks


# -- running -----------------------------------------------------------------------------------


_STATUSES = ("anonymized", "kept", "full-frame", "skipped", "resumed", "exists", "ignored", "failed")


@dataclass
class BatchReport:
    """Outcome of :func:`run_batch`. Holds counts and the lists a person must act on (failed
    images, images where nothing was found), not the records: those stream to the manifest, so
    memory does not grow with the number of images. :attr:`records` reads them back."""

    manifest_path: Path
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STATUSES, 0))
    regions: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"input", "error"}
    nothing_found: list[str] = field(default_factory=list)  # inputs
    edi: list[dict[str, Any]] = field(default_factory=list)  # per EDI face: history, final state
    #: verification outcomes over all regions: passed / strengthened / masked, and faces found in outputs
    verification: dict[str, int] = field(default_factory=lambda: {"passed": 0, "strengthened": 0, "masked": 0, "found_by_verification": 0})

    def add(self, rec: dict[str, Any]) -> None:
        self.counts[rec["status"]] = self.counts.get(rec["status"], 0) + 1
        self.regions += len(rec.get("regions", []))
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
        if rec.get("nothing_found"):
            self.nothing_found.append(rec["input"])

    def verification_summary(self) -> dict[str, int]:
        return dict(self.verification)

    def count(self, *statuses: str) -> int:
        return sum(self.counts.get(s, 0) for s in statuses)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every image's record, read from the manifest (sorted by input path)."""
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))["images"]

    def edi_summary(self) -> dict[str, Any] | None:
        """Re-identification rate after each EDI iteration over all faces, and the final rate
        (after the fail-closed fallback), or None when EDI did not run."""
        if not self.edi:
            return None
        from .edi import reid_curve

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
            "regions": self.regions,
            "seconds": round(self.seconds, 2),
            "images_per_second": round(images / self.seconds, 3) if self.seconds > 0 else None,
            "verification": self.verification_summary(),
            **({"edi": self.edi_summary()} if self.edi else {}),
        }


def _effective_workers(requested: int, n_tasks: int, config: AnonymizeConfig) -> int:
    """``requested`` workers, or with 0: one process when the detector already uses every core
    itself (CenterFace on OpenVINO), else one per CPU core but no more than one per 8 images (a
    worker costs a second or two to start and load its models)."""
    if n_tasks <= 1:
        return 1
    if requested <= 0:
        from .detectors import DETECTORS

        name = config.detector_name
        if config.method == "edi":  # seconds of single-threaded identity checks per face
            requested = min(os.cpu_count() or 1, n_tasks)
        elif name is not None and getattr(DETECTORS.get(name).factory, "multithreaded", False):
            return 1
        else:
            requested = min(os.cpu_count() or 1, -(-n_tasks // 8))
    return max(1, min(int(requested), n_tasks))


def _worker_init(threads: int | None) -> None:
    from . import runtime

    runtime.set_num_threads(threads)


def _read_previous(out: Path) -> dict[str, dict[str, Any]]:
    """Records of earlier runs into ``out`` (manifest, then the journal of an interrupted run)."""
    previous: dict[str, dict[str, Any]] = {}
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        try:
            for r in json.loads(manifest.read_text(encoding="utf-8")).get("images", []):
                previous[r["input"]] = r
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    journal = out / STATE_DIR / "journal.jsonl"
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
                previous[r["input"]] = r
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash
    return previous


def _precheck(task: FileTask, options: BatchOptions, previous: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A record for a task that needs no work (existing output), or None to process it."""
    if not task.supported or task.note or not os.path.exists(task.dst):
        return None
    if options.overwrite:
        return None
    if options.resume:
        prev = previous.get(task.src)
        if prev and prev.get("output") and prev.get("status") in ("anonymized", "kept", "full-frame", "resumed"):
            try:
                current = sha256_bytes(Path(task.src).read_bytes())
            except OSError:
                return None
            if current == prev.get("input_sha256"):
                return {**prev, "status": "resumed"}
        return None  # output exists but was not finished by us with this input: redo it
    rec = _record_base(task)
    rec.update(status="exists", output=task.dst, reason="output exists; kept (use --overwrite to replace, --resume to continue)")
    return rec


def run_batch(
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    options: BatchOptions | None = None,
    *,
    manifest_path: str | os.PathLike | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> BatchReport:
    """Anonymize every image under ``inputs`` into ``output_dir``; see the module docstring.

    ``progress`` is called with each finished record; ``on_start`` with the number of tasks.
    """
    options = options or BatchOptions()
    started = time.perf_counter()
    out = Path(output_dir)
    tasks = plan_tasks(inputs, out)
    out.mkdir(parents=True, exist_ok=True)
    state = out / STATE_DIR
    tmp = state / "tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # temporary files of a killed run: never outputs
    tmp.mkdir(parents=True, exist_ok=True)
    previous = _read_previous(out) if options.resume else {}
    journal_path = state / "journal.jsonl"
    if not options.resume and journal_path.exists():
        journal_path.unlink()
    if on_start:
        on_start(len(tasks))

    report = BatchReport(Path(manifest_path) if manifest_path else out / MANIFEST_NAME)
    index: dict[str, int] = {}  # input -> offset of its (last) record in the journal
    journal = open(journal_path, "ab")

    def finish(rec: dict[str, Any]) -> None:
        index[rec["input"]] = journal.tell()
        journal.write(json.dumps(rec, default=str).encode("utf-8") + b"\n")
        journal.flush()
        report.add(rec)
        if progress:
            progress(rec)

    todo: list[FileTask] = []
    try:
        for t in tasks:
            pre = _precheck(t, options, previous)
            if pre is not None:
                finish(pre)
            else:
                todo.append(t)
        workers = _effective_workers(options.workers, len(todo), options.config)
        if workers == 1:
            if options.threads_per_worker is not None:
                _worker_init(options.threads_per_worker)
            for t in todo:
                finish(process_file(t, options))
        else:
            threads = options.threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as pool:
                pending: set[cf.Future] = set()
                it = iter(todo)
                for t in it:
                    pending.add(pool.submit(process_file, t, options))
                    if len(pending) >= 2 * workers:
                        done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                        for fut in done:
                            finish(fut.result())
                for fut in cf.as_completed(pending):
                    finish(fut.result())
    finally:
        journal.close()

    report.seconds = time.perf_counter() - started
    report.failed.sort(key=lambda r: r["input"])
    report.nothing_found.sort()
    write_manifest(report, options, journal_path, index, inputs=[str(p) for p in inputs], output_dir=str(out))
    shutil.rmtree(tmp, ignore_errors=True)
    journal_path.unlink(missing_ok=True)
    try:
        state.rmdir()
    except OSError:
        pass
    return report


def write_manifest(
    report: BatchReport,
    options: BatchOptions,
    journal_path: Path,
    index: dict[str, int],
    *,
    inputs: list[str],
    output_dir: str,
) -> None:
    """Write the run's manifest atomically, streaming the records from the journal (sorted by
    input path, one record per line) so that memory stays flat however many images there are."""
    head = {
        "anonlens_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "inputs": inputs,
        "output_dir": output_dir,
        "options": {
            **{k: v for k, v in asdict(options).items() if k != "config"},
            "anonymize": options.config.to_dict(),
        },
        "summary": report.summary(),
        "nothing_found": report.nothing_found,
        "failed": report.failed,
    }
    text = json.dumps(head, indent=2, default=str)
    with atomic_writer(report.manifest_path) as fh, open(journal_path, "rb") as journal:
        fh.write(text[: text.rfind("}")].rstrip().encode("utf-8") + b',\n  "images": [')
        for i, key in enumerate(sorted(index)):
            journal.seek(index[key])
            fh.write((b",\n    " if i else b"\n    ") + journal.readline().rstrip(b"\n"))
        fh.write(b"\n  ]\n}\n")

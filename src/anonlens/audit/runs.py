"""What earlier runs left in an output folder, and whether a new run may start there.

Policy (docs/publish.md, "Runs and the audit trail"): a run goes into an empty (or new) folder. A
folder that holds anything is refused unless ``--resume`` (continue the recorded run: only with
the same options, every kept output re-verified against its recorded hash) or ``--overwrite``
(replace it: the earlier run's outputs this run does not rewrite are removed, files no run wrote
are named and fail the run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import AnonlensError
from .layout import LEGACY_MANIFEST, AuditLayout, dumps_strict

__all__ = ["Journal", "PriorRun", "RunRefused", "load_prior", "plan_start", "options_fingerprint", "diff_options", "existing_files",
           "TMP_NAME"]

Mode = Literal["new", "resume", "overwrite"]
#: temporary files go here when the audit folder is on another file system than the output
TMP_NAME = ".anonlens-tmp"


class RunRefused(AnonlensError):
    """A run may not start in this output folder as asked (exit code 2)."""


class Journal:
    """The running run's records, one strict-JSON line each, flushed as each file finishes: what
    ``--resume`` continues, and what the manifest is streamed from at the end."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = open(self.path, "ab")

    def append(self, rec: dict[str, Any]) -> int:
        """Write ``rec``; return the offset of its line."""
        offset = self._fh.tell()
        self._fh.write(dumps_strict(rec).encode("utf-8") + b"\n")
        self._fh.flush()
        return offset

    def close(self) -> None:
        """Close; a line the disk had no room for is dropped (``--resume`` redoes its file)."""
        try:
            self._fh.close()
        except OSError:
            pass


@dataclass
class PriorRun:
    """The last run recorded for an output folder."""

    run_id: str | None
    options: dict[str, Any] | None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # by input path
    interrupted: bool = False
    where: str = ""
    started: str | None = None

    def describe(self) -> str:
        state = "interrupted run" if self.interrupted else "run"
        op = ((self.options or {}).get("anonymize") or {}).get("operator")
        return f"{state} {self.run_id or '(legacy)'}" + (f", operator {op}" if op else "") + (f", started {self.started}" if self.started else "")


def options_fingerprint(options: dict[str, Any]) -> dict[str, Any]:
    """The options that decide what an output looks like (not how fast it is made nor how the
    folder is treated): what ``--resume`` compares."""
    ignore = {"overwrite", "resume", "workers", "threads_per_worker"}
    return {k: v for k, v in options.items() if k not in ignore}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def diff_options(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``["key: recorded -> now", ...]`` for every option that differs (nested keys dotted)."""
    a, b = _flatten(json.loads(json.dumps(recorded, default=str))), _flatten(json.loads(json.dumps(now, default=str)))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def load_prior(layout: AuditLayout, output_dir: Path) -> PriorRun | None:
    """The run recorded for ``output_dir``: an interrupted one (``run.json`` and its journal) first,
    else the last finished one (``manifest.json``), else a pre-0.3 manifest inside the folder."""
    current = _read_json(layout.current) if layout.current.is_file() else None
    if current is not None:
        records: dict[str, dict[str, Any]] = {}
        if layout.journal.is_file():
            for line in layout.journal.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    r = json.loads(line)
                    records[r["input"]] = r
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
        return PriorRun(current.get("run_id"), current.get("fingerprint"), records, True, str(layout.current), current.get("started"))
    for path, legacy in ((layout.manifest, False), (output_dir / LEGACY_MANIFEST, True)):
        doc = _read_json(path) if path.is_file() else None
        if doc is None:
            continue
        recs = {r["input"]: r for r in doc.get("images", []) if isinstance(r, dict) and "input" in r}
        fingerprint = doc.get("fingerprint") or options_fingerprint(doc.get("options") or {})
        return PriorRun(None if legacy else doc.get("run_id"), fingerprint, recs, False, str(path), doc.get("created"))
    return None


def existing_files(output_dir: Path, limit: int | None = None) -> list[str]:
    """Paths (relative, sorted) of the files and links in ``output_dir``, anonlens's temporary
    folder left out."""
    found: list[str] = []
    if not output_dir.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(output_dir):
        dirnames[:] = sorted(d for d in dirnames if not (dirpath == str(output_dir) and d == TMP_NAME))
        here = Path(dirpath)
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            found.append((here / name).relative_to(output_dir).as_posix())
            if limit is not None and len(found) >= limit:
                return found
    return found


def plan_start(mode: Mode, prior: PriorRun | None, fingerprint: dict[str, Any], output_dir: Path) -> None:
    """Raise :class:`RunRefused` when a run in ``mode`` may not start in ``output_dir``."""
    existing = existing_files(output_dir, limit=4)
    shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
    if mode == "overwrite":
        return
    if mode == "new":
        if not existing:
            return
        if prior is not None:
            hint = "--resume to continue it" + (" (same options only)" if not prior.interrupted else "") + ", --overwrite to replace it"
            raise RunRefused(f"{output_dir} already holds the outputs of an earlier {prior.describe()} ({shown}); "
                             f"anonlens never mixes runs in one folder: pass {hint}, or choose another -o")
        raise RunRefused(f"{output_dir} is not empty ({shown}) and no anonlens run is recorded for it; "
                         "choose a new or empty folder, or pass --overwrite to replace its files")
    # resume
    if prior is None:
        if existing:
            raise RunRefused(f"nothing to resume in {output_dir}: it holds files ({shown}) but no anonlens run is recorded for it")
        return
    if prior.options is None:
        raise RunRefused(f"cannot resume the {prior.describe()}: its options are not recorded ({prior.where}); use --overwrite")
    diffs = diff_options(prior.options, fingerprint)
    if diffs:
        raise RunRefused(f"--resume continues the {prior.describe()} only with the same options; these differ: "
                         + "; ".join(diffs) + ". Use --overwrite to redo the folder with the new options, or another -o")

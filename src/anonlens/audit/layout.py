"""Where a run's records live, how they are found again, and strict JSON for them."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import AnonlensError
from ..io import write_atomic

__all__ = ["AUDIT_SUFFIX", "AuditLayout", "AuditWriteError", "default_audit_dir", "find_manifest", "strict_json", "dumps_strict",
           "LEGACY_MANIFEST"]

AUDIT_SUFFIX = ".anonlens-audit"
#: where manifests lived before 0.3 (inside the output folder); still read, never written
LEGACY_MANIFEST = "anonlens-manifest.json"


def default_audit_dir(output_dir: str | os.PathLike) -> Path:
    """``OUTPUT.anonlens-audit`` beside ``OUTPUT`` (same parent folder)."""
    out = Path(os.path.abspath(output_dir))
    if out.parent == out:
        raise AnonlensError(f"cannot use {out} as the output folder; choose a folder below it")
    return out.parent / (out.name + AUDIT_SUFFIX)


class AuditWriteError(AnonlensError):
    """The audit folder cannot be written (disk full, read-only, no permission): one line naming
    the folder, the file and the problem, and what happens to the run (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class AuditLayout:
    """The files of one audit folder."""

    root: Path

    @contextlib.contextmanager
    def writing(self, what: str | os.PathLike, then: str | Callable[[], str]) -> Iterator[None]:
        """Turn an :class:`OSError` in the block (writing ``what`` into this folder) into an
        :class:`AuditWriteError`: ``audit folder ROOT: cannot write WHAT: PROBLEM; THEN`` (``then``:
        what the run leaves, or a function that tells it when the error happens)."""
        try:
            yield
        except OSError as exc:
            name = os.path.relpath(what, self.root) if os.path.isabs(what) else str(what)
            after = then() if callable(then) else then
            raise AuditWriteError(f"audit folder {self.root}: cannot write {name}: {exc.strerror or exc}; {after}") from None

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def history(self) -> Path:
        return self.root / "history.jsonl"

    @property
    def current(self) -> Path:
        return self.root / "run.json"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def assessment(self) -> Path:
        return self.root / "assessment"

    @property
    def lock_info(self) -> Path:
        return self.root / "lock.json"

    def run_manifest(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def amend(self, run_id: str, **fields: Any) -> None:
        """Add ``fields`` to the run's manifest (``runs/<run id>.json``) and, when it is still the
        latest, to ``manifest.json``; both rewritten atomically as strict JSON."""
        for path in (self.run_manifest(run_id), self.manifest):
            if not path.is_file():
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("run_id") != run_id:
                continue
            doc.update(fields)
            write_atomic(path, dumps_strict(doc, indent=2).encode("utf-8"))


def find_manifest(path: str | os.PathLike) -> Path:
    """The manifest for ``path``: a manifest file itself, an audit folder, an output folder (its
    ``OUTPUT.anonlens-audit`` beside it), or an assessment folder inside an audit folder. Raises
    :class:`AnonlensError` saying where it looked."""
    p = Path(path)
    if p.is_file():
        return p
    candidates = [p / "manifest.json", p.parent / "manifest.json" if p.name == "assessment" else None]
    try:
        candidates.append(default_audit_dir(p) / "manifest.json")
    except AnonlensError:
        pass
    candidates.append(p / LEGACY_MANIFEST)
    for c in candidates:
        if c is not None and c.is_file():
            return c
    for c in candidates[:-1]:  # an audit folder whose run did not finish (killed, or its disk full)
        if c is not None and (c.parent / "run.json").is_file():
            raise AnonlensError(f"the run recorded in {c.parent} did not finish: its manifest is not written yet; run the same "
                                "`anonlens anonymize` command with --resume to complete it from the journal (outputs "
                                "already made are verified, not redone)")
    raise AnonlensError(_no_run_hint(p))


def _no_run_hint(p: Path) -> str:
    """Why ``p`` has no manifest, and the exact command to run instead (one line)."""
    if not p.exists():
        return f"{p} does not exist"
    for parent in p.resolve().parents:  # a folder inside a release folder: the run is recorded for that folder
        try:
            if (default_audit_dir(parent) / "manifest.json").is_file():
                return (f"{p} is inside {parent}, the release folder of an anonlens run: check that folder "
                        f"(`anonlens check {shlex.quote(str(parent))}`), or pass --original")
        except AnonlensError:
            continue
    here = shlex.quote(str(p))
    made = shlex.quote(f"{str(p).rstrip('/')}-anonymized")
    return (f"no anonlens run is recorded for {p}: if it holds anonymized images, pair them with their originals "
            f"(`anonlens check {here} --original ORIGINALS`); if it holds the originals, anonymize them first "
            f"(`anonlens anonymize {here} -o {made}`, then `anonlens check {made}`)")


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None and numpy scalars and
    arrays made plain, so that it serialises as strict JSON (RFC 8259 has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return strict_json(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity (see :func:`strict_json`)."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)

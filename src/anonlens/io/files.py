"""File-system helpers: atomic writes, hashing, and finding input images."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from .images import SUPPORTED_SUFFIXES

__all__ = ["atomic_writer", "write_atomic", "sha256_bytes", "InputFile", "discover_inputs", "is_within"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, *, tmp_dir: str | os.PathLike | None = None) -> Iterator[BinaryIO]:
    """Open ``path`` for writing so that it either gets everything written or does not change.

    The bytes go to a temporary file on the same file system (``tmp_dir`` or the target's
    folder), are flushed to disk, and the file is renamed over ``path`` in one step when the
    block ends without an exception. A process killed midway leaves at most a temporary
    ``.anonlens-*.part`` file, never a partial ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tmp_dir) if tmp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".anonlens-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomic(path: str | os.PathLike, data: bytes, *, tmp_dir: str | os.PathLike | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, tmp_dir=tmp_dir) as fh:
        fh.write(data)


def is_within(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or inside it (both resolved)."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class InputFile:
    """One file to process: where it is, its key relative to its input root, and whether it was
    named explicitly (explicit files that are not images are errors; in folders they are listed
    as ignored)."""

    path: Path
    rel: str
    explicit: bool

    @property
    def supported(self) -> bool:
        return self.path.suffix.lower() in SUPPORTED_SUFFIXES


def discover_inputs(inputs: Iterable[str | os.PathLike], *, exclude: Iterable[Path] = ()) -> Iterator[InputFile]:
    """Yield the files under ``inputs`` (files, or folders walked recursively in sorted order).

    Hidden files and folders (name starting with '.') are skipped, symbolic links to folders are
    not followed, and anything under ``exclude`` is left out.
    """
    excluded = [Path(e).resolve() for e in exclude]
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                here = Path(dirpath)
                dirnames[:] = sorted(
                    d for d in dirnames if not d.startswith(".") and not any(is_within(here / d, e) for e in excluded)
                )
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    p = here / name
                    yield InputFile(p, p.relative_to(root).as_posix(), explicit=False)
        else:
            yield InputFile(root, root.name, explicit=True)

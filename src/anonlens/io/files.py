"""File-system helpers: atomic writes, hashing, reading only regular files, and finding inputs.

Symbolic-link policy (documented in docs/publish.md): a link named on the command line is followed;
inside an input folder a link to a file is followed only when the file lies inside that same
folder; a link to a folder is never followed (when its target is inside the input folder, its
files are read there, under their own path; so no loops). Links that point outside the folder or
nowhere, and anything that is not a regular file (named pipes, sockets, devices), are never read:
they are listed with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ..errors import AnonlensError, ImageReadError
from .formats import SUPPORTED_SUFFIXES, is_video

__all__ = [
    "atomic_writer",
    "write_atomic",
    "sha256_bytes",
    "InputFile",
    "discover_inputs",
    "is_within",
    "read_regular_file",
    "file_kind",
    "hash_regular_file",
]


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
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is ("a named pipe", "a socket", ...)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def _open_regular(path: str | os.PathLike, *, max_bytes: int | None = None) -> Iterator[BinaryIO]:
    """``path`` opened for reading, only when it is a regular file (of at most ``max_bytes``).

    Opened non-blocking and checked on the open descriptor, so a named pipe never hangs the
    batch and a device such as ``/dev/zero`` is never read, even if the path is swapped between
    a check and the read. Errors are :class:`ImageReadError` naming the file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        target = os.readlink(path) if os.path.islink(path) else None
        raise ImageReadError(path, f"dangling symbolic link to {target}" if target else "cannot read: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    try:  # checked on the raw descriptor: a folder cannot even be wrapped in a file object
        st = os.fstat(fd)
        kind = file_kind(st.st_mode)
        if kind == "a folder":
            raise ImageReadError(path, "is a folder, not a file")
        if kind is not None:
            raise ImageReadError(path, f"not a regular file ({kind}); not read")
        if max_bytes is not None and st.st_size > max_bytes:
            raise ImageReadError(path, f"{st.st_size:,} bytes is over the limit of {max_bytes:,} (raise --max-pixels)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb", closefd=True) as fh:
        try:
            yield fh
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise ImageReadError(path, "is a folder, not a file") from None
            raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None


def read_regular_file(path: str | os.PathLike, *, max_bytes: int | None = None, head: int | None = None) -> bytes:
    """The bytes of ``path`` (the first ``head`` bytes if given), which must be a regular file
    (see :func:`_open_regular`); files over ``max_bytes`` are refused before reading."""
    with _open_regular(path, max_bytes=None if head is not None else max_bytes) as fh:
        return fh.read(head) if head is not None else fh.read()


def hash_regular_file(path: str | os.PathLike) -> str:
    """sha256 of a regular file, read in 1 MiB chunks (videos: never whole in memory)."""
    digest = hashlib.sha256()
    with _open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class InputFile:
    """One file found under the inputs: where it is, its key (path relative to its input root),
    whether it was named explicitly (explicit files that are not images are errors; in folders
    they are listed as ignored), and ``skip``: why it is not read at all (link policy, not a
    regular file), or None."""

    path: Path
    rel: str
    explicit: bool
    skip: str | None = None

    @property
    def supported(self) -> bool:
        return self.path.suffix.lower() in SUPPORTED_SUFFIXES or is_video(self.path)


def _link_problem(p: Path, root_real: Path) -> str | None:
    """Why the symbolic link ``p`` inside the input folder is not followed, or None."""
    target = os.readlink(p)
    real = Path(os.path.realpath(p))
    if not real.exists():
        return f"dangling symbolic link (to {target}); not followed"
    try:
        real.relative_to(root_real)
    except ValueError:
        return f"symbolic link to {real}, outside the input folder; not followed (name the target itself to include it)"
    return None


def discover_inputs(inputs: Iterable[str | os.PathLike], *, exclude: Iterable[Path] = ()) -> Iterator[InputFile]:
    """Yield the files under ``inputs`` (files, or folders walked recursively in sorted order).

    Hidden files and folders (name starting with '.') are left out, so is anything under
    ``exclude``. Links follow the policy of the module docstring; what is not read is yielded
    with ``skip`` set. Raises :class:`AnonlensError` for a named input that does not exist.
    """
    excluded = [Path(e).resolve() for e in exclude]
    for item in inputs:
        root = Path(item)
        if not root.exists():
            if root.is_symlink():
                raise AnonlensError(f"input {root} is a dangling symbolic link (to {os.readlink(root)})")
            raise AnonlensError(f"input not found: {root}")
        if not root.is_dir():
            yield InputFile(root, root.name, explicit=True)
            continue
        root_real = root.resolve()
        stack = [(root, "")]
        while stack:
            here, prefix = stack.pop()
            try:
                entries = sorted(os.scandir(here), key=lambda e: e.name)
            except OSError as exc:
                yield InputFile(here, prefix.rstrip("/") or ".", False, f"folder not readable: {exc.strerror or exc}")
                continue
            subdirs = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                p = Path(entry.path)
                rel = prefix + entry.name
                if any(is_within(p, e) for e in excluded):
                    continue
                if entry.is_symlink():
                    problem = _link_problem(p, root_real)
                    if problem is not None:
                        yield InputFile(p, rel, False, problem)
                        continue
                try:
                    st = p.stat()
                except OSError as exc:
                    yield InputFile(p, rel, False, f"cannot stat: {exc.strerror or exc}")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if entry.is_symlink():  # its target is inside this folder: read there, under its own path
                        yield InputFile(p, rel, False, f"symbolic link to the folder {p.resolve()} inside the input folder; "
                                                       "not followed (its files are read under their own path)")
                        continue
                    subdirs.append((p, rel + "/"))
                    continue
                kind = file_kind(st.st_mode)
                yield InputFile(p, rel, False, None if kind is None else f"not a regular file ({kind}); not read")
            stack.extend(reversed(subdirs))

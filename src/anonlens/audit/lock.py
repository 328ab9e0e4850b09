"""One run at a time per output folder: an exclusive lock on the folder itself.

``flock`` on the output folder's descriptor: the kernel drops it when the process ends, however
it ends (``kill -9`` included), so a crashed run never leaves a stale lock. Who holds it (pid,
host, start, command) is written to the audit folder for the refusal message.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path

from ..errors import AnonlensError
from .layout import AuditWriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputLock", "OutputLockedError"]


class OutputLockedError(AnonlensError):
    """Another anonlens run is writing into the same output folder."""


class OutputLock:
    """Context manager: hold the exclusive lock on ``output_dir`` (created if missing)."""

    def __init__(self, output_dir: str | os.PathLike, info_path: str | os.PathLike):
        self.output_dir = Path(output_dir)
        self.info_path = Path(info_path)
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.output_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise AnonlensError(f"cannot use output folder {self.output_dir}: {exc.strerror or exc}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputLockedError(self._held_by()) from None
        self._fd = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        try:
            self.info_path.parent.mkdir(parents=True, exist_ok=True)
            self.info_path.write_text(json.dumps(holder) + "\n", encoding="utf-8")
        except OSError as exc:
            self.release()
            raise AuditWriteError(f"audit folder {self.info_path.parent}: cannot write {self.info_path.name}: "
                                  f"{exc.strerror or exc}; nothing was written") from None

    def _held_by(self) -> str:
        try:
            h = json.loads(self.info_path.read_text(encoding="utf-8"))
            who = f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another process"
        return f"another anonlens run is writing into {self.output_dir} ({who}); wait for it to finish, or choose another -o"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.info_path.unlink(missing_ok=True)
        except OSError:
            pass
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

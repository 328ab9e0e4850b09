"""The Ray engine: the per-file function and the per-chunk scoring on a Ray cluster.

The driver (the ``anonlens`` process) plans, takes the output folder's lock, journals every record
the workers return and writes the manifest, exactly as with the local engine; the workers run
the function the caller maps (:func:`anonlens.batch.process_file` for a batch) on a few files per task (models load once per worker process:
the anonymizer is cached per process) and write each output atomically on the shared file system.

Faults: Ray retries a task whose worker died (``max_retries`` times). A batch that still fails is
split into one task per file, so that one file that kills its worker cannot take the others down;
a file whose own task fails that often is recorded as failed, by name, with the reason, and
nothing is written for it (outputs are only ever renamed into place). At most ``2 x CPUs`` tasks
are in flight: the driver's memory does not grow with the number of files.

Privacy: no input path is logged by anonlens; worker output is not forwarded to the driver
(``log_to_driver=False``) and Ray's usage statistics are off unless you turn them on. See the
``docs/ray.md`` for what Ray itself writes on each machine.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .. import runtime
from .._version import __version__
from ..errors import AnonlensError
from ..io import is_video

__all__ = ["RayEngine", "DEFAULT_FILES_PER_TASK", "DEFAULT_MAX_RETRIES", "chunk_items"]

DEFAULT_FILES_PER_TASK = 4
DEFAULT_MAX_RETRIES = 2


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return os.path.isfile(path)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """One clear error at once when nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    if address in ("auto",) or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise AnonlensError(f"--ray-address must look like HOST:PORT (the head node's GCS port, 6379 by default), got '{address}'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise AnonlensError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc.strerror or exc}); "
                            "start it with `ray start --head` or check the address") from None


# -- what runs on the workers (module-level: pickled by reference, imported on the worker) --------


def _probe() -> dict[str, Any]:
    return {"anonlens": __version__, "python": sys.version.split()[0]}


_THREADS: list[int | None] = [None]


def _prepare(paths: Iterable[str], cwd: str, threads: int) -> str | None:
    """Use ``threads`` threads; run in the driver's folder when a path is relative. Returns an
    error when the driver's folder does not exist on this node."""
    if _THREADS[0] != threads:
        runtime.set_num_threads(threads)
        _THREADS[0] = threads
    if any(not os.path.isabs(p) for p in paths) and os.getcwd() != cwd:
        if not os.path.isdir(cwd):
            return f"relative input paths and the driver's folder {cwd} does not exist on this node; give absolute paths"
        os.chdir(cwd)
    return None


def _run_files(tasks: list, options: Any, cwd: str, threads: int, fn: Callable,
               loads: Callable[[], int] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    problem = _prepare([p for t in tasks for p in (t.src, t.dst, t.tmp_dir)], cwd, threads)
    if problem:
        return [t.failed(f"{t.src}: {problem}") for t in tasks], {"pid": os.getpid(), "loads": 0}
    before = loads() if loads else 0
    records = [fn(t, options) for t in tasks]
    return records, {"pid": os.getpid(), "loads": (loads() - before) if loads else 0}


def _run_scores(pairs: list, options: Any, cwd: str, threads: int,
                chunk: Callable) -> tuple[list[tuple], dict[str, Any], dict[str, Any]]:
    problem = _prepare([str(p) for pair in pairs for p in (pair.anonymized, pair.original) if p is not None], cwd, threads)
    if problem:
        return [(pair, {}, f"{pair.key}: {problem}", None, None) for pair in pairs], {}, {"pid": os.getpid()}
    rows, states = chunk(pairs, options)
    return rows, states, {"pid": os.getpid()}


# -- the driver ---------------------------------------------------------------------------------


#: a Unix socket's path holds at most this many bytes (Linux's sun_path, less its final NUL)
UNIX_SOCKET_PATH_MAX = 107
#: what Ray appends to its session folder for its sockets ("/session_<date>_<time>_<pid>/sockets/plasma_store" and the like)
RAY_SOCKET_TAIL = 64


def ray_temp_dir(temp_dir: str | None) -> str | None:
    """The session folder for a Ray started here: ``temp_dir`` (absolute), or None for Ray's
    default (``$TMPDIR/ray``) when that is short enough for Ray's Unix sockets, else a new private
    folder under ``/tmp`` (a deep temporary folder would make Ray fail to start). An explicit
    ``temp_dir`` too deep for the sockets is refused in one line."""
    if temp_dir is not None:
        path = str(Path(temp_dir).absolute())
        if len(os.fsencode(path)) + RAY_SOCKET_TAIL > UNIX_SOCKET_PATH_MAX:
            raise AnonlensError(f"Ray's temp_dir {path} is too deep for its Unix sockets ({len(os.fsencode(path))} bytes; "
                                f"at most {UNIX_SOCKET_PATH_MAX - RAY_SOCKET_TAIL}): choose a shorter folder")
        return path
    default = os.path.join(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir(), "ray")
    if len(os.fsencode(default)) + RAY_SOCKET_TAIL <= UNIX_SOCKET_PATH_MAX:
        return None
    return tempfile.mkdtemp(prefix="anonlens-ray-", dir="/tmp")


class RayEngine:
    """Run on Ray. ``address=None`` starts a Ray on this machine for the run (``workers`` CPUs,
    default all) and stops it after; ``address="HOST:PORT"`` (or ``"auto"``) joins a running
    cluster, whose nodes must have this anonlens version installed and see the same paths.
    ``temp_dir`` is Ray's session folder for the Ray started here (default: Ray's, $TMPDIR/ray, or a
    short private folder under /tmp when that is too deep for Ray's Unix sockets: :func:`ray_temp_dir`).
    ``files_per_task`` files (``pairs_per_task`` pairs) go to one task; a task whose worker dies is
    retried ``max_retries`` times."""

    name = "ray"

    def __init__(self, *, address: str | None = None, workers: int = 0, files_per_task: int = DEFAULT_FILES_PER_TASK,
                 pairs_per_task: int | None = None, max_retries: int = DEFAULT_MAX_RETRIES, threads_per_worker: int | None = None,
                 temp_dir: str | None = None):
        if files_per_task < 1:
            raise AnonlensError(f"files per task must be at least 1, got {files_per_task}")
        if max_retries < 0:
            raise AnonlensError(f"max retries must be 0 or more, got {max_retries}")
        self.address = address or None
        self.workers = int(workers)
        self.files_per_task, self.pairs_per_task = int(files_per_task), pairs_per_task
        self.max_retries, self.threads_per_worker = int(max_retries), threads_per_worker
        self.temp_dir = temp_dir
        if temp_dir is not None and address:
            raise AnonlensError("temp_dir applies to the Ray started here; a joined cluster keeps its own (ray start --temp-dir)")
        self._owned = False
        self._short_temp: str | None = None
        self._pending: dict[Any, list] = {}
        self._stats: dict[str, Any] = {"pids": set(), "model_loads": 0, "tasks": 0, "split": 0, "lost": 0}
        self._cpus = 1
        self._threads = 1  # per task: a task holds one of the cluster's CPUs

    # lifecycle

    def __enter__(self) -> "RayEngine":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        if ray.is_initialized():  # a session the caller opened (a notebook, a test): use it as it is
            self._owned = False
        elif self.address is None:
            temp_dir = ray_temp_dir(self.temp_dir)
            if temp_dir is not None and self.temp_dir is None:
                self._short_temp = temp_dir  # made here (the default is too deep for Ray's sockets): removed at the end
            ray.init(address="local", num_cpus=self.workers or None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, **({"_temp_dir": temp_dir} if temp_dir else {}))
            self._owned = True
            if self.workers:  # fewer tasks than cores here: each may use its share of the cores
                self._threads = max(1, (os.cpu_count() or 1) // self.workers)
        else:
            _reachable(self.address)
            if "RAY_AUTH_MODE" not in os.environ and _token_available():
                os.environ["RAY_AUTH_MODE"] = "token"  # the cluster's token is here: present it
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, ...
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise AnonlensError(f"cannot join the Ray cluster at {self.address}: {first} (is it running, and is its "
                                    "token in ~/.ray/auth_token or RAY_AUTH_TOKEN?)") from None
            self._owned = True
        try:
            self._check_workers(ray)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _check_workers(self, ray) -> None:
        try:
            info = ray.get(ray.remote(_probe).options(name="anonlens.probe", max_retries=self.max_retries).remote(), timeout=300)
        except Exception as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise AnonlensError(f"the Ray workers cannot run anonlens ({first}); install anonlens {__version__} on every node") from None
        if info["anonlens"] != __version__:
            raise AnonlensError(f"the Ray workers run anonlens {info['anonlens']}, this driver {__version__}: "
                                "install the same version on every node")
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def __exit__(self, *exc: Any) -> None:
        import ray

        for ref in list(self._pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker gone
                pass
        self._pending.clear()
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False
        if self._short_temp is not None:
            shutil.rmtree(self._short_temp, ignore_errors=True)
            self._short_temp = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or "local", "cpus": self._cpus, "files_per_task": self.files_per_task,
                "max_retries": self.max_retries, "worker_processes": len(self._stats["pids"]),
                "model_loads": self._stats["model_loads"], "tasks": self._stats["tasks"],
                "batches_split": self._stats["split"], "lost": self._stats["lost"]}

    # the loop

    def _drive(self, units: Iterator[list], submit: Callable[[list], Any]) -> Iterator[tuple]:
        """Keep ``2 x CPUs`` tasks in flight; yield ``("done", result)`` as tasks finish. A unit
        whose task fails after Ray's retries is split into single items; a single item that fails
        yields ``("lost", item, reason)``."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        singles: collections.deque[list] = collections.deque()
        window = 2 * self._cpus
        while True:
            while len(self._pending) < window:
                unit = singles.popleft() if singles else next(units, None)
                if unit is None:
                    break
                self._pending[submit(unit)] = unit
                self._stats["tasks"] += 1
            if not self._pending:
                return
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            for ref in ready:
                unit = self._pending.pop(ref)
                try:
                    result = ray.get(ref)
                except RayError as exc:
                    if len(unit) > 1:
                        self._stats["split"] += 1
                        singles.extend([item] for item in unit)
                        continue
                    if isinstance(exc, RayTaskError):
                        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                        text = str(cause).strip()
                        why = f"the Ray task failed: {type(cause).__name__}: {text.splitlines()[-1] if text else ''}"
                    else:
                        why = (f"its Ray worker was lost {1 + self.max_retries} times ({type(exc).__name__}); "
                               "nothing was written for it")
                    self._stats["lost"] += 1
                    yield ("lost", unit[0], why)
                    continue
                yield ("done", result)

    def map_files(self, todo: list, options, finish: Callable[[dict[str, Any]], None],
                  on_frame: Callable[[str, int, int], None] | None = None, *, fn: Callable,
                  workers: Callable[[int, int], int] | None = None, loads: Callable[[], int] | None = None) -> None:
        """``finish(fn(task, options))`` for every task, in completion order, run on the workers
        (``on_frame`` is not reported from remote workers; ``workers`` is the local engine's: the
        cluster's CPUs decide here). ``loads()``, called on a worker, counts the models it has
        built so far (``model_loads`` in :meth:`describe`). A task that cannot run is recorded by
        ``task.failed(reason)``."""
        import ray

        options_ref = ray.put(options)
        cwd = os.getcwd()
        threads = self.threads_per_worker or options.threads_per_worker or self._threads
        remote = ray.remote(_run_files).options(name="anonlens.files", num_cpus=1, max_retries=self.max_retries,
                                                retry_exceptions=False)
        # a video takes long: one per task, so that it does not hold images back
        units = chunk_items(todo, self.files_per_task, alone=lambda t: is_video(t.src))
        for event in self._drive(units, lambda unit: remote.remote(unit, options_ref, cwd, threads, fn, loads)):
            if event[0] == "lost":
                _, task, why = event
                finish(task.failed(f"{task.src}: {why}"))
                continue
            records, meta = event[1]
            self._stats["pids"].add(meta["pid"])
            self._stats["model_loads"] += meta["loads"]
            for rec in records:
                finish(rec)

    def map_score(self, pairs: Iterable, options, metrics: list, *, stream: Callable[..., Iterator[tuple]],
                  chunk: Callable[..., tuple], merge: Callable[[list, dict], None]) -> Iterator[tuple]:
        """The scored rows, ``chunk(pairs, options) -> (rows, states)`` on the cluster, as chunks
        finish; ``merge(metrics, states)`` folds each chunk's group-metric states into ``metrics``
        (``stream``, the in-process scorer, is the local engine's)."""
        import ray

        options_ref = ray.put(options)
        cwd = os.getcwd()
        threads = self.threads_per_worker or self._threads
        remote = ray.remote(_run_scores).options(name="anonlens.scores", num_cpus=1, max_retries=self.max_retries,
                                                 retry_exceptions=False)
        units = chunk_items(list(pairs), self.pairs_per_task or options.batch_size, alone=lambda p: is_video(p.anonymized))
        for event in self._drive(units, lambda unit: remote.remote(unit, options_ref, cwd, threads, chunk)):
            if event[0] == "lost":
                _, pair, why = event
                yield (pair, {}, f"{pair.key}: {why}", None, None)
                continue
            rows, states, meta = event[1]
            self._stats["pids"].add(meta["pid"])
            merge(metrics, states)
            yield from rows


def chunk_items(items: list, size: int, *, alone: Callable[[Any], bool]) -> Iterator[list]:
    chunk: list = []
    for item in items:
        if alone(item):
            yield [item]
            continue
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

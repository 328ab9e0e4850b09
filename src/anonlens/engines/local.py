"""The local engine: the files on a process pool of this machine, the scores in this process."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Any, Callable, Iterable, Iterator

from .. import runtime

__all__ = ["LocalEngine"]


class LocalEngine:
    """``workers`` processes (0: automatic: the ``workers`` policy the caller passes to :meth:`map_files`)."""

    name = "local"

    def __init__(self, *, workers: int = 0, threads_per_worker: int | None = None):
        self.workers, self.threads_per_worker = int(workers), threads_per_worker

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def map_files(self, todo: list, options, finish: Callable[[dict[str, Any]], None],
                  on_frame: Callable[[str, int, int], None] | None = None, *, fn: Callable,
                  workers: Callable[[int, int], int] | None = None, loads: Callable[[], int] | None = None) -> None:
        """``finish(fn(task, options))`` for every task, in completion order; in this process and
        with ``on_frame``: ``fn(task, options, on_frame)``. ``fn`` must be a module-level function
        (it is pickled by reference for the process pool). ``workers(requested, n_tasks)`` chooses
        the number of processes (default: as requested, 0 meaning 1, at most one per task);
        ``loads`` (models built so far in a process) is the Ray engine's and unused here."""
        requested = self.workers or options.workers
        n = workers(requested, len(todo)) if workers else max(1, min(requested or 1, len(todo)))
        threads_per_worker = self.threads_per_worker or options.threads_per_worker
        if n == 1:
            if threads_per_worker is not None:
                runtime.set_num_threads(threads_per_worker)
            for t in todo:
                finish(fn(t, options, on_frame) if on_frame is not None else fn(t, options))
            return
        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=runtime.set_num_threads, initargs=(threads,)) as pool:
            pending: set[cf.Future] = set()
            for t in todo:
                pending.add(pool.submit(fn, t, options))
                if len(pending) >= 2 * n:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        finish(fut.result())
            for fut in cf.as_completed(pending):
                finish(fut.result())

    def map_score(self, pairs: Iterable, options, metrics: list, *, stream: Callable[..., Iterator[tuple]],
                  chunk: Callable[..., tuple], merge: Callable[[list, dict], None]) -> Iterator[tuple]:
        """The scored rows ``stream(pairs, options, metrics)`` (``(pair, values, error)``),
        computed in this process: the group metrics in
        ``metrics`` accumulate in place, so ``chunk`` and ``merge`` (the Ray engine's) are unused."""
        yield from stream(pairs, options, metrics)

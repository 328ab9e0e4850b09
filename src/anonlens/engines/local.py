"""The local engine: the files on a process pool of this machine, the scores in this process."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Any, Callable, Iterable, Iterator

__all__ = ["LocalEngine"]


class LocalEngine:
    """``workers`` processes (0: automatic, see :func:`anonlens.batch.effective_workers`)."""

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
                  on_frame: Callable[[str, int, int], None] | None = None, fn: Callable | None = None) -> None:
        """``finish(fn(task, options))`` for every task, in completion order."""
        from ..batch import _worker_init, effective_workers, process_file

        fn = fn or process_file
        workers = effective_workers(self.workers or options.workers, len(todo), options.config)
        threads_per_worker = self.threads_per_worker or options.threads_per_worker
        if workers == 1:
            if threads_per_worker is not None:
                _worker_init(threads_per_worker)
            for t in todo:
                finish(fn(t, options, on_frame) if fn is process_file else fn(t, options))
            return
        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as pool:
            pending: set[cf.Future] = set()
            for t in todo:
                pending.add(pool.submit(fn, t, options))
                if len(pending) >= 2 * workers:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        finish(fut.result())
            for fut in cf.as_completed(pending):
                finish(fut.result())

    def map_score(self, pairs: Iterable, options, metrics: list) -> Iterator[tuple]:
        """The scored rows ``(pair, values, error, original_vector, anonymized_vector)``, computed
        in this process with ``metrics`` (group metrics accumulate in place)."""
        from ..assess.score import score_stream

        yield from score_stream(pairs, options, metrics)

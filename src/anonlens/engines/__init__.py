"""Engines: what maps a function over the work, given by the caller: the per-file function
(:func:`anonlens.batch.process_file`) and the per-chunk scoring function with the merge of its
group-metric states (:func:`anonlens.assess.score.score_chunk`, :func:`~anonlens.assess.score.merge_states`).
Engines import nothing above them.

``local`` is the process pool of one machine; ``ray`` a Ray cluster, started for the run
(``address=None``) or joined (``address="HOST:PORT"``, ``"auto"``). Both give the same outputs and
records: the driver assembles the manifest and the score tables from what the workers return; the
workers only read inputs and write outputs (atomically) on a file system every node sees.

>>> ENGINES.names()
['local', 'ray']
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .local import LocalEngine
from .ray import RayEngine

__all__ = ["ENGINES", "create_engine"]

ENGINES: Registry[Any] = Registry("engine")


def _local(**options: Any):
    """One machine: a process pool (the default)."""
    return LocalEngine(**options)


def _ray(**options: Any):
    """A Ray cluster: started on this machine for the run, or joined with address=HOST:PORT."""
    return RayEngine(**options)


ENGINES.add("local", _local)
ENGINES.add("ray", _ray, extra="ray")


def create_engine(name: str = "local", **options: Any):
    """The engine ``name`` (a context manager: Ray starts on enter and stops on exit)."""
    return ENGINES.create(name, **options)

"""The process-wide model pool: one owner for every model anonlens loads.

Loading a model (an ONNX/OpenVINO detector, dlib's networks, a torch checkpoint) takes longer than
using it, so each process builds one instance per configuration and shares it. :data:`MODELS` holds
them, keyed by *kind* (what sort of thing: ``"anonymizer"``, ``"gate-checker"``, ...) and a hashable
*key* (its configuration). A kind is declared once, where it is built, with its size (the most
instances kept; the least recently used one is dropped past it); :meth:`ModelPool.get` builds an
instance once per key, even when several threads ask at the same time, and counts the builds.

Pooled (shared by every caller in the process, so they hold models and settings only):

- ``anonymizer`` (:func:`anonlens.pipeline.cached_anonymizer`): an :class:`Anonymizer` per config;
- ``gate-checker`` and ``gate-text`` (:mod:`anonlens.assess.gate`): the release gate's detectors,
  identity model and text models;
- ``face-embedder`` and ``dlib-resnet`` (:mod:`anonlens.identity`): dlib's detector, landmarks and
  identity network (shared by the gate and the identity metric), and its PyTorch build per device;
- ``face-detector`` and ``face-verifier`` (:mod:`anonlens.metrics.detectability`);
- ``score-metrics`` (:mod:`anonlens.assess.score`): the *stateless* metrics of a set of score options;
- ``fid-features`` (:class:`anonlens.metrics.group.GroupMetric`): the feature network of FID/KID
  (not with ``random_weights``: a new random network each time, as asked);
- ``metric-threads``: the thread pool that per-pair metrics run on (:mod:`anonlens.metrics.base`).

A pooled instance may be used by several threads at once, as the caches it replaces were.

Never pooled: anything that accumulates the state of one run. The metrics with
``stateful = True`` (the identity metric keeps each pair's descriptors; FID, KID and the A-GAN rates
collect features per group) are built new for every run or scoring chunk, and only the networks
inside them are pooled; a shared instance would carry one run's vectors or features into the next
(a chunk that failed halfway, then retried in the same worker, was counted twice).

The module imports nothing of anonlens, so any layer may use it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, overload

__all__ = ["ModelPool", "MODELS"]

T = TypeVar("T")


class _Slot:
    """One key's instance: its lock is held while it is built, so other threads wait for it."""

    __slots__ = ("lock", "value", "state")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: Any = None
        self.state = "empty"  # -> "ready", or "failed" (the build raised: the next caller builds again)


class ModelPool:
    """A thread-safe owner of loaded models keyed by ``(kind, key)``.

    >>> pool = ModelPool()
    >>> pool.define("square", size=2)
    >>> pool.get("square", 3, lambda: 3 * 3), pool.get("square", 3, lambda: 0), pool.loads("square")
    (9, 9, 1)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[str, int | None] = {}
        self._slots: dict[str, OrderedDict[Hashable, _Slot]] = {}
        self._loads: dict[str, int] = {}

    def define(self, kind: str, *, size: int | None = None) -> None:
        """Declare ``kind``, keeping at most ``size`` instances (None: no bound). Declaring it again
        with the same size is allowed (a module imported twice); with another size it is an error."""
        if size is not None and size < 1:
            raise ValueError(f"pool kind {kind!r}: size must be at least 1 (or None), not {size}")
        with self._lock:
            if kind in self._sizes and self._sizes[kind] != size:
                raise ValueError(f"pool kind {kind!r} is already defined with size {self._sizes[kind]}, not {size}")
            self._sizes[kind] = size
            self._slots.setdefault(kind, OrderedDict())
            self._loads.setdefault(kind, 0)

    def get(self, kind: str, key: Hashable, build: Callable[[], T]) -> T:
        """The instance of ``kind`` for ``key``, made by ``build()`` on first use. Concurrent callers
        with the same key wait for that one build; different keys build in parallel. A build that
        raises leaves nothing behind (the next call builds again)."""
        while True:
            with self._lock:
                slots = self._kind(kind)
                slot = slots.get(key)
                if slot is None:
                    slot = slots[key] = _Slot()
                    size = self._sizes[kind]
                    while size is not None and len(slots) > size:
                        slots.popitem(last=False)
                else:
                    slots.move_to_end(key)
            with slot.lock:
                if slot.state == "ready":
                    return slot.value
                if slot.state == "failed":
                    continue  # the build this caller waited for raised: look again
                try:
                    value = build()
                except BaseException:
                    slot.state = "failed"
                    with self._lock:
                        if self._slots[kind].get(key) is slot:
                            del self._slots[kind][key]
                    raise
                slot.value, slot.state = value, "ready"
                with self._lock:
                    self._loads[kind] += 1
                return value

    @overload
    def loads(self) -> dict[str, int]: ...
    @overload
    def loads(self, kind: str) -> int: ...

    def loads(self, kind: str | None = None) -> int | dict[str, int]:
        """How many instances of ``kind`` this process built (since :meth:`clear`); without a kind,
        ``{kind: count}`` for every declared kind."""
        with self._lock:
            if kind is None:
                return dict(self._loads)
            self._kind(kind)
            return self._loads[kind]

    def size(self, kind: str) -> int:
        """How many instances of ``kind`` are held now."""
        with self._lock:
            return sum(1 for s in self._kind(kind).values() if s.state == "ready")

    def clear(self, kind: str | None = None) -> None:
        """Drop the instances of ``kind`` (every kind when None) and reset their load counts; those
        in use stay alive with their users. Kinds stay declared."""
        with self._lock:
            for k in [kind] if kind is not None else list(self._slots):
                self._kind(k).clear()
                self._loads[k] = 0

    def _kind(self, kind: str) -> OrderedDict[Hashable, _Slot]:
        try:
            return self._slots[kind]
        except KeyError:
            raise KeyError(f"pool kind {kind!r} is not defined (define it where its models are built)") from None


#: the process's pool (every anonlens module that loads a model uses this one)
MODELS = ModelPool()

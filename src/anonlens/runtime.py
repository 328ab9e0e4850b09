"""Process-wide compute settings: how many threads native libraries may use.

The batch runner calls :func:`set_num_threads` in every worker so that N workers on N cores do not
each start N threads. Detectors read :func:`num_threads` when they build their models.
"""

from __future__ import annotations

import sys

import cv2

__all__ = ["set_num_threads", "num_threads", "openvino_cpu_config"]

_THREADS: int | None = None


def set_num_threads(n: int | None) -> None:
    """Limit OpenCV, OpenVINO and (if loaded) torch to ``n`` threads; ``None`` restores defaults."""
    global _THREADS
    _THREADS = None if n is None else max(1, int(n))

    cv2.setNumThreads(-1 if _THREADS is None else _THREADS)
    if _THREADS is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_THREADS)


def num_threads() -> int | None:
    return _THREADS


def openvino_cpu_config(**extra: str) -> dict[str, object]:
    """The OpenVINO CPU compile config every model here uses: latency first, and with a thread limit
    (:func:`set_num_threads`) that many threads, unpinned (several worker processes share the
    cores: pinning would put them all on the same one). ``extra``: more properties."""
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", **extra}
    if _THREADS is not None:
        config["INFERENCE_NUM_THREADS"] = _THREADS
        config["ENABLE_CPU_PINNING"] = False
    return config

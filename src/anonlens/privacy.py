"""Process-level privacy settings: the libraries anonlens uses do not call home.

:func:`keep_offline` runs once, when the ``anonlens`` package is imported (before any detector,
OpenVINO, torch or Ray is), so the command line, the web service, worker processes and library
users all get it. It switches off what those libraries would send on their own:

- **OpenVINO's telemetry.** ``import openvino`` imports ``openvino.tools.ovc``, which imports the
  ``openvino_telemetry`` package and sends a Google Analytics event (a persistent client id kept in
  ``~/intel/openvino_ga_cid``, a usage count kept in ``~/intel/stats``, the OS, a docker flag).
  Every OpenVINO module that uses it falls back to OpenVINO's own no-op stand-in
  (``openvino/tools/ovc/telemetry_stub.py``) when ``import openvino_telemetry`` raises
  ``ImportError``. anonlens makes it raise by putting ``None`` under that name in ``sys.modules``,
  Python's documented way to block an import (the import system then raises
  ``ModuleNotFoundError``). Nothing is written into the home folder and no CI variable is set:
  the telemetry's own opt-out (``opt_in_out --opt_out``) writes a consent file under ``~/intel``,
  and it is silent by itself only when it believes it runs in CI (``CI=true``).
  A process that imported ``openvino`` before ``anonlens`` has already sent its event: import
  ``anonlens`` first. ``ANONLENS_ALLOW_TELEMETRY=1`` leaves the telemetry as OpenVINO ships it.
- **Ray's usage statistics**: ``RAY_USAGE_STATS_ENABLED=0`` unless the environment sets it
  (``--engine ray`` starts Ray; Ray reports usage by default).

Nothing else that anonlens imports sends anything by itself: torch hub and the weights files
download only when a caller allows it (:mod:`anonlens.weights`), and no Hugging Face hub client is
used. What may be written into the home folder is listed in docs/install.md ("No network").
"""

from __future__ import annotations

import os
import sys

__all__ = ["keep_offline", "TELEMETRY_MODULES", "ALLOW_ENV"]

#: modules that send usage data as soon as they are imported (blocked by :func:`keep_offline`)
TELEMETRY_MODULES = ("openvino_telemetry",)

#: set to 1 to leave the libraries' telemetry as they ship it
ALLOW_ENV = "ANONLENS_ALLOW_TELEMETRY"


def keep_offline() -> list[str]:
    """Switch off the libraries' telemetry for this process; returns what it could not switch off.

    Idempotent, and cheap (it imports nothing). A telemetry module that is already imported (a
    caller imported ``openvino`` before ``anonlens``) is left alone and named in the result.
    """
    if os.environ.get(ALLOW_ENV, "").strip() == "1":
        return []
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    too_late = []
    for name in TELEMETRY_MODULES:
        if sys.modules.get(name) is not None:
            too_late.append(name)
        else:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` now raises ModuleNotFoundError
    return too_late

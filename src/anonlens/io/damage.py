"""Damage a decoder conceals: what it complained about while it still produced pixels.

Pillow decodes a JPEG whose entropy-coded data is damaged (zeroed, overwritten) without a word:
libjpeg only warns ("Corrupt JPEG data: premature end of data segment") and fills in, and Pillow
drops libjpeg's warnings. :func:`jpeg_decode_errors` decodes the file a second time with OpenCV's
libjpeg, which prints them on stderr, and collects them. (Videos: see
:class:`anonlens.video.io.VideoReader`, which collects FFmpeg's errors.)
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import cv2
import numpy as np

__all__ = ["jpeg_decode_errors", "JPEG_DAMAGE_WARNINGS"]

#: the beginnings of libjpeg's warnings (jerror.h, JWRN_*) that mean the pixels are not all what
#: was encoded; its other warnings (an unknown JFIF revision, a thumbnail's size) do not
JPEG_DAMAGE_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Invalid SOS parameters",
    "Inconsistent progression sequence",
    "Application transferred too many scanlines",
)
_MAX_MESSAGES = 20
#: file descriptor 2 is the process's: one capture at a time
_STDERR_LOCK = threading.Lock()


def jpeg_decode_errors(data: bytes) -> list[str]:
    """libjpeg's damage warnings for the JPEG ``data`` (distinct, in order, at most 20; [] for an
    intact file).

    OpenCV decodes it at 1/8 scale in grey: libjpeg still entropy-decodes every coefficient, so it
    meets every damaged segment, at about a quarter of a full decode's time. libjpeg prints its
    warnings on the process's stderr; that file descriptor is pointed at a temporary file for the
    call (serialised by a lock), and whatever else was printed meanwhile is passed on to stderr.
    """
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    with _STDERR_LOCK:
        try:
            capture = tempfile.TemporaryFile()
            saved = os.dup(2)
        except OSError:  # no stderr to redirect (or no temporary folder): nothing can be told
            return []
        try:
            os.dup2(capture.fileno(), 2)
            try:
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION)
            except cv2.error:
                pass  # Pillow decoded it; what libjpeg said on the way is what counts
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            capture.close()
    found: list[str] = []
    other: list[str] = []
    for raw in text.splitlines(keepends=True):
        line = raw.strip()
        if line.startswith(JPEG_DAMAGE_WARNINGS):
            if line not in found:
                found.append(line)
        elif "imdecode" not in line:  # OpenCV's own notes on this call are not passed on
            other.append(raw)  # another thread's output (a progress bar): passed on as it was
    if other:
        try:
            os.write(2, "".join(other).encode("utf-8", "replace"))
        except OSError:
            pass
    return found[:_MAX_MESSAGES]

"""Videos: decoding and encoding with PyAV (the ``video`` extra), tracking, and the per-frame
pipeline. See :mod:`anonlens.video.anonymize` for what is guaranteed."""

from .anonymize import VideoOptions, anonymize_frames, anonymize_video
from .io import VIDEO_SUFFIXES, VideoReadError, is_video
from .tracking import Track, Tracker, TrackerConfig, ranges

__all__ = ["VIDEO_SUFFIXES", "VideoOptions", "VideoReadError", "Track", "Tracker", "TrackerConfig", "anonymize_frames",
           "anonymize_video", "is_video", "ranges"]

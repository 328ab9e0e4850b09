"""Reading and writing videos with PyAV (FFmpeg inside the wheel; the ``video`` extra).

Reading yields upright RGB frames (the container's display rotation applied to the pixels, so
detectors see upright faces) with their own timestamps. Writing encodes those frames with the
same timestamps and time base (variable frame rate kept), the same frame count, no rotation left to
apply, and nothing else from the input: no container metadata (title, comment, dates, location),
no subtitle or data streams, no audio unless asked (then the audio packets are copied unchanged).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator

import numpy as np

from ..errors import AnonlensError, ImageReadError
from ..extras import require_extra
from ..io import VIDEO_CONTAINERS, VIDEO_SUFFIXES, is_video

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "VideoReader", "VideoWriter", "VideoReadError", "is_video", "paired_frames"]


class VideoReadError(ImageReadError):
    """A video could not be read fully (a named error; the video gets no output)."""


def _av():
    require_extra("video", "reading videos")
    import av

    return av


@dataclass
class VideoInfo:
    """What the manifest records about a video."""

    codec: str
    width: int
    height: int
    frames_declared: int
    fps: float | None
    time_base: str
    rotation: int
    duration_s: float | None
    audio: list[str] = field(default_factory=list)
    other_streams: list[str] = field(default_factory=list)
    metadata_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class VideoReader:
    """Open ``path``; iterate :meth:`frames` (video) while :meth:`packets` hands over the audio
    packets met on the way (for ``--keep-audio``)."""

    def __init__(self, path: str | os.PathLike):
        av = _av()
        self.path = str(path)
        try:
            self.container = av.open(self.path, metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoReadError(self.path, f"cannot open as a video: {exc}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoReadError(self.path, "has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.audio = list(self.container.streams.audio)
        self.pending_audio: list[Any] = []
        self.decoded = 0
        self.last_pts: int | None = None
        ctx = self.stream.codec_context
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.info = VideoInfo(
            codec=ctx.name, width=ctx.width, height=ctx.height, frames_declared=int(self.stream.frames or 0),
            fps=float(rate) if rate else None, time_base=str(self.stream.time_base), rotation=0,
            duration_s=float(self.container.duration / 1_000_000) if self.container.duration else None,
            audio=[s.codec_context.name for s in self.audio],
            other_streams=[s.type for s in self.container.streams if s.type not in ("video", "audio")] + [
                "video" for _ in self.container.streams.video[1:]],
            metadata_keys=sorted(self.container.metadata),
        )

    def close(self) -> None:
        self.container.close()

    def frames(self, *, keep_audio: bool = False) -> Iterator[tuple[np.ndarray, Any]]:
        """``(upright RGB frame, the decoded av.VideoFrame)`` in decoding order; audio packets of
        the first audio stream are queued in :attr:`pending_audio` when ``keep_audio``."""
        av = _av()
        streams = [self.stream] + (self.audio[:1] if keep_audio else [])
        try:
            for packet in self.container.demux(streams):
                if packet.stream is not self.stream:
                    if packet.dts is not None:
                        self.pending_audio.append(packet)
                    continue
                for frame in packet.decode():  # the last, empty packet flushes the decoder
                    rot = int(getattr(frame, "rotation", 0) or 0) % 360
                    if self.decoded == 0:
                        self.info.rotation = rot
                    rgb = frame.to_ndarray(format="rgb24")
                    if rot:
                        rgb = np.ascontiguousarray(np.rot90(rgb, k=rot // 90))
                    self.decoded += 1
                    self.last_pts = frame.pts
                    yield rgb, frame
        except av.error.FFmpegError as exc:
            raise VideoReadError(self.path, f"decoding failed after {self.decoded} frame(s): {exc}") from None
        declared = self.info.frames_declared
        if self.decoded == 0:
            raise VideoReadError(self.path, "no frame could be decoded")
        if declared and self.decoded < declared:
            raise VideoReadError(self.path, f"truncated or damaged: {self.decoded} of {declared} frames decoded")


class VideoWriter:
    """Encode upright RGB frames to ``path`` (a temporary file: the caller renames it) in the
    container its suffix names, keeping each frame's timestamp; ``audio_template`` (an input audio
    stream) adds a copy of that stream for :meth:`mux_audio`."""

    def __init__(self, path: str | os.PathLike, suffix: str, width: int, height: int, time_base: Fraction,
                 rate: Fraction | None, *, audio_template=None, crf: int = 18, preset: str = "veryfast"):
        av = _av()
        fmt, codec = VIDEO_CONTAINERS[suffix.lower()]
        self.container = av.open(str(path), "w", format=fmt)
        self.width, self.height = width + (width % 2), height + (height % 2)  # 4:2:0 needs even sides
        stream = self.container.add_stream(codec, rate=rate) if rate else self.container.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.codec_context.time_base = time_base  # the muxer picks the stream's own; packets are rescaled
        if codec == "libx264":
            stream.codec_context.options = {"crf": str(crf), "preset": preset}
        elif codec == "libvpx-vp9":
            stream.codec_context.options = {"crf": str(crf + 14), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        self.stream = stream
        self.audio = self.container.add_stream_from_template(audio_template) if audio_template is not None else None
        self.frames = 0

    def write(self, rgb: np.ndarray, pts: int | None, time_base: Fraction) -> None:
        av = _av()
        if rgb.shape[1] != self.width or rgb.shape[0] != self.height:
            rgb = np.pad(rgb, ((0, self.height - rgb.shape[0]), (0, self.width - rgb.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def mux_audio(self, packets: list) -> None:
        if self.audio is None:
            packets.clear()
            return
        for packet in packets:
            packet.stream = self.audio
            self.container.mux(packet)
        packets.clear()

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


def frame_times(path: str | os.PathLike) -> list[Fraction]:
    """The timestamps (seconds, exact fractions) of every frame of a video, decoded: what an
    output is verified against."""
    av = _av()
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            return [f.pts * stream.time_base for f in c.decode(stream) if f.pts is not None]
    except av.error.FFmpegError as exc:
        raise AnonlensError(f"the written video cannot be read back: {exc}") from None


def paired_frames(original: str | os.PathLike, anonymized: str | os.PathLike, *, frames=()) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, original frame, anonymized frame)`` for the frames an assessment looks at: one
    per second, and every index in ``frames`` (where a track starts, ends or is filled in). The
    anonymized frame is cropped to the original's size (outputs are padded to even sides); a
    differing frame count is an :class:`AnonlensError` at the end."""
    orig, anon = VideoReader(original), VideoReader(anonymized)
    try:
        step = max(1, int(round(orig.info.fps or 1)))
        wanted = set(frames)
        for i, ((a, _), (b, _)) in enumerate(zip(orig.frames(), anon.frames())):
            if i % step == 0 or i in wanted:
                yield i, a, np.ascontiguousarray(b[: a.shape[0], : a.shape[1]])
        if orig.decoded != anon.decoded:
            raise AnonlensError(f"frame counts differ: original {orig.decoded}, anonymized {anon.decoded}")
    finally:
        orig.close()
        anon.close()

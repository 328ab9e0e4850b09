"""Reading and writing videos with PyAV (FFmpeg inside the wheel; the ``video`` extra).

Reading yields upright RGB frames (the container's display rotation applied to the pixels, so
detectors see upright faces) with their own timestamps. Writing encodes those frames with the
same timestamps and time base (variable frame rate kept), the same frame count, no rotation left to
apply, and nothing else from the input: no container metadata (title, comment, dates, location),
no subtitle or data streams, no audio unless asked (then the audio packets are copied unchanged).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator

import numpy as np

from ..errors import AnonlensError, ImageReadError
from ..extras import require_extra
from ..io import VIDEO_CONTAINERS, VIDEO_SUFFIXES, is_video
from ..io.images import GIF_REFUSED

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
        if (self.container.format.name or "").split(",")[0] == "gif":
            # one rule for GIF everywhere (CLI, service, whatever the name): refused
            self.container.close()
            raise VideoReadError(self.path, GIF_REFUSED)
        if not self.container.streams.video:
            self.container.close()
            raise VideoReadError(self.path, "has no video stream")
        self.stream = self.container.streams.video[0]
        # One decoding thread: FFmpeg's errors are then logged in this thread, while this reader
        # decodes, and collected (see frames); a decoder's own threads would log them from there,
        # where PyAV's log callback can deadlock on the GIL. (Decoding is a small part of the work.)
        self.stream.codec_context.thread_count = 1
        self.stream.thread_type = "NONE"
        self.audio = list(self.container.streams.audio)
        self.pending_audio: list[Any] = []
        self.decoded = 0
        self.last_pts: int | None = None
        #: what the decoder reported while it still produced frames (concealed damage), as
        #: "frame N: codec: message" (N: the first frame out after the damaged packet); the first
        #: MAX_DECODE_ERRORS, all counted in decode_error_count (see damage())
        self.decode_errors: list[str] = []
        self.decode_error_count = 0
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
            packets = self.container.demux(streams)
            damaged: dict[int, list[str]] = {}  # a packet's pts -> its decoding errors, until its frame comes out
            while True:
                with _ffmpeg_errors(av) as logs:  # what reading and decoding this packet reported
                    packet = next(packets, None)
                    if packet is None:
                        break
                    decoded = packet.decode() if packet.stream is self.stream else None  # the last, empty packet flushes
                errors = _errors(logs, av)
                if errors and decoded is not None and packet.pts is not None:
                    damaged.setdefault(packet.pts, []).extend(errors)
                else:
                    self._note_all(errors)
                if decoded is None:
                    if packet.dts is not None:
                        self.pending_audio.append(packet)
                    continue
                for frame in decoded:
                    self._note_all(damaged.pop(frame.pts, ()))
                    if frame.is_corrupt:
                        self._note(f"frame {self.decoded}: marked corrupt by the decoder")
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
        self._note_all(_errors(logs, av))
        for pts in sorted(damaged):  # frames the decoder never put out
            self._note_all([f"{m} (packet pts {pts}, no frame)" for m in damaged[pts]])
        declared = self.info.frames_declared
        if self.decoded == 0:
            raise VideoReadError(self.path, "no frame could be decoded")
        if declared and self.decoded < declared:
            raise VideoReadError(self.path, f"truncated or damaged: {self.decoded} of {declared} frames decoded")

    def damage(self) -> list[str]:
        """The decoding errors met so far, for the record: :attr:`decode_errors`, then how many
        more there were."""
        more = self.decode_error_count - len(self.decode_errors)
        return self.decode_errors + ([f"... and {more} more"] if more > 0 else [])

    def _note(self, message: str) -> None:
        self.decode_error_count += 1
        if len(self.decode_errors) < MAX_DECODE_ERRORS:
            self.decode_errors.append(message)

    def _note_all(self, errors) -> None:
        for message in errors:  # the frame about to come out (decoding order) is the damaged one
            self._note(f"frame {self.decoded}: {message}")


def _errors(logs: list, av) -> list[str]:
    """``codec: message`` for each of FFmpeg's logs at level ERROR or worse."""
    return [f"{name + ': ' if name else ''}{message.strip()}" for level, name, message in logs if level <= av.logging.ERROR]


#: how many decoding errors a video's record lists (the rest are counted)
MAX_DECODE_ERRORS = 20
_LOG_LOCK = threading.Lock()
_log_users = 0
_log_level_before: int | None = None


@contextlib.contextmanager
def _ffmpeg_errors(av) -> Iterator[list]:
    """The list FFmpeg's logs of this thread go to in the block: ``(level, name, message)``.

    PyAV drops FFmpeg's logs unless a level is set (a process-wide setting); it is set to ERROR
    (or kept, when more verbose) only while some reader is inside this block, so that no other
    FFmpeg work (the encoder's threads) ever calls back into Python."""
    global _log_users, _log_level_before
    with _LOG_LOCK:
        if _log_users == 0:
            _log_level_before = av.logging.get_level()
            av.logging.set_level(av.logging.ERROR if _log_level_before is None else max(_log_level_before, av.logging.ERROR))
        _log_users += 1
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        with _LOG_LOCK:
            _log_users -= 1
            if _log_users == 0:
                av.logging.set_level(_log_level_before)


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

"""Anonymize a video: detect per frame, link into tracks, cover every track steadily, encode.

:func:`anonymize_frames` is the frame-iterator form (frames in; anonymized frames and per-frame
records out, ``pre_frames`` frames behind the input so that a track can be covered before its
first detection; memory stays flat in the video's length). :func:`anonymize_video` reads a file,
runs it and writes the result atomically, or nothing at all when anything fails.

Frames go through the photos' anonymizer: on each detection frame :meth:`Anonymizer.find
<anonlens.pipeline.Anonymizer.find>` (the scope's detectors: faces at every scale, people, text;
with ``keep_text``, the text regions whose recognised text matches are split off, left readable
and recorded as kept), and on every frame :meth:`Anonymizer.anonymize_found
<anonlens.pipeline.Anonymizer.anonymize_found>` with the frame's tracked regions (the operator, the
verification: each region re-detected and strengthened, then masked, and the face search of scopes
that do not look for faces themselves). What is video's own: the tracker carries, fills and
back-fills regions between frames, and random operators draw from one generator per track, seeded
the same on every frame: a track's noise is the same on every frame, so averaging frames cannot
wash it out.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import secrets
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import AnonlensError
from ..pipeline import Anonymizer, Found, cached_anonymizer
from ..regions import box_iou, whole_image_region
from .io import VideoReader, VideoReadError, VideoWriter, frame_times
from .tracking import Tracker, TrackerConfig, ranges

__all__ = ["VideoOptions", "anonymize_frames", "anonymize_video"]


@dataclass(frozen=True)
class VideoOptions:
    """``tracker``: see :class:`~anonlens.video.tracking.TrackerConfig`; ``keep_audio``: copy the
    first audio stream unchanged (default: drop audio); ``crf``/``preset``: libx264 quality and
    speed."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    keep_audio: bool = False
    crf: int = 18
    preset: str = "veryfast"
    #: run the detectors on every n-th frame only (1: every frame, the default); between, tracks
    #: are carried by their motion, and a new track is covered back to ``pre_frames`` frames before
    #: its first detection. Faster; a face visible for fewer than ``n`` frames can be missed.
    detect_every: int = 1
    #: scopes with a person detector (``person``, ``body``): it runs on every n-th detection frame
    #: only (key frames; faces and text on every one), the tracker carrying the people between;
    #: a person first seen on a key frame is covered back to ``pre_frames`` frames before it (key
    #: frames are at most ``pre_frames + 1`` frames apart: with ``detect_every`` 2, every 2nd
    #: detection frame). The person detector costs about three times the face detector. 1: every frame.
    person_every: int = 3

    def __post_init__(self) -> None:
        if self.detect_every < 1 or self.person_every < 1:
            raise AnonlensError("detect_every and person_every must be >= 1")
        if self.detect_every > self.tracker.pre_frames + 1:
            raise AnonlensError(f"detect_every {self.detect_every} leaves frames before a new track uncovered: "
                                f"it may be at most pre_frames + 1 = {self.tracker.pre_frames + 1}")


def _track_rng(anonymizer: Anonymizer, base: int, track_id: int) -> np.random.Generator | None:
    if not anonymizer.operator.stochastic:
        return None
    return np.random.default_rng([base, track_id])


def anonymize_frames(
    frames: Iterable[np.ndarray],
    anonymizer: Anonymizer,
    *,
    tracker: TrackerConfig | None = None,
    source: str | None = None,
    tracks_out: list | None = None,
    detect_every: int = 1,
    person_every: int = 1,
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Anonymize ``frames`` ((H, W, 3) uint8 RGB, in order); yield ``(frame, record)`` per frame,
    in order. ``record``: ``{"frame", "regions": [{"track", "how": detected|filled|before|between|
    whole-frame|verification, "label", "box", "verification"...}]}``, and with ``keep_text``
    ``"kept_text"``: the text regions this frame's detection left readable (as for a photo).
    ``tracks_out`` (a list) receives the tracks at the end. ``person_every``: a person detector
    (the scope's own, ``person``/``body``) runs on every n-th detection frame only
    (:class:`VideoOptions`)."""
    if anonymizer.edi is not None:
        raise AnonlensError("EDI-Anon (--method edi) is for photos; use the uniform method for videos")
    if anonymizer.detector is not None and anonymizer.detector.name == "boxes":
        raise AnonlensError("user boxes (--boxes/--masks) are for photos; videos use the detectors")
    cfg = tracker or TrackerConfig()
    trk = Tracker(cfg)
    seed = getattr(anonymizer.operator, "seed", None)
    base = zlib.crc32(f"{seed}:{source or ''}".encode()) if seed is not None else secrets.randbits(32)
    buffer: collections.deque = collections.deque()
    person_every = max(1, min(person_every, (cfg.pre_frames + 1) // detect_every))  # no person uncovered before its key frame
    people_between = person_every > 1 and anonymizer.detector is not None and anonymizer.detector.label == "person"
    for index, frame in enumerate(frames):
        kept: list[dict[str, Any]] = []
        if anonymizer.detector is None:  # the image scope: every frame whole, nothing to track
            regions, born = [], []
            whole = [(whole_image_region(*frame.shape[:2]), "main", None, "whole-frame")]
        else:
            whole = []
            skip: frozenset[str] = frozenset()
            if index % detect_every:
                found = None  # not a detection frame: the tracks carry over
            else:
                if people_between and (index // detect_every) % person_every:
                    skip = frozenset({"main"})  # not a key frame: the people's tracks carry over
                seen = anonymizer.find(frame, source=source, skip=skip)
                found, kept = list(zip(seen.regions, seen.parts)), seen.kept_text
            regions, born = trk.update(index, found, frame.shape[:2], not_run=skip)
        entry = {"frame": index, "image": frame, "kept_text": kept,
                 "regions": whole + [(r, p, t.id, how) for r, p, t, how in regions]}
        first_region = {t.id: r for r, _, t, _ in regions}
        for t in born:  # cover the frames before its first detection that are still buffered
            for old in buffer:
                if old["frame"] >= index - cfg.pre_frames:
                    old["regions"].append((first_region[t.id], t.part, t.id, "before"))
        buffer.append(entry)
        if len(buffer) > cfg.pre_frames:
            yield _render(buffer.popleft(), anonymizer, base, source)
    while buffer:
        yield _render(buffer.popleft(), anonymizer, base, source)
    if tracks_out is not None:
        tracks_out.extend(trk.tracks())


def _render(entry: dict[str, Any], anonymizer: Anonymizer, base: int, source: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame through :meth:`Anonymizer.anonymize_found` with its tracked regions, each drawing
    from its track's generator (a whole frame from track 0's); the face search draws from its own."""
    planned = entry["regions"]  # (region, part, track id or None, how)
    found = Found([r for r, _, _, _ in planned], [p for _, p, _, _ in planned], kept_text=entry["kept_text"])
    rngs = [_track_rng(anonymizer, base, track or 0) for _, _, track, _ in planned]
    result = anonymizer.anonymize_found(entry["image"], found, source=source, rng=_track_rng(anonymizer, base, 1 << 30), rngs=rngs,
                                        on_empty="keep")  # a video's nothing-found policy is the whole video's
    entries = result.record["regions"]
    records = [{**p, "track": track, "how": how} for p, (_, _, track, how) in zip(entries, planned)]
    records += [{**p, "track": None, "how": "verification"} for p in entries[len(planned):]]
    record: dict[str, Any] = {"frame": entry["frame"], "regions": records}
    if "kept_text" in result.record:
        record["kept_text"] = result.record["kept_text"]
    return result.image, record


def _add_kept_text(kept: list[dict[str, Any]], frame: int, entries: list[dict[str, Any]]) -> None:
    """Merge a frame's kept text regions into ``kept``: one entry per text at one place (the same
    text, IoU > 0.5 with the box where it was first kept): that first sighting's record, the
    lowest confidence and the frames (a list, made ranges by :func:`_kept_text_record`)."""
    for e in entries:
        same = next((k for k in kept if k["text"] == e["text"] and box_iou(k["box"], e["box"]) > 0.5), None)
        if same is None:
            kept.append({**e, "frames": [frame]})
        else:
            same["frames"].append(frame)
            same["confidence"] = min(same["confidence"], e["confidence"])


def _kept_text_record(kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**k, "frames": ranges(k["frames"])} for k in kept]


def anonymize_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    anonymizer: Anonymizer,
    options: VideoOptions,
    *,
    tmp_dir: str | os.PathLike,
    on_empty: str = "keep",
    source: str | None = None,
    on_frame: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
    on_damaged: str = "review",
) -> dict[str, Any]:
    """Anonymize the video ``src`` into ``dst`` (written atomically via ``tmp_dir``); returns the
    manifest entries for it. Raises :class:`AnonlensError` (nothing written) when anything fails.
    ``on_frame(done, total)`` reports progress (total 0 when the container does not say).
    Errors the decoder concealed (damaged packets) go into ``decode_errors``; with
    ``on_damaged="fail"`` they fail the video instead (nothing written)."""
    started = time.perf_counter()
    suffix = Path(dst).suffix.lower()
    reader = VideoReader(src)
    if max_pixels is not None and reader.info.width * reader.info.height > max_pixels:
        reader.close()
        raise AnonlensError(f"{src}: {reader.info.width}x{reader.info.height} frames are over the limit of {max_pixels:,} pixels (raise --max-pixels)")
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f".anonlens-{secrets.token_hex(6)}{suffix}"
    writer = None
    tracks: list = []
    counts = {"regions": 0, "filled": 0, "before": 0, "verification": {"passed": 0, "strengthened": 0, "masked": 0}}
    kept: list[dict[str, Any]] = []
    times_in: list = []
    try:
        frames = reader.frames(keep_audio=options.keep_audio)
        timing: collections.deque = collections.deque()

        def upright():
            for rgb, frame in frames:
                timing.append((frame.pts, frame.time_base))
                times_in.append(frame.pts * frame.time_base if frame.pts is not None else None)
                yield rgb

        for out, rec in anonymize_frames(upright(), anonymizer, tracker=options.tracker, source=source, tracks_out=tracks,
                                         detect_every=options.detect_every, person_every=options.person_every):
            pts, tb = timing.popleft()
            if writer is None:
                stream = reader.stream
                writer = VideoWriter(tmp, suffix, out.shape[1], out.shape[0], stream.time_base, stream.average_rate or stream.guessed_rate,
                                     audio_template=reader.audio[0] if (options.keep_audio and reader.audio) else None,
                                     crf=options.crf, preset=options.preset)
            writer.write(out, pts, tb)
            writer.mux_audio(reader.pending_audio)
            for r in rec["regions"]:
                counts["regions"] += 1
                counts["filled"] += r["how"] == "filled"
                counts["before"] += r["how"] == "before"
                v = r.get("verification")
                if v is not None:
                    counts["verification"][v["action"]] = counts["verification"].get(v["action"], 0) + 1
            _add_kept_text(kept, rec["frame"], rec.get("kept_text", []))
            if on_frame is not None:
                on_frame(rec["frame"] + 1, reader.info.frames_declared)
        if writer is None:
            raise AnonlensError(f"{src}: no frame to write")
        writer.mux_audio(reader.pending_audio)
        writer.close()
        times_out = frame_times(tmp)
        if len(times_out) != reader.decoded:
            raise AnonlensError(f"{src}: the written video has {len(times_out)} frames, the input {reader.decoded}")
        damage = reader.damage()
        if damage and on_damaged == "fail":
            raise VideoReadError(src, f"damaged: {reader.decode_error_count} decoding error(s), the first {damage[0]}; "
                                      "nothing written (--on-damaged fail)")
        tick = reader.stream.time_base
        if any(a is not None and abs(a - b) > tick for a, b in zip(sorted(t for t in times_in if t is not None), sorted(times_out))):
            raise AnonlensError(f"{src}: the written video's timestamps differ from the input's")
        nothing = not tracks and anonymizer.detector is not None
        record = {
            "video": {**reader.info.to_dict(), "frames": reader.decoded, "written_size": [writer.width, writer.height],
                      "audio_kept": bool(options.keep_audio and reader.audio), "rotation_applied": reader.info.rotation,
                      "tracker": asdict(options.tracker), "codec_out": writer.stream.codec_context.name},
            "tracks": [t.to_dict() for t in tracks],
            "regions_per_frame": counts,
            **({"kept_text": _kept_text_record(kept)} if anonymizer.config.keep_text is not None else {}),
            "seconds_video": round(time.perf_counter() - started, 3),
            "fps": round(reader.decoded / max(time.perf_counter() - started, 1e-9), 2),
            **({"decode_errors": damage} if damage else {}),
        }
        if nothing and on_empty == "skip":
            tmp.unlink(missing_ok=True)
            return {**record, "status": "skipped", "nothing_found": True, "output": None}
        if nothing and on_empty == "full":  # nothing found: the whole of every frame, in a second pass
            tmp.unlink(missing_ok=True)
            whole = cached_anonymizer(dataclasses.replace(anonymizer.config, scope="image", detector=None, detector_options=(),
                                                          keep_text=None))
            again = anonymize_video(src, dst, whole, options, tmp_dir=tmp_dir, on_empty="keep", source=source, on_frame=on_frame,
                                    max_pixels=max_pixels, on_damaged=on_damaged)
            # every pixel of every frame is anonymized: no text is left readable
            return {**again, "status": "full-frame", "nothing_found": True, "tracks": [],
                    **({"kept_text": []} if anonymizer.config.keep_text is not None else {})}
        os.replace(tmp, dst)
        return {**record, "status": "kept" if nothing else "anonymized", "nothing_found": nothing}
    except BaseException:
        if writer is not None:
            writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        reader.close()

"""Linking detections across frames into tracks, so that a face stays covered when the detector
misses it for a few frames and its region does not jitter.

A small tracker of our own (the maintained ones do not fit: norfair pins numpy < 2, motpy does not
smooth, supervision's and trackers' current releases pull OpenCV 5): per label, each live track
predicts its box with a constant velocity; detections are matched to predictions greedily by IoU
(or, for fast motion, by the detection's centre lying in the predicted box); a matched track's box
is smoothed (exponentially, ``smoothing``) but never smaller than the detection it matched; an
unmatched track is *filled in* with its predicted box, grown by ``growth`` per missed frame, for at
most ``max_gap`` frames, then ends. New tracks are also reported so the caller can cover the
``pre_frames`` frames before their first detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..regions import Region, box_iou

__all__ = ["TrackerConfig", "Track", "Tracker", "ranges"]


@dataclass(frozen=True)
class TrackerConfig:
    """``max_gap``: frames a track is filled in after its last detection (gaps up to this long are
    covered); ``pre_frames``: frames covered before a track's first detection; ``smoothing``: weight
    of the new detection in the smoothed box (1 = no smoothing); ``growth``: share a filled-in box
    grows by per missed frame (at most ``max_growth``); ``min_iou``: IoU for a match."""

    max_gap: int = 12
    pre_frames: int = 4
    smoothing: float = 0.6
    growth: float = 0.05
    max_growth: float = 0.5
    min_iou: float = 0.1

    def __post_init__(self) -> None:
        if self.max_gap < 0 or self.pre_frames < 0:
            raise ValueError("max_gap and pre_frames must be >= 0")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError("smoothing must be in (0, 1]")


@dataclass
class Track:
    id: int
    label: str
    part: str
    box: np.ndarray  # smoothed (x1, y1, x2, y2)
    first: int
    last_seen: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    score: float = 1.0
    misses: int = 0
    detected: int = 0
    filled: list[int] = field(default_factory=list)
    last: int = -1

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "first_frame": self.first, "last_frame": self.last,
                "detected_frames": self.detected, "filled_frames": ranges(self.filled)}


def ranges(frames: list[int]) -> list[list[int]]:
    """``[3, 4, 5, 9]`` -> ``[[3, 5], [9, 9]]`` (inclusive ranges)."""
    out: list[list[int]] = []
    for f in sorted(frames):
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def _grow(box: np.ndarray, share: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return box + np.array([-w, -h, w, h]) * share / 2


def _centre_in(box, other) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


class Tracker:
    """Feed :meth:`update` each frame's detections ``[(Region, part), ...]`` in frame order."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.live: list[Track] = []
        self.ended: list[Track] = []
        self._next = 1

    def update(self, frame: int, detections: list[tuple[Region, str]] | None, shape: tuple[int, int], *,
               not_run: frozenset[str] = frozenset()) -> tuple[list[tuple[Region, str, Track, str]], list[Track]]:
        """Returns the regions to anonymize in ``frame`` as ``(region, part, track, how)`` with
        ``how`` ``detected``, ``filled`` or ``between`` (``detections`` None: the detector did not
        run on this frame; every live track is carried over, as a miss that does not count), and
        the tracks born in this frame. ``not_run``: parts whose detector did not run on this frame
        (people between key frames): their tracks are carried over the same way."""
        if detections is None:
            return self._carry(frame, shape), []
        carried = [t for t in self.live if t.part in not_run]
        self.live = [t for t in self.live if t.part not in not_run]
        out, born = self._match(frame, detections, shape)
        out += self._carry(frame, shape, carried)
        self.live += carried
        return out, born

    def _match(self, frame: int, detections: list[tuple[Region, str]], shape: tuple[int, int]) -> tuple[list[tuple[Region, str, Track, str]], list[Track]]:
        cfg = self.config
        h, w = shape
        out: list[tuple[Region, str, Track, str]] = []
        pairs = []
        for ti, t in enumerate(self.live):
            pred = t.predicted()
            for di, (r, part) in enumerate(detections):
                if r.label != t.label or part != t.part:
                    continue
                iou = box_iou(pred, r.box)
                if iou >= cfg.min_iou or _centre_in(r.box, pred):
                    pairs.append((iou, ti, di))
        pairs.sort(key=lambda p: -p[0])
        used_t, used_d = set(), set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t, (r, part) = self.live[ti], detections[di]
            raw = np.asarray(r.box, float)
            smoothed = cfg.smoothing * raw + (1 - cfg.smoothing) * t.predicted()
            t.velocity = 0.5 * t.velocity + 0.5 * (smoothed - t.box)
            t.box = smoothed
            t.misses, t.last_seen, t.last, t.score = 0, frame, frame, float(r.score)
            t.detected += 1
            covering = np.concatenate([np.minimum(smoothed[:2], raw[:2]), np.maximum(smoothed[2:], raw[2:])])
            out.append((Region(tuple(float(v) for v in covering), r.score, r.label, r.mask, r.landmarks, r.polygon), part, t, "detected"))
        still: list[Track] = []
        for ti, t in enumerate(self.live):
            if ti in used_t:
                still.append(t)
                continue
            t.misses += 1
            if t.misses > cfg.max_gap:
                self.ended.append(t)
                continue
            t.box = t.predicted()
            t.velocity = t.velocity * 0.8
            box = _grow(t.box, min(cfg.max_growth, cfg.growth * t.misses))
            box = np.clip(box, [0, 0, 0, 0], [w, h, w, h])
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:  # left the frame
                self.ended.append(t)
                continue
            t.filled.append(frame)
            t.last = frame
            still.append(t)
            out.append((Region(tuple(float(v) for v in box), t.score, t.label), t.part, t, "filled"))
        born = []
        for di, (r, part) in enumerate(detections):
            if di in used_d:
                continue
            t = Track(self._next, r.label, part, np.asarray(r.box, float), frame, frame, score=float(r.score), detected=1, last=frame)
            self._next += 1
            still.append(t)
            born.append(t)
            out.append((r, part, t, "detected"))
        self.live = still
        return out, born

    def _carry(self, frame: int, shape: tuple[int, int], tracks: list[Track] | None = None) -> list[tuple[Region, str, Track, str]]:
        h, w = shape
        out = []
        for t in self.live if tracks is None else tracks:
            t.box = t.predicted()
            box = np.clip(_grow(t.box, min(self.config.max_growth, self.config.growth * (t.misses + 1))), [0, 0, 0, 0], [w, h, w, h])
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                t.last = frame
                out.append((Region(tuple(float(v) for v in box), t.score, t.label), t.part, t, "between"))
        return out

    def tracks(self) -> list[Track]:
        return sorted(self.ended + self.live, key=lambda t: t.id)

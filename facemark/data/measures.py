"""Eye and mouth state: eye aspect ratio per eye, mouth aspect ratio, blinks over video frames.

>>> face = facemark.load().detect("photo.jpg")[0]
>>> face.eye_aspect_ratio()        # (right, left): the subject's eyes; about 0.25-0.35 open
>>> face.mouth_aspect_ratio()      # 0 with the lips together

The eye aspect ratio (EAR, Soukupova & Cech, "Real-Time Eye Blink Detection using Facial
Landmarks", CVWW 2016) is the mean lid-to-lid distance over the corner-to-corner distance
of one eye, ``(|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)`` for a 6-point eye; it falls towards
0 as the eye closes and does not depend on the face's size or in-plane rotation. The mouth
aspect ratio is the same measure on the inner lips. The points come from the scheme's names
(``facemark.data.templates.ASPECT_POINTS``: 300w68, wflw98, lapa106, cofw29, and schemes
with a conversion to one of them); other schemes are refused with a message saying so.

Blinks: :class:`BlinkDetector` follows each face's mean EAR over the frames of a video (by
default from the landmarks ``track_video`` smoothed with its One Euro filter) and reports a
blink when the EAR falls below ``ratio`` times that face's open-eye level (a high percentile
of its recent EAR) for ``min_frames`` to ``max_seconds``.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from facemark.data.schemes import get_scheme
from facemark.data.templates import ASPECT_POINTS, AspectPoints, points_for
from facemark.errors import ConfigError


def _targets(scheme: str) -> list[str]:
    own = get_scheme(scheme).name
    return ([own] if own in ASPECT_POINTS else []) + [s for s in ASPECT_POINTS if s != own]


def _ratio(pts: np.ndarray, scheme: str, part: AspectPoints) -> float:
    sch = get_scheme(scheme)
    c = pts[sch.indices(part.corners)]
    width = float(np.linalg.norm(c[0] - c[1]))
    upper = pts[sch.indices([u for u, _ in part.pairs])]
    lower = pts[sch.indices([lo for _, lo in part.pairs])]
    height = float(np.linalg.norm(upper - lower, axis=1).mean())
    if not (np.isfinite(width) and np.isfinite(height)):
        return float("nan")
    return height / width if width > 0 else float("nan")


def eye_aspect_ratio(points: np.ndarray, scheme: str) -> tuple[float, float]:
    """Eye aspect ratio of each eye.

    Args:
        points: (N, 2) landmark pixels in the order of ``scheme``.
        scheme: the scheme name.

    Returns:
        (right, left): the subject's right eye (on the image's left in a frontal photo),
        then the left; unitless, NaN where a point is NaN.

    Raises:
        FacemarkError: the scheme marks no eye lids (e.g. ``aflw19``, ``face5``).
    """
    pts, target = points_for(points, scheme, _targets(scheme), "the eye aspect ratio")
    parts = ASPECT_POINTS[target]
    return _ratio(pts, target, parts["eye_right"]), _ratio(pts, target, parts["eye_left"])


def mouth_aspect_ratio(points: np.ndarray, scheme: str) -> float:
    """Mouth aspect ratio: the inner lips' mean opening over the mouth's width (0 when the
    lips touch; unitless).

    Raises:
        FacemarkError: the scheme marks no inner lips (e.g. ``aflw19``, ``face5``).
    """
    pts, target = points_for(points, scheme, _targets(scheme), "the mouth aspect ratio")
    return _ratio(pts, target, ASPECT_POINTS[target]["mouth"])


# ---------------------------------------------------------------------------------------
# Blinks
# ---------------------------------------------------------------------------------------
@dataclass
class Blink:
    """One blink of one face.

    Attributes:
        track_id: the face's track in the video (None for a single series).
        start, end: first and last frame index with the eyes closed (inclusive).
        min_ear: the lowest mean eye aspect ratio during the blink.
        open_ear: the face's open-eye level when the blink started.
    """

    track_id: int | None
    start: int
    end: int
    min_ear: float
    open_ear: float

    @property
    def frames(self) -> int:
        return self.end - self.start + 1


@dataclass
class _Track:
    history: deque
    closed_since: int | None = None
    last_frame: int | None = None
    min_ear: float = float("inf")
    open_ear: float = float("nan")
    blinks: list = field(default_factory=list)


class BlinkDetector:
    """Blinks from each face's mean eye aspect ratio, frame by frame.

    Args:
        ratio: eyes count as closed when the EAR is below ``ratio`` x the face's open-eye
            level (relative, so it suits any face and model; default 0.7).
        threshold: an absolute EAR threshold to use instead (e.g. 0.2), or None.
        min_frames: a closure shorter than this many frames is noise, not a blink.
        max_seconds: a closure longer than this is not a blink (eyes kept closed).
        window_seconds: how much history the open-eye level looks at.
        percentile: the open-eye level is this percentile of the EAR in the window (blinks
            take a small share of the time, so a high percentile is the open eye).
        fps: frame rate of the frames' indices.

    Feed it with :meth:`update` (one face's EAR per frame) or :meth:`add_frame` (a
    ``VideoFrame`` of ``track_video``); :attr:`blinks` lists what was found. A closure still
    open at the end is reported by :meth:`finish`.
    """

    def __init__(self, ratio: float = 0.7, threshold: float | None = None, min_frames: int = 2,
                 max_seconds: float = 1.0, window_seconds: float = 3.0,
                 percentile: float = 80.0, fps: float = 30.0):
        for key, value in (("ratio", ratio), ("max_seconds", max_seconds),
                           ("window_seconds", window_seconds), ("fps", fps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{key}: expected a positive number, got {value!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold > 0):
            raise ConfigError(f"threshold: expected a positive EAR or None, got {threshold!r}")
        if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 1:
            raise ConfigError(f"min_frames: expected a whole number >= 1, got {min_frames!r}")
        if not 0 < percentile <= 100:
            raise ConfigError(f"percentile: expected a number in (0, 100], got {percentile!r}")
        self.ratio, self.threshold, self.min_frames = ratio, threshold, min_frames
        self.max_seconds, self.window_seconds = max_seconds, window_seconds
        self.percentile, self.fps = percentile, fps
        self.tracks_: dict[int | None, _Track] = {}

    @property
    def blinks(self) -> list[Blink]:
        """Every blink found so far, in order of their start frame."""
        return sorted((b for t in self.tracks_.values() for b in t.blinks),
                      key=lambda b: (b.start, -1 if b.track_id is None else b.track_id))

    def open_level(self, track_id: int | None = None) -> float:
        """The current open-eye EAR of a track (NaN before any frame)."""
        t = self.tracks_.get(track_id)
        if t is None or not t.history:
            return float("nan")
        return float(np.percentile(np.asarray(t.history), self.percentile))

    def is_closed(self, ear: float, track_id: int | None = None) -> bool:
        """Whether ``ear`` counts as closed eyes for that track now."""
        if not np.isfinite(ear):
            return False
        if self.threshold is not None:
            return ear < self.threshold
        level = self.open_level(track_id)
        return bool(np.isfinite(level) and ear < self.ratio * level)

    def update(self, frame: int, ear: float, track_id: int | None = None) -> Blink | None:
        """One frame of one face: its mean EAR. Returns the blink that ended on the frame
        before this one, if any. A missing frame of a track ends its closure."""
        t = self.tracks_.get(track_id)
        if t is None:
            t = self.tracks_[track_id] = _Track(history=deque(
                maxlen=max(1, int(round(self.window_seconds * self.fps)))))
        done = None
        if t.last_frame is not None and frame != t.last_frame + 1:
            done = self._close(t, track_id, t.last_frame)
        closed = self.is_closed(ear, track_id)
        if closed:
            if t.closed_since is None:
                t.closed_since, t.min_ear, t.open_ear = frame, ear, self.open_level(track_id)
            t.min_ear = min(t.min_ear, ear)
        elif t.closed_since is not None:
            done = self._close(t, track_id, frame - 1)
        if np.isfinite(ear) and not closed:
            t.history.append(float(ear))       # the open-eye level learns from open eyes
        t.last_frame = frame
        return done

    def _close(self, t: _Track, track_id, end: int) -> Blink | None:
        if t.closed_since is None:
            return None
        start, t.closed_since = t.closed_since, None
        frames = end - start + 1
        if frames < self.min_frames or frames > self.max_seconds * self.fps:
            return None
        blink = Blink(track_id=track_id, start=start, end=end, min_ear=float(t.min_ear),
                      open_ear=float(t.open_ear))
        t.blinks.append(blink)
        return blink

    def finish(self) -> list[Blink]:
        """End every closure still open (the video ended); returns all blinks."""
        for track_id, t in self.tracks_.items():
            if t.last_frame is not None:
                self._close(t, track_id, t.last_frame)
        return self.blinks

    def add_frame(self, frame, raw: bool = False) -> list[Blink]:
        """Every face of a ``VideoFrame`` (``facemark.inference.video.track_video``).

        Args:
            frame: the VideoFrame.
            raw: use the model's unsmoothed points (``frame.raw_points``) instead of the
                smoothed ones.

        Returns:
            the blinks that ended with this frame.
        """
        out = []
        for face, raw_points in zip(frame.faces, frame.raw_points):
            points = raw_points if raw else face.points
            ear = float(np.nanmean(eye_aspect_ratio(points, face.scheme)))
            blink = self.update(frame.index, ear, face.track_id)
            if blink is not None:
                out.append(blink)
        return out


def detect_blinks(frames: Iterable, raw: bool = False, **detector_args) -> list[Blink]:
    """Every blink in the frames of ``track_video`` (a convenience over BlinkDetector).

    Args:
        frames: VideoFrames, e.g. ``track_video(landmarker, VideoSource("clip.mp4"))``.
        raw: use the unsmoothed points.
        **detector_args: BlinkDetector arguments (``ratio``, ``threshold``, ``fps``, ...).
    """
    detector = BlinkDetector(**detector_args)
    for frame in frames:
        detector.add_frame(frame, raw=raw)
    return detector.finish()


def ear_series(frames: Iterable, raw: bool = False) -> dict[int | None, np.ndarray]:
    """Per track, (T, 2) ``[frame index, mean EAR]`` rows of the frames (for plots)."""
    out: dict[int | None, list] = {}
    for frame in frames:
        for face, raw_points in zip(frame.faces, frame.raw_points):
            ear = np.nanmean(eye_aspect_ratio(raw_points if raw else face.points, face.scheme))
            out.setdefault(face.track_id, []).append((frame.index, float(ear)))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


"""Landmark tracking across video frames, independent of the landmark model.

Per frame the pipeline asks the tracker where the faces are, runs its landmark model on
those boxes, and hands the landmarks back::

    tracker = FaceTracker(create_detector("opencv_haar"))
    for index, frame in enumerate(frames):
        boxes = tracker.boxes_for(frame)                    # list[TrackBox]
        results = [landmarker.predict(frame, b.box) for b in boxes]   # (points, confidence)
        faces = tracker.update(index, results)              # list[TrackedFace], smoothed

How it decides:

- The next frame's box of a face comes from this frame's landmarks: the box around the
  points, mapped to the detector's box style by the relation measured when the detector
  last saw that face (so it works for any detector and any landmark scheme).
- The detector runs again on the first frame, every ``detect_every`` frames (to catch new
  faces), when a face's landmark confidence drops below ``min_confidence``, and when no
  face is tracked.
- Detections are matched to tracks by IoU (``iou_threshold``); unmatched detections start
  new tracks with new ids, and a low-confidence track the detector cannot find is dropped.
  A confident track the detector missed is kept (detectors miss turned faces that the
  landmarks still follow). Track ids are never reused.
- Each track holds its own One Euro filter (``facemark.inference.smoothing``); ``update``
  returns the smoothed points, and the raw ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from facemark.inference.detectors.base import FaceDetector, box_iou
from facemark.inference.smoothing import OneEuroFilter


@dataclass(frozen=True, eq=False)
class TrackBox:
    """A box for the landmark model this frame.

    Attributes:
        track_id: stable id of the face across frames.
        box: float64 (4,) ``x1, y1, x2, y2`` pixels, in the detector's box style.
        from_detector: True when the detector found this box this frame, False when it was
            predicted from the previous frame's landmarks.
        score: the detector's score when ``from_detector``, else the track's last landmark
            confidence.
    """

    track_id: int
    box: np.ndarray
    from_detector: bool
    score: float


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """The landmarks of one tracked face in one frame.

    Attributes:
        track_id: stable id of the face across frames.
        points: (N, 2) smoothed landmark pixels (equal to ``raw_points`` with smoothing off).
        raw_points: (N, 2) landmark pixels as the model gave them.
        confidence: the model's confidence for this face (mean per-landmark confidence).
        box: the box the model was run on this frame.
        lost: True when the confidence fell below ``min_confidence``: the detector runs on
            the next frame and the track ends unless it finds the face again.
    """

    track_id: int
    points: np.ndarray
    raw_points: np.ndarray
    confidence: float
    box: np.ndarray
    lost: bool


@dataclass
class BoxRelation:
    """How a detector's box sits on the box around a face's landmarks, in units of the
    landmark box: centre offset (dx, dy) and size ratios (sw, sh)."""

    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    @classmethod
    def measure(cls, detector_box: np.ndarray, landmark_box: np.ndarray) -> "BoxRelation":
        lw, lh = _wh(landmark_box)
        dw, dh = _wh(detector_box)
        (dcx, dcy), (lcx, lcy) = _centre(detector_box), _centre(landmark_box)
        return cls((dcx - lcx) / lw, (dcy - lcy) / lh, dw / lw, dh / lh)

    def apply(self, landmark_box: np.ndarray) -> np.ndarray:
        lw, lh = _wh(landmark_box)
        cx, cy = _centre(landmark_box)
        cx, cy = cx + self.dx * lw, cy + self.dy * lh
        w, h = self.sw * lw, self.sh * lh
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def blend(self, other: "BoxRelation", weight: float) -> "BoxRelation":
        """Move ``weight`` of the way towards ``other`` (a running average over detections)."""
        a = np.array([self.dx, self.dy, self.sw, self.sh])
        b = np.array([other.dx, other.dy, other.sw, other.sh])
        return BoxRelation(*(float(v) for v in (1 - weight) * a + weight * b))


@dataclass
class _Track:
    track_id: int
    box: np.ndarray                       # box for the next frame
    relation: BoxRelation | None          # None until landmarks arrive after a detection
    detector_box: np.ndarray | None       # the detector box the relation is measured on
    confidence: float
    filter: OneEuroFilter
    lost: bool = False
    from_detector: bool = True            # ``box`` was set from a detection this frame


class FaceTracker:
    """Face tracks across video frames: boxes from landmarks, detector when needed.

    Args:
        detector: any FaceDetector (loaded on first use).
        detect_every: run the detector at least every this many frames, to catch new faces
            (1 = every frame).
        min_confidence: a face whose landmark confidence falls below this is lost: the
            detector runs on the next frame and the track ends unless it is found again.
        iou_threshold: least IoU between a detection and a track's predicted box for them
            to be the same face.
        smoothing: filter each track's landmarks with a One Euro filter.
        filter_args: OneEuroFilter arguments (``min_cutoff``, ``beta``, ``d_cutoff``).
        fps: frame rate used to turn frame indices into seconds for the filter.
        relation_rate: weight of a new measurement in a track's running box relation.
        max_faces: at most this many tracks (the highest-scoring detections win); None: no
            limit.
    """

    def __init__(self, detector: FaceDetector, detect_every: int = 10,
                 min_confidence: float = 0.5, iou_threshold: float = 0.3,
                 smoothing: bool = True, filter_args: dict[str, float] | None = None,
                 fps: float = 30.0, relation_rate: float = 0.5, max_faces: int | None = None):
        self.detector = detector
        self.detect_every = detect_every
        self.min_confidence = min_confidence
        self.iou_threshold = iou_threshold
        self.smoothing = smoothing
        self.filter_args = filter_args
        self.fps = fps
        self.relation_rate = relation_rate
        self.max_faces = max_faces
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a new video); ids start again at 0."""
        self.tracks_: list[_Track] = []
        self.next_id_ = 0
        self.frames_since_detect_: int | None = None
        self.pending_: list[TrackBox] | None = None
        self.detector_runs_ = 0

    # -- per frame -------------------------------------------------------------------------
    def needs_detection(self) -> bool:
        """Whether the next ``boxes_for`` runs the detector: no tracks yet, a track lost, or
        ``detect_every`` frames since the last run."""
        if not self.tracks_ or self.frames_since_detect_ is None:
            return True
        if any(t.lost for t in self.tracks_):
            return True
        return self.frames_since_detect_ + 1 >= self.detect_every

    def boxes_for(self, frame: np.ndarray) -> list[TrackBox]:
        """The boxes to run the landmark model on in ``frame`` (RGB uint8 (H, W, 3)).

        Runs the detector when needed (see the module docstring). Call ``update`` with the
        landmarks of exactly these boxes, in this order, before the next ``boxes_for``.
        """
        if self.detect_every < 1:
            raise ValueError(f"FaceTracker.detect_every: expected an integer >= 1, got "
                             f"{self.detect_every!r}")
        height, width = np.asarray(frame).shape[:2]
        for track in self.tracks_:
            if _fraction_inside(track.box, width, height) < 0.3:
                track.lost = True   # left the frame: ends unless the detector finds it
        if self.needs_detection():
            self._detect(frame)
            self.frames_since_detect_ = 0
        else:
            self.frames_since_detect_ += 1
        boxes = [TrackBox(t.track_id, t.box.copy(), t.from_detector, t.confidence)
                 for t in self.tracks_]
        self.pending_ = boxes
        return boxes

    def update(self, frame_index: int, faces: Sequence[Any],
               timestamp: float | None = None) -> list[TrackedFace]:
        """Take the landmarks of the boxes from the last ``boxes_for``.

        Args:
            frame_index: index of the frame (for the filter's clock: ``frame_index / fps``
                seconds unless ``timestamp`` is given).
            faces: one entry per box, in order: a ``(points (N, 2), confidence)`` pair, or an
                object with ``points`` and either ``confidence`` (float) or ``scores``
                (per-landmark, averaged).
            timestamp: the frame's time in seconds (for variable frame rates).

        Returns:
            One TrackedFace per box, in the same order.
        """
        if self.pending_ is None:
            raise RuntimeError("FaceTracker.update: call boxes_for(frame) first")
        if len(faces) != len(self.pending_):
            raise ValueError(f"FaceTracker.update: got {len(faces)} results for "
                             f"{len(self.pending_)} boxes from boxes_for")
        t = float(timestamp) if timestamp is not None else frame_index / float(self.fps)
        out = []
        for track, face in zip(self.tracks_, faces):
            points, confidence = _unpack(face)
            out.append(self._update_track(track, points, confidence, t))
        self.pending_ = None
        self._drop_duplicates()
        return out

    # -- internals -------------------------------------------------------------------------
    def _detect(self, frame: np.ndarray) -> None:
        found = self.detector.detect(frame)
        self.detector_runs_ += 1
        if self.max_faces is not None:
            found = found[: self.max_faces]
        det_boxes = np.array([f.box for f in found]).reshape(-1, 4)
        track_boxes = np.array([t.box for t in self.tracks_]).reshape(-1, 4)
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        if len(det_boxes) and len(track_boxes):
            iou = box_iou(track_boxes, det_boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    matched_tracks.add(r)
                    matched_dets.add(c)
                    self._confirm(self.tracks_[r], det_boxes[c], found[c].score)
        kept = [t for i, t in enumerate(self.tracks_) if i in matched_tracks or not t.lost]
        for c, face in enumerate(found):
            if c in matched_dets:
                continue
            if self.max_faces is not None and len(kept) >= self.max_faces:
                break
            kept.append(self._new_track(face.box, face.score))
        self.tracks_ = kept

    def _confirm(self, track: _Track, det_box: np.ndarray, score: float) -> None:
        """The detector found this track's face: measure the box relation again at the next
        update. A confident track keeps its landmark box (steadier crops); a lost one, or
        one with no relation yet, restarts from the detector's box."""
        if track.lost or track.relation is None:
            track.box = det_box.copy()
            track.from_detector = True
            track.confidence = float(score)
            if track.lost:
                track.filter.reset()
            track.lost = False
        track.detector_box = det_box.copy()

    def _new_track(self, box: np.ndarray, score: float) -> _Track:
        track = _Track(self.next_id_, np.asarray(box, dtype=np.float64).copy(), None,
                       np.asarray(box, dtype=np.float64).copy(), float(score),
                       OneEuroFilter(**(self.filter_args or {})))
        self.next_id_ += 1
        return track

    def _update_track(self, track: _Track, points: np.ndarray, confidence: float,
                      t: float) -> TrackedFace:
        used_box = track.box.copy()
        track.from_detector = False
        track.confidence = confidence
        finite = np.isfinite(points).all(axis=1)
        if finite.sum() < 2:
            track.lost = True
            return TrackedFace(track.track_id, points.copy(), points.copy(), confidence,
                               used_box, True)
        lm_box = _points_box(points[finite])
        if track.detector_box is not None:
            measured = BoxRelation.measure(track.detector_box, lm_box)
            track.relation = (measured if track.relation is None
                              else track.relation.blend(measured, self.relation_rate))
            track.detector_box = None
        # every track starts from a detection, so its relation is measured by now
        track.box = track.relation.apply(lm_box)
        track.lost = confidence < self.min_confidence
        if self.smoothing:
            size = float(np.sqrt(max(_wh(lm_box)[0] * _wh(lm_box)[1], 1e-6)))
            smooth = track.filter(points, t, size)
        else:
            smooth = points.copy()
        return TrackedFace(track.track_id, smooth, points.copy(), confidence, used_box,
                           track.lost)

    def _drop_duplicates(self) -> None:
        """Two tracks that converged on one face: keep the older one."""
        if len(self.tracks_) < 2:
            return
        boxes = np.array([t.box for t in self.tracks_])
        iou = box_iou(boxes, boxes)
        drop: set[int] = set()
        for i in range(len(self.tracks_)):
            for j in range(i + 1, len(self.tracks_)):
                if i not in drop and j not in drop and iou[i, j] > 0.7:
                    drop.add(j if self.tracks_[i].track_id < self.tracks_[j].track_id else i)
        self.tracks_ = [t for k, t in enumerate(self.tracks_) if k not in drop]


def _unpack(face: Any) -> tuple[np.ndarray, float]:
    if isinstance(face, tuple) and len(face) == 2:
        points, confidence = face
    else:
        points = getattr(face, "points", None)
        if points is None:
            raise TypeError(f"FaceTracker.update: expected (points, confidence) or an object "
                            f"with .points, got {type(face).__name__}")
        if getattr(face, "confidence", None) is not None:
            confidence = face.confidence
        elif getattr(face, "scores", None) is not None:
            confidence = float(np.nanmean(np.asarray(face.scores, dtype=np.float64)))
        else:
            raise TypeError(f"FaceTracker.update: {type(face).__name__} has no .confidence "
                            f"or .scores")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"FaceTracker.update: expected points of shape (N, 2), got {points.shape}")
    return points, float(confidence)


def _fraction_inside(box: np.ndarray, width: int, height: int) -> float:
    """Fraction of the box's area inside the image (pixel edges at -0.5 and W - 0.5)."""
    w, h = _wh(box)
    ix = max(0.0, min(box[2], width - 0.5) - max(box[0], -0.5))
    iy = max(0.0, min(box[3], height - 0.5) - max(box[1], -0.5))
    return ix * iy / (w * h)


def _points_box(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)


def _wh(box: np.ndarray) -> tuple[float, float]:
    return max(float(box[2] - box[0]), 1e-6), max(float(box[3] - box[1]), 1e-6)


def _centre(box: np.ndarray) -> tuple[float, float]:
    return (float(box[0] + box[2]) / 2.0, float(box[1] + box[3]) / 2.0)

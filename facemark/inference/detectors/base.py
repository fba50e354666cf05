"""The face detector interface: one ``detect(image) -> list[DetectedFace]`` for every backend.

Every detector follows the scikit-learn contract: the constructor only stores its keyword
arguments (so ``repr`` and ``get_params`` show exactly what was asked for), ``load()`` does
the expensive set-up (reading a cascade or model file, importing an optional package) and
returns ``self``, and ``detect`` loads on first use. Learned or loaded state ends in ``_``.

Results always have the same shape: a list, empty when no face is found, of
:class:`DetectedFace` sorted by score (highest first), with boxes in pixels of the image
that was passed in. Boxes are not clipped to the image: a face cut by the border keeps its
full extent, which the landmark crop needs.

``box_style`` names the kind of box a detector draws (tight around the eyes and mouth for
Haar, forehead to chin for dlib's HOG, ...). The box-to-crop calibration of a landmark model
is stored per ``box_style``, so two detectors must share a style only if their boxes agree.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from facemark.errors import ConfigError


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face found by a detector.

    Attributes:
        box: float64 (4,) ``x1, y1, x2, y2`` in pixels of the input image (0-based pixel
            centres, as everywhere in facemark); may extend past the image border.
        score: the detector's confidence; its scale depends on the detector (see each
            detector's docstring), higher is more certain.
        points5: float64 (5, 2) in the ``face5`` scheme order (eye on the image's left,
            eye on the image's right, nose tip, mouth corner on the image's left, mouth corner
            on the image's right) when the detector gives them, a row of NaN for a point this
            detector does not give, or None for detectors that give no points.
    """

    box: np.ndarray
    score: float
    points5: np.ndarray | None = None

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"DetectedFace.box: expected 4 numbers x1, y1, x2, y2, got {box.size}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.points5 is not None:
            pts = np.asarray(self.points5, dtype=np.float64)
            if pts.shape != (5, 2):
                raise ValueError(f"DetectedFace.points5: expected shape (5, 2), got {pts.shape}")
            object.__setattr__(self, "points5", pts)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """Face size in pixels: ``sqrt(width * height)`` of the box."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        pts = "" if self.points5 is None else ", points5"
        return f"DetectedFace(box=[{box}], score={self.score:.3f}{pts})"


def check_image(image: Any, who: str = "detect") -> np.ndarray:
    """Return ``image`` as a C-contiguous RGB uint8 (H, W, 3) array, or raise ValueError.

    A grey (H, W) or (H, W, 1) uint8 image is accepted and expanded to three channels.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{who}: expected an RGB uint8 numpy array (H, W, 3), "
                         f"got {type(image).__name__}; read files with "
                         "facemark.data.images.read_image")
    if image.dtype != np.uint8:
        raise ValueError(f"{who}: expected an RGB uint8 image, got dtype {image.dtype}; "
                         "convert with np.clip(image, 0, 255).astype(np.uint8)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{who}: expected an RGB image of shape (H, W, 3), "
                         f"got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{who}: empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        containment: float | None = None) -> np.ndarray:
    """Greedy non-maximum suppression. Returns the indices kept, highest score first.

    Args:
        boxes: (K, 4) ``x1, y1, x2, y2``.
        scores: (K,).
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is above
            this.
        containment: also drop a box when its intersection with a kept box, divided by the
            smaller of the two areas, is above this (a part of a face inside the whole face).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        drop = box_iou(boxes[i][None], boxes[rest])[0] > iou_threshold
        if containment is not None:
            drop |= _intersection_over_smaller(boxes[i], boxes[rest]) > containment
        order = rest[~drop]
    return np.array(keep, dtype=np.int64)


def _area(boxes: np.ndarray) -> np.ndarray:
    width = np.clip(boxes[..., 2] - boxes[..., 0], 0, None)
    return width * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def _intersection_over_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    smaller = np.minimum(_area(box), _area(others))
    return np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1.0), 0.0)


def unscale(coords: np.ndarray, scale: float) -> np.ndarray:
    """Map coordinates from an image resized by ``scale`` back to the original image.

    Pixel centres are integers (facemark's convention), so pixel edges sit at half
    integers and the map is ``(v + 0.5) / scale - 0.5``, for box edges and points alike.
    """
    return (np.asarray(coords, dtype=np.float64) + 0.5) / scale - 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (K, 4) and ``b`` (L, 4) -> (K, L)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class FaceDetector:
    """Base class of the face detectors.

    Subclasses set ``name`` (the registry key), document their score scale, implement
    ``_load()`` (expensive set-up, storing state in attributes ending in ``_``) and
    ``_detect(image)`` (RGB uint8 (H, W, 3) -> list of DetectedFace in image pixels, any
    order, before the ``min_size``/``score_threshold`` filter), and may override
    ``check_available()``.

    Args:
        min_size: smallest face to report, in pixels of the input image (the shorter side of
            the box); detectors also use it to skip work on smaller scales.
        score_threshold: faces scoring below this are dropped; the scale depends on the
            detector.
    """

    name: ClassVar[str] = ""
    #: the keyword argument that the text after ``name:`` fills in ``create_detector``
    #: (``"yunet:/path/model.onnx"`` sets ``model_path``); None when the name takes no value.
    spec_arg: ClassVar[str | None] = None
    #: one line for ``facemark detect --detector`` help and ``available_detectors``.
    summary: ClassVar[str] = ""

    def __init__(self, min_size: int = 20, score_threshold: float = 0.0):
        self.min_size = min_size
        self.score_threshold = score_threshold

    # -- the scikit-learn style parameter contract ---------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) \
                        and p.name not in names:
                    names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored."""
        return {k: getattr(self, k) for k in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def box_style(self) -> str:
        """The name under which landmark models store their crop calibration for this detector."""
        return self.name

    @property
    def is_loaded(self) -> bool:
        return getattr(self, "_loaded_", False)

    @classmethod
    def parse_spec(cls, value: str) -> Any:
        """Turn the text after ``NAME:`` into the ``spec_arg`` value (raise ConfigError if bad)."""
        return value

    @classmethod
    def check_available(cls) -> str | None:
        """None when this detector can run here, else the reason it cannot (one line)."""
        return None

    # -- loading and detecting -----------------------------------------------------------
    def load(self) -> "FaceDetector":
        """Validate the arguments and do the expensive set-up; returns ``self``.

        Raises:
            ConfigError: an argument is out of range or a needed package or file is missing
                (the message says which and how to fix it).
        """
        if self.is_loaded:
            return self
        _check_number(self, "min_size", self.min_size, low=1)
        _check_number(self, "score_threshold", self.score_threshold)
        reason = self.check_available()
        if reason is not None:
            raise ConfigError(f"detector {self.name!r} cannot run here: {reason}")
        self._load()
        self._loaded_ = True
        return self

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Find the faces in one image.

        Args:
            image: RGB uint8 (H, W, 3) (grey (H, W) is accepted too).

        Returns:
            DetectedFace list sorted by score, highest first; empty when there is no face.
        """
        image = check_image(image, f"{type(self).__name__}.detect")
        self.load()
        faces = self._detect(image)
        faces = [f for f in faces
                 if f.score >= self.score_threshold and min(f.width, f.height) >= self.min_size]
        faces.sort(key=lambda f: -f.score)
        return faces

    def _load(self) -> None:  # pragma: no cover - every registered detector overrides it
        raise NotImplementedError

    def _detect(self, image: np.ndarray) -> list[DetectedFace]:  # pragma: no cover
        raise NotImplementedError


def _check_number(detector: FaceDetector, key: str, value: Any, low: float | None = None,
                  high: float | None = None, integer: bool = False) -> None:
    """Raise ConfigError naming the detector argument unless ``value`` is a number in range."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and not np.isfinite(float(value)):
        ok = False
    kind = "an integer" if integer else "a number"
    if not ok:
        raise ConfigError(f"{detector.name}.{key}: expected {kind}, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{detector.name}.{key}: expected at least {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{detector.name}.{key}: expected at most {high}, got {value!r}")

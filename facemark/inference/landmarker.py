"""The landmarker: every face in an image and its landmarks, from a detector or your boxes.

>>> import facemark
>>> landmarker = facemark.load("model.pt")       # facemark.load() for the bundled model
>>> faces = landmarker.detect("photo.jpg")        # list[Face]; [] when there is no face
>>> faces[0].points.shape, faces[0].point_scores.shape
((68, 2), (68,))

Per face: detector box (or a box you pass) -> square crop box by a crop rule (default
``"detector"``: the box x1.2 moved down by 0.1 of its height, as the PIPNet demo does) ->
an S x S crop (``facemark.data.crops``) -> the model -> crop points -> the inverse affine
-> pixels of the image you passed. The crops of all faces of all images in one call go
through the model together, ``batch_size`` at a time.

The result is always a list of :class:`~facemark.data.face.Face` (one small dataclass per
face, defined in ``facemark.data.face``), empty when no face is found, whatever the flags.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facemark.data.crops import CropRule, check_test_crops, crop_box, get_crop_rule
from facemark.data.face import Face
from facemark.data.images import read_image
from facemark.errors import ConfigError, DataError
from facemark.inference.calibration import calibrations_of
from facemark.inference.detectors import create_detector
from facemark.inference.model_path import resolve_model_path

#: Default crop rule for boxes from a face detector or from the caller.
DEFAULT_BOX_RULE = "detector"


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
def as_rgb(image: Any, rgb: bool = True, exif: bool = True) -> np.ndarray:
    """An image given as a path, a numpy array or a PIL image -> RGB uint8 (H, W, 3).

    Args:
        image: a file path (str or Path; read with ``facemark.data.images.read_image``), a
            uint8 numpy array (H, W, 3) / (H, W, 4) / (H, W) / (H, W, 1) with values
            0-255, a float array of those shapes with values 0-1 (scaled by 255, as
            ``skimage`` and ``image / 255`` give), or a PIL image.
        rgb: the channel order of a numpy array: True for RGB, False for BGR (what
            ``cv2.imread`` and ``cv2.VideoCapture`` return). Ignored for paths and PIL images.
        exif: turn a path's or PIL image's pixels upright by their EXIF orientation (as
            viewers show the photo; points are then in that upright image); False keeps the
            stored pixels. Arrays carry no EXIF and are taken as they are.

    Raises:
        DataError: a path that is missing or not a readable image.
        TypeError / ValueError: an object that is not an image, or an array of the wrong
            type or shape (the message says what was expected).
    """
    if isinstance(image, (str, Path)):
        return read_image(image, exif=exif)
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "mode"):
        if exif:
            from PIL import ImageOps

            image = ImageOps.exif_transpose(image)
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a path, a uint8 numpy array (H, W, 3) or a PIL image, "
                        f"got {type(image).__name__}")
    if np.issubdtype(image.dtype, np.floating) and image.size:
        image = _unit_float_to_uint8(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image: expected a uint8 array (values 0-255) or a float array "
                         f"(values 0-1), got dtype {image.dtype}; convert 0-255 values with "
                         "image.astype(np.uint8)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image: expected shape (H, W, 3) (or (H, W), (H, W, 4)), got "
                         f"{image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image: empty image of shape {image.shape}")
    image = image[:, :, :3]
    if not rgb:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def _unit_float_to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image with values in [0, 1] -> uint8 0-255 (rounded); ValueError otherwise."""
    if not np.isfinite(image).all():
        raise ValueError("image: the float array holds NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 1:
        raise ValueError(f"image: a float array must hold values in 0-1, got {low:.4g} to "
                         f"{high:.4g}; for 0-255 values pass np.clip(image, 0, 255)"
                         ".astype(np.uint8)")
    return np.round(image * 255).astype(np.uint8)


def as_boxes(boxes: Any, who: str = "boxes") -> np.ndarray:
    """User face boxes -> float64 (K, 4) ``x1, y1, x2, y2``; one box (4,) is accepted.

    Raises:
        ValueError: wrong shape, a non-finite number, or a box with ``x2 <= x1`` or
            ``y2 <= y1`` (naming its index and value).
    """
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: expected numbers x1, y1, x2, y2 per face, "
                         f"got {boxes!r:.80}") from None
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{who}: expected shape (K, 4) (x1, y1, x2, y2 per face), got {arr.shape}")
    for i, b in enumerate(arr):
        if not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
            raise ValueError(f"{who}[{i}]: expected finite x1 < x2 and y1 < y2, got {b.tolist()}")
    return arr


def _check_device(device: Any):
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', "
                          f"got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but this PyTorch sees no CUDA GPU; "
                          "use device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: {device!r} requested but MPS is not available; "
                          "use device='cpu'")
    return dev


# ---------------------------------------------------------------------------------------
# The landmarker
# ---------------------------------------------------------------------------------------
class Landmarker:
    """Faces and landmarks of images: a face detector plus a landmark model.

    The constructor only stores its arguments; :meth:`load` reads the model, checks the
    arguments and builds the detector (``facemark.load`` does both).

    Args:
        model: a model file (``.pt`` from ``save_model`` / ``facemark export``, or a ``.ckpt``
            from ``facemark train``), the name of a model bundled in ``facemark/weights``,
            or None for the bundled default.
        device: torch device for the model: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``.
        detector: face detector name (``facemark.inference.detectors.list_detectors()``,
            default ``"auto"``: ``dlib_hog``, else ``opencv_haar``; e.g. ``"opencv"``,
            ``"dlib:1"``, ``"yunet:/path/model.onnx"``) or a FaceDetector.
            It is loaded on the first image that needs it, never when you pass boxes.
        engine: ``"torch"`` (eager PyTorch, for ``.pt``/``.ckpt`` files), ``"onnx"``
            (onnxruntime, for ``.onnx`` files from ``facemark export``) or ``"auto"``: by the
            file's suffix; for a bundled model, its ``.onnx`` when the package ships one
            (``facemark.inference.onnx_engine``).
        flip_test: average each prediction with the one on the mirrored crop (2x the model
            time, usually a little more accurate).
        smoothing: temporal smoothing of landmarks in videos (One Euro filter): None = on
            for videos and off for photos, False = never, True = on for videos, or a dict of
            One Euro parameters (e.g. ``{"min_cutoff": 1.0, "beta": 0.05}``). Single images
            (:meth:`detect`) are never smoothed.
        batch_size: crops per model call.
        threads: intra-op threads of the engine (None: the library's default).
        crop_rule: crop rule for face boxes (a name in ``facemark.data.crops.CROP_RULES`` or
            a CropRule); None = the model's calibration for the detector's box style when
            it has one (``facemark calibrate``), else ``"detector"``.
        refine: extra passes (True = 1): predict again on a crop made from the previous
            pass's landmarks by the model's own training crop rule, which removes much of
            the error a detector box adds (each pass costs one more model call per face).
            None (default): one pass for models trained on landmark-based crops, none for
            models trained on box-based crops (WFLW, COFW, AFLW rules), which cannot refine.
            On the default model one pass took ytf68/test from 4.93% to 4.71% NME and its
            failures from 4.55% to 3.51% (docs/model-card.md).
        first_pass_size: crop side (pixels) of the first pass when refine passes follow:
            that pass only places the crop of the next, and a smaller crop of the same region
            costs less (96 px takes 55-60% of the time of 128 px). None (default): the model's
            own (``facemark export --first-pass-size N``; the bundled models' are in
            docs/model-card.md), else its input size; 0: its input size; N: a multiple of
            the model's grid cell (32) up to its input size. Needs a model whose head reads
            its grid off the feature map (PIPNet) and, for the onnx engine, a graph that
            takes that side (bundled models' and ``facemark export``'s do; the first pass
            shares the session); a graph exported with ``--static-size`` runs at its own.
        test_crops: the last pass averages the predictions of this many crops: the face's
            crop and copies of it moved by 4% of its side around it (1: no averaging;
            3 to 16; ``facemark.data.crops.shifted_crop_boxes``). Costs that many model
            calls in the last pass; on the default model 3 crops took 0.07-0.08 points off
            the NME of validation faces (docs/results.md, "Test crops").

    Attributes (set by :meth:`load`):
        engine_: the landmark engine (``OnnxLandmarkEngine`` or ``TorchLandmarkEngine``);
        info_: the model's ModelInfo (scheme, input size, crop rule of training); scheme_:
        the LandmarkScheme; model_path_: the model file; detector_:
        the FaceDetector (not loaded until needed); box_rule_: the CropRule for boxes;
        refine_: the number of extra passes ``refine`` resolved to; first_pass_size_: the
        crop side of the first pass; first_engine_: the engine that runs it at another
        side than the model's own (None: ``engine_`` runs it).
    """

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu",
                 detector: Any = "auto", engine: str = "auto", flip_test: bool = False,
                 smoothing: Any = None, batch_size: int = 32, threads: int | None = None,
                 crop_rule: str | CropRule | None = None, refine: bool | int | None = None,
                 first_pass_size: int | None = None, test_crops: int = 1):
        self.model = model
        self.device = device
        self.detector = detector
        self.engine = engine
        self.flip_test = flip_test
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.threads = threads
        self.crop_rule = crop_rule
        self.refine = refine
        self.first_pass_size = first_pass_size
        self.test_crops = test_crops

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in (
            "model", "device", "detector", "engine", "flip_test", "smoothing", "batch_size",
            "threads", "crop_rule", "refine", "first_pass_size", "test_crops"))
        return f"Landmarker({args})"

    # -- loading -------------------------------------------------------------------------
    def load(self) -> "Landmarker":
        """Check the arguments, read the model and build the engine and detector.

        Returns:
            self.

        Raises:
            ConfigError: a bad argument (naming it, with the accepted values).
            DataError: the model file is missing or not a facemark model.
            FacemarkError: no model was given and none is bundled.
        """
        from facemark.inference.onnx_engine import (OnnxLandmarkEngine, TorchLandmarkEngine,
                                                    engine_kind)

        if not isinstance(self.flip_test, bool):
            raise ConfigError(f"flip_test: expected True or False, got {self.flip_test!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        self.smoothing_params_ = _smoothing_params(self.smoothing)
        check_test_crops(self.test_crops)
        try:
            self.box_rule_ = get_crop_rule(DEFAULT_BOX_RULE if self.crop_rule is None
                                           else self.crop_rule)
        except KeyError as e:
            raise ConfigError(f"crop_rule: {e.args[0]}") from None
        device = _check_device(self.device)
        self.detector_ = create_detector(self.detector)
        # on a GPU, "auto" means the PyTorch file of a bundled model
        prefer = "torch" if self.engine == "auto" and device.type != "cpu" else self.engine
        path = resolve_model_path(self.model, engine=prefer)
        kind = engine_kind(path, self.engine)
        if kind == "onnx":
            if device.type != "cpu":
                raise ConfigError(f"device: the onnx engine runs on the CPU here, got "
                                  f"{self.device!r}; use engine='torch' for a GPU")
            self.engine_ = OnnxLandmarkEngine(path, threads=self.threads).load()
        else:
            self.engine_ = TorchLandmarkEngine(path, threads=self.threads,
                                               device=str(device)).load()
        self.device_ = device
        self.info_ = self.engine_.info
        try:
            self.calibrations_ = calibrations_of(self.info_.info)
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(path, f"bad box calibration in the model file ({e})") from None
        self.model_path_ = Path(path)
        self.scheme_ = self.info_.landmark_scheme()   # stored in the file, else by name
        self.refine_ = refine_passes(self.refine, self.info_.crop_rule,
                                     self.info_.info.get("refine_passes"))
        try:
            self.first_pass_size_, self.first_engine_ = self._first_pass_engine(kind)
        except ConfigError as e:   # name the argument (the model says what it accepts)
            message = str(e)
            raise ConfigError(message if message.startswith("first_pass_size") else
                              f"first_pass_size: {message}") from None
        if self.flip_test and not self.scheme_.flippable:
            raise ConfigError(f"flip_test: the model's scheme {self.scheme_.name!r} has no "
                              "horizontal mirror; use flip_test=False")
        return self

    def _first_pass_engine(self, kind: str):
        """(crop side, engine) of the first pass (``first_pass_size``); engine None: ``engine_``.

        The first pass shares the engine's model or onnxruntime session (``at_size``): a
        bundled model's graph, like every ``facemark export`` of a model that runs at
        other sides, takes them all. An ONNX file made for one side keeps its own size
        when the side is the file's default, and refuses another when asked for.
        """
        own = self.info_.input_size
        size = first_pass_size(self.first_pass_size, own,
                               self.info_.info.get("first_pass_size"), self.refine_)
        if size == own:
            return own, None
        if kind == "onnx" and size not in self.engine_.input_sizes_ \
                and self.first_pass_size is None:
            return own, None
        return size, self.engine_.at_size(size)

    def _check_loaded(self) -> None:
        if not hasattr(self, "engine_"):
            raise RuntimeError("This Landmarker is not loaded yet; call .load() first "
                               "(facemark.load(...) returns a loaded one)")

    @property
    def scheme(self) -> str:
        """Name of the landmark scheme the model predicts (after load)."""
        self._check_loaded()
        return self.scheme_.name

    @property
    def num_points(self) -> int:
        self._check_loaded()
        return self.scheme_.num_points

    # -- public API ----------------------------------------------------------------------
    def detect(self, image: Any, *, boxes: Any = None, rgb: bool = True,
               box_style: str | None = None, exif: bool = True) -> list[Face]:
        """Every face in one image with its landmarks.

        Args:
            image: a path, a uint8 numpy array (H, W, 3) or a PIL image (see :func:`as_rgb`).
            boxes: your own face boxes (K, 4) ``x1, y1, x2, y2`` in pixels (the detector is
                then not run); None to detect faces.
            rgb: channel order of a numpy ``image``: False for BGR (OpenCV) arrays.
            box_style: the detector that drew your ``boxes`` (a ``box_style`` such as
                ``"dlib_hog"``), so that the model's calibration for it makes the crops;
                None: the ``crop_rule`` (default ``"detector"``).
            exif: turn a path or PIL image upright by its EXIF orientation first (default;
                boxes and points are then in the upright image); False: the stored pixels.

        Returns:
            list of Face, the detector's best first (in your order for ``boxes``); empty
            when no face is found or ``boxes`` is empty.
        """
        self._check_loaded()
        img = as_rgb(image, rgb=rgb, exif=exif)
        return self._faces([img], None if boxes is None else [boxes], ["boxes"],
                           box_style)[0]

    def detect_batch(self, images: Sequence[Any], *, boxes: Sequence[Any] | None = None,
                     rgb: bool = True, exif: bool = True) -> list[list[Face]]:
        """:meth:`detect` for several images, with the crops of all of them batched.

        Args:
            images: paths, arrays or PIL images.
            boxes: None, or one entry per image: that image's boxes (K, 4), or None to run
                the detector on it.
            rgb: channel order of numpy arrays (False for BGR).
            exif: as in :meth:`detect`.

        Returns:
            one list of Face per image, in the order of ``images``.
        """
        self._check_loaded()
        images = [as_rgb(im, rgb=rgb, exif=exif) for im in images]
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"boxes: expected one entry per image ({len(images)}), "
                             f"got {len(boxes)}")
        return self._faces(images, boxes, [f"boxes[{i}]" for i in range(len(images))])

    def _faces(self, images: list[np.ndarray], boxes, names: list[str],
               box_style: str | None = None) -> list[list[Face]]:
        jobs: list[tuple[int, np.ndarray, float | None, np.ndarray]] = []
        for i, img in enumerate(images):
            given = None if boxes is None else boxes[i]
            if given is None:
                for d in self.detect_faces(img):
                    jobs.append((i, d.box, d.score,
                                 self.crop_box(d.box, self.detector_.box_style)))
            else:
                for b in as_boxes(given, names[i]):
                    jobs.append((i, b, None, self.crop_box(b, box_style)))
        return self._run(images, jobs)

    def crop_box(self, box: np.ndarray, box_style: str | None = None) -> np.ndarray:
        """The model's crop box ``x1, y1, x2, y2`` for a face box.

        The model's calibration for ``box_style`` (``facemark calibrate``) when it has one
        and no ``crop_rule`` was given; otherwise the crop rule (default ``"detector"``).
        """
        self._check_loaded()
        cal = self.calibrations_.get(box_style) if box_style and self.crop_rule is None else None
        return cal.crop_box(box) if cal is not None else crop_box(self.box_rule_, box=box)

    def detect_faces(self, image: np.ndarray) -> list:
        """The face detector alone on an RGB uint8 image: list of DetectedFace, best first."""
        self._check_loaded()
        return self.detector_.detect(image)

    # -- internals -----------------------------------------------------------------------
    def _run(self, images: list[np.ndarray], jobs) -> list[list[Face]]:
        """Crop, predict in batches and map back; jobs = (image index, box, score, crop box).

        With ``refine``, each face is cropped again from its predicted landmarks by the
        model's own training crop rule and predicted once more, ``refine_`` times; the
        first pass runs on ``first_pass_size_`` px crops; the last averages ``test_crops``.
        """
        out: list[list[Face]] = [[] for _ in images]
        for start in range(0, len(jobs), int(self.batch_size)):
            chunk = jobs[start:start + int(self.batch_size)]
            boxes = [cbox for _, _, _, cbox in chunk]
            for k in range(1 + self.refine_):
                small = k == 0 and self.refine_ and self.first_engine_ is not None
                engine, size = ((self.first_engine_, self.first_pass_size_) if small
                                else (self.engine_, self.info_.input_size))
                crops = self.test_crops if k == self.refine_ else 1
                points, conf = self._predict(images, [(i, b) for (i, *_), b in zip(chunk, boxes)],
                                             engine, size, crops)
                if k < self.refine_:   # the next pass's crops, from these landmarks
                    boxes = [refined_crop_box(self.info_.crop_rule, p, b)
                             for p, b in zip(points, boxes)]
            for j, (i, box, score, _) in enumerate(chunk):
                out[i].append(Face(box=box, score=score, points=points[j],
                                   point_scores=np.clip(conf[j], 0.0, 1.0),
                                   scheme=self.scheme_.name,
                                   image_size=(images[i].shape[1], images[i].shape[0])))
        return out

    def _predict(self, images: list[np.ndarray], crops_of, engine, size: int,
                 test_crops: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Points (K, N, 2) in image pixels and confidence (K, N) for (image index, crop box),
        from ``engine`` on ``size`` px crops (``engine_`` at the model's size, or
        ``first_engine_`` at ``first_pass_size_``), each the mean over ``test_crops`` crops."""
        from facemark.models.crop_predict import predict_boxes

        return predict_boxes(engine, [images[i] for i, _ in crops_of],
                             [cbox for _, cbox in crops_of], size,
                             self.flip_test, self.scheme_, self.device_, test_crops)


MAX_REFINE = 5   # extra passes; measured gains stop well before this (docs/results.md)


def refine_passes(refine: bool | int | None, crop_rule: str | CropRule,
                  model_default: Any = None) -> int:
    """The number of extra passes ``refine`` asks of a model trained with ``crop_rule``.

    None: the model's own default (``model_default``, the ``refine_passes`` entry its file
    carries: ``facemark export --refine-passes N``), else 1 for landmark-based crop rules and
    0 for box-based ones; True/False: 1/0; an int: itself (0 to MAX_REFINE).

    Raises:
        ConfigError: another value, or passes asked of a model trained on box crops.
    """
    if refine is not None and (not isinstance(refine, (bool, int))
                               or not 0 <= int(refine) <= MAX_REFINE):
        raise ConfigError(f"refine: expected None, True, False or a number of extra passes "
                          f"from 0 to {MAX_REFINE}, got {refine!r}")
    from_landmarks = get_crop_rule(crop_rule).source == "landmarks"
    if refine is None and model_default is not None and from_landmarks:
        try:
            refine = min(max(int(model_default), 0), MAX_REFINE)
        except (TypeError, ValueError):
            refine = None   # an unreadable entry: the rule's default
    passes = int(from_landmarks) if refine is None else int(refine)
    if passes and not from_landmarks:
        raise ConfigError(f"refine: the model was trained on crops from dataset boxes "
                          f"(crop rule {crop_rule!r}), not from landmarks; use refine=False")
    return passes


def first_pass_size(value: int | None, input_size: int, model_default: Any = None,
                    refine: int = 1) -> int:
    """The crop side (pixels) of the first of ``1 + refine`` passes.

    None: ``model_default`` (the ``first_pass_size`` entry of the model file, ``facemark
    export --first-pass-size N``) when refine passes follow and the entry is readable, else
    ``input_size``; 0 or ``input_size``: ``input_size``; another int: itself (the model
    checks it: ``LandmarkModel.check_other_input_size``). With no refine pass the only pass
    is the model's own size whatever the value.

    Raises:
        ConfigError: not None or a non-negative integer.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 0):
        raise ConfigError(f"first_pass_size: expected None, 0 or a crop side in pixels, "
                          f"got {value!r}")
    if not refine:
        return int(input_size)
    if value is None:
        try:
            value = int(model_default) if model_default is not None else 0
        except (TypeError, ValueError):
            value = 0   # an unreadable entry: the model's own size
    return int(value) or int(input_size)


def refined_crop_box(rule: str | CropRule, points: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The crop box for a second pass: ``rule`` applied to the first pass's landmarks, or
    the first crop box when those landmarks span less than half or more than twice its side
    (a collapsed or exploded prediction is no better box)."""
    box = crop_box(rule, landmarks=points)
    side, first_side = box[2] - box[0], first[2] - first[0]
    if not np.isfinite(box).all() or not 0.5 * first_side <= side <= 2.0 * first_side:
        return np.asarray(first, dtype=np.float64)
    return box


SMOOTHING_KEYS = ("min_cutoff", "beta", "d_cutoff")


def _smoothing_params(smoothing: Any) -> dict | None:
    """None (default: on for video), False (off), True or a dict of One Euro parameters."""
    if smoothing is None or smoothing is True:
        return {}
    if smoothing is False:
        return None
    if isinstance(smoothing, dict):
        unknown = sorted(set(smoothing) - set(SMOOTHING_KEYS))
        if unknown:
            raise ConfigError(f"smoothing: unknown key {unknown[0]!r} (accepted: "
                              f"{', '.join(SMOOTHING_KEYS)})")
        for k, v in smoothing.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"smoothing.{k}: expected a number >= 0, got {v!r}")
        return dict(smoothing)
    raise ConfigError(f"smoothing: expected None, True, False or a dict of One Euro parameters "
                      f"({', '.join(SMOOTHING_KEYS)}), got {smoothing!r}")

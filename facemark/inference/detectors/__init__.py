"""Face detectors behind one interface, and the registry that builds them by name.

>>> from facemark.inference.detectors import create_detector
>>> detector = create_detector("opencv_haar").load()
>>> faces = detector.detect(rgb_image)          # list[DetectedFace], best first

Names (``list_detectors()``), each with the text a ``NAME:VALUE`` spec may carry:

- ``auto`` (the default): ``dlib_hog`` where dlib imports (``dlib-bin`` is a dependency of
  facemark, so normally everywhere), else ``opencv_haar``.
- ``opencv_haar`` (aliases ``haar``, ``opencv``): OpenCV's bundled Haar cascade, always there.
- ``yunet:/path/face_detection_yunet.onnx``: OpenCV's YuNet from an ONNX file you give.
- ``mediapipe[:full|:short]`` (alias ``blazeface``): BlazeFace from ``facemark[mediapipe]``.
- ``dlib_hog[:UPSAMPLE]`` (alias ``dlib``): dlib's HOG detector from ``facemark[dlib]``.

The modules import their optional packages only in ``load()``, so listing and creating
detectors is cheap and never fails for a missing extra; ``available_detectors()`` says which
can run here and why the others cannot.

Importing this package also registers the detectors as the ``detector`` face finder
(:mod:`facemark.data.face_finders`): ``self_training.boxes: detector[:NAME]``.
"""
from __future__ import annotations

import difflib
from typing import Any

from facemark.data.face_finders import register_face_finder
from facemark.errors import ConfigError
from facemark.inference.detectors.base import (DetectedFace, FaceDetector, box_iou,
                                               check_image, nms)
from facemark.inference.detectors.dlib_hog import DlibHogDetector
from facemark.inference.detectors.mediapipe_blaze import MediaPipeBlazeDetector
from facemark.inference.detectors.opencv_haar import HaarDetector
from facemark.inference.detectors.yunet import YuNetDetector

__all__ = ["DetectedFace", "FaceDetector", "HaarDetector", "YuNetDetector",
           "MediaPipeBlazeDetector", "DlibHogDetector", "DEFAULT_DETECTOR", "create_detector",
           "list_detectors", "available_detectors", "auto_detector_name", "AUTO_ORDER", "describe_detectors",
           "register_detector", "box_iou", "nms",
           "check_image"]

#: The detector ``facemark detect`` uses when none is named (see :func:`auto_detector_name`).
DEFAULT_DETECTOR = "auto"
#: What ``auto`` means, best first: dlib's HOG detector is about 10x faster than the Haar
#: cascade on photos and finds more faces (docs/results.md); Haar needs nothing but OpenCV.
AUTO_ORDER = ("dlib_hog", "opencv_haar")

_DETECTORS: dict[str, type[FaceDetector]] = {}
_ALIASES: dict[str, str] = {}


def register_detector(cls: type[FaceDetector], aliases: tuple[str, ...] = ()) -> type[FaceDetector]:
    """Add a FaceDetector subclass to the registry under ``cls.name`` (and ``aliases``).

    Raises:
        ValueError: the name or an alias is already taken by another class.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    for key in (cls.name, *aliases):
        taken = _DETECTORS.get(_ALIASES.get(key, key))
        if taken is not None and taken is not cls:
            raise ValueError(f"detector name {key!r} is already used by {taken.__name__}")
    _DETECTORS[cls.name] = cls
    for alias in aliases:
        _ALIASES[alias] = cls.name
    return cls


register_detector(HaarDetector, aliases=("haar", "opencv"))
register_detector(YuNetDetector)
register_detector(MediaPipeBlazeDetector, aliases=("blazeface",))
register_detector(DlibHogDetector, aliases=("dlib", "hog"))


def auto_detector_name() -> str:
    """The detector ``"auto"`` stands for here: the first of AUTO_ORDER that can run."""
    for name in AUTO_ORDER:
        if _DETECTORS[name].check_available() is None:
            return name
    return AUTO_ORDER[-1]


def list_detectors() -> list[str]:
    """Registered detector names (not aliases), the one ``auto`` picks first."""
    first = auto_detector_name()
    return sorted(_DETECTORS, key=lambda n: (n != first, n))


def available_detectors() -> dict[str, str | None]:
    """Detector name -> None when it can run on this machine, else the reason it cannot.

    ``yunet`` counts as available when OpenCV has ``FaceDetectorYN``; it still needs a model
    path (``yunet:/path/model.onnx``).
    """
    return {name: _DETECTORS[name].check_available() for name in list_detectors()}


def _resolve(name: str) -> type[FaceDetector]:
    key = _ALIASES.get(name, name)
    if key in _DETECTORS:
        return _DETECTORS[key]
    known = list_detectors() + sorted(_ALIASES)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(f"detector: unknown name {name!r}{hint} "
                      f"(known: auto, {', '.join(sorted(_DETECTORS))})")


def create_detector(name: str | FaceDetector = DEFAULT_DETECTOR, **kwargs: Any) -> FaceDetector:
    """Build a detector by name; nothing is loaded until ``load()`` or the first ``detect``.

    Args:
        name: a registered name or alias, optionally followed by ``:VALUE`` that fills the
            detector's ``spec_arg`` (``"yunet:/models/yunet.onnx"``, ``"mediapipe:short"``,
            ``"dlib_hog:1"``); only the first ``:`` splits, so Windows paths work. A
            FaceDetector instance is returned as it is (kwargs must then be empty).
        **kwargs: constructor arguments of that detector (``min_size``, ``score_threshold``,
            ...); None values are dropped so that unset CLI flags keep the defaults.

    Raises:
        ConfigError: unknown name (with the closest names), unknown argument (with the
            accepted ones), or a value after ``:`` for a detector that takes none.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(name, FaceDetector):
        if kwargs:
            raise ConfigError(f"detector: arguments {sorted(kwargs)} given with a ready "
                              f"{type(name).__name__} instance")
        return name
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"detector: expected a name such as {DEFAULT_DETECTOR!r}, got {name!r}")
    base, sep, value = name.strip().partition(":")
    base = base.strip().lower()
    if base == "auto":
        if sep:
            raise ConfigError(f"detector 'auto' takes no ':VALUE' (got {name!r})")
        base = auto_detector_name()
    cls = _resolve(base)
    if sep:
        if cls.spec_arg is None:
            raise ConfigError(f"detector {cls.name!r} takes no ':VALUE' (got {name!r})")
        if cls.spec_arg in kwargs:
            raise ConfigError(f"detector {cls.name!r}: {cls.spec_arg} given twice "
                              f"({name!r} and {cls.spec_arg}={kwargs[cls.spec_arg]!r})")
        kwargs[cls.spec_arg] = cls.parse_spec(value)
    accepted = cls._param_names()
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=2, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"detector {cls.name!r}: unknown argument {unknown[0]!r}{hint} "
                          f"(accepted: {', '.join(accepted)})")
    return cls(**kwargs)


def describe_detectors() -> str:
    """One line per detector (name, availability, summary) for ``--help`` and ``--list``."""
    lines = []
    for name, reason in available_detectors().items():
        cls = _DETECTORS[name]
        arg = f"[:{cls.spec_arg.upper()}]" if cls.spec_arg else ""
        state = "available" if reason is None else f"unavailable: {reason}"
        lines.append(f"{name}{arg}: {cls.summary} ({state})")
    return "\n".join(lines)


def _face_finder(name: str | None) -> FaceDetector:
    """``self_training.boxes: detector[:NAME]``: the named detector (``auto`` when none);
    ``create_detector`` is looked up when called, so a patched one is used."""
    return create_detector(name or DEFAULT_DETECTOR)


register_face_finder("detector", _face_finder)

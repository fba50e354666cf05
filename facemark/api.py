"""The user-facing entry point: ``facemark.load`` returns a ready :class:`Landmarker`.

>>> import facemark
>>> landmarker = facemark.load()                     # the bundled default model, CPU
>>> for face in landmarker.detect("group.jpg"):      # always a list, [] when no face
...     print(face.box, face.score, face.points.shape, face.point_scores.mean())

Models are found in this order: a path to a model file (``.pt`` from ``save_model`` or
``facemark export --format pt``, ``.ckpt`` from ``facemark train``); the name of a model
bundled in the package (``facemark/weights/NAME.pt`` and/or ``NAME.onnx``); None or
``"default"`` for the bundled default (``facemark/weights/default.*``). A ``.onnx`` file
(``facemark export --format onnx``) runs on onnxruntime, a ``.pt``/``.ckpt`` on PyTorch;
``engine="auto"`` runs a bundled model on onnxruntime: the package ships its float16 ``.pt``
and the ``.onnx`` is exported from it into the user cache on first use (:func:`bundled_onnx`).

What comes after the landmarks is public too, imported lazily by ``facemark/__init__.py``
from its one home: ``facemark.align`` (aligned chips, ``facemark.inference.align``),
``Face.pose`` / ``facemark.estimate_pose`` (head pose, ``facemark.data.pose``),
``Face.eye_aspect_ratio`` / ``facemark.eye_aspect_ratio``, ``facemark.mouth_aspect_ratio``,
``facemark.BlinkDetector`` and ``facemark.detect_blinks`` (``facemark.data.measures``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from facemark.inference.landmarker import Landmarker
from facemark.inference.model_path import (DEFAULT_MODEL, MODEL_SUFFIXES, WEIGHTS_FOLDER,
                                           bundled_models, bundled_onnx, cache_folder,
                                           resolve_model_path)

__all__ = ["load", "resolve_model_path", "bundled_models", "bundled_onnx", "cache_folder",
           "DEFAULT_MODEL", "MODEL_SUFFIXES", "WEIGHTS_FOLDER"]


def load(name_or_path: str | Path | None = None, *, device: str = "cpu", detector: Any = "auto",
         engine: str = "auto", flip_test: bool = False, smoothing: Any = None, **kwargs: Any):
    """A loaded :class:`~facemark.inference.landmarker.Landmarker`.

    Args:
        name_or_path: a model file, a bundled model name, or None for the bundled default.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``.
        detector: face detector name (``facemark.inference.detectors.list_detectors()``,
            default ``"auto"``: dlib's HOG detector, or OpenCV's bundled Haar cascade where
            dlib does not import; both work offline) or a FaceDetector instance.
        engine: ``"auto"`` (by the file's suffix; a bundled model's ``.onnx`` when shipped),
            ``"torch"`` or ``"onnx"``.
        flip_test: also predict on the mirrored crop and average.
        smoothing: video smoothing (None: on for video, off for photos; False; True; or a
            dict of One Euro parameters ``min_cutoff``, ``beta``, ``d_cutoff``).
        **kwargs: other Landmarker arguments (``batch_size``, ``crop_rule``, ``refine``,
            ``first_pass_size``, ``test_crops``, ``threads``).

    Raises:
        FacemarkError / DataError / ConfigError: no model, a bad model file or a bad
            argument, each with a message saying what to change.
    """
    return Landmarker(name_or_path, device=device, detector=detector, engine=engine,
                      flip_test=flip_test, smoothing=smoothing, **kwargs).load()

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
``Face.pose`` / ``facemark.estimate_pose`` (head pose, ``facemark.inference.pose``),
``Face.eye_aspect_ratio`` / ``facemark.eye_aspect_ratio``, ``facemark.mouth_aspect_ratio``,
``facemark.BlinkDetector`` and ``facemark.detect_blinks`` (``facemark.inference.measures``).
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from facemark.errors import DataError, FacemarkError

DEFAULT_MODEL = "default"
WEIGHTS_FOLDER = "weights"
MODEL_SUFFIXES = (".pt", ".ckpt", ".onnx")


def bundled_models() -> dict[str, dict[str, Path]]:
    """Models shipped inside the package (``facemark/weights``): name -> {suffix: file}.

    A name may have a ``.pt`` (PyTorch) and a ``.onnx`` (onnxruntime) file.
    """
    folder = importlib.resources.files("facemark") / WEIGHTS_FOLDER
    if not folder.is_dir():
        return {}
    out: dict[str, dict[str, Path]] = {}
    for entry in folder.iterdir():
        stem, dot, suffix = entry.name.rpartition(".")
        if dot and f".{suffix}" in MODEL_SUFFIXES and entry.is_file():
            out.setdefault(stem, {})[f".{suffix}"] = Path(str(entry))
    return dict(sorted(out.items()))


def cache_folder() -> Path:
    """Where facemark keeps files it makes for the user: ``$FACEMARK_CACHE``, else
    ``$XDG_CACHE_HOME/facemark``, else ``~/.cache/facemark``."""
    import os

    if os.environ.get("FACEMARK_CACHE"):
        return Path(os.environ["FACEMARK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "facemark"


def bundled_onnx(name: str, pt_file: Path) -> Path:
    """The ONNX file of a bundled model that ships only its (float16) ``.pt``: exported into
    :func:`cache_folder` on first use (a few seconds), named by a hash of the ``.pt`` so an
    upgraded model never reuses an old export, and written atomically.

    Raises:
        FacemarkError: the export failed or the cache folder cannot be written (the message
            names the folder; ``FACEMARK_CACHE`` moves it).
    """
    import hashlib

    digest = hashlib.sha1(pt_file.read_bytes()).hexdigest()[:12]
    path = cache_folder() / f"{name}-{digest}.onnx"
    if path.is_file():
        return path
    from facemark.inference.export import export_onnx
    from facemark.inference.model_file import load_model

    model, info = load_model(pt_file)
    try:
        export_onnx(model, path, info=info, metadata={"exported_from": pt_file.name})
    except OSError as e:
        raise FacemarkError(f"cannot write the ONNX export of the bundled model {name!r} to "
                            f"{path.parent} ({e.strerror or e}); set FACEMARK_CACHE to a "
                            "writable folder or use engine='torch'") from None
    return path


def _pick_bundled(name: str, files: dict[str, Path], engine: str) -> Path:
    if engine in ("auto", "onnx") and ".onnx" not in files and ".pt" in files:
        try:
            return bundled_onnx(name, files[".pt"])
        except FacemarkError as e:
            if engine == "onnx":
                raise
            import warnings
            warnings.warn(f"{e}; running the bundled model on PyTorch instead", stacklevel=3)
    order = {"onnx": (".onnx",), "torch": (".pt", ".ckpt"),
             "auto": (".onnx", ".pt", ".ckpt")}.get(engine, (".onnx", ".pt", ".ckpt"))
    for suffix in order:
        if suffix in files:
            return files[suffix]
    raise FacemarkError(f"the bundled model {name!r} has no file for engine {engine!r} "
                        f"(it has {', '.join(sorted(files))})")


def resolve_model_path(name_or_path: str | Path | None, engine: str = "auto") -> Path:
    """The model file a ``load`` argument means (see the module docstring).

    Args:
        name_or_path: a path, a bundled name, or None / ``"default"``.
        engine: for a bundled model with several files: ``"auto"`` and ``"onnx"`` take its
            ``.onnx`` when there is one, ``"torch"`` its ``.pt``.

    Raises:
        FacemarkError: no argument and no bundled default model.
        DataError: a path that does not exist (with the bundled names, if any).
    """
    bundled = bundled_models()
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL:
        if DEFAULT_MODEL in bundled:
            return _pick_bundled(DEFAULT_MODEL, bundled[DEFAULT_MODEL], engine)
        raise FacemarkError(
            "no default model is bundled with this facemark installation "
            "(facemark/weights/default.pt is missing); pass a model file: "
            "facemark.load('path/to/model.pt') or facemark detect --model PATH "
            "(.pt from 'facemark export --format pt' or save_model, .ckpt from 'facemark train', "
            ".onnx from 'facemark export --format onnx')")
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if text in bundled and "/" not in text and "\\" not in text:
        return _pick_bundled(text, bundled[text], engine)
    known = f"; bundled models: {', '.join(bundled)}" if bundled else ""
    raise DataError(path, f"model file not found{known}")


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
        **kwargs: other Landmarker arguments (``batch_size``, ``crop_rule``).

    Raises:
        FacemarkError / DataError / ConfigError: no model, a bad model file or a bad
            argument, each with a message saying what to change.
    """
    from facemark.inference.landmarker import Landmarker

    return Landmarker(name_or_path, device=device, detector=detector, engine=engine,
                      flip_test=flip_test, smoothing=smoothing, **kwargs).load()

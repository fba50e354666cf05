"""Where a model argument points: a model file, a model bundled in the package, or the
bundled default (the search order is in :mod:`facemark.api`'s docstring).

``facemark.api`` re-exports these names; the :class:`~facemark.inference.landmarker.Landmarker`
finds its model here, below the api.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

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
    upgraded model never reuses an old export (the hash also covers
    ``export.GRAPH_REVISION``, so a changed decode re-exports), and written atomically.
    The graph takes every crop side the model runs on (``export_onnx(dynamic_size=True)``),
    so the smaller first pass of ``Landmarker(first_pass_size=...)`` runs in the same session.

    Raises:
        FacemarkError: the export failed or the cache folder cannot be written (the message
            names the folder; ``FACEMARK_CACHE`` moves it).
    """
    import hashlib

    from facemark.inference.export import GRAPH_REVISION, export_onnx
    from facemark.models.model_file import load_model

    tag = f"graph-{GRAPH_REVISION}".encode()
    digest = hashlib.sha1(pt_file.read_bytes() + tag).hexdigest()[:12]
    path = cache_folder() / f"{name}-{digest}.onnx"
    if path.is_file():
        return path
    model, info = load_model(pt_file)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path, info=info, metadata={"exported_from": pt_file.name},
                    dynamic_size=True)
    except (OSError, DataError) as e:   # DataError: the folder is there but the file is not
        why = e.message if isinstance(e, DataError) else (e.strerror or e)
        raise FacemarkError(f"cannot write the ONNX export of the bundled model {name!r} to "
                            f"{path.parent} ({why}); set FACEMARK_CACHE to a "
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
    name = _bundled_name(name_or_path)
    if name == DEFAULT_MODEL:
        if DEFAULT_MODEL in bundled:
            return _pick_bundled(DEFAULT_MODEL, bundled[DEFAULT_MODEL], engine)
        raise FacemarkError(
            "no default model is bundled with this facemark installation "
            "(facemark/weights/default.pt is missing); pass a model file: "
            "facemark.load('path/to/model.pt') or facemark detect --model PATH "
            "(.pt from 'facemark export --format pt' or save_model, .ckpt from 'facemark train', "
            ".onnx from 'facemark export --format onnx')")
    path = Path(str(name_or_path)).expanduser()
    if path.is_file():
        return path
    if name in bundled:
        return _pick_bundled(name, bundled[name], engine)
    known = f"; bundled models: {', '.join(bundled)}" if bundled else ""
    raise DataError(path, f"model file not found{known}")


def _bundled_name(name_or_path: str | Path | None) -> str | None:
    """The bundled model a ``load`` argument names: ``DEFAULT_MODEL`` for None /
    ``"default"``; None for a file that exists or text with a path separator; else the
    text itself (bundled or not: the caller looks it up)."""
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL:
        return DEFAULT_MODEL
    text = str(name_or_path)
    if Path(text).expanduser().is_file() or "/" in text or "\\" in text:
        return None
    return text


def describe_models() -> str:
    """One line per bundled model (``facemark detect --list-models``): its name, scheme,
    points, crop size, default refine passes and file size.

    Returns:
        the lines, or a sentence saying that no model is bundled.
    """
    from facemark.models.model_file import load_model

    lines = []
    bundled = bundled_models()
    for name in sorted(bundled, key=lambda n: (n != DEFAULT_MODEL, n)):   # the default first
        files = bundled[name]
        if ".pt" not in files:
            lines.append(f"{name}: {', '.join(str(f) for f in files.values())}")
            continue
        model, info = load_model(files[".pt"])
        passes = info.info.get("refine_passes")
        refine = "" if passes is None else f", {passes} refine pass{'es' if passes != 1 else ''}"
        first = info.info.get("first_pass_size")
        if passes and first and int(first) != model.input_size:
            refine += f" (the first at {int(first)} px)"
        mb = files[".pt"].stat().st_size / 2 ** 20
        tag = " (used without --model)" if name == DEFAULT_MODEL else ""
        lines.append(f"{name}{tag}: {info.scheme}, {model.num_points} points, "
                     f"{model.input_size} px crops{refine}, {mb:.1f} MB ({files['.pt']})")
    return "\n".join(lines) or "no model is bundled with this facemark installation"


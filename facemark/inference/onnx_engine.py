"""Landmark engines: one ``predict(images) -> (points, confidence)`` for onnxruntime and PyTorch.

    engine = load_engine("pipnet_r18.onnx")          # .onnx -> onnxruntime, .pt/.ckpt -> torch
    points, conf = engine.predict(images)            # images float32 (B, 3, S, S) in [0, 1]

Both engines take the images as a numpy array or a torch tensor and answer in the same kind
(numpy in, numpy out; tensor in, tensor out), so
:func:`facemark.models.crop_predict.predict_crops` and ``predict_samples`` run with either
in place of a ``LandmarkModel``. Both expose ``num_points``, ``input_size``, ``scheme``,
``crop_rule`` and ``info`` (a :class:`~facemark.models.model_file.ModelInfo`).

Following the scikit-learn contract the constructors only store their arguments; ``load()``
opens the file (and returns the engine), and the first ``predict`` loads if needed.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError
from facemark.inference.export import INPUT_NAME, OUTPUT_NAMES, PREFIX, ort_session
from facemark.models.model_file import ModelInfo, load_model, stored_scheme

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
ENGINES = ("auto", "torch", "onnx")


def _check_threads(threads: Any) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads: expected a positive integer or None, got {threads!r}")
    return int(threads)


def _as_numpy_images(images, input_size: int, who: str) -> tuple[np.ndarray, bool]:
    """(float32 C-contiguous (B, 3, S, S) array, whether the caller gave a torch tensor)."""
    is_tensor = type(images).__module__.startswith("torch")
    array = images.detach().cpu().numpy() if is_tensor else np.asarray(images)
    if array.ndim != 4 or array.shape[1] != 3 or array.shape[2:] != (input_size, input_size):
        raise ValueError(f"{who}: images must be (B, 3, {input_size}, {input_size}) RGB in "
                         f"[0, 1], got shape {tuple(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.float32), is_tensor


def _answer(points: np.ndarray, conf: np.ndarray, as_tensor: bool):
    if as_tensor:
        import torch

        return torch.from_numpy(points), torch.from_numpy(conf)
    return points, conf


class OnnxLandmarkEngine:
    """A facemark ONNX export (``facemark export --format onnx``) run by onnxruntime.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (None: onnxruntime's default, one per core).
        providers: onnxruntime execution providers, best first (None: CPU).
        spinning: whether its threads spin between runs (onnxruntime's default, fastest for
            one session); False for sessions that take turns (``export.ort_session``).

    Attributes (after ``load()``):
        session_: the ``onnxruntime.InferenceSession`` (graph optimisation level ALL).
        metadata_: the file's ``facemark.*`` metadata (strings).
        info_: ModelInfo built from the metadata.
        input_sizes_: the crop sides the graph takes (``export_onnx(dynamic_size=True)``:
            every side the model runs on; else its ``input_size`` alone).
    """

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None, providers=None,
                 spinning: bool = True):
        self.path = path
        self.threads = threads
        self.providers = providers
        self.spinning = spinning

    def load(self) -> "OnnxLandmarkEngine":
        """Open the session and read the metadata; DataError for a missing or foreign file."""
        import onnxruntime as ort

        path = Path(self.path)
        threads = _check_threads(self.threads)
        providers = list(self.providers) if self.providers else ["CPUExecutionProvider"]
        unknown = [p for p in providers if p not in ort.get_available_providers()]
        if unknown:
            raise ConfigError(f"providers: {unknown[0]!r} is not available here (available: "
                              f"{', '.join(ort.get_available_providers())})")
        if not path.is_file():
            raise DataError(path, "ONNX model file not found")
        try:
            session = ort_session(path, threads=threads, providers=providers,
                                  spinning=self.spinning)
        except Exception as e:  # not an ONNX file, truncated, an op this onnxruntime lacks
            first = str(e).splitlines()[0] if str(e) else ""
            raise DataError(path, f"onnxruntime cannot load the model ({e.__class__.__name__}: "
                                  f"{first})") from None
        meta = {k[len(PREFIX):]: v for k, v in session.get_modelmeta().custom_metadata_map.items()
                if k.startswith(PREFIX)}
        missing = [k for k in ("scheme", "input_size", "crop_rule") if k not in meta]
        if missing:
            raise DataError(path, f"not a facemark ONNX export: metadata {', '.join(missing)} "
                                  "missing; export the model with 'facemark export'")
        definition = None
        try:
            size = int(meta["input_size"])
            if meta.get("scheme_definition"):   # the whole scheme (exports since it existed)
                definition = json.loads(meta["scheme_definition"])
                scheme = stored_scheme(definition, str(path)).name
            else:
                scheme = get_scheme(meta["scheme"]).name
            config = json.loads(meta.get("model_config") or "{}")
            sizes = tuple(int(v) for v in json.loads(meta.get("input_sizes") or f"[{size}]"))
        except (ValueError, KeyError, TypeError, ConfigError) as e:
            detail = e.args[0] if isinstance(e, KeyError) else e
            raise DataError(path, f"bad facemark metadata ({detail})") from None
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs[:2] != list(OUTPUT_NAMES):
            raise DataError(path, f"expected input {INPUT_NAME!r} and outputs "
                                  f"{', '.join(OUTPUT_NAMES)}, got inputs {inputs}, outputs {outputs}")
        num_points = session.get_outputs()[1].shape[1]
        if not isinstance(num_points, int):
            num_points = int(meta.get("num_points", get_scheme(scheme).num_points))
        info = {k: v for k, v in meta.items() if k not in
                ("scheme", "scheme_definition", "input_size", "crop_rule", "model_config",
                 "input_sizes")}
        self.session_ = session
        self.input_sizes_ = sizes
        self.metadata_ = meta
        self.num_points_ = int(num_points)
        self.info_ = ModelInfo(scheme=scheme, input_size=size, crop_rule=meta["crop_rule"],
                               model_config=config, info=info, path=str(path),
                               scheme_definition=definition)
        return self

    def _loaded(self) -> "OnnxLandmarkEngine":
        return self if hasattr(self, "session_") else self.load()

    @property
    def info(self):
        return self._loaded().info_

    @property
    def num_points(self) -> int:
        return self._loaded().num_points_

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def scheme(self) -> str:
        return self.info.scheme

    @property
    def crop_rule(self) -> str:
        return self.info.crop_rule

    def at_size(self, size: int) -> "OnnxLandmarkEngine":
        """This engine on ``size`` x ``size`` crops: the same session (shared, not
        reopened), for a graph that takes that side (``input_sizes_``; ConfigError
        otherwise). For a first pass that only places the crop."""
        self._loaded()
        if size not in self.input_sizes_ and len(self.input_sizes_) > 1:
            raise ConfigError(f"crop size: expected one of "
                              f"{', '.join(map(str, self.input_sizes_))} (the sides "
                              f"{Path(self.path).name} takes), got {size!r}")
        if size not in self.input_sizes_:
            raise ConfigError(f"{Path(self.path).name} is an ONNX graph for "
                              f"{self.input_size} px crops only, not {size!r}; export it "
                              "again from its .pt/.ckpt with 'facemark export' (a graph for "
                              "every side the model runs on), or use engine='torch'")
        other = copy.copy(self)
        other.info_ = dataclasses.replace(self.info_, input_size=int(size))
        return other

    @property
    def quantization(self) -> str | None:
        """How the weights were quantised (e.g. ``"int8 QDQ per-channel"``), None for float."""
        return self._loaded().metadata_.get("quantization")

    def predict(self, images):
        """Landmarks of crops: images float32 (B, 3, S, S) RGB in [0, 1] (numpy or torch).

        Returns:
            points (B, N, 2) in normalised crop coordinates [0, 1] and confidence (B, N) in
            [0, 1], float32, numpy for a numpy input and torch tensors for a tensor input.
        """
        self._loaded()
        array, as_tensor = _as_numpy_images(images, self.input_size, "OnnxLandmarkEngine.predict")
        points, conf = self.session_.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        return _answer(points, conf, as_tensor)

    def __repr__(self) -> str:
        return f"OnnxLandmarkEngine(path={str(self.path)!r}, threads={self.threads!r})"


class TorchLandmarkEngine:
    """A ``.pt``/``.ckpt`` model (``load_model``) behind the engine interface: eager PyTorch.

    Args:
        path: the model file.
        threads: torch intra-op threads during ``predict`` (set and restored around each call;
            None leaves torch's setting alone).
        device: torch device of the model.

    Attributes (after ``load()``): ``model_`` (LandmarkModel, eval mode), ``info_``.
    """

    kind = "torch"

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu"):
        self.path = path
        self.threads = threads
        self.device = device

    def load(self) -> "TorchLandmarkEngine":
        _check_threads(self.threads)
        self.model_, self.info_ = load_model(self.path, device=self.device)
        return self

    @classmethod
    def from_model(cls, model, info, threads: int | None = None) -> "TorchLandmarkEngine":
        """Wrap a model already in memory (``info``: its ModelInfo)."""
        engine = cls(info.path or "<memory>", threads=threads,
                     device=str(next(model.parameters()).device))
        engine.model_, engine.info_ = model.eval(), info
        return engine

    def at_size(self, size: int) -> "TorchLandmarkEngine":
        """This engine on ``size`` x ``size`` crops: the same model (shared, not copied), whose
        head must run at that size (``LandmarkModel.check_other_input_size``; ConfigError
        otherwise). For a first pass that only places the crop."""
        self._loaded()
        other = copy.copy(self)
        other.info_ = dataclasses.replace(self.info_,
                                          input_size=self.model_.check_other_input_size(size))
        return other

    def _loaded(self) -> "TorchLandmarkEngine":
        return self if hasattr(self, "model_") else self.load()

    @property
    def info(self):
        return self._loaded().info_

    @property
    def num_points(self) -> int:
        return self._loaded().model_.num_points

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def scheme(self) -> str:
        return self.info.scheme

    @property
    def crop_rule(self) -> str:
        return self.info.crop_rule

    def predict(self, images):
        """Same contract as :meth:`OnnxLandmarkEngine.predict`."""
        import torch

        self._loaded()
        as_tensor = isinstance(images, torch.Tensor)
        size = self.input_size
        x = images if as_tensor else torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"TorchLandmarkEngine.predict: images must be (B, 3, {size}, "
                             f"{size}) RGB in [0, 1], got shape {tuple(x.shape)}")
        old = torch.get_num_threads()
        switch = bool(self.threads) and self.threads != old   # set_num_threads is not free
        if switch:
            torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                points, conf = self.model_.predict(x.to(self.device, torch.float32))
        finally:
            if switch:
                torch.set_num_threads(old)
        if as_tensor:
            return points, conf
        return points.float().cpu().numpy(), conf.float().cpu().numpy()

    def __repr__(self) -> str:
        return f"TorchLandmarkEngine(path={str(self.path)!r}, threads={self.threads!r})"


def engine_kind(path: str | Path, engine: str = "auto") -> str:
    """``"onnx"`` or ``"torch"`` for a model file: by ``engine``, or by suffix when ``"auto"``."""
    if engine not in ENGINES:
        raise ConfigError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    suffix = Path(path).suffix.lower()
    kind = ("onnx" if suffix in ONNX_SUFFIXES else "torch" if suffix in TORCH_SUFFIXES
            else None)
    if engine == "auto":
        if kind is None:
            raise DataError(path, f"cannot tell the engine from the suffix {suffix or '(none)'!r}: "
                                  f"expected {', '.join(ONNX_SUFFIXES + TORCH_SUFFIXES)} "
                                  "(or pass engine='onnx'/'torch')")
        return kind
    if kind is not None and kind != engine:
        hint = ("export it first: facemark export MODEL -o MODEL.onnx" if engine == "onnx"
                else "the torch engine needs the .pt/.ckpt the ONNX file was exported from")
        raise ConfigError(f"engine {engine!r} cannot run {Path(path).name}: {hint}")
    return engine


def load_engine(path: str | Path, engine: str = "auto", threads: int | None = None,
                providers=None, device: str = "cpu"):
    """Open a landmark model file with onnxruntime or PyTorch; returns a loaded engine.

    Args:
        path: ``.onnx`` (onnxruntime) or ``.pt``/``.pth``/``.ckpt`` (PyTorch).
        engine: ``"auto"`` (by suffix), ``"onnx"`` or ``"torch"``.
        threads: intra-op threads (both engines).
        providers: onnxruntime providers (onnx only).
        device: torch device (torch only).
    """
    kind = engine_kind(path, engine)
    if kind == "onnx":
        return OnnxLandmarkEngine(path, threads=threads, providers=providers).load()
    return TorchLandmarkEngine(path, threads=threads, device=device).load()

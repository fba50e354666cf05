"""Export a landmark model to ONNX, decode included, with a parity check against PyTorch.

The exported graph is ``model.predictor()``: images float32 (B, 3, S, S) RGB in [0, 1] in,
``points`` (B, N, 2) normalised crop coordinates in [0, 1] and ``confidence`` (B, N) out
(the argmax, offsets and neighbour averaging all run inside the graph, so onnxruntime needs
no numpy post-processing). The input normalisation (ImageNet mean/std) is in the graph too.

What inference needs besides the weights travels in the file's ``metadata_props``
(``METADATA_KEYS``): the landmark scheme (its name, and the whole scheme as JSON in
``scheme_definition``, so a scheme of one's own needs no scheme file at inference), crop
size, crop rule, facemark version, the model's config (JSON) and, for a quantised file,
how it was quantised.
:class:`facemark.inference.onnx_engine.OnnxLandmarkEngine` reads them back.

    from facemark.inference.export import export_onnx
    model, info = load_model("runs/pipnet_r18/best.ckpt")
    export_onnx(model, "pipnet_r18.onnx", info=info)          # checked, then renamed into place
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemark import __version__
from facemark.data.crops import CROP_RULES
from facemark.data.schemes import get_scheme, scheme_for_count, scheme_to_dict
from facemark.errors import ConfigError, FacemarkError
from facemark.io import atomic_write, temp_path  # noqa: F401  (temp_path: quantize.py uses it)
from facemark.inference.onnx_fusion import fuse_pads_into_convs
from facemark.models.backbones.mobilenet import freeze_same_padding
from facemark.models.registry import model_config

INPUT_NAME = "images"
OUTPUT_NAMES = ("points", "confidence")
PREFIX = "facemark."
#: metadata_props keys every facemark ONNX file carries (values are strings).
METADATA_KEYS = ("scheme", "scheme_definition", "input_size", "crop_rule", "num_points",
                 "version", "model_config", "outputs")
#: ``ModelInfo.info`` entries an export keeps (JSON text in the ONNX metadata).
CARRIED_INFO = ("box_calibration", "model_card", "refine_passes", "first_pass_size")
DEFAULT_OPSET = 17
#: Bumped when the exported graph changes for the same weights (2: PIPNet's confidence
#: from the spread of the neighbour votes; 3: pads folded into convolutions, vote merging
#: as matrix products; 4: PIPNet's offset layers only at the peak cells, ``PIPHead.predict``;
#: 5: bundled models' graphs take every crop side the model runs on, ``dynamic_size``);
#: cached exports are named by it.
GRAPH_REVISION = 5
PARITY_ATOL = 1e-4


class ExportError(FacemarkError):
    """The exported file does not reproduce the PyTorch model (or cannot be written)."""


def _default_scheme(num_points: int) -> str:
    scheme = scheme_for_count(num_points)
    if scheme is None:
        raise ConfigError(f"export: no landmark scheme has {num_points} points; pass scheme=")
    return scheme.name


def _check_scheme(scheme, num_points: int):
    """The LandmarkScheme of ``scheme`` (a name, a scheme file or a scheme), checked against
    the model's number of points."""
    try:
        sch = get_scheme(scheme)
    except KeyError as e:
        raise ConfigError(f"scheme: {e.args[0]}") from None
    if sch.num_points != num_points:
        raise ConfigError(f"scheme: {sch.name} has {sch.num_points} points but the model "
                          f"predicts {num_points}")
    return sch


def _check_crop_rule(crop_rule: str) -> None:
    if crop_rule not in CROP_RULES:
        raise ConfigError(f"crop_rule: unknown rule {crop_rule!r}; known: {', '.join(CROP_RULES)}")


def build_metadata(model, input_size: int, *, scheme, crop_rule: str,
                   extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an export, keys prefixed ``facemark.``, values strings
    (``scheme``: a name, scheme file or LandmarkScheme; stored by name and whole)."""
    config = model_config(model) if getattr(model, "config", None) else {}
    scheme = get_scheme(scheme)
    meta = {"scheme": scheme.name,
            "scheme_definition": json.dumps(scheme_to_dict(scheme), separators=(",", ":")),
            "input_size": str(int(input_size)), "crop_rule": crop_rule,
            "num_points": str(int(model.num_points)), "version": __version__,
            "model_config": json.dumps(config, separators=(",", ":")),
            "outputs": "points (B,N,2) in [0,1] crop coordinates; confidence (B,N) in [0,1]",
            "confidence": confidence_description(model)}
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    return {PREFIX + k: v for k, v in meta.items()}


def confidence_description(model) -> str:
    """One line saying what the model's ``confidence`` output is (ONNX metadata)."""
    head = getattr(model, "head", None)
    if getattr(head, "num_nb", 0) and hasattr(head, "confidence_scale"):
        return (f"exp(-u / {head.confidence_scale:g}), u = standard error of the PIPNet "
                f"neighbour votes merged into the landmark, in crop units (fraction of the "
                f"crop side)")
    return "the head's own per-landmark confidence in [0, 1] (see its module docstring)"


def read_metadata(onnx_model) -> dict[str, str]:
    """``facemark.*`` metadata_props of a loaded ``onnx.ModelProto``, without the prefix."""
    return {p.key[len(PREFIX):]: p.value for p in onnx_model.metadata_props
            if p.key.startswith(PREFIX)}


def set_metadata(onnx_model, metadata: dict[str, str]) -> None:
    """Replace the ``facemark.*`` metadata_props of ``onnx_model`` by ``metadata`` (prefixed keys)."""
    keep = [(p.key, p.value) for p in onnx_model.metadata_props if not p.key.startswith(PREFIX)]
    del onnx_model.metadata_props[:]
    for key, value in keep + sorted(metadata.items()):
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value


def ort_session(path: str | Path, threads: int | None = None, providers=None,
                spinning: bool = True):
    """An onnxruntime session with full graph optimisation and ``threads`` intra-op threads.

    ``spinning=False`` stops its threads spinning as soon as a run ends (onnxruntime's
    ``session.force_spinning_stop``; they still spin within a run): for sessions that take
    turns in one process, whose threads would otherwise spin for the next run and take the
    cores from each other (two spinning sessions for a Landmarker's two passes made the
    detect path twice as slow on 2 cores; the passes now share one session). Turning
    spinning off altogether (``allow_spinning`` 0) made every operator wait for a sleeping
    thread: a one-face pair of passes took 4.6-4.9 ms instead of 3.2-3.4 (docs/results.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=list(providers or ["CPUExecutionProvider"]))


def parity_inputs(input_size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Test images float32 (B, 3, S, S) in [0, 1]: smooth random blobs plus pixel noise.

    Pure pixel noise gives flat score maps whose argmax can tie; smooth structure gives
    each map a clear peak, so a parity failure means a real difference.
    """
    rng = np.random.default_rng(seed)
    s = input_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    images = np.empty((batch, 3, s, s), dtype=np.float32)
    for b in range(batch):
        for c in range(3):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            images[b, c] = 0.7 * blob + 0.3 * rng.random((s, s), dtype=np.float32)
    return np.clip(images, 0.0, 1.0)


def check_parity(session, model, images: np.ndarray, atol: float = PARITY_ATOL,
                 where: str = "export") -> dict[str, float]:
    """Compare onnxruntime's (points, confidence) with ``model.predict`` on ``images``.

    Returns:
        ``{"points": max abs diff, "confidence": max abs diff}`` (normalised units).

    Raises:
        ExportError: a difference above ``atol``, naming the output, batch item and landmark.
    """
    points, conf = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    with torch.no_grad():
        ref_points, ref_conf = model.predict(torch.from_numpy(images))
    diffs = {}
    for name, got, ref in (("points", points, ref_points.numpy()),
                           ("confidence", conf, ref_conf.numpy())):
        if got.shape != ref.shape:
            raise ExportError(f"{where}: onnxruntime {name} has shape {got.shape}, PyTorch "
                              f"{ref.shape}")
        err = np.abs(got.astype(np.float64) - ref)
        diffs[name] = float(err.max()) if err.size else 0.0
        if not diffs[name] <= atol:
            b, n = np.unravel_index(int(np.argmax(err)), err.shape)[:2]
            raise ExportError(f"{where}: onnxruntime and PyTorch differ by {diffs[name]:.3g} "
                              f"in {name} (batch item {b}, landmark {n}); expected <= {atol:g}")
    return diffs


def export_onnx(model, path: str | Path, input_size: int | None = None, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, *, info=None, scheme=None,
                crop_rule: str | None = None, atol: float = PARITY_ATOL,
                metadata: dict[str, Any] | None = None, any_size: bool = False,
                dynamic_size: bool = False) -> Path:
    """Export ``model.predictor()`` to ONNX, check it, and write it atomically.

    Args:
        model: a ``LandmarkModel`` (set to eval mode for the export, restored afterwards).
        path: the ``.onnx`` file to write (its folder is created).
        input_size: crop side S; None takes ``info.input_size`` or ``model.input_size``
            (it must equal ``model.input_size``: heads size their grids and layers by it;
            see ``any_size``).
        opset: ONNX opset (17 by default; ArgMax/Einsum/OneHot export from 13 on).
        dynamic_batch: the batch dimension is symbolic (any B); else fixed to 1.
        info: a ``ModelInfo`` (from ``load_model``) supplying scheme and crop rule.
        scheme, crop_rule: override ``info`` (scheme: a name, a scheme file or a
            ``LandmarkScheme``); defaults are the scheme with N points and ``"300w"``.
        atol: largest allowed difference between onnxruntime and PyTorch (points in
            normalised crop units, confidence).
        metadata: extra ``facemark.*`` metadata entries (strings, or JSON-encoded).
        any_size: allow an ``input_size`` other than the model's own where the model runs
            on it (``LandmarkModel.check_other_input_size``): the graph of a first pass
            that only places the crop (``Landmarker(first_pass_size=...)``).
        dynamic_size: the crop side is symbolic: one graph for every side the model runs on
            (``LandmarkModel.input_sizes()``, listed in the ``facemark.input_sizes``
            metadata and checked for parity at each), so a first pass at a smaller side
            shares the session, and its weights, with the second (two sessions' copies of
            the weights took turns in the caches: 0.35 ms more per face at batch 1,
            docs/results.md). Same speed at the model's own size here.

    Returns:
        ``path``, written only after ``onnx.checker`` and the parity check passed.

    Raises:
        ExportError: the exporter, the checker or the parity check failed.
        ConfigError: a bad opset or input size.
        DataError: the file cannot be written (the old file, if any, is kept).
    """
    import onnx

    path = Path(path)
    size = input_size or (info.input_size if info is not None else None) or model.input_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"export: input_size must be a positive integer, got {size!r}")
    if any_size and int(size) != model.input_size:
        size = model.check_other_input_size(int(size))
    elif int(size) != model.input_size:
        raise ConfigError(f"export: input_size {size} differs from the {model.input_size} px "
                          "the model was built and trained for")
    sizes = model.input_sizes() if dynamic_size else [int(size)]
    dynamic_size = len(sizes) > 1   # a head sized for its input: one side all the same
    if dynamic_size and int(size) != model.input_size:
        raise ConfigError(f"export: dynamic_size takes the model's own input_size "
                          f"({model.input_size}), got {size}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 21:
        raise ConfigError(f"--opset: expected an integer from 13 to 21, got {opset!r}")
    scheme = scheme or (info.landmark_scheme() if info is not None else None) \
        or _default_scheme(model.num_points)
    crop_rule = crop_rule or (info.crop_rule if info is not None else None) or "300w"
    scheme = _check_scheme(scheme, model.num_points)
    _check_crop_rule(crop_rule)

    was_training = model.training
    model.eval()
    frozen = freeze_same_padding(model, int(size))   # constant pads for the fixed crop size
    predictor = model.predictor().eval()
    example = torch.from_numpy(parity_inputs(int(size), batch=2 if dynamic_batch else 1))
    image_axes = {0: "batch"} if dynamic_batch else {}
    if dynamic_size:   # one name for both: the crops are square
        image_axes.update({2: "size", 3: "size"})
    axes = {INPUT_NAME: image_axes, **({o: {0: "batch"} for o in OUTPUT_NAMES}
                                       if dynamic_batch else {})} if image_axes else None
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(predictor, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as e:  # an op the exporter does not know: one line, not a traceback
        model.train(was_training)
        raise ExportError(f"{path}: torch.onnx.export failed ({e.__class__.__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        for layer in frozen:
            layer.fixed_padding = None
    proto = onnx.load_from_string(buffer.getvalue())
    fuse_pads_into_convs(proto)   # TensorFlow SAME pads into the convolutions (same function)
    carried = {k: info.info[k] for k in CARRIED_INFO if info is not None and k in info.info}
    if dynamic_size:
        carried["input_sizes"] = sizes
    set_metadata(proto, build_metadata(model, int(size), scheme=scheme, crop_rule=crop_rule,
                                       extra={**carried, **(metadata or {})}))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        model.train(was_training)
        raise ExportError(f"{path}: onnx.checker rejected the export ({e})") from None

    def write_checked(tmp: Path) -> None:   # the file that passed is the one renamed
        onnx.save(proto, str(tmp))
        session = ort_session(tmp, threads=1)
        check_parity(session, model, example.numpy(), atol, where=str(path))
        if dynamic_batch:  # a batch size other than the traced one goes through the same file
            check_parity(session, model, parity_inputs(int(size), batch=3, seed=1), atol,
                         where=f"{path} (batch 3)")
        for other in sizes:   # dynamic_size: every other side the graph claims to take
            if other != int(size):
                check_parity(session, model, parity_inputs(other, batch=2 if dynamic_batch
                                                           else 1, seed=2), atol,
                             where=f"{path} ({other} px)")

    try:
        return atomic_write(path, write_checked)
    finally:
        model.train(was_training)

"""Static int8 quantisation of a facemark ONNX export, calibrated on real face crops.

onnxruntime's ``quantize_static`` in QDQ format with per-channel weights: it runs the float
model on calibration crops, records each tensor's range (MinMax), and inserts
QuantizeLinear/DequantizeLinear pairs that onnxruntime's CPU kernels fuse into int8
convolutions. Only the heavy operators (``DEFAULT_OP_TYPES``: convolutions and matrix
products) are quantised; the decode at the end of the graph (argmax, offset gathering,
neighbour averaging) and the input normalisation stay float, so the output coordinates keep
their float resolution.

Calibration crops come from (:func:`load_calibration_crops`):

* a crop cache folder (``facemark data cache``), resized if its crop size differs;
* any dataset ``open_dataset`` reads: each face is cut by the model's crop rule from its
  landmarks or box, exactly as evaluation does;
* a folder of images with no annotations: each image is taken as a ready-cut face crop
  (resized to S x S).

:func:`quantization_report` measures what the quantisation costs: NME of the float and the
int8 model on labelled crops, both against the ground truth.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from facemark.data.cache import CropCache, is_cache
from facemark.data.crops import crop_box, crop_face, denormalise_points, transform_points
from facemark.data.formats import open_dataset
from facemark.data.images import read_image
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, SkipLog
from facemark.evaluation.metrics import nme, normalizing_distance
from facemark.inference.export import read_metadata, set_metadata, temp_path
from facemark.models.crop_predict import crops_to_images

DEFAULT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ACTIVATION_TYPES = ("uint8", "int8")


@dataclass
class CalibrationSet:
    """Face crops for calibration (and, when labelled, for measuring the accuracy change).

    Attributes:
        crops: uint8 (M, S, S, 3) RGB.
        landmarks: float64 (M, N, 2) crop pixels (NaN = not annotated), or None when no crop
            is labelled.
        source: the dataset string it came from.
        kind: ``"cache"``, ``"dataset"`` or ``"images"`` (unannotated images used whole).
        notes: lines worth printing (crop rule or size differences, skipped records).
    """

    crops: np.ndarray
    landmarks: np.ndarray | None
    source: str
    kind: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.crops)

    def split(self, count: int) -> tuple["CalibrationSet", "CalibrationSet"]:
        """(first ``count`` crops, the rest), e.g. calibration crops and held-out crops."""
        def part(sl):
            lm = None if self.landmarks is None else self.landmarks[sl]
            return CalibrationSet(self.crops[sl], lm, self.source, self.kind, list(self.notes))
        return part(slice(0, count)), part(slice(count, None))


def _resize_crops(crops: np.ndarray, landmarks: np.ndarray | None, size: int):
    import cv2

    s = crops.shape[1]
    interp = cv2.INTER_AREA if size < s else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.asarray(c), (size, size), interpolation=interp) for c in crops])
    if landmarks is not None:
        landmarks = (np.asarray(landmarks, dtype=np.float64) + 0.5) * (size / s) - 0.5
    return out, landmarks


def _pick(n: int, limit: int | None, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:limit]) if limit is not None else np.arange(n)


def load_calibration_crops(source: str | Path, input_size: int, crop_rule: str, *,
                           scheme: str | None = None, limit: int | None = 256, seed: int = 0,
                           format: str | None = None,
                           skip_bad: SkipLog | bool = False) -> CalibrationSet:
    """Face crops of side ``input_size`` from a crop cache, a dataset or a folder of crops.

    Args:
        source: a crop cache folder, a dataset (``PATH`` or ``FORMAT:PATH``), or a folder of
            unannotated face crops.
        input_size: S, the model's crop side.
        crop_rule: the model's crop rule (used to cut dataset faces).
        scheme: the model's scheme; labelled faces of another scheme are refused.
        limit: at most this many faces, drawn at random with ``seed`` (None: all).
        format: dataset format (sniffed when None).
        skip_bad: skip unreadable images and faces (listed in ``notes``) instead of stopping.

    Raises:
        DataError: no usable face, a missing path, a scheme mismatch.
    """
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    notes: list[str] = []
    want = get_scheme(scheme).name if scheme else None
    if format is None and is_cache(source):
        cache = CropCache.open(source)
        if want and get_scheme(cache.scheme).name != want:
            raise DataError(source, f"crop cache has scheme {cache.scheme}, the model {want}")
        idx = _pick(len(cache), limit, seed)
        crops = np.stack([cache.image(int(i)) for i in idx])
        landmarks = np.asarray(cache.landmarks[idx], dtype=np.float64)
        cache_rule = cache.meta.get("crop_rule")
        if cache_rule != crop_rule:
            notes.append(f"crop cache was cut with crop rule {cache_rule}, the model uses "
                         f"{crop_rule}")
        if cache.size != input_size:
            notes.append(f"crop cache crops are {cache.size} px, resized to {input_size}")
            crops, landmarks = _resize_crops(crops, landmarks, input_size)
        if not np.isfinite(landmarks).any():
            landmarks = None
        return CalibrationSet(crops, landmarks, str(source), "cache", notes)

    samples = open_dataset(source, format=format, skip_bad=log)
    if want:
        labelled = [s for s in samples if s.landmarks is not None]
        other = {get_scheme(s.scheme).name for s in labelled} - {want}
        if other:
            raise DataError(source, f"dataset faces are {', '.join(sorted(other))}, the model "
                                    f"predicts {want}")
    if not samples:
        raise DataError(source, "no images or faces to calibrate on")
    crops, points = [], []
    whole = 0
    for i in _pick(len(samples), limit, seed):
        s = samples[int(i)]
        try:
            image = read_image(s.image, s.frame)
            if s.landmarks is None and s.box is None:
                box = np.array([-0.5, -0.5, image.shape[1] - 0.5, image.shape[0] - 0.5])
                whole += 1
            else:
                box = crop_box(crop_rule, landmarks=s.landmarks, box=s.box)
        except (DataError, ValueError) as e:
            log(e if isinstance(e, DataError) else DataError(s.source or s.image, str(e)))
            continue
        crop, matrix = crop_face(image, box, input_size)
        crops.append(crop)
        points.append(None if s.landmarks is None else transform_points(s.landmarks, matrix))
    if log.skipped:
        notes.append(f"{len(log.skipped)} record(s) skipped (unreadable image or no usable "
                     "landmarks/box)")
    if not crops:
        raise DataError(source, "no usable face to calibrate on (all records were skipped)")
    labelled = [p is not None for p in points]
    landmarks = None
    if any(labelled):
        n = next(p for p in points if p is not None).shape[0]
        landmarks = np.stack([p if p is not None else np.full((n, 2), np.nan) for p in points])
    if whole:
        notes.append(f"{whole} unannotated image(s) used whole as face crops")
    kind = "images" if whole == len(crops) else "dataset"
    return CalibrationSet(np.stack(crops), landmarks, str(source), kind, notes)


class CropCalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` over uint8 crops (M, S, S, 3), in batches.

    Args:
        crops: the calibration crops.
        batch_size: crops per ``get_next`` call.
        input_name: the model input the batches feed.
    """

    def __init__(self, crops: np.ndarray, batch_size: int = 8, input_name: str = "images"):
        self.crops = crops
        self.batch_size = batch_size
        self.input_name = input_name
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.crops):
            return None
        batch = self.crops[self._next:self._next + self.batch_size]
        self._next += self.batch_size
        return {self.input_name: crops_to_images(np.asarray(batch))}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return -(-len(self.crops) // self.batch_size)


def _calibration_reader(crops: np.ndarray, batch_size: int):
    """A CropCalibrationReader that onnxruntime accepts as a ``CalibrationDataReader``."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CropCalibrationReader, CalibrationDataReader):
        pass

    return _Reader(crops, batch_size=batch_size)


def quantize_onnx(model_path: str | Path, out_path: str | Path, crops: np.ndarray, *,
                  per_channel: bool = True, activation_type: str = "uint8",
                  reduce_range: bool = False,
                  op_types: Sequence[str] = DEFAULT_OP_TYPES, batch_size: int = 8) -> Path:
    """Write an int8 (QDQ) copy of a facemark float ONNX file, calibrated on ``crops``.

    Args:
        model_path: the float ``.onnx`` (from :func:`facemark.inference.export.export_onnx`).
        out_path: where to write the quantised model (atomically; may equal ``model_path``).
        crops: uint8 (M, S, S, 3) calibration crops of the model's input size.
        per_channel: one weight scale per output channel (more accurate for ResNets).
        activation_type: ``"uint8"`` (asymmetric, onnxruntime's CPU default) or ``"int8"``.
        reduce_range: 7-bit weights, for x86 CPUs without VNNI (avoids saturation).
        op_types: operator types to quantise.
        batch_size: crops per calibration batch.

    Returns:
        ``out_path``; its metadata is the float model's plus ``facemark.quantization``.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_path, out_path = Path(model_path), Path(out_path)
    if activation_type not in ACTIVATION_TYPES:
        raise ConfigError(f"activation_type: expected one of {', '.join(ACTIVATION_TYPES)}, "
                          f"got {activation_type!r}")
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[3] != 3 or crops.dtype != np.uint8 or not len(crops):
        raise ValueError(f"quantize_onnx: crops must be uint8 (M, S, S, 3) with M >= 1, got "
                         f"{crops.dtype} {crops.shape}")
    if not model_path.is_file():
        raise DataError(model_path, "ONNX model file not found")
    float_model = onnx.load(str(model_path))
    meta = {f"facemark.{k}": v for k, v in read_metadata(float_model).items()}
    size = int(meta.get("facemark.input_size", crops.shape[1]))
    if crops.shape[1:3] != (size, size):
        raise ValueError(f"quantize_onnx: crops are {crops.shape[1]}x{crops.shape[2]} px, the "
                         f"model takes {size}x{size}")
    act = QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out_path)
    prepared = out_path.with_name(f".{out_path.name}.prep-{os.getpid()}")
    try:
        with _quiet_root_logger():
            # Shape inference and graph optimisation first (onnxruntime's advice): constant
            # folding turns the exporter's Constant biases into initializers, so every
            # Conv is quantised whole and fuses into an int8 kernel.
            quant_pre_process(float_model, str(prepared))
            quantize_static(str(prepared), str(tmp), _calibration_reader(crops, batch_size),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                            per_channel=per_channel, reduce_range=reduce_range,
                            activation_type=act, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"WeightSymmetric": True})
        quantised = onnx.load(str(tmp))
        meta["facemark.quantization"] = (
            f"int8 static QDQ, {'per-channel' if per_channel else 'per-tensor'} weights, "
            f"{activation_type} activations{', reduce_range' if reduce_range else ''}, "
            f"MinMax on {len(crops)} crops; ops {','.join(op_types)}")
        set_metadata(quantised, meta)
        onnx.save(quantised, str(tmp))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)
    return out_path


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs advice through the root logger; keep the CLI quiet."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


def predict_points(engine, crops: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An engine's points (M, N, 2) in crop pixels and confidence (M, N) on uint8 crops."""
    size = crops.shape[1]
    points, conf = [], []
    for i in range(0, len(crops), batch_size):
        p, c = engine.predict(crops_to_images(np.asarray(crops[i:i + batch_size])))
        points.append(denormalise_points(p, size))
        conf.append(np.asarray(c, dtype=np.float64))
    return np.concatenate(points), np.concatenate(conf)


def quantization_report(float_engine, int8_engine, crops: np.ndarray,
                        landmarks: np.ndarray | None, scheme: str) -> dict[str, float]:
    """How far the int8 model is from the float one, and (with ``landmarks``) from the truth.

    NMEs are normalised by the scheme's own distance (e.g. outer eye corners for 68 points);
    they are the same in crop and image pixels because the crop is a uniform scaling.

    Returns:
        ``faces``; ``shift_px_mean`` / ``shift_px_max``: how far int8 points lie from the
        float ones (crop pixels); ``confidence_shift_max``; and with landmarks
        ``shift_nme`` (that distance over the normaliser), ``nme_float`` and ``nme_int8``
        (mean NME against the ground truth, fractions) over ``scored`` faces.
    """
    pf, cf = predict_points(float_engine, crops)
    pq, cq = predict_points(int8_engine, crops)
    move = np.linalg.norm(pq - pf, axis=2)                      # (M, N) crop pixels
    out = {"faces": len(crops), "shift_px_mean": float(move.mean()),
           "shift_px_max": float(move.max()),
           "confidence_shift_max": float(np.abs(cq - cf).max())}
    if landmarks is not None:
        dist = normalizing_distance(landmarks, scheme)
        ok = np.isfinite(dist)
        if ok.any():
            out["shift_nme"] = float((move[ok].mean(axis=1) / dist[ok]).mean())
        nf, nq = nme(pf, landmarks, scheme), nme(pq, landmarks, scheme)
        scored = np.isfinite(nf) & np.isfinite(nq)
        out["scored"] = int(scored.sum())
        out["nme_float"] = float(nf[scored].mean()) if scored.any() else float("nan")
        out["nme_int8"] = float(nq[scored].mean()) if scored.any() else float("nan")
    return out

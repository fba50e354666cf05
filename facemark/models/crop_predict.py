"""Landmarks of annotated or boxed faces: crop each face, run the model, map back.

This is the path evaluation takes for a trained model (crops from ground-truth landmarks
or the dataset's boxes by the model's crop rule) and the last step of the detection
pipeline (crops from detector boxes). Every image is decoded once, faces are batched.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from facemark.data.crops import crop_box, crop_face, crop_faces, get_crop_rule, invert_affine, \
    map_back, shifted_crop_boxes, transform_points
from facemark.data.images import read_image
from facemark.data.schemes import get_scheme
from facemark.errors import DataError


def predict_crops(model, crops: np.ndarray, flip_test: bool = False, scheme=None,
                  device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Run the model on uint8 crops (B, S, S, 3) RGB.

    ``model`` is a landmark model (a torch module: the crops go to ``device`` as a tensor)
    or an engine (``facemark.inference.onnx_engine``: the crops stay numpy, so an
    onnxruntime engine runs without torch work between its calls; torch's thread pool and
    onnxruntime's spinning threads slowed each other by about 1.7x here).

    Returns:
        points (B, N, 2) in crop pixels and confidence (B, N) in [0, 1]. With ``flip_test``
        the prediction is averaged with that of the mirrored crop (needs ``scheme``).
    """
    size = crops.shape[1]
    if isinstance(model, torch.nn.Module):
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float() / 255
    else:
        x = crops_to_images(crops)
    points, conf = (_numpy(v) for v in model.predict(x))
    if flip_test:
        perm = get_scheme(scheme).flip_indices
        mirrored = torch.flip(x, dims=[3]) if torch.is_tensor(x) else np.ascontiguousarray(x[..., ::-1])
        p2, c2 = (_numpy(v)[:, perm] for v in model.predict(mirrored))
        p2[..., 0] = 1.0 - p2[..., 0]
        points, conf = (points + p2) / 2, (conf + c2) / 2
    return points * size - 0.5, conf


def predict_boxes(model, images: Sequence[np.ndarray], crop_boxes: Sequence[np.ndarray],
                  size: int, flip_test: bool = False, scheme=None,
                  device: str | torch.device = "cpu",
                  test_crops: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The whole pipeline for F faces: cut crop box ``crop_boxes[i]`` (pixels) out of
    ``images[i]`` (RGB uint8, one image may repeat) at ``size`` px, run the model on the
    crops together (:func:`predict_crops`) and map the points back to their image.

    ``test_crops`` > 1: each face's points and confidence are the mean over that many
    crops, its box and copies moved around it (``data.crops.shifted_crop_boxes``), all in
    one batch (``test_crops`` times the model time).

    Returns:
        points float64 (F, N, 2) in pixels of each face's image, confidence (F, N).
    """
    k = int(test_crops)
    if k > 1:
        crop_boxes = [b for box in crop_boxes for b in shifted_crop_boxes(box, k)]
        images = [image for image in images for _ in range(k)]
    crops, inverses = crop_faces(images, crop_boxes, size)
    points, conf = predict_crops(model, crops, flip_test, scheme, device)
    points, conf = map_back(points, inverses), np.asarray(conf)
    if k > 1:
        points = points.reshape(-1, k, *points.shape[1:]).mean(1)
        conf = conf.reshape(-1, k, conf.shape[-1]).mean(1)
    return points, conf


def crops_to_images(crops: np.ndarray) -> np.ndarray:
    """uint8 crops (B, S, S, 3) -> float32 (B, 3, S, S) in [0, 1] (the models' input)."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def _numpy(values) -> np.ndarray:
    """float32 numpy copy of a model output (a tensor on any device, or an array)."""
    if torch.is_tensor(values):
        return values.detach().float().cpu().numpy()
    return np.array(values, dtype=np.float32)


def iter_crops(samples: Sequence, *, crop_rule: str, input_size: int, batch_size: int = 32,
               on_error=None, progress: bool = False, crop_boxes: np.ndarray | None = None,
               test_crops: int = 1):
    """Batches of face crops cut by ``crop_rule`` from each sample's landmarks or box.

    ``crop_boxes`` (B, 4), when given, are the crop boxes themselves (e.g. from a face
    detector and a calibration); a sample whose row is not finite is left out.
    ``test_crops`` > 1: each sample's box and copies moved around it
    (``data.crops.shifted_crop_boxes``), its index repeated once per crop.
    Each image is decoded once (samples are visited grouped by image). Yields
    ``(indices, crops uint8 (b, S, S, 3), matrices (b, 2, 3) image->crop)``. A sample whose
    image cannot be read goes to ``on_error`` (raised when None) and is left out.
    """
    rule = get_crop_rule(crop_rule)
    n = len(samples)
    order = sorted(range(n), key=lambda i: (samples[i].image, samples[i].frame or 0))
    if crop_boxes is not None:
        order = [i for i in order if np.isfinite(crop_boxes[i]).all()]
    idx, crops, mats = [], [], []
    image_key, image = None, None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="predicting", unit="face")
    for i in order:
        s = samples[i]
        key = (s.image, s.frame)
        try:
            if key != image_key:
                image_key, image = key, read_image(s.image, s.frame)
            box = crop_box(rule, landmarks=s.landmarks, box=s.box) if crop_boxes is None \
                else crop_boxes[i]
        except (DataError, ValueError) as e:
            err = e if isinstance(e, DataError) else DataError(s.source or s.image, str(e))
            if on_error is None:
                raise err from None
            on_error(err)
            image_key = None
            continue
        for one in (shifted_crop_boxes(box, test_crops) if test_crops > 1 else [box]):
            crop, matrix = crop_face(image, one, input_size)
            idx.append(i)
            crops.append(crop)
            mats.append(matrix)
            if len(idx) >= batch_size:
                yield list(idx), np.stack(crops), np.stack(mats)
                idx, crops, mats = [], [], []
        if bar is not None:
            bar.update(1)
    if idx:
        yield list(idx), np.stack(crops), np.stack(mats)
    if bar is not None:
        bar.close()


def predict_samples(model, samples: Sequence, *, crop_rule: str, input_size: int,
                    batch_size: int = 32, flip_test: bool = False, on_error=None,
                    progress: bool = False, device: str = "cpu",
                    crop_boxes: np.ndarray | None = None, test_crops: int = 1):
    """Landmarks for each sample, cropped by ``crop_rule`` from its landmarks or box, or
    from ``crop_boxes`` (B, 4) when given (rows that are not finite: ``ok=False``);
    ``test_crops`` > 1: the mean over that many crops per sample (:func:`predict_boxes`).

    Returns:
        (points (B, N, 2) image pixels, confidence (B, N), ok (B,) bool). A sample whose
        image cannot be read is reported through ``on_error`` (raised when None) and gets
        ``ok=False`` and NaN points.
    """
    scheme = get_scheme(samples[0].scheme) if len(samples) else None
    n = len(samples)
    points = np.zeros((n, model.num_points, 2))
    conf = np.zeros((n, model.num_points), dtype=np.float64)
    count = np.zeros(n)
    for idx, crops, mats in iter_crops(samples, crop_rule=crop_rule, input_size=input_size,
                                       batch_size=batch_size, on_error=on_error,
                                       progress=progress, crop_boxes=crop_boxes,
                                       test_crops=test_crops):
        p, c = predict_crops(model, crops, flip_test, scheme, device)
        for j, i in enumerate(idx):   # sums: a sample's test crops may span two batches
            points[i] += transform_points(p[j], invert_affine(mats[j]))
            conf[i] += c[j]
            count[i] += 1
    ok = count > 0
    points[ok] /= count[ok, None, None]
    points[~ok] = np.nan
    conf[ok] /= count[ok, None]
    return points, conf.astype(np.float32), ok

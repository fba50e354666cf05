"""Landmarks of annotated or boxed faces: crop each face, run the model, map back.

This is the path evaluation takes for a trained model (crops from ground-truth landmarks
or the dataset's boxes by the model's crop rule) and the last step of the detection
pipeline (crops from detector boxes). Every image is decoded once, faces are batched.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from facemark.data.crops import box_to_affine, crop_box, get_crop_rule, invert_affine, \
    transform_points, warp_image
from facemark.data.images import read_image
from facemark.data.schemes import get_scheme
from facemark.errors import DataError


def predict_crops(model, crops: np.ndarray, flip_test: bool = False, scheme=None,
                  device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Run the model on uint8 crops (B, S, S, 3) RGB.

    Returns:
        points (B, N, 2) in crop pixels and confidence (B, N) in [0, 1]. With ``flip_test``
        the prediction is averaged with that of the mirrored crop (needs ``scheme``).
    """
    size = crops.shape[1]
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float() / 255
    points, conf = model.predict(x)
    if flip_test:
        scheme = get_scheme(scheme)
        p2, c2 = model.predict(torch.flip(x, dims=[3]))
        perm = torch.as_tensor(scheme.flip_indices, device=p2.device)
        p2 = p2[:, perm]
        p2[..., 0] = 1.0 - p2[..., 0]
        points, conf = (points + p2) / 2, (conf + c2[:, perm]) / 2
    points = points.float().cpu().numpy() * size - 0.5
    return points, conf.float().cpu().numpy()


def predict_samples(model, samples: Sequence, *, crop_rule: str, input_size: int,
                    batch_size: int = 32, flip_test: bool = False, on_error=None,
                    progress: bool = False, device: str = "cpu"):
    """Landmarks for each sample, cropped by ``crop_rule`` from its landmarks or box.

    Returns:
        (points (B, N, 2) image pixels, confidence (B, N), ok (B,) bool). A sample whose
        image cannot be read is reported through ``on_error`` (raised when None) and gets
        ``ok=False`` and NaN points.
    """
    rule = get_crop_rule(crop_rule)
    scheme = get_scheme(samples[0].scheme) if len(samples) else None
    n = len(samples)
    num_points = model.num_points
    points = np.full((n, num_points, 2), np.nan)
    conf = np.zeros((n, num_points), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    order = sorted(range(n), key=lambda i: (samples[i].image, samples[i].frame or 0))
    batch_idx, batch_crops, batch_inv = [], [], []
    image_key, image = None, None

    def flush():
        if not batch_idx:
            return
        p, c = predict_crops(model, np.stack(batch_crops), flip_test, scheme, device)
        for j, i in enumerate(batch_idx):
            points[i] = transform_points(p[j], batch_inv[j])
            conf[i] = c[j]
            ok[i] = True
        batch_idx.clear(), batch_crops.clear(), batch_inv.clear()

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
            box = crop_box(rule, landmarks=s.landmarks, box=s.box)
        except (DataError, ValueError) as e:
            err = e if isinstance(e, DataError) else DataError(s.source or s.image, str(e))
            if on_error is None:
                raise err from None
            on_error(err)
            image_key = None
            continue
        matrix = box_to_affine(box, input_size)
        batch_idx.append(i)
        batch_crops.append(warp_image(image, matrix, input_size))
        batch_inv.append(invert_affine(matrix))
        if len(batch_idx) >= batch_size:
            flush()
        if bar is not None:
            bar.update(1)
    flush()
    if bar is not None:
        bar.close()
    return points, conf, ok

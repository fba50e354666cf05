"""Pseudo-labels: a model's predictions on unlabelled crops, mapped between crop sizes (a
teacher's crops to its student's) and saved with each self-training round."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facemark.data.crops import invert_affine, transform_points
from facemark.errors import ConfigError, DataError
from facemark.io import atomic_write
from facemark.models.crop_predict import predict_crops


def pseudo_label(model, cache, batch_size: int = 64, flip_test: bool = False,
                 device: str | torch.device = "cpu", progress: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Predict every crop of a cache with ``model`` (full-task decode), in batches.

    Args:
        model: a LandmarkModel of the cache's crop size (put in eval mode here).
        cache: a CropCache; its own landmarks, if any, are ignored. From a cache built with
            context the model sees each model crop (``CropCache.model_crop``).

    Returns:
        points float32 (M, N, 2) in stored-crop pixels (the cache's ``landmarks``
        convention) and confidence float32 (M, N) in [0, 1].
    """
    if model.input_size != cache.crop_size:
        raise ConfigError(f"pseudo-labels: the model takes {model.input_size} px crops, the "
                          f"cache {cache.path} holds {cache.crop_size} px crops")
    back = invert_affine(cache.model_crop_matrix())      # model-crop -> stored-crop pixels
    model.eval()
    m = len(cache)
    points = np.zeros((m, model.num_points, 2), np.float32)
    conf = np.zeros((m, model.num_points), np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=m, desc="pseudo-labelling", unit="face")
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        crops = np.stack([cache.model_crop(i) for i in range(start, stop)])
        p, c = predict_crops(model, crops, flip_test, cache.scheme, device)
        points[start:stop], conf[start:stop] = transform_points(p, back), c
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    return points, conf


def to_student_crops(points: np.ndarray, teacher_cache, student_cache) -> np.ndarray:
    """Map a teacher's pseudo-labels from its crops to the student's crops of the same faces.

    Args:
        points: float32 (M, N, 2) in pixels of ``teacher_cache``'s crops.
        teacher_cache, student_cache: CropCaches of the same unlabelled faces in the same
            order (same boxes and crop rule, different crop sizes).

    Returns:
        float32 (M, N, 2) in pixels of ``student_cache``'s crops (through image pixels).

    Raises:
        DataError: the two caches do not hold the same faces.
    """
    same = len(teacher_cache) == len(student_cache) and all(
        (a.get("image"), a.get("frame")) == (b.get("image"), b.get("frame"))
        for a, b in zip(teacher_cache.records, student_cache.records))
    if not same:
        raise DataError(teacher_cache.path, f"the teacher's crops ({len(teacher_cache)}) are "
                        f"not the student's crops ({len(student_cache)}, {student_cache.path}) "
                        "of the same faces; delete both caches to rebuild them")
    out = np.empty_like(points)
    for i in range(len(points)):
        out[i] = transform_points(teacher_cache.to_image(i, points[i]), student_cache.affine[i])
    return out


def save_pseudo_labels(path: Path, caches, points: list[np.ndarray],
                       confidence: list[np.ndarray], source: str) -> None:
    """Write a round's pseudo-labels atomically (``points_i``, ``confidence_i`` per cache)."""
    arrays = {"caches": np.array([str(c.path) for c in caches]), "source": np.array(source)}
    for i, (p, c) in enumerate(zip(points, confidence)):
        arrays[f"points_{i}"], arrays[f"confidence_{i}"] = p, c

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:      # a file, not a path: np.savez would add ".npz" to it
            np.savez(f, **arrays)

    atomic_write(path, write)


def load_pseudo_labels(path: Path, caches) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read :func:`save_pseudo_labels` output; DataError unless it fits ``caches``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(x) for x in z["caches"]]
            points = [z[f"points_{i}"] for i in range(len(names))]
            conf = [z[f"confidence_{i}"] for i in range(len(names))]
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise DataError(path, f"cannot read pseudo-labels ({e}); delete the file to redo "
                              "them") from None
    expected = [str(c.path) for c in caches]
    if names != expected or any(p.shape != c.landmarks.shape for p, c in zip(points, caches)):
        raise DataError(path, f"pseudo-labels were made for other unlabelled crops ({names} vs "
                              f"{expected}); restart the run (--restart) or use another experiment")
    return points, conf

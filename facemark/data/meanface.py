"""The mean face: the average landmark layout inside a normalised crop.

PIPNet uses it to pick each landmark's neighbours and facemark's evaluation uses it as the
simplest baseline ("place the mean face in each crop"). Coordinates are normalised crop
coordinates, ``(x_px + 0.5) / S`` for a crop of S pixels, so [0, 1] spans the crop from
edge to edge.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_face(normalised_landmarks: np.ndarray,
              names: Sequence[str] | None = None) -> np.ndarray:
    """Mean of normalised landmarks over faces, ignoring points that are not annotated.

    Args:
        normalised_landmarks: (M, N, 2) normalised crop coordinates of M faces; a NaN
            coordinate marks a point that is not annotated in that face.
        names: optional point names (N,), used only to name never-annotated points in
            the error message.

    Returns:
        float64 array (N, 2): per point, the mean over the faces where it is annotated.

    Raises:
        ValueError: the array is not (M, N, 2) with M >= 1, or some point is annotated in
            none of the faces (its mean would be undefined).
    """
    arr = np.asarray(normalised_landmarks, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(f"mean_face expects normalised landmarks of shape (M, N, 2), got "
                         f"{arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("mean_face needs at least one face, got an empty array (0, N, 2)")
    annotated = np.isfinite(arr).all(axis=2)              # (M, N)
    counts = annotated.sum(axis=0)                        # (N,)
    never = np.flatnonzero(counts == 0)
    if len(never):
        label = [names[i] for i in never] if names is not None else never.tolist()
        raise ValueError(f"mean_face: point(s) {label} are annotated in none of the "
                         f"{arr.shape[0]} faces, so their mean is undefined")
    total = np.where(annotated[..., None], arr, 0.0).sum(axis=0)
    return total / counts[:, None]

"""Face crops: from landmarks or a box to a square patch, and back.

A crop is a 2x3 affine matrix ``M`` mapping image pixels to crop pixels
(``crop_xy = M @ [x, y, 1]``); :func:`invert_affine` maps predictions back. Crop rules
hold the per-dataset conventions of ``../shared/REFERENCE.md`` (300-W landmark box x1.1,
WFLW given box x1.2, COFW/AFLW given box as is, cross-domain x1.3, WFLW-68 top cut,
detector boxes x1.2 moved down by 0.1 h; :func:`gsl_crop_rule` picks the cross-domain one).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facemark.errors import ConfigError


@dataclass(frozen=True)
class CropRule:
    """How to turn a face into a square crop box.

    Args:
        source: ``"landmarks"`` (tight box around the annotated points) or ``"box"`` (the
            dataset's or detector's face box).
        scale: enlargement of the box side about its centre (1.1 = 10% larger).
        shift_y: move the centre down by this fraction of the box height (before scaling).
        top_cut: drop this fraction of the box height from its top (before scaling).
        square: make the box square using its longer side (PIPNet crops do).
    """

    source: str = "landmarks"
    scale: float = 1.1
    shift_y: float = 0.0
    top_cut: float = 0.0
    square: bool = True


CROP_RULES: dict[str, CropRule] = {
    "300w": CropRule("landmarks", 1.1),
    "wflw": CropRule("box", 1.2),
    "cofw": CropRule("box", 1.0),
    "aflw": CropRule("box", 1.0),
    "cross": CropRule("landmarks", 1.3),
    "wflw68": CropRule("box", 1.2, top_cut=0.2),
    "cofw68": CropRule("box", 1.3),
    "detector": CropRule("box", 1.2, shift_y=0.1),
}

#: The crops of PIPNet's cross-domain (GSL) setting (Sec. 4.1.2): 300W landmark boxes
#: x1.3 (``cross``), COFW-68 given boxes x1.3, WFLW-68 given boxes x1.2 with 20% of their
#: height cut from the top. Chosen by the dataset's format, then by its annotated scheme;
#: ``GSL_DEFAULT`` for anything else.
GSL_BY_FORMAT = {"wflw": "wflw68", "cofw68": "cofw68"}
GSL_BY_SCHEME = {"wflw98": "wflw68"}
GSL_DEFAULT = "cross"


def gsl_crop_rule(format_name: str | None, scheme: str | None) -> str:
    """The GSL crop rule name for a dataset of format ``format_name`` whose records are
    annotated in ``scheme`` (before any conversion), e.g. ``("wflw", "wflw98")`` ->
    ``"wflw68"``."""
    return GSL_BY_FORMAT.get(format_name or "") or GSL_BY_SCHEME.get(scheme or "") or GSL_DEFAULT


def get_crop_rule(rule: str | CropRule) -> CropRule:
    if isinstance(rule, CropRule):
        return rule
    if rule not in CROP_RULES:
        raise KeyError(f"unknown crop rule {rule!r}; known rules: {', '.join(CROP_RULES)}")
    return CROP_RULES[rule]


def crop_box(rule: CropRule | str, landmarks: np.ndarray | None = None,
             box: np.ndarray | None = None) -> np.ndarray:
    """The crop box ``x1, y1, x2, y2`` (float, pixels) a rule makes for one face.

    Args:
        rule: a CropRule or the name of one in CROP_RULES.
        landmarks: (N, 2) pixels, NaN rows ignored; used when ``rule.source == "landmarks"``
            (and as a fallback when no box is given).
        box: (4,) ``x1, y1, x2, y2``; used when ``rule.source == "box"``.
    """
    rule = get_crop_rule(rule)
    if rule.source == "box" and box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
    else:
        if landmarks is None:
            raise ValueError("crop rule needs landmarks (or a box)")
        pts = np.asarray(landmarks, dtype=np.float64)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts) == 0:
            raise ValueError("no finite landmarks to crop around")
        x1, y1 = pts.min(axis=0)
        x2, y2 = pts.max(axis=0)
    h = y2 - y1
    y1 += rule.top_cut * h
    cy_shift = rule.shift_y * (y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + cy_shift
    w, h = (x2 - x1) * rule.scale, (y2 - y1) * rule.scale
    if rule.square:
        w = h = max(w, h)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


def box_to_affine(box: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """2x3 affine mapping image pixels inside ``box`` onto a ``size`` crop.

    Pixel-centre convention: the box's left edge ``x1`` maps to crop x = -0.5 and its right
    edge to ``W - 0.5``, so a crop of the whole image at its own size is the identity.
    """
    w_out, h_out = (size, size) if np.isscalar(size) else size
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = w_out / (x2 - x1), h_out / (y2 - y1)
    return np.array([[sx, 0.0, -x1 * sx - 0.5],
                     [0.0, sy, -y1 * sy - 0.5]], dtype=np.float64)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (crop -> image)."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (..., 2) points; NaN stays NaN. Returns float64."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int],
               border_value: int = 0) -> np.ndarray:
    """Warp an (H, W, C) image with a 2x3 affine into a ``size`` crop (bilinear).

    cv2's warpAffine uses the same integer-pixel-centre convention as the points, so
    ``transform_points(p, M)`` lands exactly where ``warp_image(img, M)`` moved p.
    """
    w_out, h_out = (size, size) if np.isscalar(size) else size
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (int(w_out), int(h_out)),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(border_value,) * 3)


def crop_face(image: np.ndarray, box: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Cut a crop box out of an image: returns (crop (size, size, C) uint8, 2x3 affine)."""
    matrix = box_to_affine(box, size)
    return warp_image(image, matrix, size), matrix


def crop_faces(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut crop box ``boxes[i]`` out of ``images[i]`` for every i (one image may repeat).

    Args:
        images: F images (H, W, 3) uint8, one per box.
        boxes: F crop boxes ``x1, y1, x2, y2`` in pixels of their image.
        size: crop side S in pixels.

    Returns:
        (crops uint8 (F, S, S, 3), inverse affines float64 (F, 2, 3) crop -> image, the
        matrices :func:`map_back` takes); F = 0 gives empty arrays of those shapes.
    """
    crops, inverses = [], []
    for image, box in zip(images, boxes, strict=True):
        crop, matrix = crop_face(image, box, size)
        crops.append(crop)
        inverses.append(invert_affine(matrix))
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 2, 3))
    return np.stack(crops), np.stack(inverses)


#: How far the extra test crops move from the crop, as a fraction of its side (0.03-0.06
#: did equally well on validation faces; docs/results.md, "Test crops").
TEST_CROP_SHIFT = 0.04
#: The most test crops a prediction averages.
MAX_TEST_CROPS = 16


def check_test_crops(count) -> int:
    """``count`` as the number of test crops: 1, or 3 to MAX_TEST_CROPS (two would move the
    average off the crop's centre); ConfigError otherwise."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1 \
            or count == 2 or count > MAX_TEST_CROPS:
        raise ConfigError(f"test_crops: expected 1 (no averaging) or 3 to {MAX_TEST_CROPS} "
                          f"crops, got {count!r}")
    return int(count)


def shifted_crop_boxes(box: np.ndarray, count: int, shift: float = TEST_CROP_SHIFT) -> np.ndarray:
    """The crop boxes (count, 4) whose predictions a test-time average takes: ``box`` itself,
    then ``count - 1`` copies of it moved by ``shift`` of its side in directions evenly
    spaced around the circle from 45 degrees (three crops: the box and its two diagonal
    neighbours). Their offsets sum to zero, so the average stays centred on ``box``.

    Args:
        box: a crop box ``x1, y1, x2, y2`` in pixels.
        count: 1, or 3 or more (:func:`check_test_crops`).
        shift: the move, as a fraction of the box's width (x) and height (y).
    """
    box = np.asarray(box, dtype=np.float64)
    angles = np.deg2rad(45.0 + 360.0 * np.arange(count - 1) / max(count - 1, 1))
    moves = np.zeros((count, 2))
    moves[1:] = shift * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    size = box[2:] - box[:2]
    return box[None] + np.tile(moves * size, 2)


def map_back(points: np.ndarray, inverses: Sequence[np.ndarray]) -> np.ndarray:
    """Crop-pixel points (F, N, 2) of F crops to image pixels with their inverse affines
    (F, 2, 3) (:func:`crop_faces`): float64 (F, N, 2); F = 0 gives (0, N, 2)."""
    if not len(points):
        return np.zeros(np.shape(points), dtype=np.float64)
    return np.stack([transform_points(p, m) for p, m in zip(points, inverses, strict=True)])


def compose_affine(*matrices: np.ndarray) -> np.ndarray:
    """One 2x3 affine equal to applying ``matrices`` in the order given (first one first)."""
    out = np.eye(3)
    for m in matrices:
        out = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]]) @ out
    return out[:2].copy()


def normalise_points(points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels -> normalised crop coordinates ``(x + 0.5) / size``; [0, 1] spans the
    crop from edge to edge. NaN stays NaN."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / float(size)


def denormalise_points(points: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`normalise_points`: ``x * size - 0.5``."""
    return np.asarray(points, dtype=np.float64) * float(size) - 0.5

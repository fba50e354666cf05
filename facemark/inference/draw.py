"""Overlays: faces and their landmarks drawn on an image, points coloured by face region.

Colours come from the scheme's regions in declaration order (the palette ``facemark data
show`` uses), skeleton lines from ``scheme.skeleton``; boxes are drawn in a colour that
goes from red (low mean landmark confidence) to green (high), labelled ``score / confidence``
(detector score and mean landmark confidence; the confidence alone when there is no score).
With ``pose=True`` each face's head pose (``facemark.inference.pose``) is drawn as three
axes from the nose tip (:func:`draw_pose`).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facemark.cli.data import OTHER_COLOUR, PALETTE
from facemark.data.schemes import get_scheme


def region_colours(scheme) -> list[tuple[int, int, int]]:
    """RGB colour of every point of ``scheme``, by its region (grey for "other")."""
    scheme = get_scheme(scheme)
    of_region = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(scheme.regions)}
    return [of_region.get(r, OTHER_COLOUR) for r in scheme.region_of]


def _confidence_colour(value: float) -> tuple[int, int, int]:
    """Red (0) to green (1), RGB."""
    v = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
    return (int(round(255 * (1 - v))), int(round(210 * v)), 0)


def draw_faces(image: np.ndarray, faces: Sequence, *, radius: int | None = None,
               skeleton: bool = True, label: bool = True, pose: bool = False) -> np.ndarray:
    """A copy of an RGB uint8 image (H, W, 3) with ``faces`` drawn on it.

    Args:
        image: RGB uint8 (H, W, 3).
        faces: :class:`~facemark.inference.landmarker.Face` objects (anything with ``box``,
            ``score``, ``points`` (N, 2) pixels, ``point_scores`` and ``scheme``).
        radius: landmark dot radius in pixels; None scales it with the face size.
        skeleton: draw the scheme's skeleton lines.
        label: write the detector score and the mean landmark confidence above each box.
        pose: draw each face's head pose axes (its ``pose``, a HeadPose; faces without one
            are drawn without axes).

    Returns:
        the drawn RGB uint8 image; ``image`` itself is not changed.
    """
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    line = max(1, round(max(out.shape[:2]) / 500))
    for face in faces:
        scheme = get_scheme(face.scheme)
        colours = region_colours(scheme)
        box = np.asarray(face.box, dtype=np.float64)
        size = max(float(np.sqrt(max(box[2] - box[0], 1) * max(box[3] - box[1], 1))), 1.0)
        r = radius if radius is not None else max(1, round(size / 80))
        conf = float(np.mean(face.point_scores)) if len(face.point_scores) else 0.0
        p1 = tuple(int(round(v)) for v in box[:2])
        p2 = tuple(int(round(v)) for v in box[2:])
        box_colour = _confidence_colour(conf)
        cv2.rectangle(out, p1, p2, box_colour, line, cv2.LINE_AA)
        if label:
            text = f"{conf:.2f}" if face.score is None else f"{face.score:.2f} / {conf:.2f}"
            cv2.putText(out, text, (p1[0], max(p1[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * line, box_colour, line, cv2.LINE_AA)
        pts = np.asarray(face.points, dtype=np.float64)
        ok = np.isfinite(pts).all(axis=1)
        q = np.round(np.where(ok[:, None], pts, 0) * 16).astype(np.int64)  # 4 fractional bits
        if skeleton:
            for a, b in scheme.skeleton:
                i, j = scheme.index(a), scheme.index(b)
                if ok[i] and ok[j]:
                    cv2.line(out, tuple(map(int, q[i])), tuple(map(int, q[j])), colours[i], 1,
                             cv2.LINE_AA, shift=4)
        for i in np.flatnonzero(ok):
            cv2.circle(out, tuple(map(int, q[i])), r * 16, colours[i], -1, cv2.LINE_AA, shift=4)
        if pose:
            head = getattr(face, "pose", None)
            if hasattr(head, "project"):
                draw_pose(out, head, thickness=max(line, round(size / 60)))
    return out


#: Pose axes: (direction in the 3D face's frame, RGB colour): x to the subject's left (red),
#: up (green), out of the face, where it looks (blue).
POSE_AXES = (((1.0, 0.0, 0.0), (230, 40, 40)), ((0.0, -1.0, 0.0), (40, 200, 40)),
             ((0.0, 0.0, -1.0), (40, 90, 255)))


def draw_pose(image: np.ndarray, pose, length_mm: float = 60.0, thickness: int = 2) -> np.ndarray:
    """Draw a head pose's axes on an RGB uint8 image, in place, and return it.

    Args:
        image: RGB uint8 (H, W, 3), changed in place.
        pose: a :class:`facemark.inference.pose.HeadPose` (its camera projects the axes).
        length_mm: axis length in the 3D face's millimetres (the eyes' outer corners are
            90 mm apart).
        thickness: line width in pixels.

    The axes start at the nose tip: red towards the subject's left, green up, blue out of
    the face (where it looks); with the perspective of the pose's camera.
    """
    ends = np.vstack([np.zeros(3), length_mm * np.array([d for d, _ in POSE_AXES])])
    pts = pose.project(ends)
    if not np.isfinite(pts).all():
        return image
    q = np.round(pts * 16).astype(np.int64)
    origin = tuple(map(int, q[0]))
    for (_, colour), end in zip(POSE_AXES, q[1:]):
        cv2.arrowedLine(image, origin, tuple(map(int, end)), colour, int(thickness), cv2.LINE_AA,
                        shift=4, tipLength=0.15)
    return image

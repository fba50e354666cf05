"""Overlays: faces and their landmarks drawn on an image, points coloured by face region.

Colours come from the scheme's regions in declaration order (the palette ``facemark data
show`` uses), skeleton lines from ``scheme.skeleton``; boxes are drawn in a colour that
goes from red (low mean landmark confidence) to green (high), labelled ``score / confidence``
(detector score and mean landmark confidence; the confidence alone when there is no score).
Labels are sized to their face (:func:`label_layout`), kept inside the image, and placed
above, below or inside their box where they cover no other label.
With ``pose=True`` each face's head pose (``facemark.data.pose``) is drawn as three
axes from the nose tip (:func:`draw_pose`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facemark.data.schemes import get_scheme

# Region colours (RGB) for drawings, in the order regions are declared; "other" is grey.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 215, 0))
OTHER_COLOUR = (160, 160, 160)


def _colour_of_region(scheme) -> dict[str, tuple[int, int, int]]:
    scheme = get_scheme(scheme)
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(scheme.regions)}


def region_colours(scheme) -> list[tuple[int, int, int]]:
    """RGB colour of every point of ``scheme``, by its region (grey for "other")."""
    of_region = _colour_of_region(scheme)
    return [of_region.get(r, OTHER_COLOUR) for r in get_scheme(scheme).region_of]


def _confidence_colour(value: float) -> tuple[int, int, int]:
    """Red (0) to green (1), RGB."""
    v = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
    return (int(round(255 * (1 - v))), int(round(210 * v)), 0)


def draw_faces(image: np.ndarray, faces: Sequence, *, radius: int | None = None,
               skeleton: bool = True, label: bool = True, pose: bool = False) -> np.ndarray:
    """A copy of an RGB uint8 image (H, W, 3) with ``faces`` drawn on it.

    Args:
        image: RGB uint8 (H, W, 3).
        faces: :class:`~facemark.data.face.Face` objects (anything with ``box``,
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
        conf = _conf(face)
        p1 = tuple(int(round(v)) for v in box[:2])
        p2 = tuple(int(round(v)) for v in box[2:])
        box_colour = _confidence_colour(conf)
        cv2.rectangle(out, p1, p2, box_colour, line, cv2.LINE_AA)
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
    if label:  # after every face, so no box or point is drawn over a label
        for face, lab in zip(faces, label_layout(faces, out.shape)):
            x1, y1, x2, y2 = lab.rect
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), _confidence_colour(_conf(face)), -1)
            cv2.putText(out, lab.text, lab.origin, _FONT, lab.scale, (0, 0, 0), lab.thickness,
                        cv2.LINE_AA)
    return out


_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Label text height (digit cap height, pixels) as a fraction of the face box side, and its
#: bounds: readable on a small face, not shouting on a big one.
LABEL_HEIGHT = 0.14
LABEL_MIN_PX, LABEL_MAX_PX = 7, 40


def _conf(face) -> float:
    return float(np.mean(face.point_scores)) if len(face.point_scores) else 0.0


def label_text(face) -> str:
    """``score / confidence`` (detector score, mean landmark confidence), or the confidence."""
    conf = _conf(face)
    return f"{conf:.2f}" if face.score is None else f"{face.score:.2f} / {conf:.2f}"


@dataclass(frozen=True)
class Label:
    """Where a face's label goes: ``rect`` (x1, y1, x2, y2), exclusive ends, its filled
    background; ``origin`` the text baseline start; ``scale``/``thickness`` for putText."""
    text: str
    rect: tuple[int, int, int, int]
    origin: tuple[int, int]
    scale: float
    thickness: int
    text_height: int


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return float(w * h) if w > 0 and h > 0 else 0.0


def label_layout(faces: Sequence, shape) -> list[Label]:
    """Size and place every face's label (see :func:`draw_faces`).

    The text's height is ``LABEL_HEIGHT`` of the face box side (within ``LABEL_MIN_PX`` ..
    ``LABEL_MAX_PX`` pixels, and narrowed to at most twice the box width). Each label tries,
    in order: above its box, below it, inside its top edge, each left- then right-aligned,
    then the same places moved up or down by label heights; every place is moved inside the
    image. The first place that covers no label already placed and no other face's box is
    taken; failing that, the place covering the least (labels count ten times boxes).
    """
    h_img, w_img = int(shape[0]), int(shape[1])
    boxes = [np.asarray(f.box, dtype=np.float64) for f in faces]
    placed: list[tuple[int, int, int, int]] = []
    labels = []
    for k, (face, box) in enumerate(zip(faces, boxes)):
        text = label_text(face)
        bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
        px = float(np.clip(LABEL_HEIGHT * np.sqrt(bw * bh), LABEL_MIN_PX, LABEL_MAX_PX))
        thickness = max(1, int(round(px / 14)))
        scale = cv2.getFontScaleFromHeight(_FONT, int(round(px)), thickness)
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        if tw > 2 * bw and th > LABEL_MIN_PX:  # long text on a narrow box: smaller, not wider
            scale *= max(2 * bw / tw, LABEL_MIN_PX / th)
            (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        pad = max(1, int(round(th / 5)))
        lw, lh = tw + 2 * pad, th + base + 2 * pad
        lw, lh = min(lw, w_img), min(lh, h_img)
        x1b, y1b, x2b, y2b = (int(round(v)) for v in box)
        spots = []
        for y in (y1b - lh, y2b + 1, y1b + 1):           # above, below, inside the top edge
            for x in (x1b, x2b - lw):                      # left-, then right-aligned
                spots.append((x, y))
        for step in range(1, 4):
            for y0 in (y1b - lh - step * lh, y2b + 1 + step * lh):
                for x in (x1b, x2b - lw):
                    spots.append((x, y0))
        others = [tuple(b) for j, b in enumerate(boxes) if j != k]
        best, best_cost = None, None
        for x, y in spots:
            x = int(np.clip(x, 0, w_img - lw))
            y = int(np.clip(y, 0, h_img - lh))
            rect = (x, y, x + lw, y + lh)
            cost = 10 * sum(_overlap(rect, r) for r in placed) + \
                sum(_overlap(rect, r) for r in others)
            if best is None or cost < best_cost:
                best, best_cost = rect, cost
            if cost == 0:
                break
        placed.append(best)
        origin = (best[0] + pad, best[3] - pad - base)
        labels.append(Label(text, best, origin, float(scale), thickness, int(th)))
    return labels


#: Pose axes: (direction in the 3D face's frame, RGB colour): x to the subject's left (red),
#: up (green), out of the face, where it looks (blue).
POSE_AXES = (((1.0, 0.0, 0.0), (230, 40, 40)), ((0.0, -1.0, 0.0), (40, 200, 40)),
             ((0.0, 0.0, -1.0), (40, 90, 255)))


def draw_pose(image: np.ndarray, pose, length_mm: float = 60.0, thickness: int = 2) -> np.ndarray:
    """Draw a head pose's axes on an RGB uint8 image, in place, and return it.

    Args:
        image: RGB uint8 (H, W, 3), changed in place.
        pose: a :class:`facemark.data.pose.HeadPose` (its camera projects the axes).
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


def draw_grid(tiles, scheme, tile: int | None = None):
    """One RGB image: the tiles in a near-square grid, landmarks coloured by region.

    Filled dots are points on the subject's right, rings on the subject's left (so a flip
    that forgot to swap names shows up), small squares are midline points; skeleton lines
    follow ``scheme.skeleton``. A legend strip at the bottom names the colours.
    """
    import math

    size = tiles[0][0].shape[0]
    tile = tile or max(size, 192)
    k = tile / size
    regions = list(scheme.regions)
    colour_of_region = _colour_of_region(scheme)
    colours = region_colours(scheme)
    sides = getattr(scheme, "sides", None) or ("",) * scheme.num_points
    links = [(scheme.index(a), scheme.index(b)) for a, b in scheme.skeleton]
    radius = max(2, round(tile / 80))

    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    legend_h = 28
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for n, (img, pts, caption) in enumerate(tiles):
        t = cv2.resize(np.ascontiguousarray(img), (tile, tile), interpolation=cv2.INTER_LINEAR) \
            if tile != size else np.array(img)
        p = (np.asarray(pts, dtype=np.float64) + 0.5) * k - 0.5      # pixel centres stay centres
        ok = np.isfinite(p).all(axis=1)
        q = np.round(np.where(ok[:, None], p, 0) * 16).astype(np.int64)   # 4 fractional bits
        for a, b in links:
            if ok[a] and ok[b]:
                cv2.line(t, tuple(map(int, q[a])), tuple(map(int, q[b])), colours[a], 1,
                         cv2.LINE_AA, shift=4)
        for i in np.flatnonzero(ok):
            c = tuple(map(int, q[i]))
            if sides[i] == "right":
                cv2.circle(t, c, radius * 16, colours[i], -1, cv2.LINE_AA, shift=4)
            elif sides[i] == "left":
                cv2.circle(t, c, radius * 16, colours[i], 1, cv2.LINE_AA, shift=4)
            else:
                x, y = c
                r = radius * 16
                cv2.rectangle(t, (x - r, y - r), (x + r, y + r), colours[i], -1, cv2.LINE_AA, shift=4)
        cv2.rectangle(t, (0, 0), (tile - 1, 15), (0, 0, 0), -1)
        cv2.putText(t, caption[:max(4, tile // 7)], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
        r0, c0 = divmod(n, cols)
        grid[r0 * tile:(r0 + 1) * tile, c0 * tile:(c0 + 1) * tile] = t
    entries = [(r, colour_of_region[r]) for r in regions]
    if "other" in scheme.region_of:
        entries.append(("other", OTHER_COLOUR))
    entries.append(("filled: subject's right, ring: left, square: midline", None))
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    placed, x, line = [], 6, 0
    for name, colour in entries:
        width = (14 if colour is not None else 0) + cv2.getTextSize(name, font, scale, 1)[0][0]
        if x > 6 and x + width > grid.shape[1] - 6:
            x, line = 6, line + 1
        placed.append((x, line, name, colour))
        x += width + 14
    legend = np.full(((line + 1) * legend_h, grid.shape[1], 3), 255, np.uint8)
    for x, line, name, colour in placed:
        y = line * legend_h
        if colour is not None:
            cv2.circle(legend, (x + 5, y + 14), 5, colour, -1, cv2.LINE_AA)
            x += 14
        cv2.putText(legend, name, (x, y + 19), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([grid, legend])

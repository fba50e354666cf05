"""Aligned face chips: a face rotated upright, scaled and cropped to a template's layout.

>>> import facemark
>>> face = facemark.load().detect("photo.jpg")[0]
>>> chip = facemark.align("photo.jpg", face)                        # 112 x 112 ArcFace chip
>>> chip = facemark.align("photo.jpg", face, template="dlib")       # dlib.get_face_chip's
>>> chip = facemark.align(image, face, size=224, padding=0.1)

A least-squares similarity (rotation, uniform scale, translation; no shear, no mirror)
takes the face's points onto the template's (``facemark.data.templates``: ``"arcface"``,
the 5-point InsightFace layout, through the scheme's 5-point conversion; ``"dlib"``, dlib's
68-point chip layout, which reproduces ``dlib.get_face_chip`` on the same 68 points), and
OpenCV warps the image with it (bilinear; areas outside the image are black). A chip much
smaller than the face in the image is first shrunk with area averaging, so it does not
alias.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facemark.data.crops import compose_affine, invert_affine, transform_points
from facemark.data.schemes import get_scheme
from facemark.data.templates import ChipTemplate, get_template, points_for
from facemark.errors import ConfigError, FacemarkError
from facemark.inference.landmarker import as_rgb

DEFAULT_TEMPLATE = "arcface"


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity taking ``src`` points onto ``dst`` points.

    Args:
        src, dst: (K, 2) float arrays of matching points, K >= 2.

    Returns:
        float64 (2, 3) ``[[a, -b, tx], [b, a, ty]]`` minimising ``sum |M [src, 1] - dst|^2``
        (Umeyama's solution without reflection).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    denom = (s ** 2).sum()
    if not denom > 0:
        raise FacemarkError("cannot align: the face's points coincide")
    a = (s * d).sum() / denom
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / denom
    lin = np.array([[a, -b], [b, a]])
    return np.c_[lin, md - lin @ ms]


def _face_points(face: Any, scheme: str | None) -> tuple[np.ndarray, str]:
    """(N, 2) points and scheme name of a Face (anything with ``points`` and ``scheme``) or of
    an array with ``scheme``."""
    if hasattr(face, "points") and hasattr(face, "scheme"):
        return np.asarray(face.points, dtype=np.float64), str(scheme or face.scheme)
    if scheme is None:
        raise ConfigError("face: pass a facemark.Face, or (N, 2) points with scheme=NAME")
    return np.asarray(face, dtype=np.float64), str(scheme)


def chip_settings(template: str | ChipTemplate = DEFAULT_TEMPLATE, size: int | None = None,
                  padding: float | None = None,
                  scheme: str | None = None) -> tuple[ChipTemplate, int, float]:
    """Check chip arguments: (the template, the size, the padding), defaults filled in.

    Args:
        template, size, padding: as :func:`align` takes them.
        scheme: optionally, a landmark scheme the chips will be made from: refused when it
            cannot give the template's points.

    Raises:
        ConfigError: unknown template, a size that is not a positive whole number, a
            negative padding.
        FacemarkError: ``scheme`` lacks the template's points.
    """
    try:
        tpl = get_template(template)
    except KeyError as e:
        raise ConfigError(f"template: {e.args[0]}") from None
    size = tpl.size if size is None else size
    padding = tpl.padding if padding is None else padding
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"size: expected a positive whole number of pixels, got {size!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, float)) \
            or not np.isfinite(padding) or padding < 0:
        raise ConfigError(f"padding: expected a number >= 0, got {padding!r}")
    if scheme is not None:
        points_for(np.zeros((get_scheme(scheme).num_points, 2)), scheme, [tpl.scheme],
                   f"the {tpl.name!r} chip")
    return tpl, int(size), float(padding)


def chip_matrix(face: Any, size: int | None = None, padding: float | None = None,
                template: str | ChipTemplate = DEFAULT_TEMPLATE, *,
                scheme: str | None = None) -> np.ndarray:
    """The 2x3 affine taking image pixels to chip pixels (``chip_xy = M @ [x, y, 1]``).

    Args:
        face: a Face, or (N, 2) landmark pixels with ``scheme``.
        size: chip side in pixels (None: the template's, 112 for arcface, 150 for dlib).
        padding: border around the template's layout, as a fraction of it on each side
            (None: the template's, 0 for arcface, 0.25 for dlib).
        template: a chip template name (``facemark.data.templates.list_templates()``) or
            a ChipTemplate.
        scheme: the points' scheme when ``face`` is an array.

    Raises:
        FacemarkError: the face's scheme cannot give the template's points (e.g. a profile
            scheme for the 5-point arcface layout), or they are not finite.
        ConfigError: unknown template, bad size or padding.
    """
    points, scheme_name = _face_points(face, scheme)
    tpl, size, padding = chip_settings(template, size, padding)
    pts, target = points_for(points, scheme_name, [tpl.scheme], f"the {tpl.name!r} chip")
    image_pts = pts[get_scheme(target).indices(tpl.names)]
    if not np.isfinite(image_pts).all():
        raise FacemarkError(f"the {tpl.name!r} chip needs finite points "
                            f"({', '.join(tpl.names)}); the face has NaN among them")
    chip_pts = tpl.layout(int(size), float(padding))
    if tpl.fit == "image_to_chip":
        to_image = invert_affine(similarity(image_pts, chip_pts))
    else:
        to_image = similarity(chip_pts, image_pts)
    if tpl.grid == "dlib":
        to_image = _dlib_grid(to_image, int(size))
    return invert_affine(to_image)


def _dlib_grid(to_image: np.ndarray, size: int) -> np.ndarray:
    """dlib's chip_details rectangle for a chip -> image similarity ``to_image``: a square of
    ``size * scale - 1`` image pixels centred on ``to_image(size / 2)``, with the chip's
    corner pixel centres on its corners."""
    lin = to_image[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(lin))))
    centre = to_image @ np.array([size / 2.0, size / 2.0, 1.0])
    k = (size * scale - 1.0) / (size - 1.0) if size > 1 else scale
    rot = lin / scale
    step = k * rot
    return np.c_[step, centre - step @ np.full(2, (size - 1) / 2.0)]


def chip_corners(matrix: np.ndarray, size: int) -> np.ndarray:
    """(4, 2) image pixels of the chip's corner pixel centres: (0, 0), (S-1, 0), (S-1, S-1),
    (0, S-1), for an image -> chip ``matrix`` and a chip of ``size`` pixels."""
    s = float(size - 1)
    corners = np.array([[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]])
    return transform_points(corners, invert_affine(matrix))


def warp_chip(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` (H, W[, C]) into a ``size`` x ``size`` chip with the image -> chip
    ``matrix`` (bilinear, black outside the image). Where one chip pixel spans more than two
    image pixels, the chip's footprint is first shrunk by area averaging (``cv2.resize``
    with INTER_AREA), as a pyramid would, so fine detail does not alias."""
    m = np.asarray(matrix, dtype=np.float64)
    shrink = 1.0 / float(np.sqrt(abs(np.linalg.det(m[:, :2]))))   # image px per chip px
    if shrink > 2.0:
        h, w = image.shape[:2]
        edge = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5],
                         [-0.5, size - 0.5]])
        foot = transform_points(edge, invert_affine(m))
        margin = 2.0 * shrink
        x0, y0 = np.floor(foot.min(axis=0) - margin).astype(int)
        x1, y1 = np.ceil(foot.max(axis=0) + margin).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            nw = max(1, int(round((x1 - x0) / shrink)))
            nh = max(1, int(round((y1 - y0) / shrink)))
            small = cv2.resize(np.ascontiguousarray(image[y0:y1, x0:x1]), (nw, nh),
                               interpolation=cv2.INTER_AREA)
            fx, fy = (x1 - x0) / nw, (y1 - y0) / nh
            small_to_image = np.array([[fx, 0.0, 0.5 * fx - 0.5 + x0],
                                       [0.0, fy, 0.5 * fy - 0.5 + y0]])
            m = compose_affine(small_to_image, m)
            image = small
    return cv2.warpAffine(image, m, (int(size), int(size)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align(image: Any, face: Any, size: int | None = None, padding: float | None = None,
          template: str | ChipTemplate = DEFAULT_TEMPLATE, *,
          scheme: str | None = None) -> np.ndarray:
    """An aligned chip of one face.

    Args:
        image: a path, a PIL image, or a numpy array (H, W), (H, W, C) of any dtype (a
            numpy array keeps its channel order: BGR in, BGR out).
        face: a Face from ``Landmarker.detect`` (or anything with ``points`` and ``scheme``),
            or (N, 2) landmark pixels with ``scheme``.
        size: chip side in pixels (None: the template's: 112 for arcface, 150 for dlib).
        padding: border around the layout as a fraction of it on each side (None: the
            template's: 0 for arcface, 0.25 for dlib, as dlib.get_face_chip).
        template: ``"arcface"`` (default: the 5-point layout face recognition models expect)
            or ``"dlib"`` (dlib.get_face_chip's 68-point layout), or a ChipTemplate.
        scheme: the points' scheme when ``face`` is an array.

    Returns:
        the chip, (size, size[, C]) of the image's dtype; paths and PIL images give RGB
        uint8.

    Raises:
        FacemarkError: the face's scheme lacks the template's points (the message says
            which scheme is needed), or an image that cannot be read (DataError).
        ConfigError: unknown template, bad size or padding.
    """
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image: expected shape (H, W) or (H, W, C), got {image.shape}")
    else:
        image = as_rgb(image)
    _, size, _ = chip_settings(template, size, padding)
    return warp_chip(image, chip_matrix(face, size, padding, template, scheme=scheme), size)


def align_faces(image: Any, faces, size: int | None = None, padding: float | None = None,
                template: str | ChipTemplate = DEFAULT_TEMPLATE) -> list[np.ndarray]:
    """:func:`align` for every face of one image (the image is read once)."""
    if not isinstance(image, np.ndarray):
        image = as_rgb(image)
    return [align(image, f, size, padding, template) for f in faces]

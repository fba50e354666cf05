"""Geometric templates, declared as data: chip layouts, the 3D mean face, eye and mouth points.

Everything here is named points of a landmark scheme (``facemark.data.schemes``), never
indices, so it applies to any scheme that has those points, directly or through a
registered conversion (``facemark.data.convert``: ``wflw98 -> 300w68``, ``* -> face5``).

* :class:`ChipTemplate`: where named points go in an aligned face chip. ``"arcface"`` is
  the 5-point InsightFace/ArcFace layout of a 112 x 112 chip (the points of the ``face5``
  scheme, so every scheme with a 5-point conversion can use it); ``"dlib"`` is the layout of
  dlib's ``get_face_chip_details`` for 68 points (dlib's average positions of points 27-54
  and 60-64, in a unit square).
* :data:`MEAN_FACE_3D`: a 3D average face (300w68 names, millimetres) for head pose, built
  from the 300-W training annotations by ``benchmarks/make_mean_face_3d.py``, and its
  5-point version for schemes that convert only to ``face5``.
* :data:`ASPECT_POINTS`: per scheme, the eye and mouth points of the eye and mouth aspect
  ratios.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from facemark.data.convert import can_convert, convert_landmarks, get_conversion
from facemark.data.schemes import get_scheme
from facemark.errors import FacemarkError

#: Chip pixel grids (see ChipTemplate.grid).
GRIDS = ("pixel", "dlib")
#: Which way the similarity is fitted (see ChipTemplate.fit).
FITS = ("image_to_chip", "chip_to_image")


@dataclass(frozen=True)
class ChipTemplate:
    """Where named points land in an aligned face chip.

    Args:
        name: registry key (``facemark.align(..., template=name)``).
        scheme: the scheme whose point names ``points`` uses.
        points: point name -> (u, v), the position in a chip of side 1 with no padding
            (multiply by the chip size in pixels).
        size: default chip side in pixels.
        padding: default padding: the face layout shrinks to ``1 / (1 + 2 padding)`` of the
            chip about its centre, ``u' = (padding + u) / (1 + 2 padding)`` (dlib's rule).
        fit: the direction of the least-squares similarity: ``"image_to_chip"`` (image
            points onto template points, as InsightFace's ``norm_crop``) or
            ``"chip_to_image"`` (as dlib's ``chip_details``). They differ only for points
            that do not fit the template exactly.
        grid: ``"pixel"``: ``u' * size`` are 0-based chip pixel centres; ``"dlib"``: dlib's
            rectangle convention: the chip covers ``size * scale - 1`` image pixels (scale =
            image pixels per template unit) centred on the image of the template's centre
            ``size / 2``, its corner pixel centres on the rectangle's corners.
        description: where the layout comes from.
    """

    name: str
    scheme: str
    points: dict[str, tuple[float, float]]
    size: int
    padding: float = 0.0
    fit: str = "image_to_chip"
    grid: str = "pixel"
    description: str = ""

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(self.points)

    def layout(self, size: int, padding: float) -> np.ndarray:
        """(K, 2) chip coordinates of :attr:`names` for a chip of ``size`` pixels."""
        uv = np.array([self.points[n] for n in self.names], dtype=np.float64)
        return (padding + uv) / (1.0 + 2.0 * padding) * float(size)

    def validate(self) -> None:
        scheme = get_scheme(self.scheme)
        scheme.indices(self.names)
        if self.fit not in FITS:
            raise ValueError(f"template {self.name!r}: fit {self.fit!r} not in {FITS}")
        if self.grid not in GRIDS:
            raise ValueError(f"template {self.name!r}: grid {self.grid!r} not in {GRIDS}")
        if len(self.points) < 2:
            raise ValueError(f"template {self.name!r}: a similarity needs at least 2 points")


# InsightFace's arcface_dst (0-based pixels of a 112 x 112 chip), divided by 112.
_ARCFACE_112 = {"eye_r": (38.2946, 51.6963), "eye_l": (73.5318, 51.5014),
                "nose_tip": (56.0252, 71.7366), "mouth_r": (41.5493, 92.3655),
                "mouth_l": (70.7299, 92.2041)}

# dlib's get_face_chip_details for 68 points: its mean face (dlib/image_transforms/
# interpolation.h, points 17-67) at the points it uses (27-54 and 60-64: no brows, no
# lower lip).
_DLIB68 = {
    "nose_bridge_00": (0.490127, 0.203352), "nose_bridge_01": (0.490127, 0.307009),
    "nose_bridge_02": (0.490127, 0.409805), "nose_bridge_03": (0.490127, 0.515625),
    "nose_base_00": (0.36688, 0.587326), "nose_base_01": (0.426036, 0.609345),
    "nose_base_02": (0.490127, 0.628106), "nose_base_03": (0.554217, 0.609345),
    "nose_base_04": (0.613373, 0.587326),
    "eye_r_00": (0.121737, 0.216423), "eye_r_01": (0.187122, 0.178758),
    "eye_r_02": (0.265825, 0.179852), "eye_r_03": (0.334606, 0.231733),
    "eye_r_04": (0.260918, 0.245099), "eye_r_05": (0.182743, 0.244077),
    "eye_l_00": (0.645647, 0.231733), "eye_l_01": (0.714428, 0.179852),
    "eye_l_02": (0.793132, 0.178758), "eye_l_03": (0.858516, 0.216423),
    "eye_l_04": (0.79751, 0.244077), "eye_l_05": (0.719335, 0.245099),
    "lip_outer_00": (0.254149, 0.780233), "lip_outer_01": (0.340985, 0.745405),
    "lip_outer_02": (0.428858, 0.727388), "lip_outer_03": (0.490127, 0.742578),
    "lip_outer_04": (0.551395, 0.727388), "lip_outer_05": (0.639268, 0.745405),
    "lip_outer_06": (0.726104, 0.780233),
    "lip_inner_00": (0.290379, 0.784792), "lip_inner_01": (0.428096, 0.778746),
    "lip_inner_02": (0.490127, 0.785343), "lip_inner_03": (0.552157, 0.778746),
    "lip_inner_04": (0.689874, 0.784792),
}

_TEMPLATES: dict[str, ChipTemplate] = {}


def register_template(template: ChipTemplate) -> ChipTemplate:
    """Validate a chip template and make it available by name (also for your own)."""
    template.validate()
    if template.name in _TEMPLATES:
        raise ValueError(f"chip template {template.name!r} is registered twice")
    _TEMPLATES[template.name] = template
    return template


def get_template(name: str | ChipTemplate) -> ChipTemplate:
    """A chip template by name; an unknown name lists the known ones (KeyError)."""
    if isinstance(name, ChipTemplate):
        return name
    if name not in _TEMPLATES:
        raise KeyError(f"unknown chip template {name!r}; known templates: "
                       f"{', '.join(sorted(_TEMPLATES))}")
    return _TEMPLATES[name]


def list_templates() -> list[str]:
    return sorted(_TEMPLATES)


ARCFACE = register_template(ChipTemplate(
    name="arcface", scheme="face5",
    points={n: (x / 112.0, y / 112.0) for n, (x, y) in _ARCFACE_112.items()},
    size=112, padding=0.0, fit="image_to_chip", grid="pixel",
    description="InsightFace/ArcFace 5-point layout of a 112 x 112 chip (eye centres, nose "
                "tip, mouth corners); other sizes scale it"))
DLIB = register_template(ChipTemplate(
    name="dlib", scheme="300w68", points=_DLIB68, size=150, padding=0.25,
    fit="chip_to_image", grid="dlib",
    description="dlib get_face_chip(s) for 68 points (its mean face at points 27-54, "
                "60-64; default size 150, padding 0.25)"))


# ---------------------------------------------------------------------------------------
# The 3D mean face
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceModel3D:
    """A 3D face: named points in millimetres, for head pose.

    Frame: x towards the subject's left (the image's right in a frontal photo), y down,
    z away from the camera (into the head), origin at the nose tip; a face looking straight
    at the camera has the identity rotation.

    Args:
        name: registry key.
        scheme: the scheme whose names ``points`` uses.
        points: name -> (x, y, z) in mm.
        pose_points: the names pose is solved from (points that stay put on a face: eyes,
            nose, mouth corners and upper lip; not brows, lower lip or jaw line).
        description: where it comes from.
    """

    name: str
    scheme: str
    points: dict[str, tuple[float, float, float]]
    pose_points: tuple[str, ...]
    description: str = ""

    def array(self, names=None) -> np.ndarray:
        """(K, 3) float64 mm of ``names`` (default :attr:`pose_points`)."""
        names = self.pose_points if names is None else names
        return np.array([self.points[n] for n in names], dtype=np.float64)

    def validate(self) -> None:
        scheme = get_scheme(self.scheme)
        scheme.indices(self.points)
        missing = [n for n in self.pose_points if n not in self.points]
        if missing:
            raise ValueError(f"3D face {self.name!r}: pose points {missing} have no 3D position")
        if len(self.pose_points) < 4:
            raise ValueError(f"3D face {self.name!r}: pose needs at least 4 points")


# Written by benchmarks/make_mean_face_3d.py (structure from motion on the 2012 fully
# annotated faces of 300-W AFW, Helen train and LFPW train; --check compares).
_MEAN_FACE_68 = {
    "brow_r_00": (-59.9, -53.8, 43.2),
    "brow_r_01": (-50.7, -60.6, 32.6),
    "brow_r_02": (-38.0, -62.1, 24.0),
    "brow_r_03": (-24.8, -59.7, 17.7),
    "brow_r_04": (-12.3, -54.5, 13.6),
    "brow_l_00": (12.3, -54.5, 13.6),
    "brow_l_01": (24.8, -59.7, 17.7),
    "brow_l_02": (38.0, -62.1, 24.0),
    "brow_l_03": (50.7, -60.6, 32.6),
    "brow_l_04": (59.9, -53.8, 43.2),
    "nose_bridge_00": (0.0, -39.3, 16.3),
    "nose_bridge_01": (0.0, -26.3, 11.3),
    "nose_bridge_02": (0.0, -13.3, 5.5),
    "nose_bridge_03": (0.0, 0.0, 0.0),
    "nose_base_00": (-14.9, 6.5, 20.9),
    "nose_base_01": (-7.7, 9.4, 17.8),
    "nose_base_02": (0.0, 11.9, 16.1),
    "nose_base_03": (7.7, 9.4, 17.8),
    "nose_base_04": (14.9, 6.5, 20.9),
    "eye_r_00": (-45.0, -39.7, 38.9),
    "eye_r_01": (-37.1, -43.8, 34.1),
    "eye_r_02": (-27.5, -43.5, 32.5),
    "eye_r_03": (-19.3, -37.5, 33.5),
    "eye_r_04": (-28.2, -35.7, 33.9),
    "eye_r_05": (-37.7, -36.0, 35.5),
    "eye_l_00": (19.3, -37.5, 33.5),
    "eye_l_01": (27.5, -43.5, 32.5),
    "eye_l_02": (37.1, -43.8, 34.1),
    "eye_l_03": (45.0, -39.7, 38.9),
    "eye_l_04": (37.7, -36.0, 35.5),
    "eye_l_05": (28.2, -35.7, 33.9),
    "lip_outer_00": (-28.5, 27.7, 48.1),
    "lip_outer_01": (-18.1, 24.7, 33.2),
    "lip_outer_02": (-7.4, 23.3, 24.8),
    "lip_outer_03": (0.0, 25.1, 24.0),
    "lip_outer_04": (7.4, 23.3, 24.8),
    "lip_outer_05": (18.1, 24.7, 33.2),
    "lip_outer_06": (28.5, 27.7, 48.1),
    "lip_outer_07": (18.5, 38.4, 40.8),
    "lip_outer_08": (8.0, 43.2, 35.2),
    "lip_outer_09": (0.0, 44.1, 34.2),
    "lip_outer_10": (-8.0, 43.2, 35.2),
    "lip_outer_11": (-18.5, 38.4, 40.8),
    "lip_inner_00": (-24.2, 28.4, 46.1),
    "lip_inner_01": (-7.5, 29.3, 28.1),
    "lip_inner_02": (0.0, 30.1, 26.9),
    "lip_inner_03": (7.5, 29.3, 28.1),
    "lip_inner_04": (24.2, 28.4, 46.1),
    "lip_inner_05": (7.6, 34.0, 32.6),
    "lip_inner_06": (0.0, 35.0, 31.6),
    "lip_inner_07": (-7.6, 34.0, 32.6),
}

MEAN_FACE_3D = FaceModel3D(
    name="mean68", scheme="300w68", points=_MEAN_FACE_68,
    pose_points=("nose_bridge_00", "nose_bridge_01", "nose_bridge_02", "nose_bridge_03",
                 "nose_base_00", "nose_base_01", "nose_base_02", "nose_base_03",
                 "nose_base_04", "eye_r_00", "eye_r_01", "eye_r_02", "eye_r_03", "eye_r_04",
                 "eye_r_05", "eye_l_00", "eye_l_01", "eye_l_02", "eye_l_03", "eye_l_04",
                 "eye_l_05", "lip_outer_00", "lip_outer_03", "lip_outer_06"),
    description="3D mean face of 300-W training annotations (structure from motion), mm, "
                "outer eye corners 90 mm apart")


def _converted_model(model: FaceModel3D, scheme: str, name: str) -> FaceModel3D:
    """``model`` in the points of ``scheme`` through the registered conversion: each target
    point is the same weighted mean of source points in x, y and z."""
    conv = get_conversion(model.scheme, scheme)
    wx, wy = conv.weights
    if not np.allclose(wx, wy):
        raise ValueError(f"conversion {model.scheme}->{scheme} weighs x and y differently; "
                         "it cannot carry a 3D point")
    src_names = get_scheme(model.scheme).names
    used = (wx != 0).any(axis=0)
    lacking = [src_names[i] for i in np.flatnonzero(used) if src_names[i] not in model.points]
    if lacking:
        raise ValueError(f"3D face {model.name!r} lacks {lacking} for {scheme}")
    src = np.array([model.points[src_names[i]] for i in np.flatnonzero(used)])
    out = wx[:, used] @ src
    names = get_scheme(scheme).names
    return FaceModel3D(name=name, scheme=get_scheme(scheme).name,
                       points={n: tuple(float(v) for v in p) for n, p in zip(names, out)},
                       pose_points=names, description=f"{model.description}; as {scheme}")


MEAN_FACE_3D.validate()
#: 3D faces, tried in this order for a face of a scheme none of them uses (through a
#: conversion): the 68-point mean face, then its 5-point version.
FACE_MODELS: tuple[FaceModel3D, ...] = (
    MEAN_FACE_3D, _converted_model(MEAN_FACE_3D, "face5", "mean68_face5"))
for _model in FACE_MODELS:
    _model.validate()


# ---------------------------------------------------------------------------------------
# Eye and mouth aspect ratio points
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AspectPoints:
    """The points of one aspect ratio (an eye or the mouth).

    ``ratio = mean_i |upper_i - lower_i| / |corners[0] - corners[1]|``: for a 6-point eye
    this is the eye aspect ratio of Soukupova & Cech (2016), ``(|p2-p6| + |p3-p5|) /
    (2 |p1-p4|)``.

    Args:
        corners: the two corner names (width).
        pairs: (upper, lower) name pairs across the opening (height).
    """

    corners: tuple[str, str]
    pairs: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.corners + tuple(n for p in self.pairs for n in p)


def _eye8(side: str, corners: tuple[str, str]) -> AspectPoints:
    """An 8-point eye contour (WFLW, LaPa): lids 1-3 above 7-5."""
    e = f"eye_{side}_"
    return AspectPoints((e + corners[0], e + corners[1]),
                        ((e + "01", e + "07"), (e + "02", e + "06"), (e + "03", e + "05")))


_INNER_LIPS8 = AspectPoints(("lip_inner_00", "lip_inner_04"),
                            (("lip_inner_01", "lip_inner_07"), ("lip_inner_02", "lip_inner_06"),
                             ("lip_inner_03", "lip_inner_05")))

#: scheme -> {"eye_right", "eye_left", "mouth"} -> AspectPoints (the subject's sides; the
#: mouth ratio uses the inner lips: 0 when the lips touch).
ASPECT_POINTS: dict[str, dict[str, AspectPoints]] = {
    "300w68": {
        "eye_right": AspectPoints(("eye_r_00", "eye_r_03"),
                                  (("eye_r_01", "eye_r_05"), ("eye_r_02", "eye_r_04"))),
        "eye_left": AspectPoints(("eye_l_00", "eye_l_03"),
                                 (("eye_l_01", "eye_l_05"), ("eye_l_02", "eye_l_04"))),
        "mouth": _INNER_LIPS8,
    },
    "wflw98": {"eye_right": _eye8("r", ("00", "04")), "eye_left": _eye8("l", ("00", "04")),
               "mouth": _INNER_LIPS8},
    "lapa106": {"eye_right": _eye8("r", ("00", "04")), "eye_left": _eye8("l", ("00", "04")),
                "mouth": _INNER_LIPS8},
    "cofw29": {
        "eye_right": AspectPoints(("eye_r_outer", "eye_r_inner"), (("eye_r_top", "eye_r_bottom"),)),
        "eye_left": AspectPoints(("eye_l_outer", "eye_l_inner"), (("eye_l_top", "eye_l_bottom"),)),
        "mouth": AspectPoints(("mouth_r", "mouth_l"), (("lip_upper_bottom", "lip_lower_top"),)),
    },
}
for _scheme_name, _parts in ASPECT_POINTS.items():
    for _part in _parts.values():
        get_scheme(_scheme_name).indices(_part.names)


# ---------------------------------------------------------------------------------------
# Points of a face in the scheme a template needs
# ---------------------------------------------------------------------------------------
def points_for(points, scheme: str, targets, purpose: str) -> tuple[np.ndarray, str]:
    """A face's points in the first scheme of ``targets`` they reach.

    Args:
        points: (N, 2) pixels in the order of ``scheme``.
        scheme: the face's scheme name.
        targets: scheme names in order of preference (the face's own scheme, or one with a
            registered conversion from it).
        purpose: what needs them, for the error message (e.g. ``"the 'dlib' chip"``).

    Returns:
        ((M, 2) float64 points, the target scheme's name).

    Raises:
        FacemarkError: no target is reachable from ``scheme``, naming them and the fix.
    """
    src = get_scheme(scheme)
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (src.num_points, 2):
        raise FacemarkError(f"{purpose}: expected ({src.num_points}, 2) points of scheme "
                            f"{src.name!r}, got shape {pts.shape}")
    for target in targets:
        if can_convert(src, target):
            return convert_landmarks(pts, src, target).astype(np.float64), get_scheme(target).name
    wanted = " or ".join(repr(get_scheme(t).name) for t in targets)
    raise FacemarkError(f"{purpose} needs the points of scheme {wanted}, or of a scheme with a "
                        f"conversion to it (facemark.data.convert); scheme {src.name!r} has none")


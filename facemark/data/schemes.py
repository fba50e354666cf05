"""Landmark schemes, declared once, as data.

A scheme is the list of point names (in the dataset's order), the horizontal mirror
partners by name, the face regions, and how the NME of that dataset is normalised. The
flip permutation, the normalising indices and the region indices are derived from those
names here and nowhere else, and every scheme is checked when this module is imported
(names unique, mirror pairs mutual and complete).

Naming follows the subject's own left and right (``eye_l`` is the subject's left eye,
which appears on the right of a frontal photo), as in the iBUG 300-W description.

Your own scheme: a scheme file
------------------------------
A scheme of your own is declared in a YAML (``.yaml``/``.yml``) or JSON (``.json``) file
with the keys of :class:`LandmarkScheme`, and used wherever a scheme name is accepted:
``data.scheme: my10.yaml`` in a training config (relative to the config file),
``--scheme my10.yaml`` on the command line, ``get_scheme("my10.yaml")`` in Python.
:func:`load_scheme_file` reads it; a trained model stores the whole scheme (model file and
ONNX metadata), so the file is not needed again for inference. Example::

    name: my10                       # required; must not be a built-in name or alias
    names: [brow_r, brow_l, eye_r_outer, eye_r_inner, eye_l_inner, eye_l_outer,
            nose_tip, mouth_r, mouth_l, chin]          # point order in your labels
    mirror:                          # pairs swapping under a horizontal flip, by name or
      - [brow_r, brow_l]             # 0-based index; points in no pair are on the midline
      - [eye_r_outer, eye_l_outer]
      - [3, 4]
      - [mouth_r, mouth_l]
    nme_norm: inter_ocular           # one of NME_NORMS
    outer_eye_corners: [eye_r_outer, eye_l_outer]      # (right, left): the NME's pair
    regions: {eyes: [2, 3, 4, 5], mouth: [mouth_r, mouth_l]}   # optional
    skeleton: [[eye_r_outer, eye_r_inner]]             # optional lines for drawing

Keys: ``name`` (required), ``names`` (required unless ``num_points`` is given: then the
points are ``point_00`` ...; when both are given they must agree), ``mirror`` (required
unless ``flippable: false``; a list of pairs, ``[]`` when every point is on the midline, or
the whole permutation as N 0-based indices, which must be an involution), ``nme_norm``
(default ``inter_ocular`` when ``outer_eye_corners`` is given, else ``box``),
``outer_eye_corners``, ``eye_contours`` (two lists, right eye then left), ``regions``,
``skeleton``, ``description``, ``aliases``, ``flippable`` (default true), ``num_points``.
Points may be named or given as 0-based indices anywhere. A bad file raises ConfigError
naming the file and the key (``my10.yaml: key 'mirror': ...``).

A scheme read from a file or from a model is made known to :func:`get_scheme` under its
name for the rest of the process (so data, metrics and drawing that carry scheme names work
with it). It never changes a built-in scheme: one with a built-in name must be identical to
it, and two different schemes of one name in one process are refused.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from facemark.errors import ConfigError

# NME normalisation rules a scheme may use by default; metrics implement them.
#   inter_ocular: distance between the two outer eye corners (``outer_eye_corners``)
#   inter_pupil:  distance between the centroids of the two eye contours (``eye_contours``)
#   box:          sqrt(w * h) of the face box (AFLW-19)
#   box_diag:     diagonal of the face box (Menpo)
NME_NORMS = ("inter_ocular", "inter_pupil", "box", "box_diag")


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark layout: names, mirror partners, regions and NME normaliser.

    Args:
        name: registry key, e.g. ``"300w68"``.
        names: point names in the dataset's order; index i of an (N, 2) array is names[i].
        mirror: pairs of names that swap under a horizontal flip. Points in no pair lie on
            the vertical midline and map to themselves.
        regions: face region -> names of its points (used for per-region reports and plots).
        nme_norm: the dataset's usual NME normalisation, one of ``NME_NORMS``.
        outer_eye_corners: (right, left) outer eye-corner names for ``inter_ocular``.
        eye_contours: (right, left) tuples of eye-contour names for ``inter_pupil``.
        description: one line on where the scheme is used.
        aliases: other names that resolve to this scheme (e.g. ``"ibug68"``).
        skeleton: optional pairs of names to join with lines when drawing.
        flippable: False for a markup with no horizontal mirror inside itself (a profile
            markup such as ``menpo39``): it declares no mirror pairs, augmentation skips the
            flip, and :attr:`flip_indices` raises instead of returning a wrong permutation.

    Side names: a name token ``l``/``left`` or ``r``/``right`` (``eye_l_03``, ``pupil_r``)
    says the subject's side; :attr:`sides` reads it. In a flippable scheme every such point
    must be mirrored onto a point of the other side (checked by :meth:`validate`).
    """

    name: str
    names: tuple[str, ...]
    mirror: tuple[tuple[str, str], ...]
    regions: dict[str, tuple[str, ...]]
    nme_norm: str
    outer_eye_corners: tuple[str, str] | None = None
    eye_contours: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()
    skeleton: tuple[tuple[str, str], ...] = field(default=())
    flippable: bool = True

    @property
    def num_points(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """0-based index of a point name; raises KeyError naming the scheme."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"scheme {self.name!r} has no point named {name!r}") from None

    def indices(self, names) -> np.ndarray:
        return np.array([self.index(n) for n in names], dtype=np.int64)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def flip_indices(self) -> np.ndarray:
        """Permutation p such that ``flipped[i] = mirrored_points[p[i]]`` (an involution).

        After a horizontal flip of an image of width W, the landmarks of the flipped image
        are ``pts[p]`` with x replaced by ``W - 1 - x``. Raises ValueError for a scheme with
        ``flippable=False`` (check :attr:`flippable` first).
        """
        if not self.flippable:
            raise ValueError(f"scheme {self.name!r} is not flippable (it has no horizontal "
                             "mirror inside itself); check scheme.flippable before flipping")
        perm = np.arange(self.num_points)
        for a, b in self.mirror:
            ia, ib = self.index(a), self.index(b)
            perm[ia], perm[ib] = ib, ia
        return perm

    def flip_points(self, points, width: float) -> np.ndarray:
        """Landmarks of the horizontally flipped image.

        Args:
            points: array-like (..., N, 2) of 0-based pixel (x, y).
            width: image width W in pixels; x becomes ``W - 1 - x`` (pixel centres, as
                ``cv2.flip(image, 1)`` / ``image[:, ::-1]`` move them).

        Returns:
            float array (..., N, 2), reordered with :attr:`flip_indices` so that index i is
            again the point named ``names[i]``. Raises ValueError for a non-flippable scheme.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim < 2 or pts.shape[-2:] != (self.num_points, 2):
            raise ValueError(f"scheme {self.name!r} expects points of shape "
                             f"(..., {self.num_points}, 2), got {pts.shape}")
        out = pts[..., self.flip_indices, :].copy()
        out[..., 0] = (width - 1) - out[..., 0]
        return out

    @cached_property
    def sides(self) -> tuple[str, ...]:
        """The subject's side each point name says: ``"left"``, ``"right"`` or ``""``."""
        return tuple(_side_of_name(n) for n in self.names)

    @cached_property
    def region_of(self) -> tuple[str, ...]:
        """Region name of every point, in point order ("other" where none is declared)."""
        out = ["other"] * self.num_points
        for region, names in self.regions.items():
            for n in names:
                out[self.index(n)] = region
        return tuple(out)

    def validate(self) -> None:
        """Check names are unique and every mirror pair, region and normaliser is valid."""
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"scheme {self.name!r}: duplicate point names {dup}")
        seen: set[str] = set()
        for a, b in self.mirror:
            for n in (a, b):
                self.index(n)
                if n in seen:
                    raise ValueError(f"scheme {self.name!r}: {n!r} is in two mirror pairs")
                seen.add(n)
            if a == b:
                raise ValueError(f"scheme {self.name!r}: mirror pair ({a!r}, {b!r}) is one point")
        if not self.flippable:
            if self.mirror:
                raise ValueError(f"scheme {self.name!r}: flippable=False but it declares "
                                 f"{len(self.mirror)} mirror pairs; drop them or the flag")
        else:
            perm = self.flip_indices
            if not np.array_equal(perm[perm], np.arange(self.num_points)):
                raise ValueError(f"scheme {self.name!r}: mirror permutation is not an involution")
            for a, b in self.mirror:
                sa, sb = _side_of_name(a), _side_of_name(b)
                if (sa or sb) and {sa, sb} != {"left", "right"}:
                    raise ValueError(f"scheme {self.name!r}: mirror pair ({a!r}, {b!r}) must pair "
                                     f"a left name with a right one, got sides ({sa!r}, {sb!r})")
            for n, side in zip(self.names, self.sides):
                if side and n not in seen:
                    raise ValueError(f"scheme {self.name!r}: {n!r} names the {side} side but has "
                                     "no mirror partner")
        for region, names in self.regions.items():
            for n in names:
                self.index(n)
        if self.nme_norm not in NME_NORMS:
            raise ValueError(f"scheme {self.name!r}: nme_norm {self.nme_norm!r} not in {NME_NORMS}")
        if self.nme_norm == "inter_ocular" and self.outer_eye_corners is None:
            raise ValueError(f"scheme {self.name!r}: inter_ocular needs outer_eye_corners")
        if self.nme_norm == "inter_pupil" and self.eye_contours is None:
            raise ValueError(f"scheme {self.name!r}: inter_pupil needs eye_contours")
        for n in self.outer_eye_corners or ():
            self.index(n)
        for group in self.eye_contours or ():
            self.indices(group)
        for a, b in self.skeleton:
            self.index(a), self.index(b)


_SIDE_TOKENS = {"l": "left", "left": "left", "r": "right", "right": "right"}


def _side_of_name(name: str) -> str:
    """``"left"``/``"right"`` when a ``_``-separated token of the name says a side, else ``""``."""
    sides = {_SIDE_TOKENS[t] for t in name.lower().split("_") if t in _SIDE_TOKENS}
    return sides.pop() if len(sides) == 1 else ""


def _seq(prefix: str, n: int, width: int = 2) -> tuple[str, ...]:
    """``prefix_00 .. prefix_{n-1}``: numbered names along a contour."""
    return tuple(f"{prefix}_{i:0{width}d}" for i in range(n))


def _reverse_pairs(left: tuple[str, ...], right: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Pair ``left[i]`` with ``right[-1 - i]``: contours drawn in one direction across the face."""
    return tuple((a, b) for a, b in zip(left, reversed(right)))


def _chain(names: tuple[str, ...], closed: bool = False) -> tuple[tuple[str, str], ...]:
    links = tuple(zip(names[:-1], names[1:]))
    return links + ((names[-1], names[0]),) if closed else links


# ---------------------------------------------------------------------------------------
# 68 points: iBUG 300-W (also Menpo semi-frontal, 300VW, COFW-68, ytf68, dlib)
# ---------------------------------------------------------------------------------------
# Index layout (0-based): jaw 0-16 (from the subject's right ear to the left),
# right brow 17-21, left brow 22-26, nose bridge 27-30, nose base 31-35,
# right eye 36-41 (36 = outer corner), left eye 42-47 (45 = outer corner),
# outer lip 48-59 (48 = right corner), inner lip 60-67.
_JAW68 = _seq("jaw", 17)
_BROW_R68 = _seq("brow_r", 5)          # 17-21, outer -> inner
_BROW_L68 = _seq("brow_l", 5)          # 22-26, inner -> outer
_NOSE_BRIDGE68 = _seq("nose_bridge", 4)
_NOSE_BASE68 = _seq("nose_base", 5)    # 31-35, right -> left
_EYE_R68 = _seq("eye_r", 6)            # 36 outer, 37-38 upper, 39 inner, 40-41 lower
_EYE_L68 = _seq("eye_l", 6)            # 42 inner, 43-44 upper, 45 outer, 46-47 lower
_LIP_OUT68 = _seq("lip_outer", 12)     # 48 right corner, 51 top centre, 54 left corner, 57 bottom
_LIP_IN68 = _seq("lip_inner", 8)       # 60 right corner, 62 top, 64 left corner, 66 bottom

IBUG68 = LandmarkScheme(
    name="300w68",
    names=_JAW68 + _BROW_R68 + _BROW_L68 + _NOSE_BRIDGE68 + _NOSE_BASE68
    + _EYE_R68 + _EYE_L68 + _LIP_OUT68 + _LIP_IN68,
    mirror=(
        _reverse_pairs(_JAW68[:8], _JAW68[9:])
        + _reverse_pairs(_BROW_R68, _BROW_L68)
        + (("nose_base_00", "nose_base_04"), ("nose_base_01", "nose_base_03"))
        # eye corners and lids: 36<->45, 37<->44, 38<->43, 39<->42, 40<->47, 41<->46
        + (("eye_r_00", "eye_l_03"), ("eye_r_01", "eye_l_02"), ("eye_r_02", "eye_l_01"),
           ("eye_r_03", "eye_l_00"), ("eye_r_04", "eye_l_05"), ("eye_r_05", "eye_l_04"))
        # outer lip: 48<->54, 49<->53, 50<->52, 55<->59, 56<->58 (51, 57 on the midline)
        + (("lip_outer_00", "lip_outer_06"), ("lip_outer_01", "lip_outer_05"),
           ("lip_outer_02", "lip_outer_04"), ("lip_outer_07", "lip_outer_11"),
           ("lip_outer_08", "lip_outer_10"))
        # inner lip: 60<->64, 61<->63, 65<->67 (62, 66 on the midline)
        + (("lip_inner_00", "lip_inner_04"), ("lip_inner_01", "lip_inner_03"),
           ("lip_inner_05", "lip_inner_07"))
    ),
    regions={
        "jaw": _JAW68,
        "brows": _BROW_R68 + _BROW_L68,
        "nose": _NOSE_BRIDGE68 + _NOSE_BASE68,
        "eyes": _EYE_R68 + _EYE_L68,
        "mouth": _LIP_OUT68 + _LIP_IN68,
    },
    nme_norm="inter_ocular",
    outer_eye_corners=("eye_r_00", "eye_l_03"),
    eye_contours=(_EYE_R68, _EYE_L68),
    description="iBUG 68-point markup: 300-W, Menpo semi-frontal, 300VW, COFW-68, dlib",
    aliases=("ibug68", "68", "300vw", "cofw68", "menpo68", "ytf68", "dlib68"),
    skeleton=_chain(_JAW68) + _chain(_BROW_R68) + _chain(_BROW_L68) + _chain(_NOSE_BRIDGE68)
    + _chain(_NOSE_BASE68) + _chain(_EYE_R68, True) + _chain(_EYE_L68, True)
    + _chain(_LIP_OUT68, True) + _chain(_LIP_IN68, True),
)


# ---------------------------------------------------------------------------------------
# 98 points: WFLW (Wu et al., CVPR 2018, "Look at Boundary")
# ---------------------------------------------------------------------------------------
# Index layout (0-based): jaw 0-32 (16 = chin), right brow upper 33-37 (outer -> inner) and
# lower 38-41 (inner -> outer), left brow upper 42-46 (inner -> outer) and lower 47-50
# (outer -> inner), nose bridge 51-54, nose base 55-59 (right -> left), right eye 60-67
# (60 outer corner, 61-63 upper lid, 64 inner corner, 65-67 lower lid), left eye 68-75
# (68 inner corner, 69-71 upper lid, 72 outer corner, 73-75 lower lid), outer lip 76-87
# (76 right corner, 79 top, 82 left corner, 85 bottom), inner lip 88-95 (88 right corner,
# 90 top, 92 left corner, 94 bottom), pupils 96 (right), 97 (left).
# The mirror pairs give the permutation of PIPNet's lib/train.py and mmpose's wflw.py.
_JAW98 = _seq("jaw", 33)
_BROW_R_UP98 = _seq("brow_r_upper", 5)
_BROW_R_LOW98 = _seq("brow_r_lower", 4)
_BROW_L_UP98 = _seq("brow_l_upper", 5)
_BROW_L_LOW98 = _seq("brow_l_lower", 4)
_NOSE_BRIDGE98 = _seq("nose_bridge", 4)
_NOSE_BASE98 = _seq("nose_base", 5)
_EYE_R98 = _seq("eye_r", 8)
_EYE_L98 = _seq("eye_l", 8)
_LIP_OUT98 = _seq("lip_outer", 12)
_LIP_IN98 = _seq("lip_inner", 8)

# Eye contours of 8 points, right eye from its outer corner, left eye from its inner one:
# r[0] <-> l[4] (outer corners), r[1..3] <-> l[3..1] (upper lids), r[4] <-> l[0] (inner
# corners), r[5..7] <-> l[7..5] (lower lids).
_EYE8_MIRROR = tuple((f"eye_r_{i:02d}", f"eye_l_{j:02d}")
                     for i, j in zip(range(8), (4, 3, 2, 1, 0, 7, 6, 5)))
# Lips in the iBUG order (shared by 68, 98 and 106 points): outer 12 from the right corner,
# inner 8 from the right corner.
_LIP_MIRROR = (
    (("lip_outer_00", "lip_outer_06"), ("lip_outer_01", "lip_outer_05"),
     ("lip_outer_02", "lip_outer_04"), ("lip_outer_07", "lip_outer_11"),
     ("lip_outer_08", "lip_outer_10"))
    + (("lip_inner_00", "lip_inner_04"), ("lip_inner_01", "lip_inner_03"),
       ("lip_inner_05", "lip_inner_07"))
)

WFLW98 = LandmarkScheme(
    name="wflw98",
    names=_JAW98 + _BROW_R_UP98 + _BROW_R_LOW98 + _BROW_L_UP98 + _BROW_L_LOW98
    + _NOSE_BRIDGE98 + _NOSE_BASE98 + _EYE_R98 + _EYE_L98 + _LIP_OUT98 + _LIP_IN98
    + ("pupil_r", "pupil_l"),
    mirror=(
        _reverse_pairs(_JAW98[:16], _JAW98[17:])
        + _reverse_pairs(_BROW_R_UP98, _BROW_L_UP98)
        + _reverse_pairs(_BROW_R_LOW98, _BROW_L_LOW98)
        + (("nose_base_00", "nose_base_04"), ("nose_base_01", "nose_base_03"))
        + _EYE8_MIRROR + _LIP_MIRROR
        + (("pupil_r", "pupil_l"),)
    ),
    regions={
        "jaw": _JAW98,
        "brows": _BROW_R_UP98 + _BROW_R_LOW98 + _BROW_L_UP98 + _BROW_L_LOW98,
        "nose": _NOSE_BRIDGE98 + _NOSE_BASE98,
        "eyes": _EYE_R98 + _EYE_L98 + ("pupil_r", "pupil_l"),
        "mouth": _LIP_OUT98 + _LIP_IN98,
    },
    nme_norm="inter_ocular",
    outer_eye_corners=("eye_r_00", "eye_l_04"),          # 0-based 60, 72
    eye_contours=(_EYE_R98, _EYE_L98),
    description="WFLW 98-point markup (Wu et al. 2018); NME by outer eye corners 60/72",
    aliases=("wflw", "98"),
    skeleton=_chain(_JAW98) + _chain(_BROW_R_UP98 + _BROW_R_LOW98, True)
    + _chain(_BROW_L_UP98 + _BROW_L_LOW98, True) + _chain(_NOSE_BRIDGE98)
    + _chain(_NOSE_BASE98) + _chain(_EYE_R98, True) + _chain(_EYE_L98, True)
    + _chain(_LIP_OUT98, True) + _chain(_LIP_IN98, True),
)


# ---------------------------------------------------------------------------------------
# 29 points: COFW (Burgos-Artizzu et al., ICCV 2013; the LFPW-29 markup)
# ---------------------------------------------------------------------------------------
# The points are listed in right/left pairs (0-based): 0/1 brow outer ends, 2/3 brow inner
# ends, 4/5 right brow top/bottom, 6/7 left brow top/bottom, 8/9 outer eye corners,
# 10/11 inner eye corners, 12/13 right eye top/bottom, 14/15 left eye top/bottom,
# 16/17 pupils, 18/19 nose wings, 20 nose tip, 21 nose bottom, 22/23 mouth corners,
# 24/25 upper lip top/bottom, 26/27 lower lip top/bottom, 28 chin. (Checked on the COFW
# samples: 8 and 9 are the outer eye corners, 16 and 17 the pupils.) The usual COFW NME
# (PIPNet, mmpose, HRNet) divides by the distance of points 8 and 9, the outer corners.
COFW29 = LandmarkScheme(
    name="cofw29",
    names=(
        "brow_r_outer", "brow_l_outer", "brow_r_inner", "brow_l_inner",
        "brow_r_top", "brow_r_bottom", "brow_l_top", "brow_l_bottom",
        "eye_r_outer", "eye_l_outer", "eye_r_inner", "eye_l_inner",
        "eye_r_top", "eye_r_bottom", "eye_l_top", "eye_l_bottom",
        "pupil_r", "pupil_l", "nose_r", "nose_l", "nose_tip", "nose_bottom",
        "mouth_r", "mouth_l", "lip_upper_top", "lip_upper_bottom",
        "lip_lower_top", "lip_lower_bottom", "chin",
    ),
    mirror=(
        ("brow_r_outer", "brow_l_outer"), ("brow_r_inner", "brow_l_inner"),
        ("brow_r_top", "brow_l_top"), ("brow_r_bottom", "brow_l_bottom"),
        ("eye_r_outer", "eye_l_outer"), ("eye_r_inner", "eye_l_inner"),
        ("eye_r_top", "eye_l_top"), ("eye_r_bottom", "eye_l_bottom"),
        ("pupil_r", "pupil_l"), ("nose_r", "nose_l"), ("mouth_r", "mouth_l"),
    ),
    regions={
        "jaw": ("chin",),
        "brows": ("brow_r_outer", "brow_l_outer", "brow_r_inner", "brow_l_inner",
                  "brow_r_top", "brow_r_bottom", "brow_l_top", "brow_l_bottom"),
        "nose": ("nose_r", "nose_l", "nose_tip", "nose_bottom"),
        "eyes": ("eye_r_outer", "eye_l_outer", "eye_r_inner", "eye_l_inner", "eye_r_top",
                 "eye_r_bottom", "eye_l_top", "eye_l_bottom", "pupil_r", "pupil_l"),
        "mouth": ("mouth_r", "mouth_l", "lip_upper_top", "lip_upper_bottom",
                  "lip_lower_top", "lip_lower_bottom"),
    },
    nme_norm="inter_ocular",
    outer_eye_corners=("eye_r_outer", "eye_l_outer"),    # 0-based 8, 9
    # the pupils are annotated: inter_pupil uses them (a one-point "contour" is its centre)
    eye_contours=(("pupil_r",), ("pupil_l",)),
    description="COFW 29-point markup (Burgos-Artizzu et al. 2013); NME by points 8/9",
    aliases=("cofw", "29"),
    skeleton=_chain(("brow_r_outer", "brow_r_top", "brow_r_inner", "brow_r_bottom"), True)
    + _chain(("brow_l_inner", "brow_l_top", "brow_l_outer", "brow_l_bottom"), True)
    + _chain(("eye_r_outer", "eye_r_top", "eye_r_inner", "eye_r_bottom"), True)
    + _chain(("eye_l_inner", "eye_l_top", "eye_l_outer", "eye_l_bottom"), True)
    + _chain(("nose_r", "nose_tip", "nose_l", "nose_bottom"), True)
    + _chain(("mouth_r", "lip_upper_top", "mouth_l", "lip_lower_bottom"), True)
    + _chain(("mouth_r", "lip_upper_bottom", "mouth_l", "lip_lower_top"), True),
)


# ---------------------------------------------------------------------------------------
# 19 points: AFLW (Koestinger et al. 2011; the 21-point markup without the two ear points)
# ---------------------------------------------------------------------------------------
# 0-based: right brow 0-2 (outer, centre, inner), left brow 3-5 (inner, centre, outer),
# right eye 6-8 (outer corner, centre, inner corner), left eye 9-11 (inner, centre, outer),
# nose 12-14 (right wing, tip, left wing), mouth 15-17 (right corner, centre, left corner),
# 18 chin. NME divides by sqrt(w * h) of the face box ("box").
AFLW19 = LandmarkScheme(
    name="aflw19",
    names=(
        "brow_r_outer", "brow_r_centre", "brow_r_inner",
        "brow_l_inner", "brow_l_centre", "brow_l_outer",
        "eye_r_outer", "eye_r_centre", "eye_r_inner",
        "eye_l_inner", "eye_l_centre", "eye_l_outer",
        "nose_r", "nose_tip", "nose_l", "mouth_r", "mouth_centre", "mouth_l", "chin",
    ),
    mirror=(
        ("brow_r_outer", "brow_l_outer"), ("brow_r_centre", "brow_l_centre"),
        ("brow_r_inner", "brow_l_inner"), ("eye_r_outer", "eye_l_outer"),
        ("eye_r_centre", "eye_l_centre"), ("eye_r_inner", "eye_l_inner"),
        ("nose_r", "nose_l"), ("mouth_r", "mouth_l"),
    ),
    regions={
        "jaw": ("chin",),
        "brows": ("brow_r_outer", "brow_r_centre", "brow_r_inner",
                  "brow_l_inner", "brow_l_centre", "brow_l_outer"),
        "eyes": ("eye_r_outer", "eye_r_centre", "eye_r_inner",
                 "eye_l_inner", "eye_l_centre", "eye_l_outer"),
        "nose": ("nose_r", "nose_tip", "nose_l"),
        "mouth": ("mouth_r", "mouth_centre", "mouth_l"),
    },
    nme_norm="box",
    outer_eye_corners=("eye_r_outer", "eye_l_outer"),    # 0-based 6, 11
    eye_contours=(("eye_r_centre",), ("eye_l_centre",)),
    description="AFLW 19-point markup (Koestinger et al. 2011, ears dropped); NME by box size",
    aliases=("aflw", "19"),
    skeleton=_chain(("brow_r_outer", "brow_r_centre", "brow_r_inner"))
    + _chain(("brow_l_inner", "brow_l_centre", "brow_l_outer"))
    + _chain(("eye_r_outer", "eye_r_centre", "eye_r_inner"))
    + _chain(("eye_l_inner", "eye_l_centre", "eye_l_outer"))
    + _chain(("nose_r", "nose_tip", "nose_l"))
    + _chain(("mouth_r", "mouth_centre", "mouth_l")),
)


# ---------------------------------------------------------------------------------------
# 39 points: Menpo 2D profile markup (Deng et al., IJCV 2019)
# ---------------------------------------------------------------------------------------
# Menpo annotates profile faces (large yaw) with 39 points of the visible half of the face.
# No point has a mirror partner inside the markup (the mirror of a left profile is a right
# profile), so the scheme is ``flippable=False``: augmentation does not flip it and
# flip_indices raises rather than return an identity that may be wrong. The point-by-point
# semantics of the 39 indices could not be confirmed from a source available here, so the
# names are plain positions (``profile_00`` .. ``profile_38``) in one "face" region rather
# than guessed parts. NME divides by the diagonal of the ground-truth landmarks' bounding
# box (the Menpo benchmark's compute_diag_error), hence "box_diag".
_PROFILE39 = _seq("profile", 39)

MENPO39 = LandmarkScheme(
    name="menpo39",
    names=_PROFILE39,
    mirror=(),
    regions={"face": _PROFILE39},
    nme_norm="box_diag",
    description="Menpo 2D profile markup, 39 points of the visible half-face; not flippable",
    aliases=("menpo_profile", "39"),
    flippable=False,
)


# ---------------------------------------------------------------------------------------
# 106 points: LaPa (Liu et al., AAAI 2020), the JD-landmark 106 point set in LaPa's order
# ---------------------------------------------------------------------------------------
# Index layout (0-based), checked on the LaPa samples: jaw 0-32 (16 = chin); brows as WFLW:
# right upper 33-37, right lower 38-41, left upper 42-46, left lower 47-50; nose bridge
# 51-54 (54 near the tip); 55 right side of the nose, 56-64 the nose contour from the right
# wing round the base to the left wing (60 = bottom centre), 65 left side of the nose;
# right eye 66-73 (66 outer corner, 67-69 upper lid, 70 inner corner, 71-73 lower lid) and
# its centre 74; left eye 75-82 (75 inner corner, 76-78 upper lid, 79 outer corner, 80-82
# lower lid) and its centre 83; outer lip 84-95 (84 right corner, 87 top, 90 left corner,
# 93 bottom); inner lip 96-103 (96 right corner, 98 top, 100 left corner, 102 bottom);
# pupils 104 (right), 105 (left). In the LaPa files the eye centres 74/83 and the pupils
# 104/105 hold the same coordinates. NME uses the outer eye corners 66/79.
_JAW106 = _seq("jaw", 33)
_NOSE_BASE106 = _seq("nose_base", 9)
_EYE_R106 = _seq("eye_r", 8)
_EYE_L106 = _seq("eye_l", 8)

LAPA106 = LandmarkScheme(
    name="lapa106",
    names=_JAW106 + _BROW_R_UP98 + _BROW_R_LOW98 + _BROW_L_UP98 + _BROW_L_LOW98
    + _NOSE_BRIDGE98 + ("nose_side_r",) + _NOSE_BASE106 + ("nose_side_l",)
    + _EYE_R106 + ("eye_r_centre",) + _EYE_L106 + ("eye_l_centre",)
    + _LIP_OUT98 + _LIP_IN98 + ("pupil_r", "pupil_l"),
    mirror=(
        _reverse_pairs(_JAW106[:16], _JAW106[17:])
        + _reverse_pairs(_BROW_R_UP98, _BROW_L_UP98)
        + _reverse_pairs(_BROW_R_LOW98, _BROW_L_LOW98)
        + (("nose_side_r", "nose_side_l"),)
        + _reverse_pairs(_NOSE_BASE106[:4], _NOSE_BASE106[5:])
        + _EYE8_MIRROR + (("eye_r_centre", "eye_l_centre"),)
        + _LIP_MIRROR + (("pupil_r", "pupil_l"),)
    ),
    regions={
        "jaw": _JAW106,
        "brows": _BROW_R_UP98 + _BROW_R_LOW98 + _BROW_L_UP98 + _BROW_L_LOW98,
        "nose": _NOSE_BRIDGE98 + ("nose_side_r",) + _NOSE_BASE106 + ("nose_side_l",),
        "eyes": _EYE_R106 + ("eye_r_centre",) + _EYE_L106 + ("eye_l_centre",)
        + ("pupil_r", "pupil_l"),
        "mouth": _LIP_OUT98 + _LIP_IN98,
    },
    nme_norm="inter_ocular",
    outer_eye_corners=("eye_r_00", "eye_l_04"),          # 0-based 66, 79
    eye_contours=(_EYE_R106, _EYE_L106),
    description="LaPa 106-point markup (JD-landmark points, LaPa order); NME by 66/79",
    aliases=("lapa", "106"),
    skeleton=_chain(_JAW106) + _chain(_BROW_R_UP98 + _BROW_R_LOW98, True)
    + _chain(_BROW_L_UP98 + _BROW_L_LOW98, True) + _chain(_NOSE_BRIDGE98)
    + _chain(("nose_side_r",) + _NOSE_BASE106 + ("nose_side_l",))
    + _chain(_EYE_R106, True) + _chain(_EYE_L106, True)
    + _chain(_LIP_OUT98, True) + _chain(_LIP_IN98, True),
)


# ---------------------------------------------------------------------------------------
# 5 points: eye centres, nose tip, mouth corners (RetinaFace, MTCNN, ArcFace alignment)
# ---------------------------------------------------------------------------------------
# Order as RetinaFace and MTCNN give them: the eye on the image's left (the subject's right)
# first. With only eye centres available, "inter_ocular" here is the distance between the
# eye centres (outer_eye_corners names them), which equals inter-pupil.
FACE5 = LandmarkScheme(
    name="face5",
    names=("eye_r", "eye_l", "nose_tip", "mouth_r", "mouth_l"),
    mirror=(("eye_r", "eye_l"), ("mouth_r", "mouth_l")),
    regions={"eyes": ("eye_r", "eye_l"), "nose": ("nose_tip",),
             "mouth": ("mouth_r", "mouth_l")},
    nme_norm="inter_ocular",
    outer_eye_corners=("eye_r", "eye_l"),
    eye_contours=(("eye_r",), ("eye_l",)),
    description="5 points (eye centres, nose tip, mouth corners) as RetinaFace/MTCNN give them",
    aliases=("5", "retinaface5", "mtcnn5"),
    skeleton=(("eye_r", "eye_l"), ("mouth_r", "mouth_l")),
)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
_SCHEMES: dict[str, LandmarkScheme] = {}
_ALIASES: dict[str, str] = {}


def register_scheme(scheme: LandmarkScheme) -> LandmarkScheme:
    """Validate a scheme and make it available to :func:`get_scheme` (also for user schemes)."""
    scheme.validate()
    for key in (scheme.name, *scheme.aliases):
        if key in _SCHEMES or key in _ALIASES:
            raise ValueError(f"scheme name {key!r} is registered twice")
    _SCHEMES[scheme.name] = scheme
    for alias in scheme.aliases:
        _ALIASES[alias] = scheme.name
    return scheme


def get_scheme(name: str | os.PathLike | LandmarkScheme) -> LandmarkScheme:
    """Look a scheme up by name or alias, or read it from a scheme file.

    Args:
        name: a registered name or alias, the name of a scheme read earlier from a file or a
            model (:func:`adopt_scheme`), a path to a scheme file (``.yaml``/``.yml``/
            ``.json``, see the module docstring), or a :class:`LandmarkScheme` (returned as is).

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        ConfigError: a scheme file that is missing or malformed (naming the file and key).
    """
    if isinstance(name, LandmarkScheme):
        return name
    if is_scheme_file(name):
        return adopt_scheme(load_scheme_file(name), source=str(name))
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    key = _USER_ALIASES.get(key, key)
    if key in _SCHEMES:
        return _SCHEMES[key]
    if key in _USER_SCHEMES:
        return _USER_SCHEMES[key][0]
    known = ", ".join(sorted(_SCHEMES))
    raise KeyError(f"unknown landmark scheme {name!r}; known schemes: {known} (or a scheme "
                   f"file: {'/'.join(SCHEME_FILE_SUFFIXES)})")


def list_schemes() -> list[str]:
    return sorted(_SCHEMES)


def scheme_for_count(num_points: int) -> LandmarkScheme | None:
    """The scheme with exactly this many points, if there is a single one."""
    found = [s for s in _SCHEMES.values() if s.num_points == num_points]
    return found[0] if len(found) == 1 else None


for _scheme in (IBUG68, WFLW98, COFW29, AFLW19, MENPO39, LAPA106, FACE5):
    register_scheme(_scheme)


# ---------------------------------------------------------------------------------------
# Schemes of one's own: scheme files and schemes stored in models
# ---------------------------------------------------------------------------------------
SCHEME_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_FIELDS = tuple(f.name for f in fields(LandmarkScheme))
_FILE_KEYS = _FIELDS + ("num_points",)
# schemes read from files or models in this process: name -> (scheme, where it came from)
_USER_SCHEMES: dict[str, tuple[LandmarkScheme, str]] = {}
_USER_ALIASES: dict[str, str] = {}
_FILE_CACHE: dict[tuple[str, int, int], LandmarkScheme] = {}


def is_scheme_file(spec) -> bool:
    """True for a path (str or PathLike) ending in a scheme-file suffix; no file access."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    return isinstance(spec, str) and spec.lower().endswith(SCHEME_FILE_SUFFIXES)


def scheme_to_dict(scheme: LandmarkScheme) -> dict[str, Any]:
    """The scheme as plain JSON/YAML data (lists and dicts of str): what model files store
    and what :func:`scheme_from_dict` (and a scheme file) reads back."""
    out: dict[str, Any] = {
        "name": scheme.name, "names": list(scheme.names),
        "mirror": [list(pair) for pair in scheme.mirror],
        "regions": {r: list(names) for r, names in scheme.regions.items()},
        "nme_norm": scheme.nme_norm,
    }
    if scheme.outer_eye_corners is not None:
        out["outer_eye_corners"] = list(scheme.outer_eye_corners)
    if scheme.eye_contours is not None:
        out["eye_contours"] = [list(c) for c in scheme.eye_contours]
    out.update(description=scheme.description, aliases=list(scheme.aliases),
               skeleton=[list(pair) for pair in scheme.skeleton], flippable=scheme.flippable)
    return out


def load_scheme_file(path: str | os.PathLike) -> LandmarkScheme:
    """Read and check a scheme file (YAML or JSON, keys as in the module docstring).

    The result is cached per file version (path, modification time, size).

    Raises:
        ConfigError: the file is missing or unreadable, not YAML/JSON, or a key is missing or
            wrong (the message names the file and the key).
    """
    path = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    if path.suffix.lower() not in SCHEME_FILE_SUFFIXES:
        raise ConfigError(f"{path}: a scheme file must end in {', '.join(SCHEME_FILE_SUFFIXES)}")
    try:
        stat = path.stat()
    except OSError:
        raise ConfigError(f"scheme file not found: {path}") from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _FILE_CACHE:
        return _FILE_CACHE[key]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the scheme file ({e})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    scheme = scheme_from_dict(data, source=str(path))
    _FILE_CACHE[key] = scheme
    return scheme


def scheme_from_dict(data: Any, source: str = "scheme") -> LandmarkScheme:
    """Build and check a :class:`LandmarkScheme` from plain data (a scheme file's contents,
    or :func:`scheme_to_dict` output stored in a model).

    Args:
        data: a mapping with the keys of :class:`LandmarkScheme` (plus ``num_points``).
        source: where the data came from (a file path), named in every error.

    Raises:
        ConfigError: ``"<source>: key '<key>': <what is wrong>"``.
    """
    def fail(key: str | None, message: str):
        where = f"{source}: key {key!r}" if key else source
        raise ConfigError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail(None, f"expected a mapping of scheme keys ({', '.join(_FILE_KEYS)}), got "
                   f"{type(data).__name__}")
    for key in data:
        if key not in _FILE_KEYS:
            close = difflib.get_close_matches(str(key), _FILE_KEYS, n=1)
            hint = (f"; did you mean {close[0]!r}?" if close
                    else f"; known keys: {', '.join(_FILE_KEYS)}")
            fail(str(key), f"unknown key{hint}")

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        fail("name", f"expected a non-empty string, got {name!r}")
    if is_scheme_file(name):
        fail("name", f"{name!r} looks like a file name; use a plain name such as 'my10'")

    count = data.get("num_points")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        fail("num_points", f"expected a positive integer, got {count!r}")
    names = data.get("names")
    if names is None:
        if count is None:
            fail("names", "missing: list the point names in the order of your labels (or "
                          "give num_points for names point_00, point_01, ...)")
        names = [f"point_{i:0{max(2, len(str(count - 1)))}d}" for i in range(count)]
    if not isinstance(names, list) or not names \
            or not all(isinstance(n, str) and n.strip() for n in names):
        fail("names", "expected a non-empty list of point names (strings)")
    if count is not None and len(names) != count:
        fail("names", f"{len(names)} names for num_points {count}; give one name per point")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        fail("names", f"duplicate point names {dup}")
    n_pts = len(names)

    def point(ref, key: str) -> str:
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            fail(key, f"expected a point name or 0-based index, got {ref!r}")
        if isinstance(ref, int):
            if not 0 <= ref < n_pts:
                fail(key, f"index {ref} out of range for {n_pts} points "
                          f"(0-based: 0 to {n_pts - 1})")
            return names[ref]
        if ref not in names:
            close = difflib.get_close_matches(ref, names, n=1)
            fail(key, f"{ref!r} is not a point name"
                 + (f"; did you mean {close[0]!r}?" if close else ""))
        return ref

    def points(refs, key: str, length: int | None = None) -> tuple[str, ...]:
        if not isinstance(refs, list):
            fail(key, f"expected a list of point names or indices, got {refs!r}")
        if length is not None and len(refs) != length:
            fail(key, f"expected {length} points, got {len(refs)}")
        return tuple(point(r, key) for r in refs)

    def pairs(refs, key: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(refs, list):
            fail(key, f"expected a list of [a, b] pairs, got {refs!r}")
        return tuple(points(pair, key, 2) for pair in refs)

    flippable = data.get("flippable", True)
    if not isinstance(flippable, bool):
        fail("flippable", f"expected true or false, got {flippable!r}")
    if "mirror" not in data and flippable:
        fail("mirror", "missing: list the pairs of points that swap under a horizontal flip "
                       "([] if every point is on the midline), or set flippable: false")
    mirror_data = data.get("mirror") or []
    if isinstance(mirror_data, list) and mirror_data \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in mirror_data):
        mirror = _pairs_of_permutation(mirror_data, names, lambda m: fail("mirror", m))
    else:
        mirror = pairs(mirror_data, "mirror")
        used: set[str] = set()
        for a, b in mirror:
            if a == b:
                fail("mirror", f"pair [{a!r}, {b!r}] is one point; a point on the midline "
                               "needs no pair")
            for n in (a, b):
                if n in used:
                    fail("mirror", f"not a permutation: {n!r} is in two pairs")
                used.add(n)

    regions_data = data.get("regions") or {}
    if not isinstance(regions_data, dict):
        fail("regions", f"expected a mapping region -> list of points, got {regions_data!r}")
    regions = {str(r): points(refs, f"regions.{r}") for r, refs in regions_data.items()}

    corners = data.get("outer_eye_corners")
    if corners is not None:
        corners = points(corners, "outer_eye_corners", 2)
    contours = data.get("eye_contours")
    if contours is not None:
        if not isinstance(contours, list) or len(contours) != 2:
            fail("eye_contours", "expected two lists of points: [right eye, left eye]")
        contours = tuple(points(c, "eye_contours") for c in contours)
    norm = data.get("nme_norm", "inter_ocular" if corners is not None else "box")
    if norm not in NME_NORMS:
        fail("nme_norm", f"{norm!r} is not one of {', '.join(NME_NORMS)}")
    if norm == "inter_ocular" and corners is None:
        fail("outer_eye_corners", "missing: nme_norm inter_ocular divides by the distance of "
                                  "these two points; give [right, left] or another nme_norm")
    if norm == "inter_pupil" and contours is None:
        fail("eye_contours", "missing: nme_norm inter_pupil needs [right eye, left eye] points")
    aliases = data.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        fail("aliases", f"expected a list of names, got {aliases!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        fail("description", f"expected a string, got {description!r}")

    scheme = LandmarkScheme(
        name=name.strip(), names=tuple(names), mirror=mirror, regions=regions, nme_norm=norm,
        outer_eye_corners=corners, eye_contours=contours, description=description,
        aliases=tuple(aliases), skeleton=pairs(data.get("skeleton") or [], "skeleton"),
        flippable=flippable)
    try:
        scheme.validate()
    except (ValueError, KeyError) as e:   # left/right names the mirror pairs contradict
        message = str(e.args[0])
        fail("flippable" if "flippable=False" in message else "mirror", message)
    return scheme


def _pairs_of_permutation(perm: list[int], names, fail) -> tuple[tuple[str, str], ...]:
    """Mirror pairs of a whole flip permutation (``perm[i]``: the partner of point i)."""
    n = len(names)
    if len(perm) != n:
        fail(f"a permutation needs one 0-based index per point ({n}), got {len(perm)}")
    bad = [v for v in perm if not 0 <= v < n]
    if bad:
        fail(f"index {bad[0]} out of range for {n} points (0-based: 0 to {n - 1})")
    seen: set[int] = set()
    for v in perm:
        if v in seen:
            fail(f"not a permutation: {v} appears twice")
        seen.add(v)
    for i, j in enumerate(perm):
        if perm[j] != i:
            fail(f"not an involution: point {i} mirrors to {j} but {j} mirrors to {perm[j]} "
                 "(a mirror must swap pairs)")
    return tuple((names[i], names[j]) for i, j in enumerate(perm) if i < j)


def _same(a: LandmarkScheme, b: LandmarkScheme) -> bool:
    """Same points, mirror, regions, normaliser and drawing (description and aliases aside)."""
    skip = ("description", "aliases")
    da, db = scheme_to_dict(a), scheme_to_dict(b)
    return all(da.get(k) == db.get(k) for k in set(da) | set(db) if k not in skip)


def adopt_scheme(scheme: LandmarkScheme, source: str = "") -> LandmarkScheme:
    """Make a scheme from a file or a model known to :func:`get_scheme` in this process.

    Returns the built-in scheme when ``scheme`` is identical to one (same name), else the
    first adopted scheme of that name when they are identical, else ``scheme`` itself. User
    schemes never take part in :func:`list_schemes` or :func:`scheme_for_count`.

    Raises:
        ConfigError: the name (or an alias) belongs to a built-in scheme or an adopted one
            with another definition; the message names both sources.
    """
    key = scheme.name.lower()
    builtin = _SCHEMES.get(_ALIASES.get(key, key))
    where = f"{source}: " if source else ""
    if builtin is not None:
        if _same(builtin, scheme):
            return builtin
        raise ConfigError(f"{where}key 'name': {scheme.name!r} is a built-in scheme with "
                          "other points or pairs; give your scheme another name")
    key = _USER_ALIASES.get(key, key)
    if key in _USER_SCHEMES:
        known, known_source = _USER_SCHEMES[key]
        if _same(known, scheme):
            return known
        raise ConfigError(f"{where}scheme {scheme.name!r} differs from the scheme of that name "
                          f"loaded before (from {known_source or 'memory'}); one process holds "
                          "one scheme per name: rename one of them")
    for alias in scheme.aliases:
        a = alias.lower()
        if a in _SCHEMES or a in _ALIASES or a in _USER_SCHEMES or a in _USER_ALIASES:
            raise ConfigError(f"{where}key 'aliases': {alias!r} already names another scheme")
    _USER_SCHEMES[key] = (scheme, source)
    for alias in scheme.aliases:
        _USER_ALIASES[alias.lower()] = key
    return scheme

"""Landmark schemes, declared once, as data.

A scheme is the list of point names (in the dataset's order), the horizontal mirror
partners by name, the face regions, and how the NME of that dataset is normalised. The
flip permutation, the normalising indices and the region indices are derived from those
names here and nowhere else, and every scheme is checked when this module is imported
(names unique, mirror pairs mutual and complete).

Naming follows the subject's own left and right (``eye_l`` is the subject's left eye,
which appears on the right of a frontal photo), as in the iBUG 300-W description.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

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
        """Permutation p such that ``flipped[i] = mirrored_points[p[i]]`` (an involution)."""
        perm = np.arange(self.num_points)
        for a, b in self.mirror:
            ia, ib = self.index(a), self.index(b)
            perm[ia], perm[ib] = ib, ia
        return perm

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
        perm = self.flip_indices
        if not np.array_equal(perm[perm], np.arange(self.num_points)):
            raise ValueError(f"scheme {self.name!r}: mirror permutation is not an involution")
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


def get_scheme(name: str | LandmarkScheme) -> LandmarkScheme:
    """Look a scheme up by name or alias; an unknown name lists the known ones."""
    if isinstance(name, LandmarkScheme):
        return name
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in _SCHEMES:
        known = ", ".join(sorted(_SCHEMES))
        raise KeyError(f"unknown landmark scheme {name!r}; known schemes: {known}")
    return _SCHEMES[key]


def list_schemes() -> list[str]:
    return sorted(_SCHEMES)


def scheme_for_count(num_points: int) -> LandmarkScheme | None:
    """The scheme with exactly this many points, if there is a single one."""
    found = [s for s in _SCHEMES.values() if s.num_points == num_points]
    return found[0] if len(found) == 1 else None


register_scheme(IBUG68)

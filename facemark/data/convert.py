"""Conversions between landmark schemes, declared as data.

A conversion gives, for every point of the target scheme, the source points it is made of
and their weights, separately for x and for y (each axis's weights sum to 1, so converting
commutes with shifting the points). The weight matrices are built from those names here;
no index is typed by hand.

Known conversions:

- ``wflw98 -> 300w68``: the conversion PIPNet's authors use for their WFLW-68 and
  cross-dataset protocols (``lib/preprocess.py``). Jaw: every other WFLW contour point.
  Brows: the outer ends are copied; every other 68-point brow point keeps the x of the WFLW
  upper-brow point and takes the mean y of that point and the lower-brow point below it.
  Eyes: the corners are copied and each lid point is 2/3 of the WFLW lid point next to it
  plus 1/3 of the lid's middle point. Nose and lips are copied. (The authors' script
  writes the thirds as 0.666/0.333, which sum to 0.999 and pull those eight points 0.1%
  towards the image origin; exact thirds are used here. facexlib's variant averages both
  coordinates of the brow pairs and copies WFLW lid points 61/63/65/67 instead.)
- ``300w68``, ``wflw98``, ``lapa106`` ``-> face5``: eye centre = mean of that eye's
  contour, nose tip, mouth corners (outer lip corners).
- ``cofw29``, ``aflw19 -> face5``: the annotated pupils / eye centres, nose tip, mouth
  corners.
- built-in scheme ``->`` a subset of it: a scheme of your own (a scheme file) whose point
  names are all names of exactly one built-in scheme is that scheme's subset; each of its
  points is a copy of the point of the same name (:func:`subset_conversion`), e.g. 24 of
  the 300-W 68 points (``experiments/sepbn_shared/ytf24.yaml``). Built-in schemes share
  names with other meanings (``eye_l_03`` is an outer corner in 300w68, a lid point in
  wflw98), so names that two built-in schemes both hold convert from neither.

A point that is NaN (not annotated) in the source makes every target point that uses it
NaN; target points that do not use it are unaffected.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from facemark.data.schemes import LandmarkScheme, get_scheme, list_schemes

# One term of a target point: (source point name, weight on x, weight on y).
Term = tuple[str, float, float]


@dataclass(frozen=True)
class LandmarkConversion:
    """Maps the points of scheme ``src`` to those of scheme ``dst``.

    Args:
        src: source scheme name (e.g. ``"wflw98"``).
        dst: target scheme name (e.g. ``"300w68"``).
        rules: target point name -> terms ``(source name, weight_x, weight_y)``; every
            target point needs a rule, and each axis's weights must sum to 1.
        description: one line on where the conversion comes from.
    """

    src: str
    dst: str
    rules: dict[str, tuple[Term, ...]]
    description: str = ""

    @cached_property
    def src_scheme(self) -> LandmarkScheme:
        return get_scheme(self.src)

    @cached_property
    def dst_scheme(self) -> LandmarkScheme:
        return get_scheme(self.dst)

    @cached_property
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(wx, wy)``, float64 arrays (M, N): ``x_dst = wx @ x_src``, ``y_dst = wy @ y_src``."""
        src, dst = self.src_scheme, self.dst_scheme
        wx = np.zeros((dst.num_points, src.num_points))
        wy = np.zeros((dst.num_points, src.num_points))
        for target, terms in self.rules.items():
            i = dst.index(target)
            for name, ax, ay in terms:
                j = src.index(name)
                wx[i, j] += ax
                wy[i, j] += ay
        return wx, wy

    def validate(self) -> None:
        """Every target point has a rule, every name exists, each axis's weights sum to 1."""
        src, dst = self.src_scheme, self.dst_scheme
        missing = [n for n in dst.names if n not in self.rules]
        if missing:
            raise ValueError(f"conversion {self.src}->{self.dst}: no rule for {missing}")
        for target, terms in self.rules.items():
            dst.index(target)
            if not terms:
                raise ValueError(f"conversion {self.src}->{self.dst}: {target!r} has no terms")
            for name, _, _ in terms:
                src.index(name)
        wx, wy = self.weights
        for axis, w in (("x", wx), ("y", wy)):
            sums = w.sum(axis=1)
            bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-9)
            if len(bad):
                raise ValueError(f"conversion {self.src}->{self.dst}: {axis} weights of "
                                 f"{dst.names[bad[0]]!r} sum to {sums[bad[0]]:.6g}, expected 1")

    def __call__(self, points) -> np.ndarray:
        """Convert ``points`` (..., N, 2) of ``src`` to (..., M, 2) of ``dst``.

        Returns float32 for float32 input, else float64. A target point is NaN where any
        source point it uses has a NaN (or infinite) coordinate.
        """
        pts = np.asarray(points)
        n = self.src_scheme.num_points
        if pts.ndim < 2 or pts.shape[-2:] != (n, 2):
            raise ValueError(f"conversion {self.src}->{self.dst} expects points of shape "
                             f"(..., {n}, 2), got {pts.shape}")
        dtype = np.float32 if pts.dtype == np.float32 else np.float64
        pts = pts.astype(np.float64)
        missing = ~np.isfinite(pts).all(axis=-1)                        # (..., N)
        filled = np.where(missing[..., None], 0.0, pts)
        wx, wy = self.weights
        out = np.stack([filled[..., 0] @ wx.T, filled[..., 1] @ wy.T], axis=-1)  # (..., M, 2)
        used = ((wx != 0) | (wy != 0)).astype(np.float64)               # (M, N)
        out[(missing.astype(np.float64) @ used.T) > 0] = np.nan
        return out.astype(dtype)


_CONVERSIONS: dict[tuple[str, str], LandmarkConversion] = {}


def register_conversion(conversion: LandmarkConversion) -> LandmarkConversion:
    """Validate a conversion and make it available to :func:`convert_landmarks`."""
    key = (get_scheme(conversion.src).name, get_scheme(conversion.dst).name)
    if key in _CONVERSIONS:
        raise ValueError(f"conversion {key[0]}->{key[1]} is registered twice")
    conversion.validate()
    _CONVERSIONS[key] = conversion
    return conversion


def list_conversions() -> list[tuple[str, str]]:
    """The registered ``(src, dst)`` scheme pairs."""
    return sorted(_CONVERSIONS)


_SUBSETS: dict[tuple[str, str], LandmarkConversion] = {}


def subset_conversion(src: str | LandmarkScheme, dst: str | LandmarkScheme
                      ) -> LandmarkConversion | None:
    """The copy-by-name conversion from built-in scheme ``src`` to ``dst``, a scheme of
    your own (e.g. from a scheme file) whose point names are all names of ``src`` and of no
    other built-in scheme; None when ``dst`` is built-in or the same scheme, has a name
    that ``src`` lacks, or has all its names in another built-in scheme too (ambiguous).

    A scheme of one name is one scheme per process (:func:`~facemark.data.schemes.adopt_scheme`),
    so the conversion is built once per pair of names.
    """
    s, d = get_scheme(src), get_scheme(dst)
    builtin = set(list_schemes())
    if s.name == d.name or s.name not in builtin or d.name in builtin:
        return None
    key = (s.name, d.name)
    if key not in _SUBSETS:
        owners = [n for n in builtin if set(d.names) <= set(get_scheme(n).names)]
        if owners != [s.name]:
            return None
        conv = LandmarkConversion(s.name, d.name, {n: _copy(n) for n in d.names},
                                  f"{d.num_points} of the {s.num_points} {s.name} points, "
                                  "copied by name")
        conv.validate()
        _SUBSETS[key] = conv
    return _SUBSETS[key]


def get_conversion(src: str | LandmarkScheme, dst: str | LandmarkScheme) -> LandmarkConversion:
    """The conversion from ``src`` to ``dst`` (registered, or :func:`subset_conversion`);
    ValueError listing the known ones if none."""
    key = (get_scheme(src).name, get_scheme(dst).name)
    if key not in _CONVERSIONS:
        subset = subset_conversion(src, dst)
        if subset is not None:
            return subset
        known = ", ".join(f"{a}->{b}" for a, b in list_conversions())
        raise ValueError(f"no landmark conversion from {key[0]!r} to {key[1]!r}; "
                         f"known conversions: {known} (and any built-in scheme -> a scheme "
                         "file whose point names are all names of it)")
    return _CONVERSIONS[key]


def can_convert(src: str | LandmarkScheme, dst: str | LandmarkScheme) -> bool:
    """Whether :func:`convert_landmarks` can take points of ``src`` to ``dst`` (the same
    scheme, a registered conversion, or a subset of ``src`` by name)."""
    s, d = get_scheme(src).name, get_scheme(dst).name
    return s == d or (s, d) in _CONVERSIONS or subset_conversion(src, dst) is not None


def convert_landmarks(points, src: str | LandmarkScheme, dst: str | LandmarkScheme) -> np.ndarray:
    """Convert landmarks from scheme ``src`` to scheme ``dst``.

    Args:
        points: array-like (..., N, 2) of (x, y), N = the source scheme's number of points.
        src: source scheme name, alias or object.
        dst: target scheme name, alias or object.

    Returns:
        array (..., M, 2), M = the target scheme's number of points; float32 for float32
        input, else float64. NaN where a source point it depends on is NaN. ``src == dst``
        returns a float copy.

    Raises:
        KeyError: an unknown scheme name.
        ValueError: no conversion between the two schemes (the message lists the known
            ones), or points of the wrong shape.
    """
    s, d = get_scheme(src), get_scheme(dst)
    if s.name == d.name:
        pts = np.asarray(points)
        if pts.ndim < 2 or pts.shape[-2:] != (s.num_points, 2):
            raise ValueError(f"scheme {s.name!r} expects points of shape (..., {s.num_points}, 2), "
                             f"got {pts.shape}")
        return pts.astype(np.float32 if pts.dtype == np.float32 else np.float64)
    return get_conversion(s, d)(points)


def convert_samples(samples, dst: str | LandmarkScheme) -> list:
    """Samples of another scheme with their landmarks converted to ``dst``.

    Args:
        samples: :class:`~facemark.data.sample.Sample` objects (mixed schemes allowed);
            each must be of ``dst`` already or have a registered conversion to it.
        dst: target scheme name, alias or object.

    Returns:
        new samples (the inputs are not changed): ``landmarks`` (M, 2) float32 pixels
        converted (NaN where a source point used is NaN; unlabelled samples stay None),
        ``visible`` (M,) True where every source point used is visible, ``scheme`` = the
        target's name; image, box, frame and source kept; ``attributes`` gain
        ``converted_from`` (the source scheme name). Samples already of ``dst`` are
        returned as they are.

    Raises:
        ValueError: no conversion from a sample's scheme to ``dst`` (lists the known ones).
    """
    import dataclasses

    d = get_scheme(dst)
    out = []
    for s in samples:
        src = get_scheme(s.scheme)
        if src.name == d.name:
            out.append(s)
            continue
        conv = get_conversion(src, d)
        wx, wy = conv.weights
        used = (wx != 0) | (wy != 0)                                   # (M, N)
        points = None if s.landmarks is None else conv(s.landmarks.astype(np.float64))
        visible = None
        if s.visible is not None:
            visible = ~(used & ~np.asarray(s.visible, dtype=bool)[None, :]).any(axis=1)
        out.append(dataclasses.replace(
            s, landmarks=None if points is None else points.astype(np.float32), scheme=d.name,
            visible=visible, attributes={**s.attributes, "converted_from": src.name}))
    return out


# ---------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------
def _copy(name: str) -> tuple[Term, ...]:
    return ((name, 1.0, 1.0),)


def _mix(*parts: tuple[str, float]) -> tuple[Term, ...]:
    """The same weights on both axes."""
    return tuple((name, w, w) for name, w in parts)


def _mean(names) -> tuple[Term, ...]:
    names = tuple(names)
    return _mix(*((n, 1.0 / len(names)) for n in names))


def _brow(upper: str, lower: str) -> tuple[Term, ...]:
    """x of the upper-brow point, y halfway between the upper and lower brow points."""
    return ((upper, 1.0, 0.5), (lower, 0.0, 0.5))


def _lid(near: str, middle: str) -> tuple[Term, ...]:
    """2/3 of the lid point next to the target plus 1/3 of the lid's middle point."""
    return _mix((near, 2.0 / 3.0), (middle, 1.0 / 3.0))


def _wflw98_to_300w68() -> dict[str, tuple[Term, ...]]:
    rules: dict[str, tuple[Term, ...]] = {}
    for i in range(17):                                   # every other contour point
        rules[f"jaw_{i:02d}"] = _copy(f"jaw_{2 * i:02d}")
    # right brow: 68 runs outer -> inner; WFLW upper runs outer -> inner, lower inner -> outer
    rules["brow_r_00"] = _copy("brow_r_upper_00")
    for i in range(1, 5):
        rules[f"brow_r_{i:02d}"] = _brow(f"brow_r_upper_{i:02d}", f"brow_r_lower_{4 - i:02d}")
    # left brow: 68 runs inner -> outer; WFLW upper inner -> outer, lower outer -> inner
    for i in range(4):
        rules[f"brow_l_{i:02d}"] = _brow(f"brow_l_upper_{i:02d}", f"brow_l_lower_{3 - i:02d}")
    rules["brow_l_04"] = _copy("brow_l_upper_04")
    for i in range(4):
        rules[f"nose_bridge_{i:02d}"] = _copy(f"nose_bridge_{i:02d}")
    for i in range(5):
        rules[f"nose_base_{i:02d}"] = _copy(f"nose_base_{i:02d}")
    # right eye (68: 0 outer, 1-2 upper, 3 inner, 4-5 lower; WFLW: 0 outer, 1-3 upper,
    # 4 inner, 5-7 lower); left eye (68: 0 inner, 1-2 upper, 3 outer, 4-5 lower; WFLW:
    # 0 inner, 1-3 upper, 4 outer, 5-7 lower): the same index pattern for both
    for side in ("r", "l"):
        e68, e98 = f"eye_{side}_", f"eye_{side}_"
        rules[e68 + "00"] = _copy(e98 + "00")
        rules[e68 + "01"] = _lid(e98 + "01", e98 + "02")
        rules[e68 + "02"] = _lid(e98 + "03", e98 + "02")
        rules[e68 + "03"] = _copy(e98 + "04")
        rules[e68 + "04"] = _lid(e98 + "05", e98 + "06")
        rules[e68 + "05"] = _lid(e98 + "07", e98 + "06")
    for i in range(12):
        rules[f"lip_outer_{i:02d}"] = _copy(f"lip_outer_{i:02d}")
    for i in range(8):
        rules[f"lip_inner_{i:02d}"] = _copy(f"lip_inner_{i:02d}")
    return rules


def _to_face5(scheme: LandmarkScheme, nose_tip: str, mouth_r: str, mouth_l: str,
              eyes: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> dict:
    """Face5 rules: eye centres = mean of ``eyes`` (default: the scheme's eye contours)."""
    eye_r, eye_l = eyes if eyes is not None else scheme.eye_contours
    return {"eye_r": _mean(eye_r), "eye_l": _mean(eye_l), "nose_tip": _copy(nose_tip),
            "mouth_r": _copy(mouth_r), "mouth_l": _copy(mouth_l)}


for _conversion in (
    LandmarkConversion(
        "wflw98", "300w68", _wflw98_to_300w68(),
        "PIPNet's WFLW-98 -> 68 conversion (brows: x of the upper point, mean y; eye lids "
        "interpolated 2/3 : 1/3)"),
    LandmarkConversion(
        "300w68", "face5",
        _to_face5(get_scheme("300w68"), "nose_bridge_03", "lip_outer_00", "lip_outer_06"),
        "eye centres = mean of the 6-point eye contours; nose tip 30; mouth corners 48, 54"),
    LandmarkConversion(
        "wflw98", "face5",
        _to_face5(get_scheme("wflw98"), "nose_bridge_03", "lip_outer_00", "lip_outer_06"),
        "eye centres = mean of the 8-point eye contours; nose tip 54; mouth corners 76, 82"),
    LandmarkConversion(
        "lapa106", "face5",
        _to_face5(get_scheme("lapa106"), "nose_bridge_03", "lip_outer_00", "lip_outer_06"),
        "eye centres = mean of the 8-point eye contours; nose tip 54; mouth corners 84, 90"),
    LandmarkConversion(
        "cofw29", "face5",
        _to_face5(get_scheme("cofw29"), "nose_tip", "mouth_r", "mouth_l",
                  eyes=(("pupil_r",), ("pupil_l",))),
        "pupils 16, 17; nose tip 20; mouth corners 22, 23"),
    LandmarkConversion(
        "aflw19", "face5",
        _to_face5(get_scheme("aflw19"), "nose_tip", "mouth_r", "mouth_l",
                  eyes=(("eye_r_centre",), ("eye_l_centre",))),
        "eye centres 7, 10; nose tip 13; mouth corners 15, 17"),
):
    register_conversion(_conversion)

"""Training augmentation for face crops: one affine warp plus a few photometric steps.

The geometric steps of a recipe (box-corner jitter, scale, shift, flip, rotation, shear) are
composed into ONE 2x3 matrix per sample and applied with a single ``cv2.warpAffine``; the
landmarks go through the same matrix (:func:`facemark.data.crops.transform_points`, same
pixel-centre convention), so image and points cannot drift apart. A horizontal flip also
reorders the points with the scheme's mirror permutation (``scheme.flip_indices``).

Step order (the PIPNet authors' order, with SepBN's extra steps in front of it):

1. box-corner jitter (SepBN: the crop box's x1, y1, x2, y2 each move up to 15% of its side)
2. scale about the crop centre
3. shift by whole pixels, up to ``shift * size`` on each axis (PIPNet: +-30 px of 256, p 0.5)
4. occlusion: one box of a random colour, each side up to ``occlusion_max`` of the crop
   (PIPNet: p 0.5, 0.4). It is drawn in the frame after step 3, so the later flip and
   rotation carry it along exactly as when it is painted before them (it becomes a
   rotated rectangle drawn onto the warped image).
5. horizontal flip (PIPNet: p 0.5), disabled for schemes with ``flippable=False``
6. rotation about the crop centre (PIPNet: +-30 deg, p 0.5; SepBN: +-25 deg, always)
7. shear along x (SepBN)
8. Gaussian blur with sigma up to ``blur_max_radius`` (PIPNet: p 0.3, radius 0-5, as PIL's
   ``GaussianBlur(radius)`` whose radius is the standard deviation)
9. grayscale (PIPNet: p 0.2)

Points that leave the crop keep their (outside) coordinates; encoders clamp them to the
border cell as the PIPNet authors' code does. NaN points (not annotated) stay NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facemark.data.crops import box_to_affine, transform_points
from facemark.data.schemes import LandmarkScheme, get_scheme
from facemark.errors import ConfigError

# Slots of the one uniform vector drawn per sample. Every parameter has its own slot, so
# the draws do not depend on which steps are enabled and a sample is fully fixed by rng.
_U_CORNER_P, _U_CORNER = 0, slice(1, 5)
_U_SCALE_P, _U_SCALE = 5, 6
_U_SHIFT_P, _U_SHIFT = 7, slice(8, 10)
_U_OCC_P, _U_OCC_SIZE, _U_OCC_POS, _U_OCC_COLOUR = 10, slice(11, 13), slice(13, 15), slice(15, 18)
_U_FLIP_P = 18
_U_ROT_P, _U_ROT = 19, 20
_U_SHEAR_P, _U_SHEAR = 21, 22
_U_BLUR_P, _U_BLUR = 23, 24
_U_GRAY_P = 25
_NUM_U = 26


def _h(m: np.ndarray) -> np.ndarray:
    """2x3 -> 3x3 homogeneous."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _about_centre(linear: np.ndarray, size: int) -> np.ndarray:
    """3x3 matrix applying a 2x2 linear map about the crop centre ((S-1)/2, (S-1)/2)."""
    c = (size - 1) / 2.0
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = c - linear @ np.array([c, c])
    return m


def _shift_flip_copy(image: np.ndarray, m: np.ndarray, size: int, fill: int) -> np.ndarray | None:
    """The warp by slicing when ``m`` is a whole-pixel shift, optionally with a horizontal
    flip (what ``cv2.warpAffine`` gives for such a matrix, several times faster); None
    for any other matrix."""
    a, b, tx = m[0]
    c, d, ty = m[1]
    if b != 0 or c != 0 or d != 1 or a not in (1, -1) or tx != round(tx) or ty != round(ty):
        return None
    h, w = image.shape[:2]
    src = np.asarray(image)
    tx, ty = int(round(tx)), int(round(ty))
    if a == -1:                        # x' = tx - x  ==  shift of the mirrored image
        src = cv2.flip(np.ascontiguousarray(src), 1)
        tx -= w - 1
    elif (tx, ty, w, h) == (0, 0, size, size):
        return np.array(src, dtype=np.uint8, copy=True)
    out = np.zeros((size, size, 3), np.uint8) if fill == 0 else np.full((size, size, 3), fill, np.uint8)
    x0, x1 = max(0, tx), min(size, w + tx)
    y0, y1 = max(0, ty), min(size, h + ty)
    if x0 < x1 and y0 < y1:
        out[y0:y1, x0:x1] = src[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
    return out


@dataclass
class AugmentParams:
    """Everything random about one augmented sample (drawn by :meth:`Augment.draw`).

    Attributes:
        matrix: 2x3 float64, input-image pixels -> output crop pixels (all geometric steps).
        perm: int (N,), output point i is the transformed input point ``perm[i]`` (the
            scheme's flip permutation after a flip, else the identity). Apply it to any
            per-point array (mask, visibility) that travels with the points.
        occlusion: (4, 2) float64 corners of the occluding quadrilateral in output crop
            pixels, or None.
        occlusion_colour: RGB of the occluder, 3 ints in [0, 255].
        blur_sigma: standard deviation of the Gaussian blur in output pixels (0: no blur).
        gray: convert to grayscale (kept as 3 equal channels).
        flipped: whether a horizontal flip is part of ``matrix``.
    """

    matrix: np.ndarray
    perm: np.ndarray
    occlusion: np.ndarray | None = None
    occlusion_colour: tuple[int, int, int] = (0, 0, 0)
    blur_sigma: float = 0.0
    gray: bool = False
    flipped: bool = False


class Augment:
    """Random augmentation of a face crop and its landmarks (PIPNet recipe by default).

    Args:
        scheme: landmark scheme (name or object); gives the flip permutation.
        size: output crop side S in pixels. Input crops of another size are rescaled in the
            same single warp.
        shift: largest translation per axis, as a fraction of S (30/256: PIPNet's +-30 px).
        scale: (low, high) zoom factor range about the centre (>1 zooms in).
        rotation: largest rotation in degrees (uniform in [-rotation, rotation]).
        shear: largest x-shear angle in degrees (uniform in [-shear, shear]).
        corner_jitter: largest move of each crop-box edge (x1, y1, x2, y2), as a fraction of
            S (SepBN: 0.15).
        flip: probability of a horizontal flip.
        p_shift, p_rotation, p_scale, p_shear, p_corner: probabilities of those steps.
        occlusion: probability of the occluding box; occlusion_max: its largest side as a
            fraction of S.
        blur: probability of Gaussian blur; blur_max_radius: largest sigma in pixels.
        gray: probability of grayscale.
        border_value: fill value of pixels warped in from outside the input.

    Call it as ``aug(image, points, rng) -> (image, points, perm)``: image uint8 (H, W, 3),
    points float (N, 2) in input crop pixels (NaN where not annotated), rng a
    ``numpy.random.Generator``. Returns the uint8 (S, S, 3) image, float32 (N, 2) points in
    output crop pixels and the int permutation ``perm`` (see :class:`AugmentParams`). The
    result depends only on the inputs and the rng state.
    """

    def __init__(self, scheme: str | LandmarkScheme, size: int, *, shift: float = 30 / 256,
                 scale: tuple[float, float] = (1.0, 1.0), rotation: float = 30.0,
                 shear: float = 0.0, corner_jitter: float = 0.0, flip: float = 0.5,
                 p_shift: float = 0.5, p_rotation: float = 0.5, p_scale: float = 0.5,
                 p_shear: float = 0.5, p_corner: float = 1.0, occlusion: float = 0.5,
                 occlusion_max: float = 0.4, blur: float = 0.3, blur_max_radius: float = 5.0,
                 gray: float = 0.2, border_value: int = 0):
        try:
            self.scheme = get_scheme(scheme)
        except KeyError as e:
            raise ConfigError(f"augment scheme: {e.args[0]}") from None
        self.size = size
        self.shift = shift
        self.scale = tuple(scale)
        self.rotation = rotation
        self.shear = shear
        self.corner_jitter = corner_jitter
        self.flip = flip
        self.p_shift = p_shift
        self.p_rotation = p_rotation
        self.p_scale = p_scale
        self.p_shear = p_shear
        self.p_corner = p_corner
        self.occlusion = occlusion
        self.occlusion_max = occlusion_max
        self.blur = blur
        self.blur_max_radius = blur_max_radius
        self.gray = gray
        self.border_value = border_value
        self._check()

    _PROBABILITIES = ("flip", "p_shift", "p_rotation", "p_scale", "p_shear", "p_corner",
                      "occlusion", "blur", "gray")

    def _check(self) -> None:
        if not (isinstance(self.size, (int, np.integer)) and self.size > 0):
            raise ConfigError(f"augment size: expected a positive integer, got {self.size!r}")
        for key in self._PROBABILITIES:
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"augment {key}: expected a probability in [0, 1], got {value!r}")
        for key in ("shift", "rotation", "shear", "corner_jitter", "occlusion_max",
                    "blur_max_radius"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"augment {key}: expected a number >= 0, got {value!r}")
        if self.occlusion_max > 1.0:
            raise ConfigError(f"augment occlusion_max: expected at most 1 (a fraction of the "
                              f"crop), got {self.occlusion_max!r}")
        if self.shear >= 90:
            raise ConfigError(f"augment shear: expected degrees below 90, got {self.shear!r}")
        if (len(self.scale) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in self.scale)
                or self.scale[0] > self.scale[1]):
            raise ConfigError(f"augment scale: expected (low, high) with 0 < low <= high, "
                              f"got {self.scale!r}")

    # ----------------------------------------------------------------- presets
    @classmethod
    def pipnet(cls, scheme: str | LandmarkScheme, size: int = 256, **overrides) -> "Augment":
        """The PIPNet authors' training recipe (REFERENCE.md): shift +-30 px of 256 (p .5),
        occlusion up to 0.4 (p .5), flip (p .5), rotation +-30 deg (p .5), blur radius 0-5
        (p .3), grayscale (p .2). The shift scales with ``size``."""
        return cls(scheme, size, **overrides)

    @classmethod
    def sepbn(cls, scheme: str | LandmarkScheme, size: int = 128, **overrides) -> "Augment":
        """SepBN's geometric recipe: rotation in [-25, 25] deg and box corners perturbed by up
        to 15% of the box, on every sample; flip (p .5) and x-shear (p .5). The paper gives no
        shear range; we use +-10 deg. No shift (the corner jitter moves the box), occlusion,
        blur or grayscale."""
        args = dict(shift=0.0, p_shift=0.0, rotation=25.0, p_rotation=1.0, corner_jitter=0.15,
                    p_corner=1.0, shear=10.0, p_shear=0.5, flip=0.5, occlusion=0.0, blur=0.0,
                    gray=0.0)
        return cls(scheme, size, **{**args, **overrides})

    # ----------------------------------------------------------------- drawing
    @property
    def can_flip(self) -> bool:
        return bool(getattr(self.scheme, "flippable", True)) and self.flip > 0

    def draw(self, rng: np.random.Generator, input_size: tuple[int, int] | None = None,
             input_box: np.ndarray | None = None) -> AugmentParams:
        """Draw the random parameters of one sample.

        Args:
            rng: the generator; exactly one vector of uniforms is taken from it.
            input_size: (width, height) of the input image; (size, size) when None.
            input_box: ``x1, y1, x2, y2`` (box edges, input pixels) of the un-augmented crop
                inside the input, when the input holds image around it (a crop cache built
                with context, :meth:`facemark.data.cache.CropCache.crop_region`); the whole
                input when None. The geometric steps act on this box, so what they move into
                view is real image where the input has it.
        """
        s = self.size
        u = rng.random(_NUM_U)
        w_in, h_in = input_size if input_size is not None else (s, s)
        if input_box is None:
            input_box = (-0.5, -0.5, w_in - 0.5, h_in - 0.5)
        # input crop -> output-size crop (identity when the sizes agree and there is no context)
        pre = _h(box_to_affine(input_box, s))
        if self.corner_jitter > 0 and u[_U_CORNER_P] < self.p_corner:
            d = (2 * u[_U_CORNER] - 1) * self.corner_jitter * s
            box = (-0.5 + d[0], -0.5 + d[1], s - 0.5 + d[2], s - 0.5 + d[3])
            pre = _h(box_to_affine(box, s)) @ pre
        if self.scale != (1.0, 1.0) and u[_U_SCALE_P] < self.p_scale:
            lo, hi = self.scale
            z = lo + (hi - lo) * u[_U_SCALE]
            pre = _about_centre(np.eye(2) * z, s) @ pre
        if self.shift > 0 and u[_U_SHIFT_P] < self.p_shift:
            # whole pixels, as the PIPNet code: without rotation the warp is then a plain copy
            t = np.round((2 * u[_U_SHIFT] - 1) * self.shift * s)
            m = np.eye(3)
            m[:2, 2] = t
            pre = m @ pre

        post = np.eye(3)
        flipped = self.can_flip and u[_U_FLIP_P] < self.flip
        if flipped:
            post = np.array([[-1.0, 0.0, s - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        if self.rotation > 0 and u[_U_ROT_P] < self.p_rotation:
            a = math.radians((2 * u[_U_ROT] - 1) * self.rotation)
            # positive angle turns the face counter-clockwise on screen (y points down)
            rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
            post = _about_centre(rot, s) @ post
        if self.shear > 0 and u[_U_SHEAR_P] < self.p_shear:
            k = math.tan(math.radians((2 * u[_U_SHEAR] - 1) * self.shear))
            post = _about_centre(np.array([[1.0, k], [0.0, 1.0]]), s) @ post

        occlusion = None
        colour = (0, 0, 0)
        if self.occlusion > 0 and u[_U_OCC_P] < self.occlusion:
            # as the PIPNet code: sides up to occlusion_max * S, kept 10 px off the far edges
            ow, oh = (int(s * self.occlusion_max * v) for v in u[_U_OCC_SIZE])
            if ow > 0 and oh > 0:
                x0 = int(max(s - ow - 10, 0) * u[_U_OCC_POS][0])
                y0 = int(max(s - oh - 10, 0) * u[_U_OCC_POS][1])
                rect = np.array([[x0 - 0.5, y0 - 0.5], [x0 + ow - 0.5, y0 - 0.5],
                                 [x0 + ow - 0.5, y0 + oh - 0.5], [x0 - 0.5, y0 + oh - 0.5]])
                occlusion = transform_points(rect, post[:2])
                colour = tuple(int(v * 255) for v in u[_U_OCC_COLOUR])

        n = self.scheme.num_points
        perm = self.scheme.flip_indices.copy() if flipped else np.arange(n)
        blur = self.blur_max_radius * u[_U_BLUR] if u[_U_BLUR_P] < self.blur else 0.0
        return AugmentParams(matrix=(post @ pre)[:2], perm=perm, occlusion=occlusion,
                             occlusion_colour=colour, blur_sigma=float(blur),
                             gray=bool(u[_U_GRAY_P] < self.gray), flipped=bool(flipped))

    # ----------------------------------------------------------------- applying
    def apply(self, image: np.ndarray, points: np.ndarray | None,
              params: AugmentParams) -> tuple[np.ndarray, np.ndarray | None]:
        """Apply drawn parameters: returns (uint8 (S, S, 3) image, float32 (N, 2) points or None)."""
        s = self.size
        m = params.matrix
        out = _shift_flip_copy(image, m, s, self.border_value)
        if out is None:
            out = cv2.warpAffine(np.asarray(image), m, (s, s), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=(self.border_value,) * 3)
        if params.occlusion is not None:
            poly = np.round(params.occlusion * 16).astype(np.int32)  # 4 fractional bits
            cv2.fillConvexPoly(out, poly, params.occlusion_colour, lineType=cv2.LINE_8, shift=4)
        if params.blur_sigma >= 0.1:
            out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma)
        if params.gray:
            g = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
            out = cv2.merge((g, g, g))
        if points is None:
            return out, None
        pts = transform_points(np.asarray(points, dtype=np.float64).reshape(-1, 2), m)
        return out, pts[params.perm].astype(np.float32)

    def __call__(self, image: np.ndarray, points: np.ndarray | None, rng: np.random.Generator,
                 input_box: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Augment one crop (``input_box``: see :meth:`draw`); see the class docstring."""
        if points is not None and len(points) != self.scheme.num_points:
            raise ValueError(f"Augment for scheme {self.scheme.name!r} expects "
                             f"{self.scheme.num_points} points, got {len(points)}")
        params = self.draw(rng, (image.shape[1], image.shape[0]), input_box)
        out, pts = self.apply(image, points, params)
        return out, pts, params.perm

    def __repr__(self) -> str:
        keys = ("shift", "scale", "rotation", "shear", "corner_jitter", "flip", "p_shift",
                "p_rotation", "p_scale", "p_shear", "p_corner", "occlusion", "occlusion_max",
                "blur", "blur_max_radius", "gray")
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)
        return f"Augment({self.scheme.name!r}, {self.size}, {args})"

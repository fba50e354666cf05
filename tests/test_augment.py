"""Augmentation: image and points move together, flips permute, results are reproducible."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facemark.data.augment import Augment
from facemark.data.crops import (box_to_affine, compose_affine, crop_face, crop_faces,
                                 invert_affine, map_back, transform_points)
from facemark.data.schemes import IBUG68, get_scheme
from facemark.errors import ConfigError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
S = 256


def geometric_only(**kw) -> Augment:
    """Every geometric step on every sample, no photometric step."""
    args = dict(shift=30 / 256, p_shift=1.0, scale=(0.9, 1.1), p_scale=1.0, rotation=30.0,
                p_rotation=1.0, shear=10.0, p_shear=1.0, corner_jitter=0.05, p_corner=1.0,
                flip=0.5, occlusion=0.0, blur=0.0, gray=0.0)
    return Augment(IBUG68, kw.pop("size", S), **{**args, **kw})


def blob(x: float, y: float, size: int = S, sigma: float = 2.0) -> np.ndarray:
    """A uint8 RGB image with one Gaussian dot centred at pixel (x, y)."""
    yy, xx = np.mgrid[0:size, 0:size]
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    img = np.round(255 * g).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


def centroid(img: np.ndarray) -> np.ndarray:
    w = img[:, :, 0].astype(np.float64)
    w[w < 8] = 0                                     # ignore the faint rim
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def real_face() -> np.ndarray:
    """68 points of a real 300-W face, placed in a 256 crop as the 300w rule cuts it."""
    from facemark.data.crops import crop_box
    from facemark.data.formats.pts import parse_pts
    files = sorted((DATA / "300w" / "afw").glob("*.pts"))
    if not files:
        pytest.skip(f"shared data not found at {DATA / '300w' / 'afw'}")
    pts = parse_pts(files[0])
    return transform_points(pts, box_to_affine(crop_box("300w", pts), S))


# ----------------------------------------------------------------------- crop geometry
@settings(max_examples=200, deadline=None)
@given(x1=st.floats(-500, 2000), y1=st.floats(-500, 2000), w=st.floats(4, 3000),
       h=st.floats(4, 3000), size=st.integers(16, 512), seed=st.integers(0, 2 ** 32 - 1))
def test_crop_then_uncrop_returns_points(x1, y1, w, h, size, seed):
    pts = np.random.default_rng(seed).uniform([x1, y1], [x1 + w, y1 + h], size=(20, 2))
    m = box_to_affine((x1, y1, x1 + w, y1 + h), size)
    back = transform_points(transform_points(pts, m), invert_affine(m))
    assert np.abs(back - pts).max() < 1e-3


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), size=st.sampled_from([64, 128, 256]))
def test_augment_matrix_inverts_to_the_input(seed, size):
    aug = geometric_only(size=size)
    params = aug.draw(np.random.default_rng(seed), (S, S))
    pts = np.random.default_rng(seed + 1).uniform(0, S, size=(68, 2))
    out = transform_points(pts, params.matrix)
    assert np.abs(transform_points(out, invert_affine(params.matrix)) - pts).max() < 1e-3


def test_compose_affine_order():
    a = box_to_affine((10, 20, 110, 220), 64)
    b = np.array([[0.0, 1.0, 3.0], [-1.0, 0.0, 5.0]])
    p = np.random.default_rng(0).uniform(0, 100, (7, 2))
    want = transform_points(transform_points(p, a), b)
    assert np.allclose(transform_points(p, compose_affine(a, b)), want)


def test_crop_faces_and_map_back_are_crop_face_and_its_inverse_per_box():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [np.array([10.0, 5.0, 70.0, 65.0]), np.array([-8.0, 20.0, 52.0, 80.0])]
    crops, inverses = crop_faces([images[0], images[1], images[0]], boxes + [boxes[1]], 32)
    assert crops.shape == (3, 32, 32, 3) and inverses.shape == (3, 2, 3)
    for crop, inverse, image, box in zip(crops, inverses, [images[0], images[1], images[0]],
                                         boxes + [boxes[1]]):
        want, matrix = crop_face(image, box, 32)
        assert np.array_equal(crop, want) and np.array_equal(inverse, invert_affine(matrix))
    points = rng.uniform(0, 32, (3, 5, 2))
    back = map_back(points, inverses)
    assert np.array_equal(back[2], transform_points(points[2], inverses[2]))
    empty, none = crop_faces([], [], 32)
    assert empty.shape == (0, 32, 32, 3) and none.shape == (0, 2, 3)
    assert map_back(np.zeros((0, 5, 2)), none).shape == (0, 5, 2)


# ----------------------------------------------------------------------- image vs points
@pytest.mark.parametrize("seed", range(6))
def test_warped_points_follow_the_warped_image(seed):
    """Dots rendered at landmark positions land where the augmented points say, and the
    point that sits on dot i after a flip is the one the permutation assigns to it."""
    aug = geometric_only(flip=0.5)
    rng = np.random.default_rng(seed)
    points = rng.uniform(100, 156, size=(IBUG68.num_points, 2))
    params = aug.draw(np.random.default_rng(1000 + seed))
    _, out_pts = aug.apply(np.zeros((S, S, 3), np.uint8), points, params)
    for i in (IBUG68.index("eye_r_00"), IBUG68.index("eye_l_03"), IBUG68.index("jaw_03"),
              IBUG68.index("nose_bridge_00"), IBUG68.index("lip_outer_00")):
        img, _ = aug.apply(blob(*points[i]), None, params)
        j = int(np.flatnonzero(params.perm == i)[0])      # output slot of input point i
        assert np.linalg.norm(centroid(img) - out_pts[j]) < 0.25, (seed, i, params.flipped)


def test_seeds_cover_flip_and_no_flip():
    aug = geometric_only(flip=0.5)
    flips = {aug.draw(np.random.default_rng(1000 + s)).flipped for s in range(6)}
    assert flips == {True, False}


def test_rescaling_input_size_in_the_same_warp():
    aug = geometric_only(size=128)
    points = np.random.default_rng(3).uniform(100, 156, size=(68, 2))
    params = aug.draw(np.random.default_rng(7), (S, S))
    img, out_pts = aug.apply(blob(*points[30]), points, params)
    assert img.shape == (128, 128, 3)
    j = int(np.flatnonzero(params.perm == 30)[0])
    assert np.linalg.norm(centroid(img) - out_pts[j]) < 0.25


def test_flip_keeps_left_and_right_on_their_sides():
    """After a flip, each mirror pair keeps its left/right order (the permutation renames them)."""
    pts = real_face()
    aug = Augment(IBUG68, S, flip=1.0, p_shift=0, p_rotation=0, occlusion=0, blur=0, gray=0)
    _, out, perm = aug(np.zeros((S, S, 3), np.uint8), pts, np.random.default_rng(0))
    assert not np.array_equal(perm, np.arange(68))
    checked = 0
    for a, b in IBUG68.mirror:
        ia, ib = IBUG68.index(a), IBUG68.index(b)
        if abs(pts[ia, 0] - pts[ib, 0]) > 10:
            assert np.sign(out[ia, 0] - out[ib, 0]) == np.sign(pts[ia, 0] - pts[ib, 0]), (a, b)
            checked += 1
    assert checked >= 10
    # and the geometry: x -> S - 1 - x, then the renaming
    assert np.allclose(out, np.c_[S - 1 - pts[:, 0], pts[:, 1]][IBUG68.flip_indices], atol=1e-4)


def test_unflippable_scheme_never_flips():
    from facemark.data.schemes import list_schemes
    unflippable = [get_scheme(n) for n in list_schemes() if not getattr(get_scheme(n), "flippable", True)]
    if not unflippable:
        pytest.skip("no scheme with flippable=False is registered")
    scheme = unflippable[0]
    aug = Augment(scheme, S, flip=1.0)
    n = scheme.num_points
    for s in range(20):
        _, out, perm = aug(np.zeros((S, S, 3), np.uint8), np.full((n, 2), 100.0),
                           np.random.default_rng(s))
        assert np.array_equal(perm, np.arange(n))
    assert Augment(IBUG68, S, flip=1.0).draw(np.random.default_rng(0)).flipped


# ----------------------------------------------------------------------- determinism, NaN
def test_same_rng_same_result_other_rng_other_result():
    aug = Augment.pipnet("300w68", S)
    img = np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)
    pts = np.random.default_rng(1).uniform(40, 210, (68, 2))
    a = aug(img, pts, np.random.default_rng(42))
    b = aug(img, pts, np.random.default_rng(42))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    differs = [not np.array_equal(aug(img, pts, np.random.default_rng(s))[0], a[0])
               for s in range(43, 48)]
    assert any(differs)


def test_nan_points_stay_nan_and_follow_the_permutation():
    aug = geometric_only(flip=1.0)
    pts = np.random.default_rng(2).uniform(60, 200, (68, 2))
    missing = [IBUG68.index("eye_r_00"), IBUG68.index("jaw_00"), IBUG68.index("lip_inner_07")]
    pts[missing] = np.nan
    _, out, perm = aug(np.zeros((S, S, 3), np.uint8), pts, np.random.default_rng(5))
    assert np.array_equal(np.isnan(out).any(axis=1), np.isnan(pts).any(axis=1)[perm])
    assert np.isnan(out[IBUG68.index("eye_l_03")]).all()       # the mirror of eye_r_00
    assert np.isfinite(out[IBUG68.index("eye_r_00")]).all()
    assert out.dtype == np.float32


# ----------------------------------------------------------------------- photometric steps
def test_occlusion_box_colour_and_size():
    aug = Augment(IBUG68, S, occlusion=1.0, flip=0, p_shift=0, p_rotation=0, blur=0, gray=0)
    img = np.full((S, S, 3), 7, np.uint8)
    seen = 0
    for s in range(10):
        params = aug.draw(np.random.default_rng(s))
        out, _ = aug.apply(img, None, params)
        changed = (out != 7).any(axis=2)
        assert changed.sum() <= (0.4 * S + 1) ** 2
        if params.occlusion is not None and changed.any():
            assert np.all(out[changed] == np.array(params.occlusion_colour))
            seen += 1
    assert seen >= 5


def test_occlusion_turns_with_the_image():
    """A rotated occluder is the rotated rectangle: its pixels agree with painting first."""
    import cv2
    aug = Augment(IBUG68, S, occlusion=1.0, flip=1.0, p_shift=0, rotation=30, p_rotation=1.0,
                  blur=0, gray=0)
    checked = 0
    for s in range(30):
        params = aug.draw(np.random.default_rng(s))
        if params.occlusion is None or cv2.contourArea(params.occlusion.astype(np.float32)) < 400:
            continue
        checked += 1
        ours, _ = aug.apply(np.zeros((S, S, 3), np.uint8), None, params)
        # paint the axis-aligned box first (in the pre-flip frame), then warp
        pre = np.zeros((S, S, 3), np.uint8)
        post_inv = invert_affine(params.matrix)      # no pre-occlusion steps here: pre = identity
        rect = transform_points(params.occlusion, post_inv)
        x0, y0 = np.round(rect.min(0) + 0.5).astype(int)
        x1, y1 = np.round(rect.max(0) + 0.5).astype(int)
        pre[y0:y1, x0:x1] = params.occlusion_colour
        warped = cv2.warpAffine(pre, params.matrix, (S, S), flags=cv2.INTER_NEAREST)
        a, b = (ours.any(axis=2)), (warped.any(axis=2))
        perimeter = cv2.arcLength(params.occlusion.astype(np.float32), True)
        assert (a ^ b).sum() <= perimeter, s
    assert checked >= 5


def test_probabilities_match_the_recipe():
    aug = Augment.pipnet(IBUG68, S)
    draws = [aug.draw(np.random.default_rng(s)) for s in range(3000)]
    assert abs(np.mean([d.flipped for d in draws]) - 0.5) < 0.04
    assert abs(np.mean([d.gray for d in draws]) - 0.2) < 0.03
    assert abs(np.mean([d.blur_sigma > 0 for d in draws]) - 0.3) < 0.04
    assert abs(np.mean([d.occlusion is not None for d in draws]) - 0.5) < 0.04
    assert max(d.blur_sigma for d in draws) <= 5.0
    shifts = [np.abs(d.matrix[:, 2]).max() for d in draws
              if np.allclose(d.matrix[:, :2], np.eye(2)) and not d.flipped]
    assert max(shifts) <= 30 + 1e-9 and max(shifts) > 25


def test_gray_and_blur():
    img = np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)
    gray = Augment(IBUG68, S, gray=1.0, flip=0, p_shift=0, p_rotation=0, occlusion=0, blur=0)
    out, _, _ = gray(img, None, np.random.default_rng(0))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    blur = Augment(IBUG68, S, blur=1.0, gray=0, flip=0, p_shift=0, p_rotation=0, occlusion=0)
    out, _, _ = blur(img, None, np.random.default_rng(3))
    assert out.astype(float).std() < img.astype(float).std() * 0.8


def test_presets():
    sep = Augment.sepbn("ibug68", 128)
    assert (sep.rotation, sep.p_rotation, sep.corner_jitter, sep.flip) == (25.0, 1.0, 0.15, 0.5)
    assert sep.shear > 0 and sep.occlusion == 0 and sep.blur == 0 and sep.gray == 0
    m = sep.draw(np.random.default_rng(0)).matrix
    assert not np.allclose(m, np.eye(2, 3))
    pip = Augment.pipnet("300w68")
    assert (pip.shift, pip.rotation, pip.flip, pip.occlusion, pip.blur, pip.gray) == \
        (30 / 256, 30.0, 0.5, 0.5, 0.3, 0.2)
    assert Augment.pipnet("300w68", rotation=10).rotation == 10
    assert "Augment('300w68'" in repr(pip)


@pytest.mark.parametrize("key,value", [("flip", 1.5), ("rotation", -1), ("scale", (1.2, 1.1)),
                                       ("occlusion_max", 2.0), ("blur", "often")])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        Augment(IBUG68, S, **{key: value})


def test_unknown_scheme_and_wrong_point_count():
    with pytest.raises(ConfigError, match="nosuch"):
        Augment("nosuch", S)
    with pytest.raises(ValueError, match="68 points, got 5"):
        Augment(get_scheme("300w68"), S)(np.zeros((S, S, 3), np.uint8), np.zeros((5, 2)),
                                         np.random.default_rng(0))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("tx,ty", [(0, 0), (7, -3), (-30, 30), (300, 0), (0, -256), (-255, 255)])
def test_shift_flip_copy_equals_warp_affine(flip, tx, ty):
    import cv2
    from facemark.data.augment import _shift_flip_copy
    img = np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)
    m = np.array([[-1.0, 0.0, S - 1.0 + tx], [0.0, 1.0, ty]]) if flip else \
        np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])
    fast = _shift_flip_copy(img, m, S, 0)
    ref = cv2.warpAffine(img, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0))
    assert fast is not None and np.array_equal(fast, ref)
    assert _shift_flip_copy(img, m + [[0, 0, 0.5], [0, 0, 0]], S, 0) is None
    assert _shift_flip_copy(img, np.array([[1.0, 0.1, 0], [0, 1, 0]]), S, 0) is None

"""Landmark schemes and conversions: structure, mirror permutations, and real-data checks.

Real-data tests read ``../shared/data`` (300-W subsets and the mmpose COCO-JSON samples of
WFLW, COFW, AFLW and LaPa) and skip when it is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facemark.data.convert import (LandmarkConversion, convert_landmarks, get_conversion,
                                   list_conversions)
from facemark.data.schemes import (NME_NORMS, LandmarkScheme, get_scheme, list_schemes,
                                   register_scheme, scheme_for_count)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MMPOSE = DATA / "samples" / "mmpose"

ALL = list_schemes()
FLIPPABLE = [n for n in ALL if get_scheme(n).flippable]

# Mirror permutations as PIPNet's lib/train.py writes them (WFLW 0-based, the others
# 1-based), cross-checked with mmpose's configs/_base_/datasets/{wflw,cofw,aflw,lapa}.py.
PIPNET_FLIP = {
    "300w68": np.array([17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 27, 26, 25,
                        24, 23, 22, 21, 20, 19, 18, 28, 29, 30, 31, 36, 35, 34, 33, 32, 46, 45,
                        44, 43, 48, 47, 40, 39, 38, 37, 42, 41, 55, 54, 53, 52, 51, 50, 49, 60,
                        59, 58, 57, 56, 65, 64, 63, 62, 61, 68, 67, 66]) - 1,
    "wflw98": np.array([32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
                        14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 46, 45, 44, 43, 42,
                        50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38, 51, 52, 53, 54, 59,
                        58, 57, 56, 55, 72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67,
                        66, 65, 82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89,
                        88, 95, 94, 93, 97, 96]),
    "cofw29": np.array([2, 1, 4, 3, 7, 8, 5, 6, 10, 9, 12, 11, 15, 16, 13, 14, 18, 17, 20, 19,
                        21, 22, 24, 23, 25, 26, 27, 28, 29]) - 1,
    "aflw19": np.array([6, 5, 4, 3, 2, 1, 12, 11, 10, 9, 8, 7, 15, 14, 13, 18, 17, 16, 19]) - 1,
    "lapa106": np.array([33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
                         16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 47, 46, 45, 44,
                         43, 51, 50, 49, 48, 38, 37, 36, 35, 34, 42, 41, 40, 39, 52, 53, 54, 55,
                         66, 65, 64, 63, 62, 61, 60, 59, 58, 57, 56, 80, 79, 78, 77, 76, 83, 82,
                         81, 84, 71, 70, 69, 68, 67, 74, 73, 72, 75, 91, 90, 89, 88, 87, 86, 85,
                         96, 95, 94, 93, 92, 101, 100, 99, 98, 97, 104, 103, 102, 106,
                         105]) - 1,
}
# 0-based NME normalising points (REFERENCE.md, PIPNet lib/test.py, mmpose metrics).
NME_POINTS = {"300w68": [36, 45], "wflw98": [60, 72], "cofw29": [8, 9], "lapa106": [66, 79],
              "face5": [0, 1]}
# A midline point per scheme, for the label-free yaw estimate of near-frontal faces.
NOSE_TIP = {"300w68": "nose_bridge_03", "wflw98": "nose_bridge_03",
            "lapa106": "nose_bridge_03", "cofw29": "nose_tip", "aflw19": "nose_tip",
            "face5": "nose_tip"}
MMPOSE_SAMPLES = {"wflw98": "wflw", "cofw29": "cofw", "aflw19": "aflw", "lapa106": "lapa"}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data next to the repository)")
    return path


def _coco_points(folder: str) -> np.ndarray:
    """All faces of a mmpose COCO-style JSON sample as (F, N, 2); keypoints are x, y, v."""
    path = next(_need(MMPOSE / folder).glob("*.json"))
    anns = json.loads(path.read_text())["annotations"]
    kp = np.array([a["keypoints"] for a in anns], dtype=np.float64)
    return kp.reshape(len(anns), -1, 3)[..., :2]


def _300w_points() -> np.ndarray:
    from facemark.data.formats import open_dataset
    samples = open_dataset(_need(DATA / "300w"), format="pts")
    return np.stack([s.landmarks for s in samples]).astype(np.float64)


def _yaw_proxy(scheme: LandmarkScheme, pts: np.ndarray) -> np.ndarray:
    """|nose tip - eye-corner midpoint| / eye-corner distance along x; needs no side labels."""
    a, b = scheme.indices(scheme.outer_eye_corners)
    n = scheme.index(NOSE_TIP[scheme.name])
    mid = (pts[:, a, 0] + pts[:, b, 0]) / 2
    return np.abs(pts[:, n, 0] - mid) / np.abs(pts[:, a, 0] - pts[:, b, 0])


def _sided_pairs(scheme: LandmarkScheme) -> list[tuple[str, str]]:
    """Mirror pairs whose names say a side, as (subject-left name, subject-right name)."""
    out = []
    for a, b in scheme.mirror:
        sa = scheme.sides[scheme.index(a)]
        if sa:
            out.append((a, b) if sa == "left" else (b, a))
    return out


def _left_is_image_right(scheme: LandmarkScheme, pts: np.ndarray) -> np.ndarray:
    """(F, P) bool: the subject-left point of each sided pair lies right of its partner."""
    left, right = zip(*_sided_pairs(scheme))
    return pts[:, scheme.indices(left), 0] > pts[:, scheme.indices(right), 0]


def _pairs_straddle_midline(scheme: LandmarkScheme, pts: np.ndarray) -> np.ndarray:
    """(F, P) bool: the two points of every mirror pair lie on opposite sides of the midline.

    Positions are projected on the eye-corner axis; the midline is the mean projection of
    the scheme's unpaired (midline) points. No side label is used, so this also checks the
    pairs whose names say no side (jaw, nose, lips).
    """
    a, b = scheme.indices(scheme.outer_eye_corners)
    axis = pts[:, b] - pts[:, a]
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    proj = (pts * axis[:, None]).sum(-1)
    midline = np.flatnonzero(scheme.flip_indices == np.arange(scheme.num_points))
    centre = proj[:, midline].mean(1, keepdims=True)
    first = scheme.indices([p for p, _ in scheme.mirror])
    second = scheme.indices([q for _, q in scheme.mirror])
    return (proj[:, first] - centre) * (proj[:, second] - centre) < 0


# ---------------------------------------------------------------------------------------
# every registered scheme
# ---------------------------------------------------------------------------------------
def test_all_schemes_registered():
    assert set(ALL) == {"300w68", "wflw98", "cofw29", "aflw19", "menpo39", "lapa106", "face5"}


@pytest.mark.parametrize("name", ALL)
def test_scheme_validates_and_names_are_unique(name):
    s = get_scheme(name)
    s.validate()
    assert len(set(s.names)) == s.num_points
    assert scheme_for_count(s.num_points) is s
    for alias in (s.name, *s.aliases):
        assert get_scheme(alias) is s


@pytest.mark.parametrize("name", ALL)
def test_regions_partition_the_points(name):
    s = get_scheme(name)
    listed = [n for names in s.regions.values() for n in names]
    assert len(listed) == len(set(listed)), "a point is in two regions"
    assert set(listed) == set(s.names), "a point is in no region"
    for a, b in s.skeleton:
        s.index(a), s.index(b)


@pytest.mark.parametrize("name", FLIPPABLE)
def test_flip_indices_is_an_involution(name):
    s = get_scheme(name)
    perm = s.flip_indices
    assert sorted(perm.tolist()) == list(range(s.num_points))
    np.testing.assert_array_equal(perm[perm], np.arange(s.num_points))
    moved = np.flatnonzero(perm != np.arange(s.num_points))
    assert len(moved) == 2 * len(s.mirror)


@pytest.mark.parametrize("name", sorted(PIPNET_FLIP))
def test_mirror_permutation_matches_pipnet_and_mmpose(name):
    np.testing.assert_array_equal(get_scheme(name).flip_indices, PIPNET_FLIP[name])


@pytest.mark.parametrize("name", ALL)
def test_nme_normaliser_points_exist(name):
    s = get_scheme(name)
    assert s.nme_norm in NME_NORMS
    if s.nme_norm == "inter_ocular":
        assert s.outer_eye_corners is not None
    if s.nme_norm == "inter_pupil":
        assert s.eye_contours is not None
    if s.outer_eye_corners is not None:
        right, left = s.outer_eye_corners
        assert (s.sides[s.index(right)], s.sides[s.index(left)]) == ("right", "left")
    for contour, side in zip(s.eye_contours or (), ("right", "left")):
        assert {s.sides[i] for i in s.indices(contour)} == {side}


@pytest.mark.parametrize("name,points", sorted(NME_POINTS.items()))
def test_nme_points_are_the_published_indices(name, points):
    s = get_scheme(name)
    assert s.nme_norm == "inter_ocular"
    assert s.indices(s.outer_eye_corners).tolist() == points


def test_box_normalised_schemes():
    assert get_scheme("aflw19").nme_norm == "box"
    assert get_scheme("menpo39").nme_norm == "box_diag"


@pytest.mark.parametrize("name", FLIPPABLE)
def test_mirror_pairs_pair_left_with_right_names(name):
    s = get_scheme(name)
    paired = {n for pair in s.mirror for n in pair}
    for a, b in s.mirror:
        sa, sb = s.sides[s.index(a)], s.sides[s.index(b)]
        if sa or sb:
            assert {sa, sb} == {"left", "right"}, (a, b)
            # the partner's name is the same part with the side swapped (contour numbers
            # run across the face, so they may differ)
            swap = {"l": "r", "r": "l", "left": "right", "right": "left"}
            stem_a = [swap.get(t, t) for t in a.split("_") if not t.isdigit()]
            assert stem_a == [t for t in b.split("_") if not t.isdigit()], (a, b)
    for n, side in zip(s.names, s.sides):
        if side:
            assert n in paired, f"{n} says a side but has no mirror partner"


def test_profile_scheme_is_not_flippable():
    s = get_scheme("menpo39")
    assert not s.flippable and s.mirror == ()
    with pytest.raises(ValueError, match="not flippable"):
        s.flip_indices
    with pytest.raises(ValueError, match="not flippable"):
        s.flip_points(np.zeros((39, 2)), 100)


# ---------------------------------------------------------------------------------------
# validation catches broken declarations
# ---------------------------------------------------------------------------------------
def _toy(**kw) -> LandmarkScheme:
    base = dict(name="toy", names=("eye_r", "eye_l", "nose"), mirror=(("eye_r", "eye_l"),),
                regions={}, nme_norm="inter_ocular", outer_eye_corners=("eye_r", "eye_l"))
    return LandmarkScheme(**{**base, **kw})


def test_toy_scheme_is_valid():
    _toy().validate()


@pytest.mark.parametrize("kw,match", [
    (dict(names=("eye_r", "eye_r", "nose")), "duplicate"),
    (dict(mirror=(("eye_r", "eye_l"), ("eye_l", "nose"))), "two mirror pairs"),
    (dict(mirror=(("eye_r", "nose"),)), "left name with a right one"),
    (dict(mirror=()), "no mirror partner"),
    (dict(flippable=False), "flippable=False"),
    (dict(nme_norm="iod"), "nme_norm"),
    (dict(outer_eye_corners=None), "outer_eye_corners"),
])
def test_validate_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        _toy(**kw).validate()


def test_register_twice_and_unknown_name():
    with pytest.raises(ValueError, match="registered twice"):
        register_scheme(_toy(name="300w68"))
    with pytest.raises(KeyError, match="known schemes"):
        get_scheme("wflw99")


# ---------------------------------------------------------------------------------------
# flipping: image flip + permutation agree with mirrored points
# ---------------------------------------------------------------------------------------
@st.composite
def _marked_image(draw):
    scheme = get_scheme(draw(st.sampled_from(FLIPPABLE)))
    n = scheme.num_points
    h = draw(st.integers(11, 40))
    w = draw(st.integers(11, 40))
    cells = draw(st.lists(st.integers(0, h * w - 1), min_size=n, max_size=n, unique=True))
    ys, xs = np.divmod(np.array(cells), w)
    return scheme, h, w, np.stack([xs, ys], axis=1).astype(np.float64)


@settings(max_examples=60, deadline=None)
@given(_marked_image())
def test_image_flip_with_permutation_matches_flip_points(case):
    scheme, h, w, pts = case
    image = np.zeros((h, w), dtype=np.int32)
    image[pts[:, 1].astype(int), pts[:, 0].astype(int)] = np.arange(1, len(pts) + 1)
    flipped = image[:, ::-1]
    # where each original point ended up in the flipped image
    ys, xs = np.nonzero(flipped)
    moved = np.zeros_like(pts)
    moved[flipped[ys, xs] - 1] = np.stack([xs, ys], axis=1)
    # the flipped face's point i is the original point flip_indices[i]
    expected = moved[scheme.flip_indices]
    np.testing.assert_array_equal(scheme.flip_points(pts, w), expected)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FLIPPABLE), st.floats(1, 4096), st.integers(1, 3), st.data())
def test_flip_points_twice_is_identity(name, width, batch, data):
    s = get_scheme(name)
    pts = np.array(data.draw(st.lists(st.floats(-1e4, 1e4), min_size=batch * s.num_points * 2,
                                      max_size=batch * s.num_points * 2)))
    pts = pts.reshape(batch, s.num_points, 2)
    np.testing.assert_allclose(s.flip_points(s.flip_points(pts, width), width), pts,
                               rtol=0, atol=1e-6)


def test_flip_points_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 68, 2\)"):
        get_scheme("300w68").flip_points(np.zeros((67, 2)), 10)


# ---------------------------------------------------------------------------------------
# real data: subject-left points lie on the image right of near-frontal faces
# ---------------------------------------------------------------------------------------
def test_300w_left_right_on_real_faces():
    s = get_scheme("300w68")
    pts = _300w_points()
    frontal = pts[_yaw_proxy(s, pts) < 0.2]
    assert len(frontal) > 500, f"only {len(frontal)} near-frontal faces of {len(pts)}"
    ok = _left_is_image_right(s, frontal)
    assert ok.all(1).mean() > 0.98, f"faces with every sided pair right: {ok.all(1).mean():.3f}"
    assert ok.mean(0).min() > 0.98, f"worst pair: {ok.mean(0).min():.3f}"
    straddle = _pairs_straddle_midline(s, frontal)
    assert straddle.mean(0).min() > 0.95, f"worst pair across the midline: {straddle.mean(0).min():.3f}"
    # flipping the image (x -> W-1-x) with the permutation keeps the convention; without it
    # every sided pair would be on the wrong side
    flipped = s.flip_points(frontal, 1000)
    assert _left_is_image_right(s, flipped).mean() > 0.98
    mirrored_only = np.stack([999 - frontal[..., 0], frontal[..., 1]], axis=-1)
    assert _left_is_image_right(s, mirrored_only).mean() < 0.02


@pytest.mark.parametrize("name", sorted(MMPOSE_SAMPLES))
def test_mmpose_samples_left_right(name):
    s = get_scheme(name)
    pts = _coco_points(MMPOSE_SAMPLES[name])
    assert pts.shape[1] == s.num_points
    frontal = pts[_yaw_proxy(s, pts) < 0.3]
    assert len(frontal) >= 1, f"no near-frontal face among the {len(pts)} {name} samples"
    assert _left_is_image_right(s, frontal).all()
    assert _pairs_straddle_midline(s, frontal).all()
    assert _left_is_image_right(s, s.flip_points(frontal, 2000)).all()


def test_300w_face5_conversion_left_right():
    pts = _300w_points()
    s68, s5 = get_scheme("300w68"), get_scheme("face5")
    frontal = pts[_yaw_proxy(s68, pts) < 0.2]
    five = convert_landmarks(frontal, "300w68", "face5")
    assert _left_is_image_right(s5, five).mean(0).min() > 0.98
    np.testing.assert_allclose(five[:, s5.index("eye_r")],
                               frontal[:, s68.indices(s68.eye_contours[0])].mean(1))


# ---------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------
def _pipnet_wflw_to_68(p: np.ndarray) -> np.ndarray:
    """Reference: PIPNet's lib/preprocess.py convert_wflw index formula, exact thirds."""
    out = np.zeros(p.shape[:-2] + (68, 2))
    out[..., 0:17, :] = p[..., 0:33:2, :]
    out[..., 17, :] = p[..., 33, :]
    for k, (up, low) in enumerate([(34, 41), (35, 40), (36, 39), (37, 38),
                                   (42, 50), (43, 49), (44, 48), (45, 47)]):
        out[..., 18 + k, 0] = p[..., up, 0]
        out[..., 18 + k, 1] = (p[..., up, 1] + p[..., low, 1]) / 2
    out[..., 26, :] = p[..., 46, :]
    out[..., 27:36, :] = p[..., 51:60, :]
    for base68, base98 in ((36, 60), (42, 68)):
        e = p[..., base98:base98 + 8, :]
        out[..., base68 + 0, :] = e[..., 0, :]
        out[..., base68 + 1, :] = 2 / 3 * e[..., 1, :] + 1 / 3 * e[..., 2, :]
        out[..., base68 + 2, :] = 2 / 3 * e[..., 3, :] + 1 / 3 * e[..., 2, :]
        out[..., base68 + 3, :] = e[..., 4, :]
        out[..., base68 + 4, :] = 2 / 3 * e[..., 5, :] + 1 / 3 * e[..., 6, :]
        out[..., base68 + 5, :] = 2 / 3 * e[..., 7, :] + 1 / 3 * e[..., 6, :]
    out[..., 48:68, :] = p[..., 76:96, :]
    return out


def test_wflw_to_68_on_real_samples():
    wflw = _coco_points("wflw")
    s98, s68 = get_scheme("wflw98"), get_scheme("300w68")
    out = convert_landmarks(wflw, "wflw98", "300w68")
    assert out.shape == (len(wflw), 68, 2)
    # the converted outer eye corners are the WFLW ones, so NME normalisers agree
    np.testing.assert_array_equal(out[:, s68.indices(s68.outer_eye_corners)],
                                  wflw[:, s98.indices(s98.outer_eye_corners)])
    np.testing.assert_allclose(out, _pipnet_wflw_to_68(wflw), rtol=0, atol=1e-9)
    frontal = out[_yaw_proxy(s68, out) < 0.3]
    assert len(frontal) >= 1
    assert _left_is_image_right(s68, frontal).all()
    assert _pairs_straddle_midline(s68, frontal).all()


@pytest.mark.parametrize("src", ["wflw98", "cofw29", "aflw19", "lapa106"])
def test_face5_from_real_samples(src):
    pts = _coco_points(MMPOSE_SAMPLES[src])
    five = convert_landmarks(pts, src, "face5")
    s5 = get_scheme("face5")
    frontal = five[_yaw_proxy(s5, five) < 0.3]
    assert len(frontal) >= 1
    assert _left_is_image_right(s5, frontal).all()
    # the nose tip lies between the eyes and the mouth corners vertically
    eyes_y = frontal[:, s5.indices(["eye_r", "eye_l"]), 1].mean(1)
    mouth_y = frontal[:, s5.indices(["mouth_r", "mouth_l"]), 1].mean(1)
    nose_y = frontal[:, s5.index("nose_tip"), 1]
    assert np.all((eyes_y < nose_y) & (nose_y < mouth_y))


@pytest.mark.parametrize("key", list_conversions())
def test_conversion_weights_are_affine(key):
    conv = get_conversion(*key)
    conv.validate()
    wx, wy = conv.weights
    np.testing.assert_allclose(wx.sum(1), 1.0)
    np.testing.assert_allclose(wy.sum(1), 1.0)
    assert wx.shape == (conv.dst_scheme.num_points, conv.src_scheme.num_points)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list_conversions()), st.floats(-500, 500), st.floats(-500, 500),
       st.integers(0, 2**32 - 1))
def test_conversion_commutes_with_shift(key, dx, dy, seed):
    conv = get_conversion(*key)
    pts = np.random.default_rng(seed).uniform(0, 500, (2, conv.src_scheme.num_points, 2))
    shift = np.array([dx, dy])
    np.testing.assert_allclose(conv(pts + shift), conv(pts) + shift, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list_conversions()), st.data())
def test_nan_source_point_makes_exactly_its_targets_nan(key, data):
    conv = get_conversion(*key)
    n = conv.src_scheme.num_points
    j = data.draw(st.integers(0, n - 1))
    axis = data.draw(st.integers(0, 1))
    pts = np.random.default_rng(j).uniform(0, 100, (n, 2))
    pts[j, axis] = np.nan
    out = conv(pts)
    wx, wy = conv.weights
    depends = (wx[:, j] != 0) | (wy[:, j] != 0)
    np.testing.assert_array_equal(np.isnan(out).any(1), depends)
    np.testing.assert_array_equal(np.isnan(out).all(1), depends)


def test_convert_shapes_dtypes_and_errors():
    pts = np.random.default_rng(0).uniform(0, 100, (2, 3, 98, 2)).astype(np.float32)
    out = convert_landmarks(pts, "wflw", "68")               # aliases work
    assert out.shape == (2, 3, 68, 2) and out.dtype == np.float32
    assert convert_landmarks(pts.astype(np.float64), "wflw98", "300w68").dtype == np.float64
    same = convert_landmarks(pts, "wflw98", "wflw98")
    np.testing.assert_array_equal(same, pts)
    assert same is not pts
    with pytest.raises(ValueError, match="known conversions: .*wflw98->300w68"):
        convert_landmarks(pts, "300w68", "wflw98")
    with pytest.raises(ValueError, match=r"\(\.\.\., 98, 2\), got \(97, 2\)"):
        convert_landmarks(np.zeros((97, 2)), "wflw98", "300w68")
    with pytest.raises(ValueError, match=r"\(\.\.\., 98, 2\), got \(97, 2\)"):
        convert_landmarks(np.zeros((97, 2)), "wflw98", "wflw98")
    with pytest.raises(KeyError, match="known schemes"):
        convert_landmarks(pts, "wflw97", "300w68")


def test_conversion_validation_rejects_incomplete_or_unbalanced_rules():
    rules = {"eye_r": (("eye_r_00", 1.0, 1.0),), "eye_l": (("eye_l_03", 1.0, 1.0),),
             "nose_tip": (("nose_bridge_03", 1.0, 1.0),),
             "mouth_r": (("lip_outer_00", 1.0, 1.0),)}
    with pytest.raises(ValueError, match="no rule for"):
        LandmarkConversion("300w68", "face5", rules).validate()
    rules["mouth_l"] = (("lip_outer_06", 0.5, 1.0),)
    with pytest.raises(ValueError, match="x weights of 'mouth_l' sum to 0.5"):
        LandmarkConversion("300w68", "face5", rules).validate()
    rules["mouth_l"] = (("lip_outer_99", 1.0, 1.0),)
    with pytest.raises(KeyError, match="lip_outer_99"):
        LandmarkConversion("300w68", "face5", rules).validate()

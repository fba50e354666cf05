"""Aligned face chips: the similarity fit, the templates, dlib's get_face_chip, errors.

The dlib checks run dlib's own ``get_face_chip`` on real 300-W LFPW test faces with their
ground-truth points (../shared/data, skipped where absent). Where a chip corner lies in the
image is read from the chip itself: chipping an image whose pixel values are their own x
(or y) coordinate gives, at each chip pixel, the image position dlib sampled there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import facemark
from facemark.data.formats import open_dataset
from facemark.data.images import read_image
from facemark.data.schemes import get_scheme
from facemark.data.templates import ARCFACE, DLIB
from facemark.errors import ConfigError, FacemarkError
from facemark.inference.align import align, chip_corners, chip_matrix, similarity, warp_chip

LFPW_TEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "300w" / "lfpw" / "testset"
dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed")


def _similarity_matrix(angle_deg: float, scale: float, shift) -> np.ndarray:
    a = np.radians(angle_deg)
    lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.c_[lin, shift]


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (12, 2))
    m = _similarity_matrix(23.0, 1.7, [5.0, -40.0])
    np.testing.assert_allclose(similarity(src, src @ m[:, :2].T + m[:, 2]), m, atol=1e-9)


def test_arcface_chip_puts_template_shaped_points_on_the_template():
    # 5 points in the arcface layout, moved by a similarity: the chip undoes it exactly
    layout = ARCFACE.layout(112, 0.0)
    m = _similarity_matrix(-31.0, 2.3, [300.0, 120.0])
    face5 = layout @ m[:, :2].T + m[:, 2]
    chip = chip_matrix(face5, template="arcface", scheme="face5")
    np.testing.assert_allclose(chip[:, :2] @ face5.T + chip[:, 2:], layout.T, atol=1e-6)
    # insightface's 112 px layout itself, at the default size and padding
    np.testing.assert_allclose(layout[0], [38.2946, 51.6963], atol=1e-9)
    # padding shrinks the layout about the chip's centre
    padded = ARCFACE.layout(112, 0.25)
    np.testing.assert_allclose((padded - 56) * 1.5, layout - 56, atol=1e-9)


def test_any_scheme_with_a_five_point_conversion_gets_an_arcface_chip():
    # aflw19 converts to face5 (eye centres, nose tip, mouth corners)
    aflw = get_scheme("aflw19")
    pts = np.zeros((aflw.num_points, 2))
    layout = {n: p for n, p in zip(ARCFACE.names, ARCFACE.layout(112, 0.0))}
    for name, face5_name in (("eye_r_centre", "eye_r"), ("eye_l_centre", "eye_l"),
                             ("nose_tip", "nose_tip"), ("mouth_r", "mouth_r"),
                             ("mouth_l", "mouth_l")):
        pts[aflw.index(name)] = layout[face5_name] * 2 + 10
    chip = chip_matrix(pts, scheme="aflw19")
    got = pts[aflw.indices(["eye_r_centre", "mouth_l"])] @ chip[:, :2].T + chip[:, 2]
    np.testing.assert_allclose(got, [layout["eye_r"], layout["mouth_l"]], atol=1e-6)


def test_schemes_without_the_template_points_are_refused_clearly():
    with pytest.raises(FacemarkError, match="needs the points of scheme 'face5'.*'menpo39'"):
        chip_matrix(np.zeros((39, 2)), scheme="menpo39")
    with pytest.raises(FacemarkError, match="needs the points of scheme '300w68'.*'aflw19'"):
        chip_matrix(np.zeros((19, 2)), scheme="aflw19", template="dlib")
    pts = np.random.default_rng(1).uniform(0, 100, (68, 2))
    pts[36] = np.nan                                       # an eye corner arcface needs
    with pytest.raises(FacemarkError, match="finite"):
        chip_matrix(pts, scheme="300w68")


def test_bad_arguments_name_what_to_change():
    pts = np.random.default_rng(2).uniform(0, 100, (68, 2))
    with pytest.raises(ConfigError, match="unknown chip template 'vgg'.*arcface, dlib"):
        chip_matrix(pts, scheme="300w68", template="vgg")
    with pytest.raises(ConfigError, match="size"):
        chip_matrix(pts, size=0, scheme="300w68")
    with pytest.raises(ConfigError, match="padding"):
        chip_matrix(pts, padding=-0.1, scheme="300w68")
    with pytest.raises(ConfigError, match="scheme=NAME"):
        chip_matrix(pts)


def test_chip_keeps_the_array_channel_order_and_dtype():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)
    pts = DLIB.layout(100, 0.2) * 1.3 + 20
    face = np.full((68, 2), 50.0)
    face[get_scheme("300w68").indices(DLIB.names)] = pts
    rgb = align(image, face, template="dlib", scheme="300w68")
    bgr = align(np.ascontiguousarray(image[:, :, ::-1]), face, template="dlib", scheme="300w68")
    assert rgb.shape == (150, 150, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    grey = align(image[:, :, 0].astype(np.float32), face, size=64, template="dlib",
                 scheme="300w68")
    assert grey.shape == (64, 64) and grey.dtype == np.float32


def test_warp_samples_where_the_matrix_says_also_when_shrinking():
    # chipping a coordinate image shows where each chip pixel sampled the image
    h, w = 600, 700
    xs = np.tile(np.arange(w, dtype=np.float64), (h, 1))
    for scale in (0.8, 0.2):                                # 0.2: 5 image px per chip px
        m = _similarity_matrix(17.0, scale, [0.0, 0.0])
        m[:, 2] = 40.0 - m[:, :2] @ [350.0, 300.0]          # image (350, 300) -> chip (40, 40)
        chip = warp_chip(xs, m, 80)
        corners = chip_corners(m, 80)
        got = [chip[0, 0], chip[0, 79], chip[79, 79], chip[79, 0]]
        # cv2.warpAffine places samples to 1/32 of a (shrunk image's) pixel
        np.testing.assert_allclose(got, corners[:, 0], atol=0.05 / scale)


def test_public_api_exposes_align():
    assert facemark.align is align
    assert "align" in dir(facemark)


# ---------------------------------------------------------------------------------------
# dlib
# ---------------------------------------------------------------------------------------
def _lfpw_faces(count: int):
    if not LFPW_TEST.is_dir():
        pytest.skip(f"real data not found at {LFPW_TEST} (../shared/data next to the repository)")
    return open_dataset(LFPW_TEST)[:count]


def _dlib_detection(points: np.ndarray, offset: float = 0.0):
    parts = [dlib.point(int(x + offset), int(y + offset)) for x, y in points]
    return dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts)


def dlib_chip_corners(points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """(4, 2) image positions dlib.get_face_chip samples at the chip's corner pixels, read
    from chips of coordinate images (points are whole pixels, as dlib holds them)."""
    margin = int(points.max()) + 200                        # keep every corner inside
    n = int(points.max()) + 2 * margin
    xs = np.tile(np.arange(n, dtype=np.float64), (n, 1)) - margin
    det = _dlib_detection(points, margin)
    cx = dlib.get_face_chip(xs, det, size=size, padding=padding)
    cy = dlib.get_face_chip(np.ascontiguousarray(xs.T), det, size=size, padding=padding)
    s = size - 1
    return np.array([[cx[r, c], cy[r, c]] for r, c in ((0, 0), (0, s), (s, s), (s, 0))])


@pytest.mark.shared_data
@pytest.mark.parametrize("size,padding", [(150, 0.25), (64, 0.0), (256, 0.5)])
def test_dlib_template_matches_dlib_get_face_chip_within_a_pixel(size, padding):
    worst = 0.0
    for sample in _lfpw_faces(12):
        points = np.round(sample.landmarks)                 # dlib holds whole pixels
        ours = chip_corners(chip_matrix(points, size, padding, "dlib", scheme="300w68"), size)
        worst = max(worst, float(np.abs(ours - dlib_chip_corners(points, size, padding)).max()))
    assert worst <= 1.0, f"chip corners {worst:.2f} px from dlib's"


@pytest.mark.shared_data
def test_dlib_style_chip_looks_like_dlibs():
    for sample in _lfpw_faces(4):
        image = read_image(sample.image)
        points = np.round(sample.landmarks)
        theirs = dlib.get_face_chip(image, _dlib_detection(points)).astype(np.float64)
        ours = align(image, points, template="dlib", scheme="300w68").astype(np.float64)
        assert ours.shape == theirs.shape == (150, 150, 3)
        assert np.abs(ours - theirs).mean() < 3.0            # grey levels of 255
        # and the default 5-point chip is a different, tighter crop of the same face
        assert align(image, points, scheme="300w68").shape == (112, 112, 3)


def test_wflw_points_get_a_dlib_chip_through_their_68_point_conversion():
    from facemark.data.convert import convert_landmarks

    pts98 = np.random.default_rng(4).uniform(100, 300, (98, 2))
    a = chip_matrix(pts98, template="dlib", scheme="wflw98")
    b = chip_matrix(convert_landmarks(pts98, "wflw98", "300w68"), template="dlib", scheme="300w68")
    np.testing.assert_allclose(a, b, atol=1e-9)

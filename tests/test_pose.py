"""Head pose: angle conventions on synthetic projections, and label-free checks on real photos.

The real-photo checks need no pose labels: a mirrored photo flips the signs of yaw and roll
and keeps pitch; rotating a photo in its plane by a known angle adds that angle to roll and
leaves yaw and pitch nearly unchanged; a frontal passport-style photo is near zero. They run
the bundled default model on ../shared/data/photos (skipped where absent).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import facemark
from facemark.api import bundled_models
from facemark.data.schemes import get_scheme
from facemark.data.templates import FACE_MODELS, MEAN_FACE_3D
from facemark.errors import FacemarkError
from facemark.data.predictions import PredictedFace, read_predictions, write_predictions
from facemark.data.face import Face
from facemark.data.pose import (angles_from_rotation, estimate_pose, guess_camera,
                                rotation_from_angles)

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"
needs_model = pytest.mark.skipif(".pt" not in bundled_models().get("default", {}),
                                 reason="no bundled default model")
W, H = 640, 480


def project(yaw, pitch, roll, distance=600.0, shift=(0.0, 0.0), scheme="300w68",
            camera=None) -> np.ndarray:
    """(N, 2) pixels of the 3D mean face posed by the angles, in a W x H guessed camera."""
    model = FACE_MODELS[0] if scheme == "300w68" else FACE_MODELS[1]
    names = get_scheme(scheme).names
    obj = np.array([model.points.get(n, (0.0, 60.0, 40.0)) for n in names])  # jaw: unused
    rvec = cv2.Rodrigues(rotation_from_angles(yaw, pitch, roll))[0]
    tvec = np.array([shift[0], shift[1], distance])
    k = guess_camera(W, H) if camera is None else camera
    return cv2.projectPoints(obj, rvec, tvec, k, np.zeros(5))[0].reshape(-1, 2)


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (25, -10, 5), (-40, 15, -20),
                                            (10, 30, 60)])
def test_exact_projection_gives_back_its_angles(yaw, pitch, roll):
    pose = estimate_pose(project(yaw, pitch, roll, shift=(40, -30)), "300w68", image_size=(W, H))
    np.testing.assert_allclose([pose.yaw, pose.pitch, pose.roll], [yaw, pitch, roll], atol=1e-3)
    np.testing.assert_allclose(pose.tvec, [40, -30, 600], atol=1e-2)
    assert pose.error < 1e-3


def test_angle_signs_mean_what_the_docs_say():
    s = get_scheme("300w68")
    nose, eye_r, eye_l = s.index("nose_bridge_03"), s.index("eye_r_00"), s.index("eye_l_03")
    front = project(0, 0, 0)
    # yaw > 0: the face turns to the image's right, so the nose moves right of the eyes
    p = project(20, 0, 0)
    assert p[nose, 0] - (p[eye_r, 0] + p[eye_l, 0]) / 2 > 10
    # pitch > 0: chin up, the nose tip rises towards the eyes
    p = project(0, 20, 0)
    assert (p[nose, 1] - p[eye_r, 1]) < (front[nose, 1] - front[eye_r, 1]) - 5
    # roll > 0: counter-clockwise in the image, the subject's left eye (image right) rises
    p = project(0, 0, 20)
    assert p[eye_l, 1] < p[eye_r, 1] - 10


def test_rotation_and_angles_round_trip():
    rng = np.random.default_rng(0)
    for yaw, pitch, roll in rng.uniform([-80, -80, -170], [80, 80, 170], (50, 3)):
        got = angles_from_rotation(rotation_from_angles(yaw, pitch, roll))
        np.testing.assert_allclose(got, [yaw, pitch, roll], atol=1e-9)


def test_mirrored_points_flip_yaw_and_roll_exactly():
    pts = project(25, -12, 8, shift=(0, 0))
    mirrored = get_scheme("300w68").flip_points(pts, W)
    a = estimate_pose(pts, "300w68", image_size=(W, H))
    b = estimate_pose(mirrored, "300w68", image_size=(W, H))
    np.testing.assert_allclose([b.yaw, b.pitch, b.roll], [-a.yaw, a.pitch, -a.roll], atol=1e-3)


def test_five_point_schemes_use_the_five_point_face_and_others_are_refused():
    pose = estimate_pose(project(15, 5, -10, scheme="face5"), "face5", image_size=(W, H))
    assert pose.model == "mean68_face5"
    np.testing.assert_allclose([pose.yaw, pose.pitch, pose.roll], [15, 5, -10], atol=0.5)
    with pytest.raises(FacemarkError, match="head pose needs the points of scheme '300w68' or "
                                            "'face5'.*'menpo39'"):
        estimate_pose(np.zeros((39, 2)), "menpo39", image_size=(W, H))
    with pytest.raises(FacemarkError, match="image_size=.*camera_matrix"):
        estimate_pose(project(0, 0, 0), "300w68")


def test_your_camera_overrides_the_guess():
    k = guess_camera(W, H)
    k[0, 0] = k[1, 1] = 2.0 * k[0, 0]                         # a longer lens
    pts = project(20, 0, 10, camera=k)
    ours = estimate_pose(pts, "300w68", camera_matrix=k)
    np.testing.assert_allclose([ours.yaw, ours.roll, ours.tvec[2]], [20, 10, 600], atol=1e-2)
    guessed = estimate_pose(pts, "300w68", image_size=(W, H))
    assert guessed.tvec[2] == pytest.approx(300, rel=0.05)   # half the focal length, half as far


def test_face_pose_uses_the_image_size_and_says_when_it_has_none():
    pts = project(-18, 4, 3)
    face = Face(box=[0, 0, 10, 10], score=None, points=pts, point_scores=np.ones(68),
                scheme="300w68", image_size=(W, H))
    assert face.pose.yaw == pytest.approx(-18, abs=1e-3)
    assert face.pose is face.pose                               # computed once
    bare = Face(box=[0, 0, 10, 10], score=None, points=pts, point_scores=np.ones(68),
                scheme="300w68")
    with pytest.raises(FacemarkError, match="image_size"):
        bare.pose
    assert bare.estimate_pose(camera_matrix=guess_camera(W, H)).yaw == pytest.approx(-18, abs=1e-3)


def test_pose_fields_round_trip_through_both_prediction_encodings(tmp_path):
    pose = estimate_pose(project(12, -3, 4), "300w68", image_size=(W, H)).to_record()
    faces = [PredictedFace("a.jpg", project(12, -3, 4), pose=pose),
             PredictedFace("b.jpg", project(0, 0, 0))]
    for suffix in (".json", ".csv"):
        back = read_predictions(write_predictions(tmp_path / f"p{suffix}", faces,
                                                  scheme="300w68"))
        assert back.faces[1].pose is None
        got = back.faces[0].pose
        assert got["yaw"] == pytest.approx(12, abs=1e-3) and len(got["tvec"]) == 3
        np.testing.assert_allclose(got["rvec"], pose["rvec"], atol=1e-4)
    text = (tmp_path / "p.json").read_text().splitlines()
    assert '"pose"' in text[1] and '"pose"' not in text[2]     # optional: only where present
    bad = (tmp_path / "p.json").read_text().replace('"yaw"', '"jaw"')
    (tmp_path / "bad.json").write_text(bad)
    with pytest.raises(FacemarkError, match=r"bad.json:2: faces\[0\]: pose: missing 'yaw'"):
        read_predictions(tmp_path / "bad.json")


def test_mean_face_is_symmetric_with_the_nose_in_front():
    pts = MEAN_FACE_3D.points
    s = get_scheme("300w68")
    for a, b in s.mirror:
        if a in pts:
            np.testing.assert_allclose(pts[a], np.array(pts[b]) * [-1, 1, 1], atol=0.051)
    assert pts["nose_bridge_03"] == (0.0, 0.0, 0.0)
    assert all(p[2] > 0 for n, p in pts.items() if n.startswith(("eye_", "lip_outer_00")))
    assert np.linalg.norm(np.subtract(pts["eye_r_00"], pts["eye_l_03"])) == pytest.approx(90, abs=0.1)


# ---------------------------------------------------------------------------------------
# Real photos, no labels
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def landmarker():
    return facemark.load()


def _photo(name: str) -> np.ndarray:
    from facemark.data.images import read_image

    path = PHOTOS / name
    if not path.is_file():
        pytest.skip(f"real photo not found at {path} (../shared/data next to the repository)")
    return read_image(path)


def _nearest(faces, centre):
    return min(faces, key=lambda f: np.linalg.norm(f.points.mean(axis=0) - centre))


@needs_model
@pytest.mark.shared_data
def test_a_mirrored_photo_flips_yaw_and_roll(landmarker):
    checked = turned = 0
    for name in ("img58.jpg", "img59.jpg", "img22.jpg", "img34.jpg", "couple.jpg",
                 "selfie-many-people.jpg"):
        image = _photo(name)
        mirrored = np.ascontiguousarray(image[:, ::-1])
        others = landmarker.detect(mirrored)
        for face in landmarker.detect(image):
            centre = face.points.mean(axis=0) * [-1, 1] + [image.shape[1] - 1, 0]
            a, b = face.pose, _nearest(others, centre).pose
            assert abs(a.yaw + b.yaw) <= 6, (name, a, b)
            assert abs(a.roll + b.roll) <= 5, (name, a, b)
            assert abs(a.pitch - b.pitch) <= 6, (name, a, b)
            if abs(a.yaw) >= 10:
                assert np.sign(a.yaw) == -np.sign(b.yaw)
                turned += 1
            checked += 1
    assert checked >= 8 and turned >= 5          # faces turned both ways were among them


def _rotated(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned counter-clockwise by ``angle`` degrees about its centre, on a canvas
    that holds all of it (so the centre, the guessed principal point, stays the centre)."""
    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(w, h)))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    m[:, 2] += [(side - w) / 2, (side - h) / 2]
    return cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR), m


@needs_model
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["img10.jpg", "img58.jpg"])
def test_rotating_a_photo_adds_the_angle_to_roll(landmarker, name):
    image = _photo(name)
    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(w, h)))
    canvas = np.zeros((side, side, 3), np.uint8)                # same camera as the rotations
    canvas[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = image
    base = landmarker.detect(canvas)[0]
    for angle in (-30, -15, 15, 30):
        rotated, m = _rotated(image, angle)
        centre = m[:, :2] @ (base.points.mean(axis=0) - [(side - w) // 2, (side - h) // 2]) + m[:, 2]
        face = _nearest(landmarker.detect(rotated), centre)
        assert face.pose.roll - base.pose.roll == pytest.approx(angle, abs=3), (angle, face.pose)
        assert abs(face.pose.yaw - base.pose.yaw) <= 5, (angle, face.pose, base.pose)
        assert abs(face.pose.pitch - base.pose.pitch) <= 5, (angle, face.pose, base.pose)


@needs_model
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["img10.jpg", "img33.jpg"])
def test_a_frontal_passport_style_photo_is_near_zero(landmarker, name):
    pose = landmarker.detect(_photo(name))[0].pose
    # yaw and roll within 5 degrees; pitch, which the mean 3D face fixes least (how far
    # the nose stands out), within 7: the default model of 2026-12 gives 5.2 and 5.1 here
    assert max(abs(pose.yaw), abs(pose.roll)) <= 5, pose
    assert abs(pose.pitch) <= 7, pose
    assert 200 < pose.tvec[2] < 1500                          # a portrait distance, in mm

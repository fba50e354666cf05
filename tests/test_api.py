"""facemark.load / Landmarker.detect: types, shapes, input kinds, batching, geometry, errors.

A tiny random-weight PIPNet (MobileNetV2, 64 px crops) stands in for a trained model: it
cannot find landmarks, but every code path between the image and the points runs for real.
Geometry is checked with an engine whose answer is known (the crop centre).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import facemark
from facemark.data.crops import crop_box, get_crop_rule
from facemark.errors import ConfigError, DataError, FacemarkError
from facemark.data.predictions import read_predictions, write_predictions
from facemark.data.face import Face
from facemark.inference.detectors import DetectedFace, FaceDetector
from facemark.inference.landmarker import Landmarker, as_boxes, as_rgb

from synthetic import make_face, template68

SIZE = 64


def make_model_file(path: Path) -> Path:
    from facemark.models.model_file import ModelInfo, save_model
    from facemark.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("pipnet", num_points=68, backbone="mobilenet_v2", input_size=SIZE,
                         mean_face=template68()).eval()
    return save_model(model, ModelInfo("300w68", SIZE, "300w", {}), path)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.set_num_threads(1)
    return make_model_file(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def lm(model_file):
    return facemark.load(model_file, batch_size=2)


@pytest.fixture(scope="module")
def faces_data():
    rng = np.random.default_rng(3)
    out = []
    for _ in range(3):
        img, pts = make_face(rng, 128)
        out.append((img, np.r_[pts.min(0), pts.max(0)]))
    return out


class BoxDetector(FaceDetector):
    """Test detector: the given boxes with scores 0.9, 0.8, ...; none on a flat image."""

    name = "test_fixed_boxes"

    def __init__(self, boxes=((20.0, 20.0, 100.0, 100.0),), min_size: int = 1,
                 score_threshold: float = 0.0):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.boxes = boxes

    def _load(self) -> None:
        pass

    def _detect(self, image):
        if image.std() == 0:
            return []
        return [DetectedFace(box=b, score=0.9 - 0.1 * i) for i, b in enumerate(self.boxes)]


class CentreEngine:
    """Answers the centre of every crop, confidence = mean of the crop's red channel."""

    kind = "test"

    def __init__(self, info):
        self.info = info

    def predict(self, x):     # engines take numpy or torch images (B, 3, S, S)
        x = torch.as_tensor(x)
        b = x.shape[0]
        points = torch.full((b, 68, 2), 0.5)
        conf = x[:, 0].mean(dim=(1, 2))[:, None].expand(b, 68).clone()
        return points, conf


def with_engine(lm: Landmarker, engine) -> Landmarker:
    other = Landmarker(lm.model, detector=lm.detector, batch_size=lm.batch_size).load()
    other.engine_ = engine
    return other


# ---------------------------------------------------------------------------------------
def test_load_returns_a_loaded_landmarker(lm, model_file):
    assert isinstance(lm, Landmarker) and lm.scheme == "300w68" and lm.num_points == 68
    assert lm.model == model_file and lm.batch_size == 2
    assert lm.engine_.kind == "torch" and lm.info_.input_size == SIZE
    assert "Landmarker(" in repr(lm)


def test_constructor_only_stores_arguments():
    lm = Landmarker("does/not/exist.pt", device="nonsense", engine="bogus", batch_size=-1)
    assert lm.device == "nonsense" and lm.engine == "bogus"
    with pytest.raises(RuntimeError, match="call .load"):
        lm.detect(np.zeros((8, 8, 3), np.uint8))


def test_face_shapes_and_types_with_user_boxes(lm, faces_data):
    img, box = faces_data[0]
    faces = lm.detect(img, boxes=[box])
    assert isinstance(faces, list) and len(faces) == 1
    f = faces[0]
    assert isinstance(f, Face) and f.scheme == "300w68" and f.score is None
    assert f.points.shape == (68, 2) and f.points.dtype == np.float64
    assert np.isfinite(f.points).all()
    assert f.point_scores.shape == (68,) and ((f.point_scores >= 0) & (f.point_scores <= 1)).all()
    np.testing.assert_allclose(f.box, box)
    # a single box (4,) works like a list of one
    np.testing.assert_allclose(lm.detect(img, boxes=box)[0].points, f.points)


def test_always_a_list(lm, faces_data, model_file):
    img, _ = faces_data[0]
    assert lm.detect(img, boxes=[]) == []
    assert lm.detect(img, boxes=np.zeros((0, 4))) == []
    det = facemark.load(model_file, detector=BoxDetector())
    flat = np.full((90, 120, 3), 128, np.uint8)
    assert det.detect(flat) == []                       # no face: an empty list, not None
    batch = det.detect_batch([flat, img])
    assert batch[0] == [] and len(batch[1]) == 1
    np.testing.assert_allclose(batch[1][0].points, det.detect(img)[0].points, atol=1e-4)
    flipped = facemark.load(model_file, detector=BoxDetector(), flip_test=True)
    assert flipped.detect(flat) == [] and len(flipped.detect(img)) == 1


def test_detector_boxes_and_scores_come_through(model_file, faces_data):
    img, _ = faces_data[1]
    boxes = ((10.0, 12.0, 70.0, 80.0), (50.0, 40.0, 120.0, 110.0))
    lm = facemark.load(model_file, detector=BoxDetector(boxes))
    faces = lm.detect(img)
    assert [f.score for f in faces] == pytest.approx([0.9, 0.8])
    np.testing.assert_allclose([f.box for f in faces], boxes)
    # the detector's faces equal the same boxes given by hand (but those carry no score)
    by_hand = lm.detect(img, boxes=boxes)
    for a, b in zip(faces, by_hand):
        np.testing.assert_allclose(a.points, b.points)
        assert b.score is None


def test_bgr_and_rgb_give_the_same_faces(lm, faces_data):
    img, box = faces_data[0]
    rgb = lm.detect(img, boxes=[box])[0]
    bgr = lm.detect(np.ascontiguousarray(img[:, :, ::-1]), boxes=[box], rgb=False)[0]
    np.testing.assert_allclose(bgr.points, rgb.points)
    np.testing.assert_allclose(bgr.point_scores, rgb.point_scores)


def test_channel_order_reaches_the_model(lm, faces_data):
    # the engine sees the red channel: a BGR array read as RGB must give another answer
    img, box = faces_data[0]
    centre = with_engine(lm, CentreEngine(lm.info_))
    right = centre.detect(img[:, :, ::-1].copy(), boxes=[box], rgb=False)[0].point_scores
    wrong = centre.detect(img[:, :, ::-1].copy(), boxes=[box])[0].point_scores
    np.testing.assert_allclose(right, centre.detect(img, boxes=[box])[0].point_scores)
    assert abs(right[0] - wrong[0]) > 0.05


def test_pil_path_grey_and_rgba_inputs(lm, faces_data, tmp_path):
    from PIL import Image

    img, box = faces_data[2]
    ref = lm.detect(img, boxes=[box])[0].points
    np.testing.assert_allclose(lm.detect(Image.fromarray(img), boxes=[box])[0].points, ref)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    np.testing.assert_allclose(lm.detect(path, boxes=[box])[0].points, ref)
    np.testing.assert_allclose(lm.detect(str(path), boxes=[box])[0].points, ref)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    np.testing.assert_allclose(lm.detect(rgba, boxes=[box])[0].points, ref)
    grey = img[:, :, 1].copy()
    assert as_rgb(grey).shape == img.shape and (as_rgb(grey)[:, :, 0] == grey).all()
    assert as_rgb(Image.fromarray(grey)).shape == img.shape


def test_batch_equals_single(lm, faces_data):
    images = [im for im, _ in faces_data]
    boxes = [[b] for _, b in faces_data]
    boxes[1] = [faces_data[1][1], faces_data[1][1] + [5, -3, 5, -3]]   # two faces in one image
    batch = lm.detect_batch(images, boxes=boxes)                      # 4 crops, batch_size 2
    assert [len(x) for x in batch] == [1, 2, 1]
    for im, bx, got in zip(images, boxes, batch):
        single = lm.detect(im, boxes=bx)
        for a, b in zip(got, single):
            np.testing.assert_allclose(a.points, b.points, atol=1e-4)
            np.testing.assert_allclose(a.point_scores, b.point_scores, atol=1e-5)
    assert lm.detect_batch([]) == []


@settings(max_examples=25, deadline=None)
@given(x1=st.floats(-50, 150), y1=st.floats(-50, 150), w=st.floats(8, 200), h=st.floats(8, 200))
def test_points_map_back_to_image_pixels(centre_lm, x1, y1, w, h):
    # the engine answers the crop centre, so the point must be the crop box centre in the image
    box = np.array([x1, y1, x1 + w, y1 + h])
    img = np.full((120, 160, 3), 90, np.uint8)
    face = centre_lm.detect(img, boxes=[box])[0]
    cb = crop_box(get_crop_rule("detector"), box=box)
    np.testing.assert_allclose(face.points, np.tile([(cb[0] + cb[2]) / 2, (cb[1] + cb[3]) / 2],
                                                    (68, 1)), atol=1e-6)


@pytest.fixture(scope="module")
def centre_lm(lm):
    return with_engine(lm, CentreEngine(lm.info_))


def test_crop_rule_option(model_file, faces_data):
    img, box = faces_data[0]
    lm = facemark.load(model_file, crop_rule="cofw")          # the box as it is
    lm.engine_ = CentreEngine(lm.info_)
    face = lm.detect(img, boxes=[box])[0]
    np.testing.assert_allclose(face.points[0], [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2],
                               atol=1e-6)
    with pytest.raises(ConfigError, match="crop_rule"):
        facemark.load(model_file, crop_rule="nope")


def test_onnx_engine_matches_torch(lm, model_file, faces_data, tmp_path):
    from facemark.inference.export import export_onnx
    from facemark.models.model_file import load_model

    model, info = load_model(model_file)
    onnx_path = export_onnx(model, tmp_path / "tiny.onnx", info=info)
    ort = facemark.load(onnx_path)
    assert ort.engine_.kind == "onnx" and ort.scheme == "300w68"
    img, box = faces_data[0]
    a, b = ort.detect(img, boxes=[box])[0], lm.detect(img, boxes=[box])[0]
    np.testing.assert_allclose(a.points, b.points, atol=1e-2)
    np.testing.assert_allclose(a.point_scores, b.point_scores, atol=1e-4)
    with pytest.raises(ConfigError, match="engine"):
        facemark.load(model_file, engine="onnx")


def test_default_model_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("facemark.inference.model_path.bundled_models", lambda: {})
    with pytest.raises(FacemarkError, match="no default model is bundled.*pass a model file"):
        facemark.load()


def test_bundled_model_by_name_and_default(monkeypatch, model_file):
    monkeypatch.setattr("facemark.inference.model_path.bundled_models",
                        lambda: {"default": {".pt": model_file}, "tiny": {".pt": model_file}})
    assert facemark.load(engine="torch").model_path_ == model_file
    assert facemark.load("tiny", engine="torch").model_path_ == model_file
    with pytest.raises(DataError, match="model file not found; bundled models: default, tiny"):
        facemark.load("other")


@pytest.mark.parametrize("kwargs, match", [
    (dict(engine="tensorrt"), "engine"),
    (dict(device="gpu0"), "device"),
    (dict(batch_size=0), "batch_size"),
    (dict(flip_test="yes"), "flip_test"),
    (dict(smoothing={"speed": 1}), "smoothing: unknown key 'speed'"),
    (dict(smoothing="on"), "smoothing"),
    (dict(detector="hear"), "did you mean 'haar'"),
])
def test_bad_arguments_name_themselves(model_file, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        facemark.load(model_file, **kwargs)


def test_bad_model_files(tmp_path):
    with pytest.raises(DataError, match="missing.pt: model file not found"):
        facemark.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="junk.pt"):
        facemark.load(junk)


def test_bad_images_and_boxes(lm, tmp_path):
    with pytest.raises(DataError, match="nothere.jpg: image file not found"):
        lm.detect(tmp_path / "nothere.jpg")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="bad.png: cannot decode"):
        lm.detect(bad)
    with pytest.raises(ValueError, match="float array must hold values in 0-1"):
        lm.detect(np.full((10, 10, 3), 200.0, np.float32))
    with pytest.raises(ValueError, match="uint8"):
        lm.detect(np.zeros((10, 10, 3), np.int32))
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        lm.detect(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(TypeError, match="got list"):
        lm.detect([[1, 2, 3]])
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"boxes\[1\]: expected finite x1 < x2"):
        lm.detect(img, boxes=[[0, 0, 5, 5], [5, 5, 2, 8]])
    with pytest.raises(ValueError, match=r"expected shape \(K, 4\)"):
        as_boxes([[1, 2, 3]])
    with pytest.raises(ValueError, match="one entry per image"):
        lm.detect_batch([img, img], boxes=[None])


def test_face_to_prediction_file_round_trip(lm, faces_data, tmp_path):
    img, box = faces_data[0]
    face = lm.detect(img, boxes=[box])[0]
    path = write_predictions(tmp_path / "p.json", [face.to_prediction("a.png")], scheme=lm.scheme)
    back = read_predictions(path).faces[0]
    np.testing.assert_allclose(back.points, face.points, atol=1e-4)
    np.testing.assert_allclose(back.box, face.box, atol=1e-4)
    assert back.image == "a.png" and back.frame is None and back.score is None


def test_import_facemark_stays_light():
    code = ("import sys, facemark; assert 'torch' not in sys.modules; "
            "assert callable(facemark.load); assert 'load' in dir(facemark); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert facemark.__version__ and facemark.Face is Face
    with pytest.raises(AttributeError):
        facemark.not_a_thing  # noqa: B018


def test_the_old_homes_of_face_pose_and_measures_still_import():
    # Face, the head pose and the eye/mouth measures live in facemark.data (issue 11)
    import facemark.data.measures
    import facemark.data.pose
    import facemark.inference.landmarker
    import facemark.inference.measures
    import facemark.inference.pose

    assert facemark.inference.landmarker.Face is Face
    assert facemark.inference.pose.estimate_pose is facemark.data.pose.estimate_pose
    assert facemark.inference.pose.HeadPose is facemark.data.pose.HeadPose
    assert facemark.inference.measures.BlinkDetector is facemark.data.measures.BlinkDetector
    for module in (facemark.inference.pose, facemark.inference.measures):
        assert all(getattr(module, name) is not None for name in module.__all__)

"""Test crops: the last pass averages the predictions of the face's crop and copies of it
moved around it (``test_crops``), in the Landmarker, the evaluation and both CLIs."""
import json

import numpy as np
import pytest

import facemark
from facemark.cli import main
from facemark.data.crops import (MAX_TEST_CROPS, TEST_CROP_SHIFT, check_test_crops,
                                 shifted_crop_boxes)
from facemark.errors import ConfigError
from facemark.models.crop_predict import predict_boxes, predict_samples
from synthetic import make_pts_dataset, template68
from test_api import SIZE
from test_first_pass_size import face, tiny  # noqa: F401 (the same tiny model and face)


def test_shifted_boxes_surround_the_crop_and_average_to_it():
    box = np.array([10.0, 20.0, 110.0, 70.0])                  # 100 x 50
    np.testing.assert_array_equal(shifted_crop_boxes(box, 1), box[None])
    three = shifted_crop_boxes(box, 3)
    np.testing.assert_array_equal(three[0], box)
    move = TEST_CROP_SHIFT / np.sqrt(2)                        # along the diagonal
    np.testing.assert_allclose(three[1] - box, [100 * move, 50 * move] * 2)
    np.testing.assert_allclose(three[2] - box, [-100 * move, -50 * move] * 2)
    for count in range(3, MAX_TEST_CROPS + 1):
        boxes = shifted_crop_boxes(box, count)
        assert boxes.shape == (count, 4)
        np.testing.assert_allclose(boxes.mean(0), box, atol=1e-9)  # centred on the crop
        np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], [[100, 50]] * count)
        moves = (boxes[1:, :2] - box[:2]) / [100, 50]
        np.testing.assert_allclose(np.hypot(*moves.T), TEST_CROP_SHIFT)


def test_the_number_of_crops_is_checked():
    for good in (1, 3, MAX_TEST_CROPS, np.int64(5)):
        assert check_test_crops(good) == good
    for bad in (0, 2, MAX_TEST_CROPS + 1, 1.5, True, "3", None):
        with pytest.raises(ConfigError, match="test_crops: expected 1 .* or 3 to"):
            check_test_crops(bad)


def test_predict_boxes_averages_the_crops(tiny, face):
    from facemark.inference.onnx_engine import TorchLandmarkEngine

    image, box = face
    engine = TorchLandmarkEngine(tiny).load()
    crop = facemark.load(tiny, engine="torch").crop_box(box)
    points, conf = predict_boxes(engine, [image, image], [crop, crop + 3], SIZE, test_crops=3)
    for k, b in enumerate((crop, crop + 3)):
        each, each_conf = predict_boxes(engine, [image] * 3, list(shifted_crop_boxes(b, 3)), SIZE)
        np.testing.assert_allclose(points[k], each.mean(0), atol=1e-6)
        np.testing.assert_allclose(conf[k], each_conf.mean(0), atol=1e-6)
    one, _ = predict_boxes(engine, [image], [crop], SIZE)
    assert not np.allclose(points[0], one[0], atol=1e-3)       # the average is not one crop


def test_predict_samples_averages_across_batches(tiny, tmp_path):
    from facemark.data.formats import open_dataset
    from facemark.data.images import read_image
    from facemark.models.model_file import load_model

    samples = open_dataset(str(make_pts_dataset(tmp_path / "faces", n=3)))
    model, info = load_model(tiny)
    boxes = np.stack([facemark.load(tiny, engine="torch").crop_box(
        np.r_[s.landmarks.min(0), s.landmarks.max(0)]) for s in samples])
    # batch 2 over 3 faces x 3 crops: a face's crops span two batches
    points, conf, ok = predict_samples(model, samples, crop_rule=info.crop_rule,
                                       input_size=SIZE, batch_size=2, crop_boxes=boxes,
                                       test_crops=3)
    assert ok.all()
    for i, s in enumerate(samples):
        want, want_conf = predict_boxes(model, [read_image(s.image)], [boxes[i]], SIZE,
                                        test_crops=3)
        np.testing.assert_allclose(points[i], want[0], atol=1e-4)
        np.testing.assert_allclose(conf[i], want_conf[0], atol=1e-5)


class Counter:
    """An engine stand-in that counts the crops of each call and answers the mean face."""

    def __init__(self):
        self.calls = []

    def predict(self, x):
        self.calls.append(len(x))
        pts = (0.2 + 0.6 * template68()).astype(np.float32)
        return np.repeat(pts[None], len(x), 0), np.ones((len(x), 68), np.float32)


@pytest.mark.parametrize("refine", [0, 1, 2])
def test_only_the_last_pass_averages(tiny, face, refine):
    image, box = face
    lm = facemark.load(tiny, engine="torch", detector="opencv", refine=refine, test_crops=5,
                       first_pass_size=32 if refine else None)
    counter = Counter()
    lm.engine_ = counter
    if lm.first_engine_ is not None:
        lm.first_engine_ = counter
    faces = lm.detect(image, boxes=[box, box + 2])
    assert counter.calls == [2] * refine + [10]                 # 2 faces x 5 crops at the end
    assert len(faces) == 2 and np.isfinite(faces[0].points).all()


def test_landmarker_and_clis_take_test_crops(tiny, face, tmp_path, capsys):
    import cv2

    with pytest.raises(ConfigError, match="test_crops"):
        facemark.load(tiny, test_crops=2)
    assert "test_crops=3" in repr(facemark.load(tiny, test_crops=3))
    image, _ = face
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), image[..., ::-1])
    common = ["detect", str(photo), "--model", str(tiny), "--detector", "opencv", "--quiet"]
    assert main(common + ["-o", str(tmp_path / "a"), "--test-crops", "3"]) == 0
    part = next(p for p in (tmp_path / "a").rglob("*.json") if "settings" in p.read_text())
    assert json.loads(part.read_text())["settings"]["test_crops"] == 3   # in the run's record
    assert main(common + ["-o", str(tmp_path / "b"), "--test-crops", "2"]) == 2
    assert "test_crops" in capsys.readouterr().err
    data = make_pts_dataset(tmp_path / "eval", n=4)
    capsys.readouterr()
    assert main(["evaluate", str(tiny), "--data", str(data), "--test-crops", "3",
                 "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "3 test crops" in json.dumps(report)

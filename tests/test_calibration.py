"""Box-to-crop calibration: the fitted numbers, their use by the Landmarker, export, the CLI."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import facemark
from facemark.cli import main
from facemark.data.crops import crop_box
from facemark.data.sample import Sample
from facemark.errors import FacemarkError
from facemark.inference.calibration import (BoxCalibration, calibrations_of, fit_calibration,
                                            match_face, relation)
from facemark.inference.detectors import DetectedFace, FaceDetector

from synthetic import make_face, template68
from test_api import CentreEngine, make_model_file


class ShiftedBoxDetector(FaceDetector):
    """Test detector: the landmark box of the face it was told about, shifted up by 20% of
    its height and shrunk to 80% (a Haar-like box), plus a decoy box far away."""

    name = "test_shifted"

    def __init__(self, truth=None, min_size: int = 1, score_threshold: float = 0.0):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.truth = truth

    def _load(self) -> None:
        pass

    def _detect(self, image):
        key = int(image[0, 0, 0])
        x1, y1, x2, y2 = self.truth[key]
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.2 * h
        box = [cx - 0.4 * w, cy - 0.4 * h, cx + 0.4 * w, cy + 0.4 * h]
        return [DetectedFace(box=box, score=1.0), DetectedFace(box=[0, 0, 5, 5], score=2.0)]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """12 synthetic faces on disk; pixel (0, 0) holds each image's index for the detector."""
    folder = tmp_path_factory.mktemp("cal")
    rng = np.random.default_rng(0)
    samples, truth = [], {}
    for i in range(12):
        img, pts = make_face(rng, 160)
        img[0, 0] = i
        path = folder / f"f{i}.png"
        cv2.imwrite(str(path), img[:, :, ::-1])
        samples.append(Sample(str(path), pts.astype(np.float32), "300w68"))
        truth[i] = np.r_[pts.min(0), pts.max(0)]
    return samples, truth


@settings(max_examples=50, deadline=None)
@given(x=st.floats(-100, 100), y=st.floats(-100, 100), w=st.floats(5, 300), h=st.floats(5, 300),
       tx=st.floats(-100, 100), ty=st.floats(-100, 100), side=st.floats(5, 300))
def test_relation_then_crop_box_is_exact(x, y, w, h, tx, ty, side):
    box = np.array([x, y, x + w, y + h])
    target = np.array([tx, ty, tx + side, ty + side])
    cal = BoxCalibration(*relation(box, target))
    np.testing.assert_allclose(cal.crop_box(box), target, atol=1e-6 * max(1.0, side))


def test_fit_recovers_a_known_box_style(faces):
    samples, truth = faces
    detector = ShiftedBoxDetector(truth)
    cal, det = fit_calibration(samples, detector, crop_rule="300w")
    assert det.recall == 1.0 and cal.faces == 12
    # the decoy box (higher score) is never taken for the face
    assert np.all(det.boxes[:, 2] > 5)
    for s, box in zip(samples, det.boxes):
        np.testing.assert_allclose(cal.crop_box(box), crop_box("300w", landmarks=s.landmarks),
                                   atol=0.05 * (box[2] - box[0]))
    assert cal.dy > 0.2   # the crop sits lower than the Haar-like box


def test_too_few_faces_is_a_clear_error(faces):
    samples, truth = faces
    with pytest.raises(FacemarkError, match="found .* too few"):
        fit_calibration(samples[:5], ShiftedBoxDetector(truth), crop_rule="300w")


def test_match_face_needs_overlap():
    pts = np.array([[10.0, 10.0], [50.0, 60.0]])
    assert match_face([], pts) is None
    assert match_face([np.array([200.0, 200, 260, 260])], pts) is None
    assert match_face([np.array([200.0, 200, 260, 260]), np.array([12.0, 8, 52, 58])], pts) == 1


def test_calibration_dict_round_trip_and_validation():
    cal = BoxCalibration(0.01, 0.2, 1.3, 40)
    assert BoxCalibration.from_dict(cal.to_dict()) == cal
    assert calibrations_of({"box_calibration": '{"x": {"dx": 0, "dy": 0, "scale": 1}}'}) == \
        {"x": BoxCalibration(0.0, 0.0, 1.0)}
    assert calibrations_of({}) == {}
    with pytest.raises(ValueError, match="scale"):
        BoxCalibration(0.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="unknown key"):
        BoxCalibration.from_dict({"dx": 0, "dy": 0, "scale": 1, "bogus": 1})


def test_landmarker_uses_the_detectors_calibration(tmp_path, faces):
    from facemark.models.model_file import load_model, save_model

    samples, truth = faces
    model, info = load_model(make_model_file(tmp_path / "m.pt"))
    cal = BoxCalibration(0.0, 0.25, 1.5)
    save_model(model, info, tmp_path / "cal.pt",
               extra={"box_calibration": {"test_shifted": cal.to_dict()}})
    detector = ShiftedBoxDetector(truth)
    lm = facemark.load(tmp_path / "cal.pt", detector=detector)
    lm.engine_ = CentreEngine(lm.info_)
    image = cv2.imread(samples[3].image)[:, :, ::-1]
    face = lm.detect(image)[0]
    want = cal.crop_box(face.box)
    np.testing.assert_allclose(face.points[0], [(want[0] + want[2]) / 2, (want[1] + want[3]) / 2],
                               atol=1e-6)
    # the caller's boxes use the crop rule, or the calibration when they name the box style
    generic = crop_box("detector", box=face.box)
    mine = lm.detect(image, boxes=[face.box])[0]
    np.testing.assert_allclose(mine.points[0], [(generic[0] + generic[2]) / 2,
                                                (generic[1] + generic[3]) / 2], atol=1e-6)
    styled = lm.detect(image, boxes=[face.box], box_style="test_shifted")[0]
    np.testing.assert_allclose(styled.points, face.points, atol=1e-9)
    # an explicit crop_rule wins over the calibration
    ruled = facemark.load(tmp_path / "cal.pt", detector=detector, crop_rule="detector")
    ruled.engine_ = CentreEngine(ruled.info_)
    np.testing.assert_allclose(ruled.detect(image)[0].points, mine.points, atol=1e-9)


def test_onnx_export_keeps_the_calibration(tmp_path):
    from facemark.inference.export import export_onnx
    from facemark.models.model_file import ModelInfo, load_model

    model, info = load_model(make_model_file(tmp_path / "m.pt"))
    cal = BoxCalibration(0.01, 0.1, 1.2, 7)
    info = ModelInfo(info.scheme, info.input_size, info.crop_rule, info.model_config,
                     {"box_calibration": {"dlib_hog": cal.to_dict()}})
    path = export_onnx(model, tmp_path / "m.onnx", info=info)
    lm = facemark.load(path)
    assert lm.calibrations_ == {"dlib_hog": cal}


@pytest.fixture
def shifted_folder(faces, monkeypatch):
    """The synthetic faces as a .pts folder, with ShiftedBoxDetector registered by name and
    told where the faces are (the CLI builds detectors from their names)."""
    from facemark.inference.detectors import _DETECTORS, register_detector

    samples, truth = faces
    for s in samples:
        text = f"version: 1\nn_points: {len(s.landmarks)}\n{{\n" + "".join(
            f"{x + 1} {y + 1}\n" for x, y in s.landmarks) + "}\n"
        Path(s.image).with_suffix(".pts").write_text(text)
    if "test_shifted" not in _DETECTORS:
        register_detector(ShiftedBoxDetector)
    monkeypatch.setattr(ShiftedBoxDetector.__init__, "__defaults__", (truth, 1, 0.0))
    return Path(samples[0].image).parent


def test_calibrate_cli_writes_a_model_with_calibrations(tmp_path, shifted_folder, capsys):
    folder = shifted_folder
    model = make_model_file(tmp_path / "m.pt")
    out = tmp_path / "cal.pt"
    rc = main(["calibrate", str(model), "--data", f"pts:{folder}", "--detector",
               "test_shifted", "--test", f"pts:{folder}", "-o", str(out),
               "--report", str(tmp_path / "cal.md")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| test_shifted |" in text and "NME box, calibrated" in text
    assert "100.0%" in text   # every test face found
    cals = facemark.load(out, detector="opencv").calibrations_
    assert set(cals) == {"test_shifted"} and cals["test_shifted"].faces == 12
    assert (tmp_path / "cal.md").read_text().startswith("| detector |")
    assert main(["calibrate", str(model), "--data", f"pts:{folder}", "-o",
                 str(tmp_path / "x.onnx")]) == 2


def test_evaluate_with_detector_boxes(tmp_path, shifted_folder, capsys):
    model = make_model_file(tmp_path / "m.pt")
    rc = main(["evaluate", f"boxes={model}", "--data", f"pts:{shifted_folder}",
               "--detector", "test_shifted", "--refine", "--out", str(tmp_path / "rep")])
    assert rc == 0
    import json

    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    text = json.dumps(report)
    assert "test_shifted boxes" in text and "crop rule 'detector'" in text
    assert main(["evaluate", f"boxes={model}", "--data", f"pts:{shifted_folder}",
                 "--detector", "test_shifted", "--refine", "--refine-passes", "3"]) == 0
    assert "refined 3 times" in capsys.readouterr().out
    assert main(["evaluate", f"boxes={model}", "--data", f"pts:{shifted_folder}",
                 "--detector", "test_shifted", "--refine-passes", "2"]) == 2
    assert "--refine-passes needs --refine" in capsys.readouterr().err
    # the first of the two passes on 32 px crops (the model's own is 64)
    assert main(["evaluate", f"boxes={model}", "--data", f"pts:{shifted_folder}",
                 "--detector", "test_shifted", "--refine", "--first-pass-size", "32"]) == 0
    assert "refined (first pass at 32 px)" in capsys.readouterr().out
    assert main(["evaluate", f"boxes={model}", "--data", f"pts:{shifted_folder}",
                 "--detector", "test_shifted", "--first-pass-size", "32"]) == 2
    assert "--first-pass-size needs --refine" in capsys.readouterr().err
    assert main(["evaluate", f"boxes={model}", "--data", f"pts:{shifted_folder}",
                 "--detector", "test_shifted", "--refine", "--first-pass-size", "48"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


@pytest.mark.skipif(
    __import__("facemark.evaluation.bench", fromlist=["x"]).find_dlib_predictor()[0] is None,
    reason="dlib or its 68-point predictor file (face_recognition_models) is not installed")
def test_dlib_source_on_real_faces(capsys):
    data = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "300w" / "afw"
    if not data.is_dir():
        pytest.skip("../shared/data/300w/afw is absent")
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for p in sorted(data.glob("*.jpg"))[:8]:
            shutil.copy(p, tmp)
            shutil.copy(p.with_suffix(".pts"), tmp)
        assert main(["evaluate", "dlib", "--data", f"pts:{tmp}"]) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("dlib ")][0]
    assert float(row.split()[1]) < 10.0   # dlib's NME on 8 AFW faces, in percent


class OffsetEngine:
    """Answers a fixed face shape: the 68-point template placed in the middle 60% of the crop."""

    kind = "test"

    def __init__(self, info):
        import torch

        from synthetic import template68

        self.info = info
        t = template68()
        t = (t - t.min(0)) / (t.max(0) - t.min(0))
        self.points = torch.tensor(0.2 + 0.6 * t, dtype=torch.float32)

    def predict(self, x):
        b = x.shape[0]
        import torch

        return self.points.expand(b, 68, 2).clone(), torch.full((b, 68), 0.5)


def test_refine_crops_again_from_the_first_landmarks(tmp_path, faces):
    from facemark.errors import ConfigError
    from facemark.inference.landmarker import refined_crop_box

    samples, truth = faces
    model = make_model_file(tmp_path / "m.pt")
    image = cv2.imread(samples[0].image)[:, :, ::-1]
    box = np.array([30.0, 30.0, 110.0, 110.0])
    one = facemark.load(model, detector="opencv", refine=False)
    two = facemark.load(model, detector="opencv", refine=True)
    assert (one.refine_, two.refine_) == (0, 1)
    # the default refines once for models trained on landmark crops, never for box crops
    assert facemark.load(model, detector="opencv").refine_ == 1
    one.engine_ = OffsetEngine(one.info_)
    two.engine_ = OffsetEngine(two.info_)
    first = one.detect(image, boxes=[box])[0].points
    second = two.detect(image, boxes=[box])[0].points
    # the second crop is the 300w rule around the first points: the template lands there
    cb = crop_box("300w", landmarks=first)
    side = cb[2] - cb[0]
    assert np.abs(second - first).max() > 1.0
    np.testing.assert_allclose(second.mean(0), (cb[:2] + cb[2:]) / 2, atol=0.05 * side)
    # a collapsed first prediction keeps the first crop
    np.testing.assert_allclose(refined_crop_box("300w", np.zeros((68, 2)), box), box)
    # each extra pass crops again from the previous pass's points
    three = facemark.load(model, detector="opencv", refine=2)
    three.engine_ = OffsetEngine(three.info_)
    third = three.detect(image, boxes=[box])[0].points
    cb2 = crop_box("300w", landmarks=second)
    np.testing.assert_allclose(third.mean(0), (cb2[:2] + cb2[2:]) / 2, atol=0.05 * side)
    assert np.abs(third - second).max() > 0.1
    for bad in ("yes", -1, 6, 1.5):
        with pytest.raises(ConfigError, match="refine"):
            facemark.load(model, refine=bad)


def test_models_trained_on_box_crops_do_not_refine(tmp_path):
    from facemark.errors import ConfigError
    from facemark.models.model_file import ModelInfo, save_model
    from facemark.models.registry import create_model

    net = create_model("pipnet", num_points=68, backbone="mobilenet_v2", input_size=64,
                       mean_face=template68()).eval()
    path = save_model(net, ModelInfo("300w68", 64, "wflw68", {}), tmp_path / "box.pt")
    assert facemark.load(path, detector="opencv").refine_ == 0
    with pytest.raises(ConfigError, match="refine"):
        facemark.load(path, detector="opencv", refine=True)

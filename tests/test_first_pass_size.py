"""The first of two passes may run on a smaller crop (``first_pass_size``): it only places
the crop of the second. A model file carries its default (``facemark export
--first-pass-size N``); both engines honour it, sharing the model or the onnxruntime
session (an ONNX export takes every side the model runs on; ``--static-size`` one)."""
import numpy as np
import pytest
import torch

import facemark
from facemark.cli import main
from facemark.errors import ConfigError
from facemark.inference.landmarker import first_pass_size, refined_crop_box
from synthetic import make_face, template68
from test_api import SIZE, make_model_file


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return make_model_file(tmp_path_factory.mktemp("first") / "tiny.pt")


@pytest.fixture(scope="module")
def face():
    image, pts = make_face(np.random.default_rng(5), size=160)
    return image, np.r_[pts.min(0), pts.max(0)]


def test_first_pass_size_resolution():
    assert first_pass_size(None, 128) == 128                  # no default in the file
    assert first_pass_size(None, 128, 96) == 96               # the file's default
    assert first_pass_size(None, 128, "96") == 96             # ONNX metadata holds text
    assert first_pass_size(None, 128, "junk") == 128          # unreadable: own size
    assert first_pass_size(0, 128, 96) == 128                 # 0: the model's own size
    assert first_pass_size(64, 128, 96) == 64                 # an explicit value wins
    assert first_pass_size(64, 128, 96, refine=0) == 128      # one pass: the model's size
    for bad in (-32, 1.5, True, "96"):
        with pytest.raises(ConfigError, match="first_pass_size"):
            first_pass_size(bad, 128)


def test_the_model_says_which_sizes_it_runs_on():
    from facemark.models.registry import create_model

    pip = create_model("pipnet", num_points=68, backbone="mobilenet_v2", input_size=128,
                       mean_face=template68())
    assert pip.check_other_input_size(96) == 96 and pip.check_other_input_size(32) == 32
    for bad in (112, 160, 0, 96.0):                           # off the grid, too large
        with pytest.raises(ConfigError, match="multiple of 32 from 32 to 128"):
            pip.check_other_input_size(bad)
    coord = create_model("coordnet", num_points=68, backbone="mobilenet_v2", input_size=128)
    with pytest.raises(ConfigError, match="128 px crops only"):  # a head sized for its input
        coord.check_other_input_size(96)


class Spy:
    """An engine stand-in: records the crops it gets and answers a fixed face, shifted."""

    def __init__(self, shift: float):
        self.crops, self.shift = [], shift

    def predict(self, x):
        self.crops.append(np.asarray(x))
        pts = (0.2 + 0.6 * template68() + self.shift).astype(np.float32)
        return np.repeat(pts[None], len(x), 0), np.ones((len(x), 68), np.float32)


def test_the_first_pass_runs_small_and_places_the_second_crop(tiny, face):
    from facemark.data.crops import crop_faces, map_back

    image, box = face
    lm = facemark.load(tiny, engine="torch", detector="opencv", first_pass_size=32)
    assert (lm.refine_, lm.first_pass_size_, lm.first_engine_.input_size) == (1, 32, 32)
    lm.first_engine_, lm.engine_ = Spy(0.1), Spy(0.0)
    points = lm.detect(image, boxes=[box])[0].points
    crop = lm.crop_box(box)                                   # the 'detector' rule
    assert lm.first_engine_.crops[0].shape == (1, 3, 32, 32)
    want, inverse = crop_faces([image], [crop], 32)
    np.testing.assert_allclose(lm.first_engine_.crops[0], want.transpose(0, 3, 1, 2) / 255,
                               atol=1e-6)
    # the second crop: the crop rule on the first pass's points, at the model's own size
    first = map_back((0.3 + 0.6 * template68())[None] * 32 - 0.5, inverse)[0]
    second_box = refined_crop_box("300w", first, crop)
    want, inverse = crop_faces([image], [second_box], SIZE)
    np.testing.assert_allclose(lm.engine_.crops[0], want.transpose(0, 3, 1, 2) / 255, atol=1e-6)
    np.testing.assert_allclose(points, map_back((0.2 + 0.6 * template68())[None] * SIZE - 0.5,
                                                inverse)[0], atol=1e-3)


def test_torch_engine_at_another_size(tiny, face):
    image, box = face
    lm = facemark.load(tiny, engine="torch", detector="opencv", first_pass_size=32)
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    points, conf = lm.first_engine_.predict(x)
    want = lm.engine_.model_.predict(torch.from_numpy(x))
    np.testing.assert_allclose(points, want[0].numpy(), atol=1e-6)
    assert lm.first_engine_.model_ is lm.engine_.model_           # the same weights
    with pytest.raises(ValueError, match="32, 32"):
        lm.first_engine_.predict(np.zeros((1, 3, SIZE, SIZE), np.float32))
    full = facemark.load(tiny, engine="torch", detector="opencv")
    assert full.first_pass_size_ == SIZE and full.first_engine_ is None
    one = facemark.load(tiny, engine="torch", detector="opencv", refine=0, first_pass_size=32)
    assert one.first_pass_size_ == SIZE and one.first_engine_ is None   # no second pass
    with pytest.raises(ConfigError, match="multiple of 32"):
        facemark.load(tiny, engine="torch", first_pass_size=48)


def test_export_stores_the_default_and_an_onnx_export_takes_every_side(tiny, tmp_path, face):
    from facemark.inference.onnx_engine import OnnxLandmarkEngine

    image, box = face
    small = tmp_path / "small.pt"
    assert main(["export", str(tiny), "-o", str(small), "--first-pass-size", "32"]) == 0
    assert facemark.load(small, engine="torch").first_pass_size_ == 32
    assert facemark.load(small, engine="torch", first_pass_size=0).first_pass_size_ == SIZE
    onnx = tmp_path / "small.onnx"
    assert main(["export", str(small), "-o", str(onnx)]) == 0
    assert OnnxLandmarkEngine(onnx).load().input_sizes_ == (32, SIZE)
    lm = facemark.load(onnx, detector="opencv")       # the file's default, same session
    assert lm.first_pass_size_ == 32 and lm.first_engine_.input_size == 32
    assert lm.first_engine_.session_ is lm.engine_.session_ and lm.engine_.spinning
    ref = facemark.load(small, engine="torch", detector="opencv")
    np.testing.assert_allclose(lm.detect(image, boxes=[box])[0].points,
                               ref.detect(image, boxes=[box])[0].points, atol=1e-2)
    with pytest.raises(ValueError, match="32, 32"):   # the view checks its own side
        lm.first_engine_.predict(np.zeros((1, 3, SIZE, SIZE), np.float32))
    # a graph for one side keeps it, and refuses another when asked for
    static = tmp_path / "static.onnx"
    assert main(["export", str(small), "-o", str(static), "--static-size"]) == 0
    one = facemark.load(static)
    assert one.first_pass_size_ == SIZE and one.first_engine_ is None
    with pytest.raises(ConfigError, match="ONNX graph for 64 px crops only"):
        facemark.load(static, first_pass_size=32)
    with pytest.raises(ConfigError, match="first_pass_size: crop size: expected one of 32, 64"):
        facemark.load(onnx, first_pass_size=48)
    assert main(["export", str(tiny), "-o", str(tmp_path / "x.pt"), "--first-pass-size", "48"]) == 2
    assert main(["export", str(tiny), "-o", str(tmp_path / "x.onnx"),
                 "--first-pass-size", "32"]) == 2
    assert main(["export", str(tiny), "-o", str(tmp_path / "x.pt"), "--static-size"]) == 2


def test_an_export_of_every_side_matches_pytorch_at_each(tiny, tmp_path):
    from facemark.inference.export import export_onnx
    from facemark.inference.onnx_engine import OnnxLandmarkEngine, TorchLandmarkEngine

    ref = TorchLandmarkEngine(tiny).load()
    path = export_onnx(ref.model_, tmp_path / "all.onnx", info=ref.info, dynamic_size=True)
    engine = OnnxLandmarkEngine(path).load()
    assert engine.input_sizes_ == tuple(ref.model_.input_sizes()) == (32, SIZE)
    for side in engine.input_sizes_:
        x = np.random.default_rng(side).random((3, 3, side, side), dtype=np.float32)
        points, conf = engine.at_size(side).predict(x)
        want_points, want_conf = ref.at_size(side).predict(x) if side != SIZE else ref.predict(x)
        np.testing.assert_allclose(points, want_points, atol=1e-4)
        np.testing.assert_allclose(conf, want_conf, atol=1e-4)
    fixed = OnnxLandmarkEngine(export_onnx(ref.model_, tmp_path / "one.onnx",
                                           info=ref.info)).load()
    assert fixed.input_sizes_ == (SIZE,)
    with pytest.raises(ConfigError, match="64 px crops only"):
        fixed.at_size(32)


def test_a_bundled_model_runs_its_first_pass_in_the_same_session(tiny, tmp_path, face,
                                                                   monkeypatch):
    image, box = face
    small = tmp_path / "small.pt"
    assert main(["export", str(tiny), "-o", str(small), "--first-pass-size", "32"]) == 0
    monkeypatch.setattr("facemark.inference.model_path.bundled_models",
                        lambda: {"default": {".pt": small}})
    monkeypatch.setenv("FACEMARK_CACHE", str(tmp_path / "cache"))
    lm = facemark.load(detector="opencv")
    assert lm.engine_.kind == "onnx" and lm.first_pass_size_ == 32
    assert lm.first_engine_.input_size == 32
    # one session for both passes (two sessions' weights took turns in the caches), which
    # keeps onnxruntime's spinning as any single session does
    assert lm.first_engine_.session_ is lm.engine_.session_ and lm.engine_.spinning
    assert len(list((tmp_path / "cache").iterdir())) == 1          # one cached graph
    ref = facemark.load(small, engine="torch", detector="opencv")
    np.testing.assert_allclose(lm.detect(image, boxes=[box])[0].points,
                               ref.detect(image, boxes=[box])[0].points, atol=1e-2)


def test_detect_cli_takes_the_first_pass_size(tiny, tmp_path, face):
    import cv2

    image, _ = face
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), image[..., ::-1])
    common = ["detect", str(photo), "--model", str(tiny), "--detector", "opencv", "--quiet"]
    assert main(common + ["-o", str(tmp_path / "a"), "--first-pass-size", "32"]) == 0
    assert (tmp_path / "a" / "predictions.json").is_file()
    assert main(common + ["-o", str(tmp_path / "b"), "--first-pass-size", "48"]) == 2
    with pytest.raises(SystemExit):            # argparse: not a whole number >= 0
        main(common + ["-o", str(tmp_path / "c"), "--first-pass-size", "-1"])


def test_speed_bench_times_the_first_pass_at_its_size(tiny, tmp_path, face):
    from facemark.inference.bench import _first_pass_engines, pipeline_latency
    from facemark.inference.export import export_onnx
    from facemark.inference.onnx_engine import OnnxLandmarkEngine, TorchLandmarkEngine

    image, box = face
    lm = facemark.load(tiny, engine="torch", detector="opencv", first_pass_size=32)
    torch_engine = TorchLandmarkEngine(tiny).load()
    own = export_onnx(torch_engine.model_, tmp_path / "model.onnx", info=torch_engine.info,
                      dynamic_size=True)
    engines = {"torch": torch_engine, "onnx": OnnxLandmarkEngine(own).load(),
               "also": OnnxLandmarkEngine(export_onnx(torch_engine.model_, tmp_path / "m.onnx",
                                                      info=torch_engine.info)).load()}
    firsts = _first_pass_engines(lm, engines)
    assert sorted(firsts) == ["onnx", "torch"]        # a graph of one side runs at that side
    assert {first.input_size for first in firsts.values()} == {32}
    assert firsts["onnx"].session_ is engines["onnx"].session_
    assert firsts["torch"].model_ is torch_engine.model_

    class Boxes:
        box_style = None

        def detect(self, img):
            from facemark.inference.detectors.base import DetectedFace

            return [DetectedFace(box=np.asarray(box), score=1.0)]

    timing = pipeline_latency(Boxes(), engines, [image], repeats=1, landmarker=lm,
                              first_engines=firsts)
    assert timing.faces == 1 and set(timing.landmarks_ms) == set(engines)
    assert _first_pass_engines(facemark.load(tiny, engine="torch"), engines) == {}

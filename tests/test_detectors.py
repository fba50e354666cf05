"""Face detectors: the shared interface and registry, each backend on real photos where the
backend runs here, YuNet through a tiny synthetic ONNX model, and every error path."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facemark.errors import ConfigError
from facemark.inference.detectors import (DEFAULT_DETECTOR, DetectedFace, DlibHogDetector,
                                          auto_detector_name,
                                          FaceDetector, HaarDetector, MediaPipeBlazeDetector,
                                          YuNetDetector, available_detectors, box_iou,
                                          check_image, create_detector, list_detectors, nms)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = DATA / "photos"
needs_photos = pytest.mark.skipif(not (PHOTOS / "group_t1.jpg").is_file(),
                                  reason=f"real photos not found at {PHOTOS}")
needs_dlib = pytest.mark.skipif(DlibHogDetector.check_available() is not None,
                                reason=f"dlib_hog: {DlibHogDetector.check_available()}")


def _read(name: str) -> np.ndarray:
    from facemark.data.images import read_image
    return read_image(PHOTOS / name)


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------
def test_list_and_available():
    # other test modules may register their own fake detectors (named test_*)
    names = [n for n in list_detectors() if not n.startswith("test_")]
    assert DEFAULT_DETECTOR == "auto" and names[0] == auto_detector_name()
    assert set(names) == {"opencv_haar", "yunet", "mediapipe", "dlib_hog"}
    avail = {k: v for k, v in available_detectors().items() if not k.startswith("test_")}
    assert list(avail) == names
    assert avail["opencv_haar"] is None          # the default always runs
    for name, reason in avail.items():
        assert reason is None or (isinstance(reason, str) and reason)


def test_auto_is_dlib_where_it_imports_else_haar(monkeypatch):
    want = "dlib_hog" if DlibHogDetector.check_available() is None else "opencv_haar"
    assert type(create_detector("auto")).name == want == auto_detector_name()
    monkeypatch.setattr(DlibHogDetector, "check_available", classmethod(lambda cls: "no dlib"))
    assert isinstance(create_detector("auto"), HaarDetector)
    assert list_detectors()[0] == "opencv_haar"
    with pytest.raises(ConfigError, match="takes no"):
        create_detector("auto:1")


def test_aliases_and_specs():
    assert isinstance(create_detector("haar"), HaarDetector)
    assert isinstance(create_detector("DLIB"), DlibHogDetector)
    assert isinstance(create_detector("blazeface"), MediaPipeBlazeDetector)
    assert create_detector("dlib_hog:1").upsample == 1
    assert create_detector("mediapipe:short").model == "short"
    assert create_detector("mediapipe:short").box_style == "mediapipe_short"
    # only the first ':' splits, so Windows drive letters and odd paths survive
    assert create_detector("yunet:C:/models/yunet.onnx").model_path == "C:/models/yunet.onnx"
    # None values are dropped: unset CLI flags keep the defaults
    assert create_detector("opencv_haar", min_size=None).min_size == HaarDetector().min_size
    ready = HaarDetector()
    assert create_detector(ready) is ready


@pytest.mark.parametrize("spec, kwargs, message", [
    ("haarr", {}, r"unknown name 'haarr'; did you mean 'haar'"),
    ("retinaface", {}, r"known: auto, dlib_hog, mediapipe, opencv_haar, (test_\w+, )*yunet"),
    ("opencv_haar:fast", {}, "takes no ':VALUE'"),
    ("dlib_hog:two", {}, "upsample count"),
    ("opencv_haar", {"min_sise": 30}, r"unknown argument 'min_sise'; did you mean 'min_size'"),
    ("yunet:/a.onnx", {"model_path": "/b.onnx"}, "given twice"),
    ("", {}, "expected a name"),
])
def test_registry_errors(spec, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_detector(spec, **kwargs)


def test_constructor_only_stores_and_load_validates():
    det = HaarDetector(min_size=-5, angles="sideways")
    assert det.get_params()["min_size"] == -5 and not det.is_loaded
    assert "min_size=-5" in repr(det)
    with pytest.raises(ConfigError, match=r"opencv_haar.min_size: expected at least 1, got -5"):
        det.load()
    with pytest.raises(ConfigError, match="opencv_haar.angles"):
        HaarDetector(angles="sideways").load()
    with pytest.raises(ConfigError, match="opencv_haar.cascade"):
        HaarDetector(cascade="nonsense").load()
    with pytest.raises(ConfigError, match="file not found"):
        HaarDetector(cascade="/no/such/cascade.xml").load()
    with pytest.raises(ConfigError, match="scale_factor"):
        HaarDetector(scale_factor=1.0).load()


# ---------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------
def test_check_image():
    grey = np.zeros((4, 5), np.uint8)
    assert check_image(grey).shape == (4, 5, 3)
    assert check_image(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="dtype float32"):
        check_image(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 5, 4\)"):
        check_image(np.zeros((4, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="got list"):
        check_image([[0]])
    with pytest.raises(ValueError, match="empty image"):
        check_image(np.zeros((0, 5, 3), np.uint8))


def test_detected_face():
    f = DetectedFace([1, 2, 11, 22], np.float32(0.5))
    assert f.box.dtype == np.float64 and isinstance(f.score, float)
    assert (f.width, f.height) == (10, 20) and f.size == pytest.approx(np.sqrt(200))
    assert f.points5 is None
    with pytest.raises(ValueError, match="4 numbers"):
        DetectedFace([1, 2, 3], 0.5)
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        DetectedFace([0, 0, 1, 1], 0.5, np.zeros((6, 2)))


def test_box_iou_and_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 10.0], [20, 20, 30, 30],
                      [2, 2, 6, 6]])
    iou = box_iou(boxes[:1], boxes)[0]
    np.testing.assert_allclose(iou, [1.0, 50 / 150, 1.0, 0.0, 16 / 100])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert nms(boxes, scores, 0.3).tolist() == [0, 3, 4]         # IoU(0, 1) = 1/3 > 0.3
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3, 4]
    # containment drops the small box lying inside box 0
    assert nms(boxes, scores, 0.5, containment=0.6).tolist() == [0, 1, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


box_strategy = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50),
                         st.floats(1, 50)).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(box_strategy, st.floats(0, 1)), min_size=1, max_size=12),
       st.floats(0.1, 0.9))
def test_nms_property(items, threshold):
    boxes = np.array([b for b, _ in items])
    scores = np.array([s for _, s in items])
    keep = nms(boxes, scores, threshold)
    iou = box_iou(boxes, boxes)
    # kept boxes never overlap each other above the threshold ...
    for i in keep:
        for j in keep:
            assert i == j or iou[i, j] <= threshold
    # ... and every dropped box overlaps a kept box that scores at least as high
    for d in set(range(len(boxes))) - set(keep.tolist()):
        assert any(iou[d, k] > threshold and scores[k] >= scores[d] for k in keep)
    assert list(scores[keep]) == sorted(scores[keep], reverse=True)


class _Fixed(FaceDetector):
    name = "fixed"

    def __init__(self, faces=(), min_size: int = 20, score_threshold: float = 0.0):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.faces = faces

    def _load(self):
        self.loads_ = getattr(self, "loads_", 0) + 1

    def _detect(self, image):
        return list(self.faces)


def test_base_filters_sorts_and_loads_once():
    faces = [DetectedFace([0, 0, 30, 30], 0.2), DetectedFace([0, 0, 10, 40], 0.9),
             DetectedFace([0, 0, 40, 40], 0.7), DetectedFace([5, 5, 60, 60], -0.1)]
    det = _Fixed(faces, min_size=20, score_threshold=0.0)
    out = det.detect(np.zeros((8, 8, 3), np.uint8))
    assert [f.score for f in out] == [0.7, 0.2]     # 10 px wide and negative score dropped
    det.detect(np.zeros((8, 8, 3), np.uint8))
    assert det.loads_ == 1
    assert _Fixed().detect(np.zeros((8, 8, 3), np.uint8)) == []


# ---------------------------------------------------------------------------------------
# OpenCV Haar (the default)
# ---------------------------------------------------------------------------------------
def test_haar_blank_image_gives_empty_list():
    det = HaarDetector().load()
    assert det.detect(np.full((200, 300, 3), 128, np.uint8)) == []


@needs_photos
def test_haar_finds_all_six_faces_of_the_group_photo():
    """REFERENCE: a single upright pass finds 4 of 6; rotated passes + eye check find 6."""
    image = _read("group_t1.jpg")
    faces = HaarDetector().detect(image)
    assert len(faces) == 6
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.5
    # six different faces, none overlapping another
    iou = box_iou(np.stack([f.box for f in faces]), np.stack([f.box for f in faces]))
    assert (iou[~np.eye(6, dtype=bool)] < 0.1).all()
    # the classic single upright pass misses tilted faces, even with no score threshold
    upright = HaarDetector(angles=(0,), verify_eyes=False, score_threshold=0.0).detect(image)
    found = box_iou(np.stack([f.box for f in faces]), np.stack([f.box for f in upright]))
    assert (found.max(axis=1) < 0.3).sum() >= 1


@needs_photos
def test_haar_boxes_follow_image_scaling():
    """Downscaling for speed maps boxes back to input pixels: the same face at half the
    size gives half the box (within a few pixels)."""
    image = _read("couple.jpg")
    det = HaarDetector(angles=(0, 12)).load()
    full = det.detect(image)
    half = det.detect(cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    assert len(full) == len(half) == 2
    a = sorted(f.box[0] for f in full)
    b = sorted(f.box[0] * 2 for f in half)
    np.testing.assert_allclose(a, b, atol=0.08 * full[0].width)


@needs_photos
def test_haar_finds_a_face_rolled_by_twenty_degrees():
    image = _read("img24.jpg")
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)
    rolled = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    assert len(HaarDetector().detect(rolled)) == 1
    assert HaarDetector(angles=(0,), score_threshold=0.0).detect(rolled) == []  # upright misses


# ---------------------------------------------------------------------------------------
# dlib HOG (optional extra)
# ---------------------------------------------------------------------------------------
@needs_dlib
def test_dlib_blank_and_validation():
    assert DlibHogDetector().detect(np.zeros((100, 120, 3), np.uint8)) == []
    with pytest.raises(ConfigError, match="dlib_hog.upsample"):
        DlibHogDetector(upsample=-1).load()


@needs_dlib
@needs_photos
def test_dlib_finds_all_six_faces_of_the_group_photo():
    faces = create_detector("dlib_hog").detect(_read("group_t1.jpg"))
    assert len(faces) == 6
    assert all(f.points5 is None for f in faces)


def test_dlib_unavailable_is_explained(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'", name="dlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    reason = DlibHogDetector.check_available()
    assert "facemark[dlib]" in reason
    assert available_detectors()["dlib_hog"] == reason
    with pytest.raises(ConfigError, match=r"'dlib_hog' cannot run here: .*facemark\[dlib\]"):
        DlibHogDetector().load()


# ---------------------------------------------------------------------------------------
# MediaPipe BlazeFace (optional extra, conflicts with onnx>=1.23 over protobuf)
# ---------------------------------------------------------------------------------------
def test_mediapipe_availability_is_explained():
    reason = MediaPipeBlazeDetector.check_available()
    if reason is None:
        pytest.skip("mediapipe is importable here: the real-photo test covers it")
    assert "mediapipe" in reason and ("facemark[mediapipe]" in reason or "0.10.21" in reason)
    with pytest.raises(ConfigError, match="cannot run here"):
        MediaPipeBlazeDetector().load()


@pytest.mark.skipif(MediaPipeBlazeDetector.check_available() is not None,
                    reason=f"mediapipe: {MediaPipeBlazeDetector.check_available()}")
@needs_photos
def test_mediapipe_tiled_finds_all_six_faces():
    faces = MediaPipeBlazeDetector().detect(_read("group_t1.jpg"))
    assert len(faces) == 6
    pts = faces[0].points5
    assert np.isfinite(pts[:3]).all() and np.isnan(pts[3:]).all()
    assert pts[0, 0] < pts[1, 0]      # face5 order: the image-left eye first


def test_mediapipe_tiles_cover_the_image():
    det = MediaPipeBlazeDetector(tile_fraction=0.5, tile_overlap=0.25)
    regions = det._regions(400, 1000)
    assert regions[0] == (0, 0, 1000, 400)
    tiles = np.array(regions[1:])
    assert (tiles[:, 2] - tiles[:, 0] == 200).all() and (tiles[:, 3] - tiles[:, 1] == 200).all()
    covered = np.zeros((400, 1000), bool)
    for x1, y1, x2, y2 in tiles:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    # small images are not tiled (tiles would be below the model's 192 px input)
    assert MediaPipeBlazeDetector()._regions(200, 250) == [(0, 0, 250, 200)]
    with pytest.raises(ConfigError, match="mediapipe.model"):
        MediaPipeBlazeDetector(model="medium")._load()


# ---------------------------------------------------------------------------------------
# YuNet: error paths, and the happy path through a synthetic ONNX model
# ---------------------------------------------------------------------------------------
def test_yunet_needs_a_model_path(tmp_path):
    with pytest.raises(ConfigError, match=r"yunet:/path/to/face_detection_yunet"):
        create_detector("yunet").load()
    with pytest.raises(ConfigError, match="file not found"):
        create_detector(f"yunet:{tmp_path / 'missing.onnx'}").load()
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    with pytest.raises(ConfigError, match=r"expected an \.onnx file"):
        YuNetDetector(model_path=txt).load()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ConfigError, match="cannot load .*broken.onnx as a YuNet model"):
        YuNetDetector(model_path=bad).load()


def _fake_yunet(path: Path) -> Path:
    """A model with YuNet's inputs and outputs: each 32 x 32 cell of the stride-32 level
    scores the mean of its first input channel (blue: YuNet reads BGR) / 255; box offsets
    are 0 (a 32 x 32 box at the cell's top-left corner) and all five points sit there."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(np.array(v, dtype), n) for n, v, dtype in [
        ("k", [1 / 255.0], np.float32), ("zero", [0.0], np.float32),
        ("s0", [0], np.int64), ("s1", [1], np.int64), ("ax", [1], np.int64)]]
    nodes = [helper.make_node("Slice", ["input", "s0", "s1", "ax"], ["c0"]),
             helper.make_node("Mul", ["c0", "k"], ["norm"])]
    outputs = []
    for s in (8, 16, 32):
        init += [numpy_helper.from_array(np.array([1, -1, d], np.int64), f"shape{d}_{s}")
                 for d in (1, 4, 10)]
        nodes += [helper.make_node("AveragePool", ["norm"], [f"p{s}"], kernel_shape=[s, s],
                                   strides=[s, s]),
                  helper.make_node("Mul", [f"p{s}", "zero"], [f"z{s}"])]
        score = f"p{s}" if s == 32 else f"z{s}"          # only stride 32 finds faces
        nodes += [helper.make_node("Reshape", [score, f"shape1_{s}"], [f"cls_{s}"]),
                  helper.make_node("Reshape", [score, f"shape1_{s}"], [f"obj_{s}"]),
                  helper.make_node("Concat", [f"z{s}"] * 4, [f"z4_{s}"], axis=1),
                  helper.make_node("Concat", [f"z{s}"] * 10, [f"z10_{s}"], axis=1),
                  helper.make_node("Reshape", [f"z4_{s}", f"shape4_{s}"], [f"bbox_{s}"]),
                  helper.make_node("Reshape", [f"z10_{s}", f"shape10_{s}"], [f"kps_{s}"])]
        outputs += [helper.make_tensor_value_info(f"{k}_{s}", TensorProto.FLOAT, [1, f"n{s}", d])
                    for k, d in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))]
    order = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    outputs.sort(key=lambda v: order.index(v.name))
    graph = helper.make_graph(nodes, "fake_yunet", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 3, "H", "W"])], outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_yunet_happy_path_with_a_synthetic_model(tmp_path):
    pytest.importorskip("onnx")
    model = _fake_yunet(tmp_path / "fake_yunet.onnx")
    image = np.zeros((96, 128, 3), np.uint8)
    image[32:64, 64:96] = (0, 0, 255)            # RGB blue: the model's first BGR channel
    det = create_detector(f"yunet:{model}", max_side=None)
    faces = det.detect(image)
    assert len(faces) == 1
    f = faces[0]
    assert f.score == pytest.approx(1.0)
    # YuNet decodes cell (row 1, col 2) of stride 32 with zero offsets as centre (64, 32),
    # size 32: box [48, 16, 80, 48]; all five points at the cell corner (64, 32)
    np.testing.assert_allclose(f.box, [48, 16, 80, 48], atol=1e-4)
    np.testing.assert_allclose(f.points5, np.tile([64.0, 32.0], (5, 1)), atol=1e-4)
    # a red square is not blue in BGR: the RGB -> BGR conversion happens
    red = np.zeros_like(image)
    red[32:64, 64:96] = (255, 0, 0)
    assert det.detect(red) == []
    # downscaling for speed maps boxes and points back to input pixels
    big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    faces = create_detector(f"yunet:{model}", max_side=128).detect(big)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, (np.array([48, 16, 80, 48]) + 0.5) * 2 - 0.5,
                               atol=1e-3)
    np.testing.assert_allclose(faces[0].points5[0], (np.array([64, 32]) + 0.5) * 2 - 0.5,
                               atol=1e-3)

"""``facemark bench``: cost table, speed report, and the timing helpers they stand on.

Small models at 64 px, few runs: these tests check what is measured and how it is reported,
not how fast this machine is.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facemark.cli import main
from facemark.errors import ConfigError
from facemark.evaluation.bench import Timing, compare_latency, find_dlib_predictor
from facemark.io import atomic_write_text, markdown_table
from facemark.inference.bench import landmarks_for_boxes, pipeline_latency, speed_report
from facemark.models.model_file import ModelInfo, save_model
from facemark.inference.onnx_engine import load_engine
from facemark.models import create_model

from synthetic import make_face, template68

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):   # (conftest.py)
    yield


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("pipnet_mbv2", num_points=68, input_size=SIZE,
                         mean_face=template68() * 0.8 + 0.1)
    path = tmp_path_factory.mktemp("model") / "mbv2.pt"
    return save_model(model, ModelInfo("300w68", SIZE, "300w", {}), path)


def table_rows(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the Markdown table whose first header is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


# ---------------------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------------------
def test_compare_latency_interleaves_in_blocks_and_counts_runs():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    timings = compare_latency(fns, runs=5, warmup=2, block=2, per=4)
    assert timings["a"].runs == timings["b"].runs == 5
    # warm-up 2 each, then turns of (1 untimed + 2 timed) until 5 timed: 2 + 2 + 1
    assert "".join(calls) == "aabb" + "aaabbb" + "aaabbb" + "aabb"
    assert timings["a"].per == 4
    t = Timing((1.0, 3.0, 2.0, 10.0), per=2)
    assert t.median_ms == 2.5 and t.per_item_ms == 1.25 and t.quantile_ms(1.0) == 10.0
    with pytest.raises(ValueError, match="runs and block must be >= 1"):
        compare_latency(fns, runs=0)


def test_markdown_table_and_atomic_write(tmp_path):
    text = markdown_table(["engine", "ms"], [["onnx", "1.5"], ["torch", "3.0"]])
    assert text.splitlines() == ["| engine | ms |", "|---|---:|", "| onnx | 1.5 |",
                                 "| torch | 3.0 |"]
    out = atomic_write_text(tmp_path / "sub" / "r.md", text)
    assert out.read_text() == text and [p.name for p in out.parent.iterdir()] == ["r.md"]
    assert markdown_table(["a", "b", "c"], [[1, 2.5, None]], align="lrl").splitlines() == [
        "| a | b | c |", "|---|---:|---|", "| 1 | 2.5 | None |"]
    with pytest.raises(ValueError, match="align 'lr' has 2 characters for 3 columns"):
        markdown_table(["a", "b", "c"], [], align="lr")


def test_dlib_predictor_missing_file_is_reported_not_raised(tmp_path):
    predictor, line = find_dlib_predictor(tmp_path / "nope.dat")
    assert predictor is None
    assert "not found" in line or "not installed" in line


def test_landmarks_for_boxes_maps_back_to_the_image(model_file):
    """A face box -> crop -> points -> image pixels, against predicting the crop directly."""
    from facemark.data.crops import box_to_affine, crop_box, invert_affine, transform_points, \
        warp_image
    from facemark.models.crop_predict import crops_to_images

    engine = load_engine(model_file, threads=1)
    image, _ = make_face(np.random.default_rng(1), size=120)
    box = np.array([20.0, 25.0, 90.0, 100.0])
    got = landmarks_for_boxes(engine, image, [box, box + 5])
    assert got.shape == (2, 68, 2)
    matrix = box_to_affine(crop_box("detector", box=box), SIZE)
    crop = warp_image(image, matrix, SIZE)
    p, _ = engine.predict(crops_to_images(crop[None]))
    np.testing.assert_allclose(got[0], transform_points(p[0] * SIZE - 0.5, invert_affine(matrix)),
                               atol=1e-6)
    assert landmarks_for_boxes(engine, image, []).shape == (0, 68, 2)


def test_pipeline_through_a_landmarker_crops_and_refines_as_detect_does(model_file):
    """With a landmarker, each engine runs in its place: its calibration and refine passes."""
    import facemark
    from facemark.inference.bench import folder_throughput
    from facemark.inference.detectors.base import DetectedFace

    class OneFace:
        box_style = "test_style"

        def detect(self, image):
            return [DetectedFace(box=[20, 25, 90, 100], score=1.0)]

    class Counting:
        def __init__(self, engine):
            self.engine, self.calls = engine, 0
            self.input_size, self.num_points, self.info = engine.input_size, engine.num_points, \
                engine.info

        def predict(self, x):
            self.calls += 1
            return self.engine.predict(x)

    lm = facemark.load(model_file, detector="opencv")          # 300w crops: refines once
    assert lm.refine_ == 1
    image, _ = make_face(np.random.default_rng(2), size=120)
    engine = Counting(load_engine(model_file, threads=1))
    pt = pipeline_latency(OneFace(), {"e": engine}, [image], repeats=2, landmarker=lm)
    assert pt.faces == 1 and engine.calls >= 4 and engine.calls % 2 == 0   # 2 calls per face
    lm.engine_ = engine.engine                                  # the same points as detect
    want = lm.detect(image, boxes=[[20, 25, 90, 100]], box_style="test_style")[0].points
    from facemark.inference.bench import _landmark_fn
    engine.calls = 0
    got = _landmark_fn(engine, "detector", lm, "test_style")(image, [[20, 25, 90, 100]])
    assert engine.calls == 2
    np.testing.assert_allclose(got[0].points, want, atol=1e-6)
    assert folder_throughput(OneFace(), engine, [], landmarker=lm).images == 0


def test_pipeline_latency_counts_faces_from_the_detector(model_file):
    class TwoFaces:
        def detect(self, image):
            from facemark.inference.detectors.base import DetectedFace
            return [DetectedFace(box=[10, 10, 50, 50], score=1.0),
                    DetectedFace(box=[60, 10, 100, 50], score=0.9)]

    engine = load_engine(model_file, threads=1)
    images = [np.zeros((80, 120, 3), np.uint8)] * 3
    pt = pipeline_latency(TwoFaces(), {"e": engine}, images, repeats=2)
    assert (pt.images, pt.faces) == (3, 6)
    assert pt.landmarks_ms["e"] > 0 and pt.detect_ms >= 0
    assert pt.per_face_ms("e") == pytest.approx(pt.landmarks_ms["e"] / 6)
    assert pt.dlib_ms is None


# ---------------------------------------------------------------------------------------
# facemark bench cost
# ---------------------------------------------------------------------------------------
def test_bench_cost_table_has_the_columns(tmp_path, capsys):
    out_file = tmp_path / "cost.md"
    rc = main(["bench", "cost", "--models", "pipnet_mbv2", "coordnet:hidden=[64]",
               "--input-size", str(SIZE), "--runs", "3", "--threads", "1", "--onnx",
               "--out", str(out_file)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    header, rows = table_rows(out, "Model")
    assert header == ["Model", "Backbone", "Params (M)", "GFLOPs", "GMACs",
                      "PyTorch ms (batch 1, 1 thr)", "PyTorch FPS",
                      "ONNX Runtime ms (1 thr)", "ONNX speed-up"]
    assert [r[0] for r in rows] == ["pipnet_mbv2", "coordnet (hidden=[64])"]
    assert rows[0][1] == "mobilenet_v2" and rows[1][1] == "resnet18"
    torch.manual_seed(0)
    mbv2 = create_model("pipnet_mbv2", num_points=68, input_size=SIZE,
                        mean_face=template68() * 0.8 + 0.1)
    assert float(rows[0][2]) == pytest.approx(sum(p.numel() for p in mbv2.parameters()) / 1e6,
                                              abs=0.05)
    for row in rows:
        gflops, gmacs, ms, fps, onnx_ms = map(float, (row[3], row[4], row[5], row[6], row[7]))
        assert gflops > 0 and gmacs == pytest.approx(gflops / 2, abs=0.01)
        assert fps == pytest.approx(1000 / ms, rel=0.02, abs=0.06) and onnx_ms > 0   # fps has 1 decimal
        assert row[8].endswith("x")
    assert "Machine:" in out
    assert out_file.read_text().strip() in out


def test_bench_cost_bad_model_spec_is_one_line(capsys):
    rc = main(["bench", "cost", "--models", "mapnet:net_stride"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1 and "expected NAME:KEY=VALUE" in err
    rc = main(["bench", "cost", "--models", "pipnet_r81"])
    _, err = capsys.readouterr()
    assert rc == 2 and "did you mean 'pipnet_r18'" in err


def test_parse_model_spec():
    from facemark.cli.bench import parse_model_spec

    assert parse_model_spec("mapnet:net_stride=2,deconv_channels=64") == \
        ("mapnet", {"net_stride": 2, "deconv_channels": 64})
    assert parse_model_spec("pipnet_r18") == ("pipnet_r18", {})
    assert parse_model_spec("pipnet:backbone=resnet50") == ("pipnet", {"backbone": "resnet50"})
    with pytest.raises(ConfigError):
        parse_model_spec("mapnet:=2")


# ---------------------------------------------------------------------------------------
# facemark bench speed
# ---------------------------------------------------------------------------------------
def test_speed_report_model_alone(model_file, tmp_path):
    before = torch.get_num_threads()
    text = speed_report(model_file, threads=[1, 2], runs=6, batch=2)
    assert torch.get_num_threads() == before        # process-wide setting restored
    header, rows = table_rows(text, "engine")
    assert header == ["engine", "threads", "batch", "ms per run (median)", "ms per face",
                      "p90 ms per face", "faces/s", "speed-up vs PyTorch"]
    # dlib's predictor joins (batch 1) where it is installed
    rows = [r for r in rows if not r[0].startswith("dlib")]
    names = [(r[0], r[1], r[2]) for r in rows]
    assert names == [("PyTorch (eager)", "1", "1"), ("ONNX Runtime", "1", "1"),
                     ("PyTorch (eager)", "1", "2"), ("ONNX Runtime", "1", "2"),
                     ("PyTorch (eager)", "2", "1"), ("ONNX Runtime", "2", "1"),
                     ("PyTorch (eager)", "2", "2"), ("ONNX Runtime", "2", "2")]
    for r in rows:
        run_ms, face_ms = float(r[3]), float(r[4])
        assert face_ms == pytest.approx(run_ms / int(r[2]), abs=0.01)
    assert rows[0][7] == "1.00x"
    torch_ms, onnx_ms = float(rows[0][4]), float(rows[1][4])
    assert float(rows[1][7][:-1]) == pytest.approx(torch_ms / onnx_ms, rel=0.02)
    assert "dlib 68-point predictor:" in text or "dlib:" in text
    assert "skipped (give --photos DIR)" in text
    with pytest.raises(ValueError, match="threads must be positive integers"):
        speed_report(model_file, threads=[0])


def test_bench_speed_cli_with_photos_and_an_int8_file(model_file, tmp_path, capsys):
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image, _ = make_face(rng, size=160)
        cv2.imwrite(str(photos / f"p{i}.jpg"), image[:, :, ::-1])
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    # an int8 export of the same model joins the comparison
    from facemark.inference.export import export_onnx
    from facemark.models.model_file import load_model
    from facemark.inference.quantize import quantize_onnx

    model, info = load_model(model_file)
    float_path = export_onnx(model, tmp_path / "f.onnx", info=info)
    crops = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    int8 = quantize_onnx(float_path, tmp_path / "q.onnx", crops)
    out_file = tmp_path / "speed.md"
    rc = main(["bench", "speed", str(model_file), "--photos", str(photos), "--threads", "1",
               "--runs", "4", "--repeats", "1", "--batch", "1", "--also", str(int8),
               "--out", str(out_file)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    _, rows = table_rows(out, "engine")
    assert [r[0] for r in rows if not r[0].startswith("dlib")] == [
        "PyTorch (eager)", "ONNX Runtime", "ONNX Runtime int8 (q.onnx)"]
    if "skipped (no face detectors" not in out:
        from facemark.inference.detectors import auto_detector_name

        assert f"### Detection ({auto_detector_name()}) + landmarks on 2 photos" in out
        assert "### Throughput: one pass over" in out
        assert "Unreadable, skipped:" in out and "broken.jpg" in out
    assert out_file.read_text().strip() in out


def test_bench_speed_errors_are_one_line(tmp_path, capsys):
    rc = main(["bench", "speed", str(tmp_path / "missing.pt")])
    _, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1 and "missing.pt: model file not found" in err

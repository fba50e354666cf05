"""ONNX export, the onnxruntime/PyTorch engines, int8 quantisation and ``facemark export``.

Models are built at 64 px with random weights (no training): the point is that the ONNX
file computes what PyTorch computes, decode included. One CPU thread throughout.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from facemark.cli import main
from facemark.errors import ConfigError, DataError
from facemark.models.crop_predict import predict_crops
from facemark.inference.export import ExportError, export_onnx, parity_inputs, read_metadata
from facemark.models.model_file import ModelInfo, load_model, save_model
from facemark.inference.onnx_engine import (OnnxLandmarkEngine, TorchLandmarkEngine,
                                            engine_kind, load_engine)
from facemark.inference.quantize import (CropCalibrationReader, load_calibration_crops,
                                         predict_points, quantization_report, quantize_onnx)
from facemark.models import create_model, model_from_config

from synthetic import make_pts_dataset, template68

N = 68
SIZE = 64
MEAN_FACE = template68() * 0.8 + 0.1


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):   # (conftest.py)
    yield


def build(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    if name.startswith("pipnet"):
        kwargs.setdefault("mean_face", MEAN_FACE)
    model = create_model(name, num_points=N, input_size=SIZE, **kwargs).eval()
    for layer in model.head.modules():      # spread the scores so argmax ties cannot flip
        if isinstance(layer, nn.Conv2d) and layer.out_channels == N:
            nn.init.normal_(layer.weight, std=0.05)
    return model


INFO = ModelInfo(scheme="300w68", input_size=SIZE, crop_rule="wflw", model_config={})


@pytest.fixture(scope="module")
def r18_files(tmp_path_factory):
    """pipnet_r18 as a .pt model file and its ONNX export."""
    folder = tmp_path_factory.mktemp("r18")
    model = build("pipnet_r18")
    pt = save_model(model, INFO, folder / "r18.pt")
    onnx_path = export_onnx(model, folder / "r18.onnx", info=INFO)
    return model, pt, onnx_path


# ---------------------------------------------------------------------------------------
# Export: parity, dynamic batch, metadata
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pipnet_r18", "pipnet_mbv2"])
def test_export_parity_with_dynamic_batch(name, tmp_path):
    model = build(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", info=INFO)
    assert not model.training
    onnx.checker.check_model(str(path))
    session = OnnxLandmarkEngine(path, threads=1).load()
    for batch in (1, 3):                    # one file, two batch sizes
        x = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        points, conf = session.predict(x.numpy())
        ref_points, ref_conf = model.predict(x)
        assert points.shape == (batch, N, 2) and conf.shape == (batch, N)
        np.testing.assert_allclose(points, ref_points.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(conf, ref_conf.numpy(), atol=1e-4, rtol=0)


def test_static_batch_export_fixes_the_batch(tmp_path):
    path = export_onnx(build("pipnet_nonrm"), tmp_path / "m.onnx", info=INFO,
                       dynamic_batch=False)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, SIZE, SIZE]


def test_dynamic_size_export_takes_each_side_the_model_runs_on(tmp_path):
    model = build("pipnet_mbv2")
    path = export_onnx(model, tmp_path / "m.onnx", info=INFO, dynamic_size=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "size", "size"]
    engine = OnnxLandmarkEngine(path, threads=1).load()
    assert engine.input_sizes_ == (32, SIZE) == tuple(model.input_sizes())
    assert "input_sizes" not in engine.info.info           # read into input_sizes_
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(engine.at_size(32).predict(x.numpy())[0],
                               model.predict(x)[0].numpy(), atol=1e-4, rtol=0)
    # a head sized for its input has one side: the graph stays fixed
    coord = build("coordnet")
    assert coord.input_sizes() == [SIZE]
    fixed = export_onnx(coord, tmp_path / "c.onnx", info=INFO, dynamic_size=True)
    dims = onnx.load(str(fixed)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, SIZE, SIZE]
    assert OnnxLandmarkEngine(fixed).load().input_sizes_ == (SIZE,)
    with pytest.raises(ConfigError, match="own input_size"):
        export_onnx(model, tmp_path / "x.onnx", info=INFO, input_size=32, any_size=True,
                    dynamic_size=True)


def test_a_session_that_takes_turns_stops_spinning_after_each_run(r18_files):
    from facemark.inference.export import ort_session

    _, _, path = r18_files
    options = ort_session(path, threads=1, spinning=False).get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    with pytest.raises(RuntimeError):    # never turned off altogether (each op would wait)
        options.get_session_config_entry("session.intra_op.allow_spinning")
    with pytest.raises(RuntimeError):    # onnxruntime's default: spin
        ort_session(path, threads=1).get_session_options().get_session_config_entry(
            "session.force_spinning_stop")


def test_export_restores_training_mode(tmp_path):
    model = build("coordnet").train()
    export_onnx(model, tmp_path / "m.onnx", info=INFO)
    assert model.training


def test_metadata_round_trip(r18_files):
    model, _, path = r18_files
    meta = read_metadata(onnx.load(str(path)))
    assert meta["scheme"] == "300w68" and meta["input_size"] == str(SIZE)
    assert meta["crop_rule"] == "wflw" and meta["num_points"] == str(N)
    assert meta["version"]
    engine = load_engine(path)
    assert (engine.scheme, engine.input_size, engine.crop_rule, engine.num_points) == \
        ("300w68", SIZE, "wflw", N)
    assert engine.quantization is None
    rebuilt = model_from_config(engine.info.model_config)   # the architecture travels too
    assert type(rebuilt.head) is type(model.head)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


def test_failed_parity_raises_and_writes_nothing(tmp_path, monkeypatch):
    model = build("pipnet_nonrm")
    real = model.predict

    def shifted(images):
        points, conf = real(images)
        return points + 1e-3, conf

    monkeypatch.setattr(model, "predict", shifted)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"differ by 0\.001 in points"):
        export_onnx(model, out, info=INFO)
    assert list(tmp_path.iterdir()) == []   # no file, no temporary left behind


def test_export_rejects_bad_scheme_crop_rule_and_size(tmp_path):
    with pytest.raises(ConfigError, match="wflw98 has 98 points but the model predicts 68"):
        export_onnx(build("coordnet"), tmp_path / "m.onnx", scheme="wflw98")
    with pytest.raises(ConfigError, match="unknown rule 'nope'"):
        export_onnx(build("coordnet"), tmp_path / "m.onnx", scheme="300w68", crop_rule="nope")
    with pytest.raises(ConfigError, match="input_size 128 differs from the 64 px"):
        export_onnx(build("coordnet"), tmp_path / "m.onnx", 128, scheme="300w68")
    assert list(tmp_path.iterdir()) == []


def test_parity_inputs_are_images():
    x = parity_inputs(32, batch=2)
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05


# ---------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------
def test_engine_auto_selection_by_suffix(r18_files, tmp_path):
    model, pt, onnx_path = r18_files
    onnx_engine, torch_engine = load_engine(onnx_path), load_engine(pt)
    assert isinstance(onnx_engine, OnnxLandmarkEngine)
    assert isinstance(torch_engine, TorchLandmarkEngine)
    assert engine_kind("a.ckpt") == "torch" and engine_kind("A.ONNX") == "onnx"
    x = parity_inputs(SIZE, batch=2, seed=5)
    (p1, c1), (p2, c2) = onnx_engine.predict(x), torch_engine.predict(x)
    assert isinstance(p1, np.ndarray) and isinstance(p2, np.ndarray)
    np.testing.assert_allclose(p1, p2, atol=1e-4)
    np.testing.assert_allclose(c1, c2, atol=1e-4)
    for engine in (onnx_engine, torch_engine):
        assert (engine.num_points, engine.input_size, engine.scheme, engine.crop_rule) == \
            (N, SIZE, "300w68", "wflw")
    with pytest.raises(DataError, match="cannot tell the engine from the suffix '.bin'"):
        load_engine(tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="engine 'onnx' cannot run r18.pt: export it first"):
        load_engine(pt, engine="onnx")
    with pytest.raises(ConfigError, match="expected one of auto, torch, onnx"):
        load_engine(pt, engine="tensorrt")


def test_engines_drop_into_predict_crops(r18_files):
    """predict_crops (the pipeline's last step) runs with either engine as with the model."""
    model, pt, onnx_path = r18_files
    crops = (parity_inputs(SIZE, batch=2, seed=3).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    ref_p, ref_c = predict_crops(model, crops, flip_test=True, scheme="300w68")
    for engine in (load_engine(onnx_path, threads=1), load_engine(pt, threads=1)):
        p, c = predict_crops(engine, crops, flip_test=True, scheme="300w68")
        np.testing.assert_allclose(p, ref_p, atol=1e-4 * SIZE)
        np.testing.assert_allclose(c, ref_c, atol=1e-4)
        tp, tc = engine.predict(torch.from_numpy(parity_inputs(SIZE, batch=1)))
        assert isinstance(tp, torch.Tensor) and tp.shape == (1, N, 2)


def test_engine_errors_name_the_file(tmp_path, r18_files):
    _, _, onnx_path = r18_files
    with pytest.raises(DataError, match="missing.onnx: ONNX model file not found"):
        OnnxLandmarkEngine(tmp_path / "missing.onnx").load()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(DataError, match="junk.onnx: onnxruntime cannot load the model"):
        OnnxLandmarkEngine(junk).load()
    bare = onnx.load(str(onnx_path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(DataError, match="not a facemark ONNX export: metadata scheme, "
                                        "input_size, crop_rule missing"):
        OnnxLandmarkEngine(tmp_path / "bare.onnx").load()
    engine = OnnxLandmarkEngine(onnx_path)          # constructor stores, load() checks
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 64, 64\).*got shape \(1, 64, 64, 3\)"):
        engine.predict(np.zeros((1, SIZE, SIZE, 3), np.float32))
    with pytest.raises(ConfigError, match="threads: expected a positive integer"):
        OnnxLandmarkEngine(onnx_path, threads=0).load()
    with pytest.raises(ConfigError, match="'CUDAExecutionProvider' is not available"):
        OnnxLandmarkEngine(onnx_path, providers=["CUDAExecutionProvider"]).load()


# ---------------------------------------------------------------------------------------
# int8 quantisation
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_faces(tmp_path_factory):
    return make_pts_dataset(tmp_path_factory.mktemp("faces"), n=20)


def test_calibration_crops_from_a_dataset_and_a_crop_folder(synthetic_faces, tmp_path):
    data = load_calibration_crops(synthetic_faces, SIZE, "300w", scheme="300w68", limit=12)
    assert data.kind == "dataset" and data.crops.shape == (12, SIZE, SIZE, 3)
    assert data.landmarks.shape == (12, N, 2)
    # 300w crops: the landmark box x1.1 fills the crop, so points lie inside it
    assert np.nanmin(data.landmarks) > 0 and np.nanmax(data.landmarks) < SIZE
    import cv2

    for i, crop in enumerate(data.crops[:3]):
        cv2.imwrite(str(tmp_path / f"crop{i}.png"), crop[:, :, ::-1])
    folder = load_calibration_crops(tmp_path, SIZE, "300w")
    assert folder.kind == "images" and folder.landmarks is None and len(folder) == 3
    np.testing.assert_array_equal(folder.crops, data.crops[:3])   # taken whole, same size
    with pytest.raises(DataError, match="model predicts wflw98"):
        load_calibration_crops(synthetic_faces, SIZE, "300w", scheme="wflw98")


def test_calibration_reader_batches_and_rewinds():
    crops = np.zeros((5, 8, 8, 3), np.uint8)
    crops[4] = 255
    reader = CropCalibrationReader(crops, batch_size=2)
    batches = []
    while (b := reader.get_next()) is not None:
        batches.append(b["images"])
    assert [b.shape for b in batches] == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert batches[-1].max() == 1.0 and batches[-1].dtype == np.float32
    reader.rewind()
    assert reader.get_next()["images"].shape == (2, 3, 8, 8)


@pytest.mark.parametrize("name, median_px, max_px", [("coordnet", 1.0, 2.0),
                                                     ("pipnet_r18", 1.0, None)])
def test_int8_outputs_stay_close_to_float(name, median_px, max_px, synthetic_faces, tmp_path):
    data = load_calibration_crops(synthetic_faces, SIZE, "300w", scheme="300w68")
    calib, test = data.split(14)
    float_path = export_onnx(build(name), tmp_path / "f.onnx", info=INFO)
    int8_path = quantize_onnx(float_path, tmp_path / "q.onnx", calib.crops)
    graph = onnx.load(str(int8_path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8_path.stat().st_size < 0.5 * float_path.stat().st_size
    f, q = load_engine(float_path, threads=1), load_engine(int8_path, threads=1)
    assert q.quantization.startswith("int8 static QDQ, per-channel") and q.scheme == "300w68"
    pf, _ = predict_points(f, test.crops)
    pq, _ = predict_points(q, test.crops)
    move = np.linalg.norm(pf - pq, axis=2)          # crop pixels of a 64 px crop
    assert np.median(move) < median_px
    if max_px is not None:                          # a regression head has no argmax to flip
        assert move.max() < max_px
    report = quantization_report(f, q, test.crops, test.landmarks, "300w68")
    assert report["scored"] == len(test) == 6
    assert abs(report["nme_int8"] - report["nme_float"]) < 0.05


def test_quantize_checks_the_crops(tmp_path, r18_files):
    _, _, onnx_path = r18_files
    with pytest.raises(ValueError, match="crops are 32x32 px, the model takes 64x64"):
        quantize_onnx(onnx_path, tmp_path / "q.onnx", np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="crops must be uint8"):
        quantize_onnx(onnx_path, tmp_path / "q.onnx", np.zeros((2, SIZE, SIZE, 3), np.float32))


# ---------------------------------------------------------------------------------------
# facemark export
# ---------------------------------------------------------------------------------------
def run_cli(capsys, *args):
    rc = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_export_onnx_and_pt(r18_files, tmp_path, capsys):
    model, pt, _ = r18_files
    rc, out, err = run_cli(capsys, pt, "-o", tmp_path / "m.onnx")
    assert rc == 0, err
    assert "onnxruntime matches PyTorch within 1e-4" in out
    engine = load_engine(tmp_path / "m.onnx")
    assert engine.crop_rule == "wflw" and engine.metadata_["exported_from"] == "r18.pt"
    rc, out, err = run_cli(capsys, pt, "-o", tmp_path / "copy.model", "--format", "pt")
    assert rc == 0, err
    again, info = load_model(tmp_path / "copy.model")
    x = parity_inputs(SIZE, batch=1)
    np.testing.assert_array_equal(again.predict(torch.from_numpy(x))[0],
                                  model.predict(torch.from_numpy(x))[0])
    assert info.crop_rule == "wflw"
    rc, out, err = run_cli(capsys, pt, "-o", tmp_path / "half.pt", "--half")
    assert rc == 0, err
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "copy.model").stat().st_size
    half, _ = load_model(tmp_path / "half.pt")
    assert next(half.parameters()).dtype == torch.float32
    np.testing.assert_allclose(half.predict(torch.from_numpy(x))[0],
                               model.predict(torch.from_numpy(x))[0], atol=2e-3)


@pytest.mark.parametrize("args, message", [
    (["MODEL", "-o", "m.onnx", "--half"], "--half is for --format pt"),
    (["missing.pt", "-o", "m.onnx"], "missing.pt: model file not found"),
    (["MODEL", "-o", "m.onnx", "--format", "tflite"],
     "--format 'tflite' is not supported; choose one of onnx, pt"),
    (["MODEL", "-o", "m.bin"], "cannot tell the format from the suffix '.bin'"),
    (["MODEL", "-o", "m.pt", "--int8"], "--int8 needs --format onnx"),
    (["MODEL", "-o", "m.onnx", "--int8"], "--int8 needs --calibration DATASET"),
    (["NOTAMODEL", "-o", "m.onnx"], "notamodel.pt: cannot read model file"),
])
def test_cli_export_errors_are_one_line(args, message, r18_files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notamodel.pt").write_text("hello")
    _, pt, _ = r18_files
    args = [str(pt) if a == "MODEL" else "notamodel.pt" if a == "NOTAMODEL" else a for a in args]
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facemark: error: ")
    assert message in lines[0]
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_int8_reports_the_accuracy_change(r18_files, synthetic_faces, tmp_path, capsys):
    _, pt, _ = r18_files
    rc, out, err = run_cli(capsys, pt, "-o", tmp_path / "q.onnx", "--int8", "--calibration",
                           synthetic_faces, "--calibration-size", "12")
    assert rc == 0, err
    assert "calibrating on 12 face crop(s)" in out
    assert "accuracy change on 8 faces of" in out and "not used for calibration" in out
    assert "| float |" in out and "| int8 |" in out and "NME points" in out
    assert load_engine(tmp_path / "q.onnx").quantization is not None
    # an existing float export can be quantised too
    rc, out, err = run_cli(capsys, tmp_path / "q.onnx", "-o", tmp_path / "m.onnx")
    assert rc == 2 and "already an ONNX file" in err

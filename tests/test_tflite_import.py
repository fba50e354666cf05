"""MobileNetV2 ImageNet weights imported from TensorFlow Lite files (tflite_import).

The real-file tests read ../shared/weights (the google-coral MobileNetV2 classifiers) and
../shared/data/photos and skip where those are absent; everything but the missing-package
test needs the optional ``tflite`` package (``pip install 'facemark[imagenet]'``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facemark.errors import DataError
from facemark.models.backbones import load_backbone_weights, mobilenet_v2

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
WEIGHTS = SHARED / "weights"
PHOTOS = SHARED / "data" / "photos"
FILES = ["tf2_mobilenet_v2_1.0_224_ptq.tflite", "mobilenet_v2_1.0_224_quant.tflite"]

try:
    import tflite
    HAVE_TFLITE = tflite is not None
except ImportError:
    HAVE_TFLITE = False

needs_tflite = pytest.mark.skipif(not HAVE_TFLITE, reason="the optional 'tflite' package is "
                                  "not installed (pip install 'facemark[imagenet]')")
needs_files = pytest.mark.skipif(
    not all((WEIGHTS / f).is_file() for f in FILES) or not PHOTOS.is_dir(),
    reason=f"TFLite MobileNetV2 files or photos not found under {SHARED}")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _classifier(state: dict, arch: str = "mobilenet_v2") -> nn.Module:
    """torchvision MobileNetV2's forward: features -> average pool -> dropout -> Linear."""
    from facemark.models.backbones import create_backbone

    backbone = create_backbone(arch)
    backbone.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")})
    linear = nn.Linear(1280, 1000)
    linear.load_state_dict({"weight": state["classifier.1.weight"],
                            "bias": state["classifier.1.bias"]})
    return nn.Sequential(backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(0.2),
                         linear).eval()


def _photos(*names: str) -> torch.Tensor:
    from facemark.models.backbones.tflite_import import read_calibration_images
    return read_calibration_images([PHOTOS / n for n in names])


def _label(index: int) -> str:
    """Class name of torch class ``index`` (the labels file starts with 'background')."""
    return (WEIGHTS / "imagenet_labels.txt").read_text().splitlines()[index + 1]


def _tiny_conv_tflite(path: Path, weight_ohwi: np.ndarray) -> Path:
    """A valid TFLite model with a single float CONV_2D (not a MobileNetV2)."""
    import flatbuffers
    import tflite as T  # the schema's builder functions, e.g. T.TensorStart

    b = flatbuffers.Builder(1024)

    def vector(start, offsets):
        start(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    o = weight_ohwi.shape[0]
    buffers = []
    for array in (None, weight_ohwi, np.arange(o) / 2):
        data = None if array is None else b.CreateByteVector(array.astype(np.float32).tobytes())
        T.BufferStart(b)
        if data is not None:
            T.BufferAddData(b, data)
        buffers.append(T.BufferEnd(b))
    tensors = []
    for name, shape, buffer in (("input", (1, 8, 8, 3), 0), ("weight", weight_ohwi.shape, 1),
                                ("bias", (o,), 2), ("output", (1, 8, 8, o), 0)):
        name_off, shape_off = b.CreateString(name), b.CreateNumpyVector(np.array(shape, np.int32))
        T.TensorStart(b)
        T.TensorAddShape(b, shape_off)
        T.TensorAddType(b, 0)  # FLOAT32
        T.TensorAddBuffer(b, buffer)
        T.TensorAddName(b, name_off)
        tensors.append(T.TensorEnd(b))
    T.Conv2DOptionsStart(b)
    T.Conv2DOptionsAddPadding(b, 0)
    T.Conv2DOptionsAddStrideW(b, 1)
    T.Conv2DOptionsAddStrideH(b, 1)
    options = T.Conv2DOptionsEnd(b)
    inputs, outputs = b.CreateNumpyVector(np.array([0, 1, 2], np.int32)), \
        b.CreateNumpyVector(np.array([3], np.int32))
    T.OperatorStart(b)
    T.OperatorAddOpcodeIndex(b, 0)
    T.OperatorAddInputs(b, inputs)
    T.OperatorAddOutputs(b, outputs)
    T.OperatorAddBuiltinOptionsType(b, T.BuiltinOptions.Conv2DOptions)
    T.OperatorAddBuiltinOptions(b, options)
    op = T.OperatorEnd(b)
    T.OperatorCodeStart(b)
    T.OperatorCodeAddDeprecatedBuiltinCode(b, 3)
    T.OperatorCodeAddBuiltinCode(b, 3)  # CONV_2D
    T.OperatorCodeAddVersion(b, 1)
    code = T.OperatorCodeEnd(b)
    tensor_vec = vector(T.SubGraphStartTensorsVector, tensors)
    op_vec = vector(T.SubGraphStartOperatorsVector, [op])
    g_in, g_out = b.CreateNumpyVector(np.array([0], np.int32)), \
        b.CreateNumpyVector(np.array([3], np.int32))
    T.SubGraphStart(b)
    T.SubGraphAddTensors(b, tensor_vec)
    T.SubGraphAddInputs(b, g_in)
    T.SubGraphAddOutputs(b, g_out)
    T.SubGraphAddOperators(b, op_vec)
    graph = T.SubGraphEnd(b)
    codes = vector(T.ModelStartOperatorCodesVector, [code])
    graphs = vector(T.ModelStartSubgraphsVector, [graph])
    buffer_vec = vector(T.ModelStartBuffersVector, buffers)
    T.ModelStart(b)
    T.ModelAddVersion(b, 3)
    T.ModelAddOperatorCodes(b, codes)
    T.ModelAddSubgraphs(b, graphs)
    T.ModelAddBuffers(b, buffer_vec)
    b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def test_missing_tflite_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite", None)  # import tflite -> ImportError
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3 whatever")
    with pytest.raises(DataError, match=r"model\.tflite.*facemark\[imagenet\]"):
        load_backbone_weights(mobilenet_v2(), path)


@needs_tflite
def test_garbage_and_foreign_tflite_files_are_data_errors(tmp_path):
    from facemark.models.backbones.tflite_import import read_tflite_graph

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00\x01 not a flatbuffer at all " * 10)
    with pytest.raises(DataError, match=r"junk\.tflite: not a TensorFlow Lite model"):
        load_backbone_weights(mobilenet_v2(), junk)

    w = np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)  # OHWI
    tiny = _tiny_conv_tflite(tmp_path / "tiny.tflite", w)
    graph = read_tflite_graph(tiny)  # a valid file: parsed, layout converted to OIHW
    assert [op.name for op in graph.ops] == ["CONV_2D"]
    np.testing.assert_array_equal(graph.ops[0].weight, w.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(graph.ops[0].bias, [0, 0.5, 1, 1.5])
    with pytest.raises(DataError, match=r"tiny\.tflite: is not a MobileNetV2.*found 1"):
        load_backbone_weights(mobilenet_v2(), tiny)


@needs_tflite
@needs_files
@pytest.mark.shared_data
def test_imported_state_dict_loads_strictly_and_via_cli(tmp_path):
    from facemark.cli import main
    from facemark.models.backbones.tflite_import import mobilenet_v2_state_dict_from_tflite

    src = WEIGHTS / FILES[1]
    state = mobilenet_v2_state_dict_from_tflite(src)
    own = mobilenet_v2().state_dict()
    assert set(state) == set(own) | {"classifier.1.weight", "classifier.1.bias"}
    assert state["classifier.1.weight"].shape == (1000, 1280)
    # a .tflite path loads directly (converted on the fly), strictly, classifier skipped
    with pytest.warns(UserWarning, match="without calibration images"):
        report = load_backbone_weights(mobilenet_v2(), src)
    assert report["skipped"] == ["classifier.1.bias", "classifier.1.weight"]
    # the CLI writes the same tensors as a .pth (uncalibrated, so identical)
    out = tmp_path / "mbv2.pth"
    assert main(["weights", "import-tflite", str(src), "-o", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in state.items())
    load_backbone_weights(mobilenet_v2(), out)


@needs_tflite
@needs_files
@pytest.mark.shared_data
@pytest.mark.parametrize("name", FILES)
def test_matches_the_float_tflite_graph_and_classifies_photos(name):
    from facemark.models.backbones.tflite_import import (
        _imagenet_normalise, emulate_tf_padding, mobilenet_v2_state_dict_from_tflite,
        read_tflite_graph, run_float_graph)

    path = WEIGHTS / name
    images = _photos("img33.jpg", "img37.jpg")
    state = mobilenet_v2_state_dict_from_tflite(path)
    model = _classifier(state)
    x = _imagenet_normalise(images)
    with torch.no_grad():
        logits = model(x)
        # with TF's SAME padding emulated, torch computes exactly the dequantised TF graph
        emulate_tf_padding(model[0])
        tf_padded = model(x)
    reference = run_float_graph(read_tflite_graph(path), 2 * images - 1, padding="same")
    assert reference.shape == (2, 1001)
    torch.testing.assert_close(tf_padded, reference[:, 1:], atol=2e-4, rtol=1e-4)
    # facemark's own (symmetric) padding: these two photos keep TF's top-1 class
    assert [_label(int(i)).split(",")[0] for i in logits.argmax(1)] == ["suit", "bow tie"]
    # the mobilenet_v2_tf backbone pads as TF does (zeros after normalisation at the stem,
    # where TF pads its own zero): close to the graph, not bit-equal
    with torch.no_grad():
        same = _classifier(state, "mobilenet_v2_tf")(x)
    assert torch.equal(same.argmax(1), reference[:, 1:].argmax(1))
    assert (same - reference[:, 1:]).abs().max() < 0.05 * reference.abs().max()
    assert [_label(int(i)).split(",")[0] for i in reference[:, 1:].argmax(1)] == \
        ["suit", "bow tie"]


@needs_tflite
@needs_files
@pytest.mark.shared_data
def test_interpreter_agrees_with_the_import():
    interpreter = None
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            interpreter = __import__(module, fromlist=["Interpreter"]).Interpreter
            break
        except ImportError:
            continue
    if interpreter is None:
        pytest.skip("no TFLite interpreter (pip install ai-edge-litert) to compare with")
    from facemark.models.backbones.tflite_import import (
        _imagenet_normalise, emulate_tf_padding, mobilenet_v2_state_dict_from_tflite)

    path = WEIGHTS / FILES[0]
    images = (_photos("img33.jpg", "img37.jpg") * 255).round() / 255
    model = _classifier(mobilenet_v2_state_dict_from_tflite(path))
    emulate_tf_padding(model[0])
    with torch.no_grad():
        ours = model(_imagenet_normalise(images)).argmax(1).tolist()
    it = interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    theirs = []
    for img in (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy():
        it.set_tensor(inp["index"], img[None])
        it.invoke()
        theirs.append(int(it.get_tensor(out["index"])[0, 1:].argmax()))  # drop background
    assert ours == theirs


@needs_tflite
@needs_files
@pytest.mark.shared_data
def test_calibrated_batch_norm_is_exact_in_eval_and_consistent_in_training():
    from facemark.models.backbones.tflite_import import (
        _imagenet_normalise, mobilenet_v2_state_dict_from_tflite)

    path = WEIGHTS / FILES[0]
    images = _photos("img13.jpg", "img27.jpg", "img33.jpg", "couple.jpg")
    plain = _classifier(mobilenet_v2_state_dict_from_tflite(path), "mobilenet_v2_tf")
    calibrated_state = mobilenet_v2_state_dict_from_tflite(path, calibration_images=images)
    calibrated = _classifier(calibrated_state, "mobilenet_v2_tf")
    x = _imagenet_normalise(images)
    with torch.no_grad():
        expected = plain(x)
        torch.testing.assert_close(calibrated(x), expected, atol=1e-3, rtol=1e-4)
        for m in calibrated.modules():  # batch statistics, as in training
            if isinstance(m, nn.BatchNorm2d):
                m.train()
        train_mode = calibrated(x)
    # on the calibration batch, batch statistics equal the running ones (up to BN's eps
    # and the floored near-constant channels), so training mode computes what eval does
    assert torch.equal(train_mode.argmax(1), expected.argmax(1))
    assert (train_mode - expected).abs().max() < 0.05 * expected.abs().max()
    gamma = calibrated_state["features.5.conv.0.1.weight"]
    assert not torch.allclose(gamma, torch.ones_like(gamma))  # gamma = measured sigma

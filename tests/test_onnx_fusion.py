"""Folding zero Pad nodes into convolutions (facemark.inference.onnx_fusion)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from facemark.inference.onnx_fusion import fuse_pads_into_convs  # noqa: E402


def pad_conv_model(pads, value=None, extra_consumer=False, mode="constant"):
    """x (1, 2, 7, 6) -> Pad(pads) -> Conv 3x3 stride 2 (own pads 1,0,0,1) -> y."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(3, 2, 3, 3)).astype(np.float32), "w")
    amounts = numpy_helper.from_array(np.asarray(pads, dtype=np.int64), "pads")
    inits = [weight, amounts]
    pad_inputs = ["x", "pads"]
    if value is not None:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), "value"))
        pad_inputs.append("value")
    nodes = [helper.make_node("Pad", pad_inputs, ["p"], mode=mode),
             helper.make_node("Conv", ["p", "w"], ["y"], strides=[2, 2], pads=[1, 0, 0, 1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_consumer:
        nodes.append(helper.make_node("Relu", ["p"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, 7, 6])], outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(1, 2, 7, 6)).astype(np.float32)
    return session.run(None, {"x": x})


@pytest.mark.parametrize("pads", [[0, 0, 0, 0, 0, 0, 1, 1],      # TF SAME, stride 2: bottom/right
                                  [0, 0, 1, 2, 0, 0, 0, 3]])     # any zero padding
@pytest.mark.parametrize("value", [None, 0.0])
def test_zero_pads_fold_into_the_conv_and_compute_the_same(pads, value):
    model = pad_conv_model(pads, value)
    before = run(model)
    assert fuse_pads_into_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    conv = model.graph.node[0]
    folded = list(helper.get_attribute_value(next(a for a in conv.attribute if a.name == "pads")))
    assert folded == [1 + pads[2], 0 + pads[3], 0 + pads[6], 1 + pads[7]]
    np.testing.assert_array_equal(run(model)[0], before[0])


@pytest.mark.parametrize("case", ["nonzero value", "reflect", "batch axis", "two consumers"])
def test_pads_that_are_not_plain_zero_padding_stay(case):
    model = {"nonzero value": lambda: pad_conv_model([0, 0, 0, 0, 0, 0, 1, 1], value=1.0),
             "reflect": lambda: pad_conv_model([0, 0, 0, 0, 0, 0, 1, 1], mode="reflect"),
             "batch axis": lambda: pad_conv_model([1, 0, 0, 0, 0, 0, 1, 1]),
             "two consumers": lambda: pad_conv_model([0, 0, 0, 0, 0, 0, 1, 1],
                                                     extra_consumer=True)}[case]()
    assert fuse_pads_into_convs(model) == 0
    assert [n.op_type for n in model.graph.node][0] == "Pad"


def test_tf_padded_mobilenet_exports_without_pads(tmp_path):
    """mobilenet_v2_tf (TensorFlow SAME padding) exports with no Pad and no Einsum left, and
    the export's own parity check (onnxruntime against PyTorch) passes on the folded graph."""
    import torch

    from facemark.inference.export import export_onnx
    from facemark.models import create_model

    torch.manual_seed(0)
    face = np.random.default_rng(0).random((19, 2))
    model = create_model("pipnet", num_points=19, input_size=64, backbone="mobilenet_v2_tf",
                         mean_face=face)
    path = export_onnx(model, tmp_path / "m.onnx", scheme="aflw19")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Pad" not in ops and "Einsum" not in ops and "Conv" in ops

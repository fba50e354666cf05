"""MobileNetV2 with TensorFlow's SAME padding (``mobilenet_v2_tf``)."""
import pytest
import torch
from torch import nn

from facemark.models.backbones import create_backbone
from facemark.models.backbones.mobilenet import Conv2dSame


@pytest.mark.parametrize("size", [7, 8, 128, 129])
def test_conv2d_same_pads_like_tensorflow(size):
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == -(-size // 2)       # ceil(H / stride)
    # even input: the only padding is one row/column at the bottom/right, so the top-left
    # output sees a full 3x3 window and the bottom-right one sees 2x2 of the image
    if size % 2 == 0:
        assert y[0, 0, 0, 0] == 9 and y[0, 0, -1, -1] == 4
    else:                                      # odd input: one pixel on each side
        assert y[0, 0, 0, 0] == 4 and y[0, 0, -1, -1] == 4


def test_tf_variant_has_the_same_parameters_and_output_size():
    plain, tf = create_backbone("mobilenet_v2"), create_backbone("mobilenet_v2_tf")
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in tf.state_dict().items()}
    tf.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 128, 128)
    plain.eval(), tf.eval()
    with torch.no_grad():
        a, b = plain(x), tf(x)
    assert a.shape == b.shape == (1, 1280, 4, 4)
    assert (a - b).abs().max() > 0.01 * a.abs().max()   # the sampling grid differs
    assert tf.arch == "mobilenet_v2_tf" and sum(isinstance(m, Conv2dSame) for m in tf.modules()) == 5


def test_frozen_padding_computes_the_same_and_exports_into_the_convolutions(tmp_path):
    import numpy as np
    import onnx

    from facemark.inference.export import export_onnx
    from facemark.models.backbones.mobilenet import freeze_same_padding
    from facemark.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("pipnet", num_points=5, input_size=64, backbone="mobilenet_v2_tf",
                         num_nb=2, mean_face=np.random.default_rng(0).uniform(
                             0.2, 0.8, (5, 2)).astype(np.float32)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)["score"]
        layers = freeze_same_padding(model, 64)
        assert len(layers) == 5 and all(m.fixed_padding is not None for m in layers)
        assert torch.equal(model(x)["score"], before)
    for m in layers:
        m.fixed_padding = None
    path = export_onnx(model, tmp_path / "m.onnx")          # parity-checked inside
    graph = onnx.load(path).graph

    # the five stride-2 layers' constant pads are folded into their convolutions' own
    # (begin, end) pads (inference/onnx_fusion.py): no Pad node left; attributes are
    # constants by construction
    assert not [n for n in graph.node if n.op_type == "Pad"]
    uneven = [n for n in graph.node if n.op_type == "Conv" and any(
        a.name == "pads" and a.ints[:2] != a.ints[2:] for a in n.attribute)]
    assert len(uneven) == 5
    assert all(m.fixed_padding is None for m in layers)     # the model is left as it was

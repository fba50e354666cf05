"""Model tests: one common suite over every registered model, backbones, weights, ONNX, cost.

Runs on one CPU thread (restored afterwards): on a shared 2-core machine that is both
faster and steadier than two. Inputs are 64 px, batches tiny.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from facemark.errors import ConfigError, DataError
from facemark.models import (
    MapHead, create_backbone, create_model, list_backbones,
    list_models, load_backbone_weights, model_arguments, model_config, model_from_config,
    register_norm_layer)
from facemark.models.cost import cost_table, count_flops, model_cost

N = 12          # landmarks in the common suite (> the default 10 neighbours)
SIZE = 64       # input side in the common suite
MEAN_FACE = np.random.default_rng(0).random((N, 2))

# Smaller widths where a default would make the suite slow; the architecture is the same.
FAST = {"mapnet": {"deconv_channels": 64}}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):   # (conftest.py)
    yield


def build(name, **overrides):
    kwargs = dict(FAST.get(name, {}))
    if name.startswith("pipnet"):
        kwargs["mean_face"] = MEAN_FACE
    kwargs.update(overrides)
    torch.manual_seed(0)
    return create_model(name, num_points=N, input_size=SIZE, **kwargs)


def landmarks(batch, seed=0):
    return torch.rand(batch, N, 2, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


def round_trip_tolerance(head):
    if isinstance(head, MapHead):
        return 0.25 / head.grid + 1e-6                      # a quarter heatmap cell
    return 2e-6                                             # PIP, G-RMI, coordinates: exact


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
def test_registry_lists_the_paper_models():
    names = list_models()
    for required in ("pipnet", "pipnet_nonrm", "coordnet", "mapnet", "grmi", "pipnet_r18",
                     "pipnet_r50", "pipnet_r101", "pipnet_mbv2", "pipnet_mbv3", "pipnet_rx50",
                     "vanilla_cnn"):
        assert required in names
    assert list_models("pipnet_mb*") == ["pipnet_mbv2", "pipnet_mbv3"]


def test_unknown_model_and_argument_errors_suggest_names():
    with pytest.raises(ConfigError, match="pipnet_r18"):
        create_model("pipnet_r81", num_points=N)
    with pytest.raises(ConfigError, match="net_strid=16.*did you mean 'net_stride'"):
        create_model("pipnet_nonrm", num_points=N, net_strid=16)
    with pytest.raises(ConfigError, match="unknown name 'resnet19'.*resnet18"):
        create_model("pipnet_nonrm", num_points=N, backbone="resnet19")
    with pytest.raises(ConfigError, match="num_points"):
        create_model("coordnet", num_points=0)


def test_pipnet_needs_a_mean_face_and_checks_it():
    with pytest.raises(ConfigError, match="mean_face.*pipnet_nonrm"):
        create_model("pipnet", num_points=N, input_size=SIZE)
    with pytest.raises(ConfigError, match=r"mean_face: expected shape \(12, 2\)"):
        create_model("pipnet", num_points=N, input_size=SIZE, mean_face=np.zeros((N, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        create_model("pipnet", num_points=N, input_size=SIZE, mean_face=np.full((N, 2), np.nan))
    with pytest.raises(ConfigError, match="input_size.*multiple of 32"):
        create_model("pipnet_nonrm", num_points=N, input_size=100)


def test_model_arguments_say_who_takes_a_mean_face():
    takes = {n for n in list_models() if "mean_face" in model_arguments(n)}
    # PIPNet's neighbours; the coordinate heads only with init_mean_face (test_coord_init.py)
    assert takes == set(list_models("pipnet*")) | {"coordnet", "vanilla_cnn"}
    assert "output_stride" in model_arguments("grmi") and "variant" not in model_arguments("grmi")
    with pytest.raises(ConfigError, match="unknown argument mean_face"):
        create_model("mapnet", num_points=N, mean_face=MEAN_FACE)


def test_none_arguments_are_dropped():
    m = create_model("pipnet_nonrm", num_points=N, input_size=None, net_stride=None,
                     backbone=None, mean_face=None)
    assert m.input_size == 256 and m.head.net_stride == 32 and m.head.grid == 8
    assert m.config["backbone"] == "resnet18"
    assert create_model("vanilla_cnn", num_points=N).input_size == 128


@pytest.mark.parametrize("stride,grid,extra", [(16, 8, "ConvTranspose2d"), (32, 4, None),
                                               (64, 2, "Conv2d"), (128, 1, "Conv2d")])
def test_pip_strides_at_128_px(stride, grid, extra):
    m = create_model("pipnet_nonrm", num_points=N, input_size=128, net_stride=stride).eval()
    out = m(torch.rand(1, 3, 128, 128))
    assert out["score"].shape == (1, N, grid, grid)
    kinds = [type(layer).__name__ for layer in m.head.extra]
    if extra is None:
        assert kinds == []
    else:
        assert kinds[0] == extra and kinds.count(extra) == {16: 1, 64: 1, 128: 2}[stride]
    points, _ = m.decode(m.encode(landmarks(1)))
    torch.testing.assert_close(points, landmarks(1), atol=2e-6, rtol=0)



@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18"])
def test_dilated_backbone_stride_takes_a_stride_32_models_weights(backbone):
    """backbone_stride=16: an 8x8 grid at 128 px with no resampling layers, and every
    parameter of the stride-32 model loads (fine-tuning a shipped model at stride 16)."""
    coarse = create_model("pipnet", num_points=N, input_size=128, backbone=backbone,
                          mean_face=MEAN_FACE)
    fine = create_model("pipnet", num_points=N, input_size=128, backbone=backbone,
                        mean_face=MEAN_FACE, net_stride=16, backbone_stride=16)
    assert list(fine.head.extra) == [] and fine.config["backbone_stride"] == 16
    assert "backbone_stride" not in coarse.config          # old model files stay as they were
    fine.load_state_dict(coarse.state_dict(), strict=True)
    assert fine.eval()(torch.rand(1, 3, 128, 128))["score"].shape == (1, N, 8, 8)
    rebuilt = create_model(**fine.config)
    assert rebuilt.backbone.stride == 16

# ---------------------------------------------------------------------------------------
# The common suite: every registered model
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_models())
def test_common_suite(name):
    m = build(name).eval()
    assert m.num_points == N and m.input_size == SIZE
    assert m.backbone.out_channels == m.backbone.feature_info[-1]["num_chs"]

    # output shapes for batch sizes 1 and 3; decode on any batch size, samples independent
    x = torch.rand(3, 3, SIZE, SIZE)
    decoded = {}
    with torch.no_grad():
        for b, images in ((1, x[1:2]), (3, x)):
            out = m(images)
            targets = m.encode(landmarks(b))
            for key, value in out.items():
                assert value.shape == targets[key].shape, key
                assert value.shape[0] == b
            points, conf = m.decode(out)
            assert points.shape == (b, N, 2) and conf.shape == (b, N)
            assert torch.all((conf >= 0) & (conf <= 1))
            decoded[b] = points
    torch.testing.assert_close(decoded[1], decoded[3][1:2], atol=1e-3, rtol=0)  # float noise only
    # predict: decode(forward) (PIPNet computes its offsets at the peaks only: float noise)
    torch.testing.assert_close(m.predict(x[1:2])[0], decoded[1], atol=1e-3, rtol=0)

    # decode(encode(x)) recovers x within the head's quantisation
    lm = landmarks(2, seed=5)
    targets = m.encode(lm)
    points, _ = m.decode({k: targets[k] for k in out})
    assert (points - lm).abs().max().item() <= round_trip_tolerance(m.head)

    # masked loss ignores missing points; the same change on an annotated point counts
    out = {k: v[:2] for k, v in out.items()}
    mask = torch.ones(2, N, dtype=torch.bool)
    mask[1, 4] = False
    moved = lm.clone()
    moved[1, 4] = torch.tensor([0.05, 0.95])
    base = m.loss(out, m.encode(lm, mask))[0].item()
    assert m.loss(out, m.encode(moved, mask))[0].item() == pytest.approx(base, abs=1e-7)
    full = torch.ones_like(mask)
    assert m.loss(out, m.encode(moved, full))[0].item() != pytest.approx(
        m.loss(out, m.encode(lm, full))[0].item(), abs=1e-6)

    # config round trip: JSON, same architecture (every key and shape), weights load strictly
    cfg = json.loads(json.dumps(model_config(m)))
    assert cfg["name"] == name and cfg["num_points"] == N
    with torch.device("meta"):                 # no memory, no init: architecture only
        rebuilt = model_from_config(cfg)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in m.state_dict().items()}
    rebuilt.load_state_dict(m.state_dict(), strict=True, assign=True)
    del rebuilt

    # the loss decreases over a few optimiser steps on a fixed tiny batch (runs last: it
    # changes the weights; missing points included)
    m.train()
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = m.encode(landmarks(2, seed=2), mask)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    losses = []
    for step in range(3):                      # two optimiser steps, then the loss again
        total, parts = m.loss(m(x), targets)
        assert torch.isfinite(total)
        torch.testing.assert_close(total, sum(parts.values()))
        losses.append(total.item())
        if step < 2:
            opt.zero_grad()
            total.backward()
            opt.step()
    assert losses[-1] < 0.97 * losses[0], losses


def test_forward_rejects_wrong_image_layout():
    m = build("pipnet_nonrm")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.rand(1, SIZE, SIZE, 3))


# ---------------------------------------------------------------------------------------
# ONNX export with a dynamic batch: parity with PyTorch
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pipnet_r18", "pipnet_mbv2", "pipnet_mbv3", "mapnet", "grmi"])
def test_onnx_export_parity(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = build(name).eval()
    for layer in m.head.modules():          # spread the scores so argmax ties cannot flip
        if isinstance(layer, nn.Conv2d) and layer.out_channels == N:
            nn.init.normal_(layer.weight, std=0.05)
    path = tmp_path / f"{name}.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation notice
        torch.onnx.export(m.predictor().eval(), (torch.rand(2, 3, SIZE, SIZE),), str(path),
                          dynamo=False, input_names=["images"],
                          output_names=["points", "confidence"],
                          dynamic_axes={"images": {0: "batch"}, "points": {0: "batch"},
                                        "confidence": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    points, conf = session.run(None, {"images": x.numpy()})
    assert not m.training                   # export left the model in eval mode
    ref_points, ref_conf = m.predict(x)
    assert points.shape == (3, N, 2)
    np.testing.assert_allclose(points, ref_points.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(conf, ref_conf.numpy(), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------
# Backbones: torchvision names, feature info, weights
# ---------------------------------------------------------------------------------------
# From torchvision/models/resnet.py (resnet18 = BasicBlock x [2, 2, 2, 2]): the state dict
# has 122 entries, 120 without fc.weight/fc.bias, and 11,689,512 parameters of which the
# classifier holds 512 * 1000 + 1000 = 513,000. A sample of names and shapes:
TORCHVISION_RESNET18_SAMPLE = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_mean": (64,),
    "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.1.bn2.bias": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_var": (128,),
    "layer3.1.conv2.weight": (256, 256, 3, 3),
    "layer4.0.downsample.0.weight": (512, 256, 1, 1),
    "layer4.1.bn2.weight": (512,),
}
# Parameter counts of torchvision's models minus their classifiers.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet101": 44_549_160 - 2_049_000,
    "resnext50_32x4d": 25_028_904 - 2_049_000,
    "mobilenet_v2": 3_504_872 - 1_281_000,
    "mobilenet_v3_large": 5_483_032 - (960 * 1280 + 1280 + 1280 * 1000 + 1000),
}
TORCHVISION_SAMPLES = {
    "resnet50": {"layer1.0.conv2.weight": (64, 64, 3, 3),
                 "layer4.2.conv3.weight": (2048, 512, 1, 1)},
    "resnext50_32x4d": {"layer1.0.conv2.weight": (128, 4, 3, 3)},
    "mobilenet_v2": {"features.0.0.weight": (32, 3, 3, 3),
                     "features.1.conv.0.0.weight": (32, 1, 3, 3),
                     "features.1.conv.1.weight": (16, 32, 1, 1),
                     "features.2.conv.1.0.weight": (96, 1, 3, 3),
                     "features.18.0.weight": (1280, 320, 1, 1)},
    "mobilenet_v3_large": {"features.0.0.weight": (16, 3, 3, 3),
                           "features.4.block.2.fc1.weight": (24, 72, 1, 1),
                           "features.4.block.2.fc2.bias": (72,),
                           "features.16.0.weight": (960, 160, 1, 1),
                           "features.15.block.3.1.running_mean": (160,)},
}


def meta_backbone(arch, **kwargs):
    """Structure only: built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        return create_backbone(arch, **kwargs)


def test_resnet18_state_dict_matches_torchvision_names():
    sd = meta_backbone("resnet18").state_dict()
    assert len(sd) == 122 - 2
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 20
    for key, shape in TORCHVISION_RESNET18_SAMPLE.items():
        assert tuple(sd[key].shape) == shape, key
    params = dict(meta_backbone("resnet18").named_parameters())
    assert len(params) == 62 - 2


@pytest.mark.parametrize("arch", sorted(TORCHVISION_PARAMS))
def test_backbone_parameter_counts_match_torchvision(arch):
    b = meta_backbone(arch)
    assert sum(p.numel() for p in b.parameters()) == TORCHVISION_PARAMS[arch]
    sd = b.state_dict()
    for key, shape in TORCHVISION_SAMPLES.get(arch, {}).items():
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize("arch", list_backbones())
def test_feature_info_declares_channels_and_stride(arch):
    b = meta_backbone(arch)
    reductions = [f["reduction"] for f in b.feature_info]
    assert reductions == sorted(reductions)
    y = b(torch.empty(1, 3, 64, 64, device="meta"))         # shapes propagate on meta
    assert y.shape[1] == b.out_channels and y.shape[2] == -(-64 // b.stride)
    modules = dict(b.named_modules())
    assert all(f["module"] in modules for f in b.feature_info)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "mobilenet_v3_large"])
def test_dilated_backbones_keep_their_names(arch):
    plain, dilated = meta_backbone(arch), meta_backbone(arch, output_stride=8)
    assert dilated.stride == 8
    assert dilated(torch.empty(1, 3, 64, 64, device="meta")).shape[2:] == (8, 8)
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in dilated.state_dict().items()}
    with pytest.raises(ConfigError, match="output_stride"):
        create_backbone(arch, output_stride=4)


def _fake_torchvision_file(arch, path, drop_tracked=False):
    """Our backbone's state dict plus the classifier keys a torchvision file carries."""
    torch.manual_seed(7)
    b = create_backbone(arch)
    for p in b.parameters():
        nn.init.normal_(p)
    sd = dict(b.state_dict())
    if drop_tracked:
        sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    if arch.startswith("resnet"):
        sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, b.out_channels), torch.zeros(1000)
    else:
        sd["classifier.1.weight"] = torch.zeros(1000, 1280)
        sd["classifier.1.bias"] = torch.zeros(1000)
    torch.save(sd, path)
    return b


@pytest.mark.parametrize("arch,drop_tracked",
                         [("resnet18", False), ("resnet18", True), ("mobilenet_v2", False)])
def test_backbone_weights_load_strictly_skipping_the_classifier(arch, drop_tracked, tmp_path):
    path = tmp_path / "w.pth"
    source = _fake_torchvision_file(arch, path, drop_tracked)
    target = create_backbone(arch)
    report = load_backbone_weights(target, path)
    assert report["skipped"]
    assert all(k.startswith(("fc.", "classifier.")) for k in report["skipped"])
    for (k, v), (k2, v2) in zip(source.state_dict().items(), target.state_dict().items()):
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, v2), k


def test_create_model_loads_backbone_weights(tmp_path):
    path = tmp_path / "r18.pth"
    source = _fake_torchvision_file("resnet18", path)
    m = create_model("pipnet_nonrm", num_points=N, input_size=SIZE, backbone_weights=path)
    assert torch.equal(m.backbone.conv1.weight, source.conv1.weight)
    assert "backbone_weights" not in model_config(m)


def test_bad_weight_files_give_clear_errors(tmp_path):
    r18 = create_backbone("resnet18")
    with pytest.raises(DataError, match="no such file"):
        load_backbone_weights(r18, tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(DataError, match=r"notes\.pth: backbone weights: cannot read"):
        load_backbone_weights(r18, text)
    wrong_arch = tmp_path / "mbv2.pth"
    _fake_torchvision_file("mobilenet_v2", wrong_arch)
    with pytest.raises(DataError,
                       match=r"mbv2\.pth: .*'resnet18'.*missing key.*another architecture"):
        load_backbone_weights(r18, wrong_arch)
    sd = create_backbone("resnet18").state_dict()
    del sd["layer3.1.conv2.weight"]
    sd["layer5.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.pth"
    torch.save(sd, partial)
    with pytest.raises(DataError, match=r"1 missing key\(s\): layer3\.1\.conv2\.weight.*"
                                        r"1 unexpected key\(s\): layer5\.weight"):
        load_backbone_weights(r18, partial)
    shapes = tmp_path / "r50.pth"
    torch.save(create_backbone("resnet50").state_dict(), shapes)
    with pytest.raises(DataError, match="r50.pth"):
        load_backbone_weights(r18, shapes)
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(DataError, match="expected a non-empty dict"):
        load_backbone_weights(r18, not_dict)


# ---------------------------------------------------------------------------------------
# Norm layer injection
# ---------------------------------------------------------------------------------------
def test_norm_layer_is_injectable_by_name_and_saved_in_the_config():
    register_norm_layer("test_groupnorm", lambda c: nn.GroupNorm(8 if c % 8 == 0 else 1, c))
    m = create_model("pipnet_nonrm", num_points=N, input_size=SIZE, norm_layer="test_groupnorm",
                     net_stride=64)
    kinds = {type(x) for x in m.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    assert model_config(m)["norm_layer"] == "test_groupnorm"
    with pytest.raises(ConfigError, match="norm_layer: unknown name 'batchnrm'.*batchnorm"):
        create_model("coordnet", num_points=N, norm_layer="batchnrm")
    b = create_backbone("resnet18", norm_layer=lambda c: nn.GroupNorm(1, c))
    assert not any(isinstance(x, nn.BatchNorm2d) for x in b.modules())
    m2 = create_model("coordnet", num_points=N, input_size=SIZE, norm_layer=nn.BatchNorm2d)
    with pytest.raises(ConfigError, match="norm_layer.*cannot be saved"):
        model_config(m2)


def test_model_config_needs_create_model():
    with pytest.raises(ConfigError, match="not built by create_model"):
        model_config(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="num_points"):
        model_from_config({"name": "coordnet"})


# ---------------------------------------------------------------------------------------
# Cost
# ---------------------------------------------------------------------------------------
def test_flop_counter_matches_the_known_resnet18_cost():
    # torchvision documents ResNet-18 at 224 px as 1.81 GFLOPs counted as multiply-adds.
    flops = count_flops(create_backbone("resnet18"), 224)
    assert flops / 2e9 == pytest.approx(1.81, rel=0.02)


def test_model_cost_and_table():
    m = build("pipnet_mbv3")
    cost = model_cost(m, SIZE, threads=1, runs=2, warmup=1)
    assert cost["params"] == sum(p.numel() for p in m.parameters())
    assert cost["gmacs"] == pytest.approx(cost["gflops"] / 2) and cost["gflops"] > 0
    assert cost["latency_ms_median"] > 0 and m.training is True     # mode restored
    table = cost_table(["pipnet_nonrm", ("coordnet", {"pool": "avg"})], num_points=N,
                       input_size=SIZE, threads=1, runs=1)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| Model |")
    assert "coordnet (pool=avg)" in lines[3] and "| resnet18 |" in lines[2]

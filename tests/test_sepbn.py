"""SepBN and MixBN: statistics, attention, temperature, gradients, registration, training,
ONNX parity; the temperature annealing schedule and callback."""
import warnings

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from facemark.errors import ConfigError, DataError
from facemark.models import create_model, model_config, model_from_config
from facemark.models.backbones import create_backbone, list_backbones, load_backbone_weights
from facemark.models.backbones.base import NORM_LAYERS, Backbone, resolve_norm_layer
from facemark.models.heads import CoordHead
from facemark.models.model import LandmarkModel
from facemark.models.norm import (
    SEPBN_VARIANTS, MixBN, SepBN, adaptive_pool2d, attention_layers, convert_batchnorm_weights,
    register_sepbn)
from facemark.training.temperature import (
    TemperatureAnnealing, TemperatureSchedule, set_temperature)

torch.set_num_threads(1)


def randomise(layer: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Spread every parameter so the K sets (and the attention) differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return layer


def reference_sepbn(layer: SepBN, x: torch.Tensor, training: bool) -> torch.Tensor:
    """Eq. 6-7 written out: per sample n and channel c, mix the K sets with pi[n, group(c)]."""
    bn = nn.BatchNorm2d(layer.num_features, affine=False, eps=layer.eps)
    bn.running_mean.copy_(layer.running_mean)
    bn.running_var.copy_(layer.running_var)
    x_hat = bn.train(training)(x)
    pi = layer.attention(x)
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(layer.num_features):
            g = c * layer.num_groups // layer.num_features
            gamma = sum(pi[n, g, k] * layer.weight[k, c] for k in range(layer.num_routes))
            beta = sum(pi[n, g, k] * layer.bias[k, c] for k in range(layer.num_routes))
            out[n, c] = gamma * x_hat[n, c] + beta
    return out


# ---------------------------------------------------------------------------------------
# SepBN
# ---------------------------------------------------------------------------------------
def test_fresh_sepbn_normalises_like_batchnorm_and_tracks_running_stats():
    x = torch.randn(6, 8, 5, 7) * 3 + 2
    layer = SepBN(8)
    y = layer(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y.mean(dim=(0, 2, 3)).detach(), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(dim=(0, 2, 3), unbiased=False).detach(), 1, atol=1e-3)
    bn = nn.BatchNorm2d(8)
    np.testing.assert_allclose(y.detach(), bn(x).detach(), atol=1e-5)  # all sets 1 / 0
    np.testing.assert_allclose(layer.running_mean, bn.running_mean, atol=1e-6)
    np.testing.assert_allclose(layer.running_var, bn.running_var, atol=1e-5)
    assert int(layer.num_batches_tracked) == 1
    layer.eval()
    bn.eval()
    before = layer.running_mean.clone()
    np.testing.assert_allclose(layer(x).detach(), bn(x).detach(), atol=1e-5)
    assert torch.equal(layer.running_mean, before)  # eval mode leaves the statistics alone


@pytest.mark.parametrize("kwargs", [{}, {"num_groups": 3}, {"num_routes": 4, "pool_size": 2},
                                    {"attention": "se"}, {"pool": "avg"},
                                    {"aggregation": "hard"}])
@pytest.mark.parametrize("training", [True, False])
def test_sepbn_matches_the_papers_equations(kwargs, training):
    torch.manual_seed(0)
    layer = randomise(SepBN(5, **kwargs))
    layer.running_mean.uniform_(-1, 1)
    layer.running_var.uniform_(0.5, 2)
    layer.temperature = 2.0
    x = torch.randn(3, 5, 4, 6)
    expected = reference_sepbn(layer, x, training)
    out = layer.train(training)(x)
    np.testing.assert_allclose(out.detach(), expected.detach(), atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(routes=st.integers(1, 5), groups=st.integers(1, 4), pool=st.integers(1, 4),
       kind=st.sampled_from(["grouped", "se"]), mode=st.sampled_from(["max", "avg"]),
       hard=st.booleans(), tau=st.floats(0.05, 100), side=st.integers(1, 9))
def test_attention_is_a_distribution_over_the_k_sets(routes, groups, pool, kind, mode, hard,
                                                     tau, side):
    layer = SepBN(8, num_routes=routes, num_groups=groups, pool_size=pool, attention=kind,
                  pool=mode, aggregation="hard" if hard else "soft", temperature=tau)
    pi = layer.attention(torch.randn(3, 8, side, side + 1) * 5)
    assert pi.shape == (3, 1 if kind == "se" else groups, routes)
    assert bool((pi >= 0).all())
    np.testing.assert_allclose(pi.sum(-1).detach(), 1.0, atol=1e-5)
    if hard:
        assert set(np.unique(pi.numpy())) <= {0.0, 0.5, 1.0 / 3, 0.25, 0.2, 1.0}


def test_high_temperature_mixes_uniformly_and_low_temperature_sharpens():
    torch.manual_seed(1)
    layer = randomise(SepBN(16, num_routes=3), seed=1)
    x = torch.randn(4, 16, 6, 6) * 3
    spread = []
    for tau in (1e6, 30.0, 1.0, 0.05):
        layer.temperature = tau
        pi = layer.attention(x).detach()
        spread.append(float((pi - 1 / 3).abs().max()))
    assert spread[0] < 1e-3                       # tau -> infinity: the plain average
    assert spread == sorted(spread)               # lower tau, further from uniform
    assert spread[-1] > 0.3
    layer.temperature = 1e6                       # and then the output is BN with the mean set
    layer.eval()
    bn = nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        bn.weight.copy_(layer.weight.mean(0))
        bn.bias.copy_(layer.bias.mean(0))
    np.testing.assert_allclose(layer(x).detach(), bn(x).detach(), atol=1e-3)


def test_gradients_reach_every_affine_set_and_the_attention():
    torch.manual_seed(2)
    layer = SepBN(8, num_routes=3, num_groups=2)
    x = torch.randn(4, 8, 5, 5)
    (layer(x) * torch.randn(4, 8, 5, 5)).sum().backward()
    for k in range(3):                            # fresh layer: every set already learns
        assert float(layer.weight.grad[k].abs().sum()) > 0
        assert float(layer.bias.grad[k].abs().sum()) > 0
    layer.zero_grad()
    randomise(layer)                              # once the sets differ, so does the attention
    (layer(x) * torch.randn(4, 8, 5, 5)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert not torch.allclose(layer.weight.grad[0], layer.weight.grad[1])


def test_hard_aggregation_gives_the_attention_no_gradient():
    layer = randomise(SepBN(8, aggregation="hard"))
    layer(torch.randn(4, 8, 5, 5)).pow(2).sum().backward()
    assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in layer.mlp.parameters())


def test_one_set_is_batchnorm():
    torch.manual_seed(3)
    layer = randomise(SepBN(6, num_routes=1))
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.copy_(layer.weight[0])
        bn.bias.copy_(layer.bias[0])
    x = torch.randn(5, 6, 3, 4)
    np.testing.assert_allclose(layer(x).detach(), bn(x).detach(), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 17), w=st.integers(1, 17), t=st.integers(1, 5))
def test_adaptive_pool_matches_pytorch(h, w, t):
    x = torch.randn(2, 3, h, w)
    assert torch.equal(adaptive_pool2d(x, t, "max"), F.adaptive_max_pool2d(x, t))
    np.testing.assert_allclose(adaptive_pool2d(x, t, "avg"), F.adaptive_avg_pool2d(x, t),
                               atol=1e-6)


def test_temperature_is_a_saved_buffer():
    layer = SepBN(4, temperature=30.0)
    assert layer.temperature == 30.0
    layer.temperature = 7.5
    state = layer.state_dict()
    assert float(state["tau"]) == 7.5
    other = SepBN(4)
    other.load_state_dict(state)
    assert other.temperature == 7.5
    with pytest.raises(ValueError, match="temperature"):
        layer.temperature = 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"num_routes": 0}, "num_routes"), ({"num_groups": 9}, "num_groups"),
    ({"pool": "median"}, "pool"), ({"attention": "dense"}, "attention"),
    ({"aggregation": "mean"}, "aggregation"), ({"temperature": -1.0}, "temperature"),
    ({"pool_size": 2.5}, "pool_size")])
def test_bad_sepbn_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SepBN(8, **kwargs)


def test_wrong_input_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        SepBN(8)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        MixBN(8)(torch.randn(2, 8, 3))


# ---------------------------------------------------------------------------------------
# MixBN
# ---------------------------------------------------------------------------------------
def test_mixbn_mixes_whole_batchnorm_branches():
    torch.manual_seed(4)
    layer = randomise(MixBN(10, num_branches=3))
    assert layer.fc1.out_features == 1                         # round(0.1 * 10)
    layer.temperature = 3.0
    x = torch.randn(4, 10, 5, 5)
    pi = layer.attention(x)
    assert pi.shape == (4, 3)
    np.testing.assert_allclose(pi.sum(-1).detach(), 1, atol=1e-6)
    refs = [nn.BatchNorm2d(10) for _ in range(3)]
    for ref, branch in zip(refs, layer.branches):
        ref.load_state_dict(branch.state_dict())
    expected = sum(pi[:, k, None, None, None] * refs[k](x) for k in range(3))
    np.testing.assert_allclose(layer(x).detach(), expected.detach(), atol=1e-5)
    layer.temperature = 1e5
    np.testing.assert_allclose(layer.attention(x).detach(), 1 / 3, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Registration: every backbone and head takes the names
# ---------------------------------------------------------------------------------------
def test_norm_layer_names_are_registered():
    assert {"sepbn", "mixbn", "sepbn_hard", "sepbn_k2", "sepbn_g1", "sepbn_t1", "sepbn_avg",
            "sepbn_se"} <= set(NORM_LAYERS)
    assert set(SEPBN_VARIANTS) <= set(NORM_LAYERS)
    layer = NORM_LAYERS["sepbn_k5"](32)
    assert (layer.num_routes, layer.num_groups, layer.pool_size) == (5, 2, 3)
    default = NORM_LAYERS["sepbn"](32)
    assert (default.num_routes, default.num_groups, default.pool_size, default.pool,
            default.aggregation) == (3, 2, 3, "max", "soft")
    with pytest.raises(ConfigError, match="sepbn"):
        create_backbone("vanilla", norm_layer="sepnb")
    with pytest.raises(ConfigError, match="num_groups"):
        register_sepbn("sepbn_bad", num_groups=0)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        register_sepbn("sepbn_bad", groups=2)


# one per block family (ResNet-50/101 share ResNeXt's bottleneck code)
FAMILIES = ["resnet18", "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_large", "vanilla"]


def test_the_families_cover_every_backbone():
    # same modules as a listed family: resnet50/101 as resnet18, mobilenet_v2_tf as mobilenet_v2
    assert set(list_backbones()) - set(FAMILIES) <= {"resnet50", "resnet101", "mobilenet_v2_tf"}


@pytest.mark.parametrize("backbone", FAMILIES)
@pytest.mark.parametrize("norm", ["sepbn", "mixbn"])
def test_every_backbone_puts_the_norm_layer_in_place_of_every_batchnorm(backbone, norm):
    with torch.device("meta"):
        plain = create_backbone(backbone)
        trunk = create_backbone(backbone, norm_layer=norm)
    kind = SepBN if norm == "sepbn" else MixBN
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, kind) for m in trunk.modules()) == n_bn > 0
    inner = n_bn * 3 if norm == "mixbn" else 0           # MixBN's own branches
    assert sum(isinstance(m, nn.BatchNorm2d) for m in trunk.modules()) == inner


def test_heads_take_the_norm_layer_too_and_configs_round_trip():
    with torch.device("meta"):
        model = create_model("pipnet", num_points=6, backbone="resnet18", net_stride=64,
                             num_nb=3, mean_face=np.random.default_rng(0).uniform(size=(6, 2)),
                             input_size=128, norm_layer="sepbn_k4")
        head_norms = [m for m in model.head.modules() if isinstance(m, nn.BatchNorm2d)]
        assert not head_norms and any(isinstance(m, SepBN) for m in model.head.modules())
        config = model_config(model)
        assert config["norm_layer"] == "sepbn_k4"
        again = model_from_config(config)
    assert [type(m) for m in again.modules()] == [type(m) for m in model.modules()]
    assert all(m.num_routes == 4 for m in attention_layers(again))


def test_vanilla_cnn_with_sepbn_trains():
    torch.manual_seed(5)
    model = create_model("vanilla_cnn", num_points=5, input_size=64, norm_layer="sepbn")
    layers = list(attention_layers(model))
    assert len(layers) == 6 and all(isinstance(m, SepBN) for m in layers)   # Table VI: all six
    set_temperature(model, 30.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(3, 3, 64, 64)
    targets = model.encode(torch.rand(3, 5, 2) * 0.6 + 0.2)
    losses = []
    for _ in range(3):
        loss, _ = model.loss(model(images), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    for layer in layers:                     # every set of every layer moved
        assert bool(((layer.weight - 1).abs().amax(dim=1) > 0).all())
        assert bool((layer.bias.abs().amax(dim=1) > 0).all())


def _export_and_compare(model, tmp_path, size: int):
    ort = pytest.importorskip("onnxruntime")
    model.eval()
    path = tmp_path / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.predictor().eval(), (torch.rand(2, 3, size, size),), str(path),
                          dynamo=False, input_names=["images"],
                          output_names=["points", "confidence"],
                          dynamic_axes={"images": {0: "batch"}, "points": {0: "batch"},
                                        "confidence": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        points, _ = session.run(None, {"images": x.numpy()})
        ref, _ = model.predict(x)
        assert points.shape == tuple(ref.shape)
        np.testing.assert_allclose(points, ref.numpy(), atol=1e-4, rtol=0)


class _TinyTrunk(Backbone):
    """Three strided convolutions, each followed by the norm layer: maps of 20, 10, 5 cells
    for a 40-pixel input (uneven T = 3 bins; T = 2 bins are even on the first map)."""

    def __init__(self, norm_layer):
        super().__init__()
        norm = resolve_norm_layer(norm_layer, nn.BatchNorm2d)
        layers, ch = [], 3
        for i, out in enumerate((8, 12, 16)):
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1, bias=False), norm(out), nn.ReLU()]
            self._add_feature(out, 2 ** (i + 1), f"features.{3 * i + 2}")
            ch = out
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


def _spread(model, scale: float = 0.5):
    for layer in attention_layers(model):    # non-trivial sets, statistics and tau
        randomise(layer, scale=scale)
        if isinstance(layer, SepBN):
            layer.running_var.uniform_(0.5, 2)
        layer.temperature = 2.5
    return model


@pytest.mark.parametrize("norm", ["sepbn", "mixbn", "sepbn_se", "sepbn_hard", "sepbn_avg",
                                  "sepbn_t2"])
def test_onnx_export_matches_pytorch(norm, tmp_path):
    torch.manual_seed(6)
    trunk = _TinyTrunk(norm)
    head = CoordHead(trunk.out_channels, trunk.stride, num_points=5, input_size=40,
                     hidden=(16,), pool="avg")
    _export_and_compare(_spread(LandmarkModel(trunk, head, input_size=40)), tmp_path, 40)


def test_onnx_export_of_a_registered_model_with_sepbn(tmp_path):
    torch.manual_seed(7)
    model = create_model("coordnet", num_points=5, backbone="resnet18", input_size=64,
                         pool="avg", hidden=[16], norm_layer="sepbn")
    _export_and_compare(_spread(model, 0.1), tmp_path, 64)   # 20 SepBN layers, maps 32 ... 2


# ---------------------------------------------------------------------------------------
# Temperature annealing
# ---------------------------------------------------------------------------------------
def test_schedule_values():
    linear = TemperatureSchedule(30.0, 1.0, 30, "linear")
    assert [linear.at(e) for e in (0, 15, 30, 100)] == [30.0, 15.5, 1.0, 1.0]
    assert linear.at(29) == pytest.approx(30 - 29 * 29 / 30)
    geo = TemperatureSchedule(30.0, 1.0, 30, "exponential")
    assert geo.at(0) == 30.0 and geo.at(15) == pytest.approx(30 ** 0.5) and geo.at(30) == 1.0
    assert TemperatureSchedule(5.0, 1.0, 30, "constant").at(12) == 5.0
    assert TemperatureSchedule(30.0, 1.0, 0).at(0) == 1.0
    for bad, key in ((dict(schedule="cosine"), "schedule"), (dict(start=0.0), "start"),
                     (dict(end=float("nan")), "end"), (dict(epochs=-1), "epochs")):
        with pytest.raises(ConfigError, match=f"temperature.{key}"):
            TemperatureSchedule(**bad).check()


class _TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), SepBN(4), nn.Conv2d(4, 4, 1), MixBN(4))
        self.seen = []

    def training_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen.append([m.temperature for m in attention_layers(self)])
        return self.net(batch[0]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def test_callback_anneals_every_layer_each_epoch_and_resumes(tmp_path):
    data = torch.utils.data.TensorDataset(torch.rand(4, 3, 6, 6))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    schedule = TemperatureSchedule(30.0, 1.0, 4, "linear")
    module = _TinyModule()
    kwargs = dict(accelerator="cpu", logger=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=tmp_path)
    trainer = L.Trainer(max_epochs=3, callbacks=[TemperatureAnnealing(schedule)], **kwargs)
    trainer.fit(module, loader)
    assert module.seen == [[30.0, 30.0], [22.75, 22.75], [15.5, 15.5]]
    ckpt = tmp_path / "e3.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = _TinyModule()
    trainer = L.Trainer(max_epochs=6, callbacks=[TemperatureAnnealing(schedule)], **kwargs)
    trainer.fit(resumed, loader, ckpt_path=str(ckpt))
    assert resumed.seen == [[8.25, 8.25], [1.0, 1.0], [1.0, 1.0]]


# ---------------------------------------------------------------------------------------
# Pretrained BatchNorm weights into SepBN / MixBN backbones
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["sepbn", "mixbn"])
def test_converted_batchnorm_weights_reproduce_the_batchnorm_backbone(norm, tmp_path):
    torch.manual_seed(8)
    plain = create_backbone("mobilenet_v2")
    for m in plain.modules():                        # a "pretrained" BN network
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    state = {**plain.state_dict(), "classifier.1.weight": torch.zeros(10, 1280)}
    torch.save(state, tmp_path / "imagenet.pth")
    out = convert_batchnorm_weights(tmp_path / "imagenet.pth", "mobilenet_v2", norm,
                                    tmp_path / "converted.pth")
    trunk = create_backbone("mobilenet_v2", norm_layer=norm)
    load_backbone_weights(trunk, out)                # strict: every key, every shape
    for layer in attention_layers(trunk):
        randomise(layer.mlp if norm == "sepbn" else layer.fc1)   # whatever the attention says
        layer.temperature = 2.0
    x = torch.rand(2, 3, 64, 64)
    np.testing.assert_allclose(trunk.eval()(x).detach(), plain.eval()(x).detach(), atol=1e-4)
    with pytest.raises(DataError, match="cannot convert.*resnet18"):
        convert_batchnorm_weights(tmp_path / "imagenet.pth", "resnet18", norm,
                                  tmp_path / "bad.pth")

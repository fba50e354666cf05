"""Where a norm layer goes (SepBN paper Tables VI, X, XI): ``norm_placement`` by stage,
stride (resolution) and position inside the blocks; plain models keep their parameter names."""
import pytest
import torch
from torch import nn

from facemark.errors import ConfigError
from facemark.models import create_model, model_config, model_from_config
from facemark.models.backbones import create_backbone
from facemark.models.norm import SepBN, convert_batchnorm_weights

torch.set_num_threads(1)


def sepbn_names(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, SepBN)]


def test_bn3_only_in_resnext_bottlenecks():
    trunk = create_backbone("resnext50_32x4d", norm_layer="sepbn",
                            norm_placement={"positions": ["bn3"]})
    names = sepbn_names(trunk)
    assert len(names) == 3 + 4 + 6 + 3                      # one per bottleneck block
    assert all(n.endswith(".bn3") for n in names)
    assert isinstance(trunk.bn1, nn.BatchNorm2d) and isinstance(trunk.layer1[0].bn2, nn.BatchNorm2d)
    assert isinstance(trunk.layer1[0].downsample[1], nn.BatchNorm2d)


def test_bn3_only_in_mobilenet_v2_is_the_projection_norm():
    trunk = create_backbone("mobilenet_v2", norm_layer="sepbn",
                            norm_placement={"positions": ["bn3"]})
    names = sepbn_names(trunk)
    assert len(names) == 17                                  # one per inverted residual
    assert names[0] == "features.1.conv.2" and names[1] == "features.2.conv.3"
    assert isinstance(trunk.features[0][1], nn.BatchNorm2d)  # stem
    assert isinstance(trunk.features[18][1], nn.BatchNorm2d)  # last 1x1
    x = torch.randn(2, 3, 64, 64)
    assert trunk(x).shape == (2, 1280, 2, 2)


@pytest.mark.parametrize("positions,count", [(["bn1"], 16), (["bn2"], 16), (["bn1", "bn3"], 32),
                                             (["bn1", "bn2", "bn3"], 48)])
def test_table_x_rows_for_resnext(positions, count):
    trunk = create_backbone("resnext50_32x4d", norm_layer="sepbn",
                            norm_placement={"positions": positions})
    names = sepbn_names(trunk)
    assert len(names) == count
    assert {n.rsplit(".", 1)[1] for n in names} == set(positions)


def test_vanilla_by_resolution_table_vi():
    # 128 px input: block outputs 64^2 ... 2^2 have strides 2 ... 64
    trunk = create_backbone("vanilla", norm_layer="sepbn", norm_placement={"strides": [32, 64]})
    assert sepbn_names(trunk) == ["features.4.bn", "features.5.bn"]
    trunk = create_backbone("vanilla", norm_layer="sepbn", norm_placement={"stages": [0, 1]})
    assert sepbn_names(trunk) == ["features.0.bn", "features.1.bn"]
    assert trunk(torch.randn(2, 3, 128, 128)).shape == (2, 2048, 2, 2)


def test_resnet_stage_and_position_combine():
    trunk = create_backbone("resnet18", norm_layer="sepbn",
                            norm_placement={"stages": [3, 4], "positions": ["bn2"]})
    assert sepbn_names(trunk) == ["layer3.0.bn2", "layer3.1.bn2", "layer4.0.bn2", "layer4.1.bn2"]
    trunk = create_backbone("resnet18", norm_layer="sepbn", norm_placement={"strides": [4]})
    assert sepbn_names(trunk) == ["layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2"]


@pytest.mark.parametrize("backbone", ["resnet18", "resnext50_32x4d", "mobilenet_v2",
                                      "mobilenet_v3_large", "vanilla"])
def test_placement_keeps_every_parameter_name(backbone):
    plain = create_backbone(backbone)
    everywhere = create_backbone(backbone, norm_layer="mixbn", norm_placement={})
    placed = create_backbone(backbone, norm_layer="batchnorm",
                             norm_placement={"stages": [0]})
    assert list(placed.state_dict()) == list(plain.state_dict())
    assert len(everywhere.state_dict()) > len(plain.state_dict())   # {} = every position


@pytest.mark.parametrize("placement,match", [
    ({"positions": ["bn3"]}, "not a norm position of 'resnet18'"),     # BasicBlock: no bn3
    ({"stage": [1]}, "unknown key 'stage'; did you mean 'stages'"),
    ({"stages": [9]}, "has stages 0..4, got 9"),
    ({"strides": [3]}, r"has stage strides \[2, 4, 8, 16, 32\], got 3"),
    ({"stages": ["x"]}, "expected non-negative integers"),
    ([1], "expected a mapping"),
])
def test_bad_placements_name_the_problem(placement, match):
    with pytest.raises(ConfigError, match=match):
        create_backbone("resnet18", norm_layer="sepbn", norm_placement=placement)


def test_placement_needs_a_norm_layer_and_must_match_something():
    with pytest.raises(ConfigError, match="norm_layer is not"):
        create_backbone("resnet18", norm_placement={"positions": ["bn1"]})
    with pytest.raises(ConfigError, match="matches no norm layer"):
        create_backbone("vanilla", norm_layer="sepbn",
                        norm_placement={"stages": [0], "strides": [64]})


def test_model_config_round_trips_the_placement():
    model = create_model("coordnet", num_points=5, backbone="mobilenet_v2", input_size=64,
                         pool="avg", hidden=[], norm_layer="sepbn",
                         norm_placement={"positions": ["bn3"]})
    config = model_config(model)
    assert config["norm_placement"] == {"positions": ["bn3"]}
    again = model_from_config(config)
    assert len(sepbn_names(again)) == 17
    assert "norm_placement" not in model_config(create_model("coordnet", num_points=5))


def test_converted_weights_fit_a_placed_model(tmp_path):
    src = tmp_path / "bn.pth"
    torch.save(create_backbone("mobilenet_v2").state_dict(), src)
    dst = convert_batchnorm_weights(src, "mobilenet_v2", "sepbn", tmp_path / "sep.pth",
                                    norm_placement={"positions": ["bn3"]})
    trunk = create_backbone("mobilenet_v2", norm_layer="sepbn",
                            norm_placement={"positions": ["bn3"]})
    trunk.load_state_dict(torch.load(dst, weights_only=True))

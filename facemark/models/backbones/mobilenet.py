"""MobileNetV2 and MobileNetV3-Large trunks with torchvision's module names (no classifier).

MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al., CVPR 2018);
Searching for MobileNetV3 (Howard et al., ICCV 2019). The layouts follow torchvision's
``models/mobilenetv2.py`` and ``models/mobilenetv3.py``: everything up to the last 1x1
convolution lives in ``features`` (``features.0.0`` stem conv, ``features.N.conv.M`` in V2
blocks, ``features.N.block.M`` in V3 blocks, squeeze-excitation as ``fc1``/``fc2``), so
their ImageNet weight files load once the ``classifier.*`` keys are skipped. The output is
``features``' last map: 1280 channels (V2) or 960 (V3), stride 32 (as PIPNet's MobileNet
variants use them).

``output_stride`` 16 or 8 replaces the later strides by dilation of the depthwise
convolutions (parameter names unchanged).

``norm_placement`` (see ``base``) selects norm positions: ``stem`` (``features.0``),
``bn1`` (1x1 expansion; the first V2 block has none), ``bn2`` (depthwise), ``bn3`` (1x1
projection: the SepBN paper's BN3, Fig. 6) and ``last`` (the final 1x1 convolution).
Stage 0 is the stem, then one per ``feature_info`` entry (V2: 1..7 for the seven block
settings, 8 for the last convolution).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from torch import Tensor, nn

from facemark.models.backbones.base import (
    Backbone, NormLayer, NormPlacement, check_output_stride, norm_at, positional)


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without going down more than 10%."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's ``SAME`` padding: the output has ceil(H / stride) rows, and
    an odd padding puts the extra row and column at the bottom and right.

    Parameter names and shapes are nn.Conv2d's; only where the kernel samples differs (for a
    stride-2 layer on an even input, symmetric padding moves the sampling grid by one
    pixel). Weights trained in TensorFlow (``facemark weights import-tflite``) need it to
    compute what they computed there.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, **kwargs)
        self.fixed_padding: tuple[int, int, int, int] | None = None   # see freeze_same_padding

    @staticmethod
    def _pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def padding_for(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding for an input of ``height`` x ``width``."""
        top, bottom = self._pad(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = self._pad(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        return left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        pad = self.fixed_padding or self.padding_for(x.shape[-2], x.shape[-1])
        return super().forward(nn.functional.pad(x, pad))


def freeze_same_padding(model: nn.Module, input_size: int) -> list[Conv2dSame]:
    """Fix every :class:`Conv2dSame` of ``model`` to the padding an ``input_size`` square
    input gives it (one forward pass of zeros finds each layer's input size), so an ONNX
    export holds constant pads instead of a Shape/Gather/Sub computation per layer (the
    crop size of an export is fixed anyway).
    Returns the layers; set their ``fixed_padding`` back to None to undo."""
    import torch

    layers = [m for m in model.modules() if isinstance(m, Conv2dSame)]
    if not layers:
        return layers
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: setattr(mod, "fixed_padding", mod.padding_for(*args[0].shape[-2:])))
        for m in layers]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return layers


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> norm -> activation, as torchvision's ``Conv2dNormActivation``.

    Children are numbered ``0`` (conv), ``1`` (norm), ``2`` (activation, when there is one).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, dilation: int = 1, norm_layer: NormLayer = nn.BatchNorm2d,
                 activation: Callable[..., nn.Module] | None = nn.ReLU6,
                 same_padding: bool = False):
        padding = (kernel_size - 1) // 2 * dilation
        conv = Conv2dSame if same_padding else nn.Conv2d
        layers: list[nn.Module] = [
            conv(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation,
                 groups=groups, bias=False),
            norm_layer(out_ch)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_ch


class InvertedResidualV2(nn.Module):
    """V2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, in ``conv``."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, dilation: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d, same_padding: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidualV2: stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(inp, hidden, kernel_size=1,
                                      norm_layer=norm_at(norm_layer, "bn1")))
        layers += [
            ConvNormAct(hidden, hidden, stride=stride, groups=hidden, dilation=dilation,
                        norm_layer=norm_at(norm_layer, "bn2"),
                        same_padding=same_padding and stride > 1),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            norm_at(norm_layer, "bn3")(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class SqueezeExcitation(nn.Module):
    """Channel attention: global average -> 1x1 (``fc1``) -> ReLU -> 1x1 (``fc2``) -> hard sigmoid."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class InvertedResidualV3(nn.Module):
    """V3 block in ``block``: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 projection."""

    def __init__(self, inp: int, kernel: int, expanded: int, out: int, use_se: bool,
                 use_hs: bool, stride: int, dilation: int, norm_layer: NormLayer):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidualV3: stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and inp == out
        act = nn.Hardswish if use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != inp:
            layers.append(ConvNormAct(inp, expanded, kernel_size=1,
                                      norm_layer=norm_at(norm_layer, "bn1"), activation=act))
        layers.append(ConvNormAct(expanded, expanded, kernel_size=kernel, stride=stride,
                                  dilation=dilation, groups=expanded,
                                  norm_layer=norm_at(norm_layer, "bn2"), activation=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4, 8)))
        layers.append(ConvNormAct(expanded, out, kernel_size=1,
                                  norm_layer=norm_at(norm_layer, "bn3"), activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out

    def forward(self, x: Tensor) -> Tensor:
        result = self.block(x)
        return result + x if self.use_res_connect else result


class _StrideTracker:
    """Turns strides beyond ``output_stride`` into dilation (timm's rule)."""

    def __init__(self, output_stride: int):
        self.output_stride = output_stride
        self.reduction = 1
        self.dilation = 1

    def step(self, stride: int) -> tuple[int, int]:
        """Stride and dilation the next layer should use."""
        if stride > 1 and self.reduction * stride > self.output_stride:
            self.dilation *= stride
            return 1, self.dilation
        self.reduction *= stride
        return stride, self.dilation


def _init_mobilenet(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# t (expansion), c (channels), n (repeats), s (stride of the first repeat)
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

# input, kernel, expanded, out, SE, activation (RE: ReLU, HS: hard swish), stride
MOBILENET_V3_LARGE_SETTING = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)


class MobileNetV2(Backbone):
    """MobileNetV2 ``features`` (width 1.0): (B, 3, H, W) -> (B, 1280, H/s, W/s).

    Args:
        output_stride: 32, 16 or 8.
        norm_layer: default BatchNorm2d (torchvision's).
        norm_placement: where ``norm_layer`` goes (None: every position; module docstring).
        same_padding: pad the stride-2 convolutions as TensorFlow does (:class:`Conv2dSame`),
            for weights trained there (``mobilenet_v2_tf``); same parameters either way.
    """

    classifier_prefixes = ("classifier.",)
    norm_positions = ("stem", "bn1", "bn2", "bn3", "last")

    def __init__(self, *, output_stride: int = 32, norm_layer: str | NormLayer | None = None,
                 norm_placement: dict | None = None, same_padding: bool = False):
        super().__init__()
        check_output_stride(output_stride, (8, 16, 32), "mobilenet_v2")
        self.arch = "mobilenet_v2_tf" if same_padding else "mobilenet_v2"
        place = NormPlacement(norm_layer, nn.BatchNorm2d, norm_placement, self.arch,
                              self.norm_positions)
        track = _StrideTracker(output_stride)
        stride, _ = track.step(2)
        features: list[nn.Module] = [ConvNormAct(3, 32, stride=stride,
                                                 norm_layer=place(0, track.reduction, "stem"),
                                                 same_padding=same_padding)]
        self._add_feature(32, track.reduction, "features.0")
        in_ch = 32
        for stage, (t, c, n, s) in enumerate(MOBILENET_V2_SETTING, start=1):
            for i in range(n):
                stride, dilation = track.step(s if i == 0 else 1)
                norm = positional(place, stage, track.reduction)
                features.append(InvertedResidualV2(in_ch, c, stride, t, dilation, norm,
                                                   same_padding))
                in_ch = c
            self._add_feature(c, track.reduction, f"features.{len(features) - 1}")
        features.append(ConvNormAct(in_ch, 1280, kernel_size=1, norm_layer=place(
            len(MOBILENET_V2_SETTING) + 1, track.reduction, "last")))
        self.features = nn.Sequential(*features)
        self._add_feature(1280, track.reduction, f"features.{len(features) - 1}")
        _init_mobilenet(self)
        place.check(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class MobileNetV3Large(Backbone):
    """MobileNetV3-Large ``features``: (B, 3, H, W) -> (B, 960, H/s, W/s).

    Args:
        output_stride: 32, 16 or 8.
        norm_layer: default BatchNorm2d(eps=0.001, momentum=0.01) (torchvision's).
        norm_placement: where ``norm_layer`` goes (None: every position; module docstring).
    """

    classifier_prefixes = ("classifier.",)
    norm_positions = ("stem", "bn1", "bn2", "bn3", "last")

    def __init__(self, *, output_stride: int = 32, norm_layer: str | NormLayer | None = None,
                 norm_placement: dict | None = None):
        super().__init__()
        check_output_stride(output_stride, (8, 16, 32), "mobilenet_v3_large")
        self.arch = "mobilenet_v3_large"
        place = NormPlacement(norm_layer, partial(nn.BatchNorm2d, eps=0.001, momentum=0.01),
                              norm_placement, self.arch, self.norm_positions)
        track = _StrideTracker(output_stride)
        stride, _ = track.step(2)
        features: list[nn.Module] = [
            ConvNormAct(3, 16, stride=stride, norm_layer=place(0, track.reduction, "stem"),
                        activation=nn.Hardswish)]
        self._add_feature(16, track.reduction, "features.0")
        stage = 1
        for k, (inp, kernel, exp, out, se, act, s) in enumerate(MOBILENET_V3_LARGE_SETTING):
            stride, dilation = track.step(s)
            features.append(InvertedResidualV3(inp, kernel, exp, out, se, act == "HS", stride,
                                               dilation, positional(place, stage,
                                                                    track.reduction)))
            last_of_stage = (k + 1 == len(MOBILENET_V3_LARGE_SETTING)
                             or MOBILENET_V3_LARGE_SETTING[k + 1][6] == 2)
            if last_of_stage:
                self._add_feature(out, track.reduction, f"features.{len(features) - 1}")
                stage += 1
        last_in = MOBILENET_V3_LARGE_SETTING[-1][3]
        features.append(ConvNormAct(last_in, 6 * last_in, kernel_size=1,
                                    norm_layer=place(stage, track.reduction, "last"),
                                    activation=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self._add_feature(6 * last_in, track.reduction, f"features.{len(features) - 1}")
        _init_mobilenet(self)
        place.check(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def mobilenet_v2(**kwargs) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018): 2.22 M parameters without the classifier."""
    return MobileNetV2(**kwargs)


def mobilenet_v2_tf(**kwargs) -> MobileNetV2:
    """MobileNetV2 with TensorFlow's SAME padding in its stride-2 layers: the layout the
    ImageNet weights imported from TensorFlow Lite were trained in (same parameters)."""
    return MobileNetV2(same_padding=True, **kwargs)


def mobilenet_v3_large(**kwargs) -> MobileNetV3Large:
    """MobileNetV3-Large (Howard et al. 2019): 2.97 M parameters without the classifier."""
    return MobileNetV3Large(**kwargs)


__all__ = ["Conv2dSame", "freeze_same_padding", "MobileNetV2", "MobileNetV3Large", "mobilenet_v2", "mobilenet_v2_tf",
           "mobilenet_v3_large"]

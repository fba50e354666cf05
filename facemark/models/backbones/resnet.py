"""ResNet and ResNeXt backbones with torchvision's module names (no classifier).

Deep Residual Learning for Image Recognition (He et al., CVPR 2016) and Aggregated Residual
Transformations (Xie et al., CVPR 2017). Written to torchvision's ``models/resnet.py`` layout
(``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``..``layer4``; blocks with ``conv1``,
``bn1``, ..., ``downsample.0``/``downsample.1``; the stride on the 3x3 conv of a
bottleneck, "ResNet v1.5"), so torchvision's ImageNet weight files load with strict key
checking once their ``fc.*`` keys are skipped. ``avgpool`` and ``fc`` are left out: the
landmark heads work on the last feature map.

Unlike torchvision, ``BasicBlock`` supports dilation (as timm's does), so ResNet-18 can run
at output stride 8 or 16 for dense heads such as G-RMI; parameter names do not change.

``norm_placement`` (see ``base``) selects norm positions: ``stem`` (``bn1`` of the trunk),
``bn1``/``bn2``/``bn3`` of each block (BasicBlock has bn1, bn2), ``downsample`` (the
projection shortcut's norm); stages are 0 (stem), 1..4 (``layer1``..``layer4``).
"""
from __future__ import annotations

from torch import Tensor, nn

from facemark.models.backbones.base import (
    Backbone, NormLayer, NormPlacement, check_output_stride,
    norm_at, positional)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1,
            dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding keeps the size (divided by the stride)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 dilation: int = 1, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock supports groups=1 and base_width=64 only, "
                             f"got groups={groups}, base_width={base_width}")
        self.conv1 = conv3x3(inplanes, planes, stride, dilation=dilation)
        self.bn1 = norm_at(norm_layer, "bn1")(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = norm_at(norm_layer, "bn2")(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided here), 1x1 expand by 4; ResNet-50+."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 dilation: int = 1, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_at(norm_layer, "bn1")(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_at(norm_layer, "bn2")(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_at(norm_layer, "bn3")(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """ResNet trunk: stem (stride 4) and four stages; returns the ``layer4`` map.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        groups, width_per_group: ResNeXt cardinality and width (32, 4 for 32x4d).
        output_stride: 32 (plain), 16 (layer4 dilated) or 8 (layer3 and layer4 dilated).
        norm_layer: see ``facemark.models.backbones.base``; default BatchNorm2d.
        norm_placement: where ``norm_layer`` goes (None: every position; see ``base``).
        arch: registry name kept on the instance (for messages and configs).

    Shapes: (B, 3, H, W) -> (B, 512 * block.expansion, H / s, W / s), s = output_stride
    (sizes round up as the strided convolutions do).
    """

    classifier_prefixes = ("fc.",)
    norm_positions = ("stem", "bn1", "bn2", "bn3", "downsample")

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...], *,
                 groups: int = 1, width_per_group: int = 64, output_stride: int = 32,
                 norm_layer: str | NormLayer | None = None, norm_placement: dict | None = None,
                 arch: str = "resnet"):
        super().__init__()
        check_output_stride(output_stride, (8, 16, 32), arch)
        self.arch = arch
        positions = self.norm_positions if block is Bottleneck else \
            tuple(p for p in self.norm_positions if p != "bn3")
        self._placement = NormPlacement(norm_layer, nn.BatchNorm2d, norm_placement, arch,
                                        positions)
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        # replace_stride_with_dilation for layer2..layer4
        dilate = {32: (False, False, False), 16: (False, False, True),
                  8: (False, True, True)}[output_stride]

        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._placement(0, 2, "stem")(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # name kept: checkpoints
        self._add_feature(64, 2, "relu")
        reduction = 4
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            if stride == 2 and not (i > 0 and dilate[i - 1]):
                reduction *= 2
            self._stage = (i + 1, reduction)
            layer = self._make_layer(block, planes, n, stride=stride,
                                     dilate=False if i == 0 else dilate[i - 1])
            setattr(self, f"layer{i + 1}", layer)
            self._add_feature(planes * block.expansion, reduction, f"layer{i + 1}")

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._placement.check(self)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        norm_layer = positional(self._placement, *self._stage)
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer("downsample")(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (He et al. 2016): 11.18 M parameters without the classifier."""
    return ResNet(BasicBlock, (2, 2, 2, 2), arch="resnet18", **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (He et al. 2016), v1.5 (stride on the 3x3 conv): 23.51 M parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), arch="resnet50", **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (He et al. 2016), v1.5: 42.50 M parameters."""
    return ResNet(Bottleneck, (3, 4, 23, 3), arch="resnet101", **kwargs)


def resnext50_32x4d(**kwargs) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017): 22.98 M parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4,
                  arch="resnext50_32x4d", **kwargs)

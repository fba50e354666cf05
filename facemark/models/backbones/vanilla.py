"""The SepBN paper's Vanilla CNN trunk (Table I of sepbn.txt).

Separable Batch Normalization for Robust Facial Landmark Localization with Cross-protocol
Network Training: six blocks of Conv(3x3) -> BN -> LeakyReLU(0.01) -> MaxPool(2, 2) with 64,
128, 256, 512, 1024 and 2048 channels. On the paper's 128 x 128 input it leaves a
2 x 2 x 2048 map, which the paper flattens into Linear(8192, 1024) -> LeakyReLU ->
Linear(1024, 2L) (the ``vanilla_cnn`` model: a coordinate head, see heads/coordnet.py).

The norm layer is injectable: the SepBN modules replace the six BN layers, or those at
chosen resolutions with ``norm_placement`` (Table VI: ``{"strides": [32, 64]}`` puts SepBN
in the blocks whose output is 4x4 and 2x2 on the 128 px input; ``stages`` 0..5 are the
blocks; the one position is ``bn``).
"""
from __future__ import annotations

from torch import Tensor, nn

from facemark.models.backbones.base import Backbone, NormLayer, NormPlacement, check_output_stride

VANILLA_CHANNELS = (64, 128, 256, 512, 1024, 2048)


class VanillaBlock(nn.Module):
    """Conv 3x3 (padding 1) -> norm -> LeakyReLU -> 2x2 max pooling (halves the size)."""

    def __init__(self, in_ch: int, out_ch: int, norm_layer: NormLayer, negative_slope: float):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn = norm_layer(out_ch)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class VanillaCNN(Backbone):
    """Six conv blocks: (B, 3, H, W) -> (B, 2048, H / 64, W / 64) (H, W multiples of 64).

    Args:
        norm_layer: default BatchNorm2d.
        norm_placement: which blocks get ``norm_layer`` (None: all; see the module docstring).
        negative_slope: LeakyReLU slope (paper: 1e-2).
        output_stride: only 64 (the architecture has no other).
    """

    norm_positions = ("bn",)

    def __init__(self, *, norm_layer: str | NormLayer | None = None,
                 norm_placement: dict | None = None, negative_slope: float = 0.01,
                 output_stride: int = 64):
        super().__init__()
        check_output_stride(output_stride, (64,), "vanilla")
        self.arch = "vanilla"
        place = NormPlacement(norm_layer, nn.BatchNorm2d, norm_placement, self.arch,
                              self.norm_positions)
        blocks, in_ch = [], 3
        for i, ch in enumerate(VANILLA_CHANNELS):
            blocks.append(VanillaBlock(in_ch, ch, place(i, 2 ** (i + 1), "bn"),
                                       negative_slope))
            self._add_feature(ch, 2 ** (i + 1), f"features.{i}")
            in_ch = ch
        self.features = nn.Sequential(*blocks)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu",
                                        a=negative_slope)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        place.check(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def vanilla(**kwargs) -> VanillaCNN:
    """The SepBN paper's Vanilla CNN trunk (6 conv blocks, 2048 channels, stride 64)."""
    return VanillaCNN(**kwargs)

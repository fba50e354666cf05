"""MapNet: heatmap regression baseline (Simple Baselines, Xiao et al. 2018) from PIPNet's paper.

papers/pipnet.txt, Sec. 4.3.1: ResNet-18 followed by deconvolutions up to network stride
4, 2 or 1, Gaussian labels whose radius is 1, 2 and 4 cells respectively (4 input pixels
in every case; taken here as the Gaussian's standard deviation), L2 loss, and decoding at
the highest response moved a quarter cell towards the higher of its two neighbours on
each axis. The deconvolutions have 512 channels (k4, s2) + BN + ReLU, which is what the
paper's Table 9 parameter counts (28 M on ResNet-18, 52.9 M on ResNet-50 at stride 2)
imply; a 1x1 convolution gives the N heatmaps.

Codec (grid H x W, cell k centred at (k + 0.5) / W):

- encode: heatmap exp(-d^2 / (2 sigma^2)) around the exact sub-cell position (d in cells);
- loss: ``heatmap_weight`` * MSE over all cells of annotated landmarks;
- decode: argmax cell, plus 0.25 * sign(h[k+1] - h[k-1]) on each axis where both
  neighbours exist; error at most a quarter cell per axis for a clean Gaussian. Confidence
  is the peak value clamped to [0, 1].
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.backbones import create_backbone
from facemark.models.backbones.base import NormLayer, resolve_norm_layer
from facemark.models.heads.base import (
    LandmarkHead, TensorDict, argmax_cells, check_same_grid, masked_mean)
from facemark.models.heads.pip import resample_layers
from facemark.models.model import LandmarkModel
from facemark.models.registry import check_input_size, register_model, reject_unknown


class MapHead(LandmarkHead):
    """Deconvolution head producing N heatmaps at ``net_stride``.

    Args:
        in_channels, in_stride: from the backbone.
        num_points: N.
        input_size: crop side S; the heatmap is S / net_stride a side.
        net_stride: 1, 2, 4 (paper), or any power of two up to the backbone stride.
        radius: Gaussian standard deviation in input pixels (paper: 4 px, i.e. 1, 2, 4
            cells at stride 4, 2, 1).
        deconv_channels: width of the deconvolutions (512).
        heatmap_weight: weight of the MSE loss.
        norm_layer: norm after each deconvolution (default BatchNorm2d).

    Outputs: ``heatmap`` (B, N, H, W).
    """

    def __init__(self, in_channels: int, in_stride: int, *, num_points: int, input_size: int,
                 net_stride: int = 4, radius: float = 4.0, deconv_channels: int = 512,
                 heatmap_weight: float = 1.0, norm_layer: str | NormLayer | None = None):
        super().__init__()
        if net_stride > in_stride:
            raise ConfigError(f"net_stride: MapNet upsamples, so it must not exceed the "
                              f"backbone stride {in_stride}, got {net_stride}")
        if not radius > 0:
            raise ConfigError(f"radius: expected a positive number of pixels, got {radius!r}")
        self.num_points = num_points
        self.input_size = input_size
        self.net_stride = net_stride
        self.radius = float(radius)
        self.sigma = self.radius / net_stride          # in heatmap cells
        self.heatmap_weight = float(heatmap_weight)
        self.grid = input_size // net_stride
        self.deconv, ch = resample_layers(in_channels, in_stride, net_stride,
                                          resolve_norm_layer(norm_layer, nn.BatchNorm2d),
                                          channels=deconv_channels)
        self.final_layer = nn.Conv2d(ch, num_points, kernel_size=1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {"heatmap": self.final_layer(self.deconv(features))}

    def encode(self, landmarks: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """``heatmap`` (B, N, H, W) Gaussians (zero for missing points) and ``mask``."""
        landmarks, mask = self.check_landmarks(landmarks, mask)
        h = w = self.grid
        cx = landmarks[..., 0] * w - 0.5                 # cell-centred coordinates
        cy = landmarks[..., 1] * h - 0.5
        xs = torch.arange(w, device=landmarks.device, dtype=landmarks.dtype)
        ys = torch.arange(h, device=landmarks.device, dtype=landmarks.dtype)
        dx2 = (xs - cx[..., None]).pow(2)                # (B, N, W)
        dy2 = (ys - cy[..., None]).pow(2)                # (B, N, H)
        heat = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * self.sigma ** 2))
        return {"heatmap": heat * mask[..., None, None], "mask": mask}

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        """``heatmap``: MSE over all cells of annotated landmarks, times ``heatmap_weight``."""
        check_same_grid("MapHead.loss", outputs["heatmap"], targets["heatmap"])
        se = (outputs["heatmap"] - targets["heatmap"]).pow(2).mean(dim=(2, 3))
        parts = {"heatmap": self.heatmap_weight * masked_mean(se, targets["mask"])}
        return parts["heatmap"], parts

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        heat = outputs["heatmap"]
        b, n, h, w = heat.shape
        flat = heat.reshape(b, n, h * w)
        idx, row, col, peak = argmax_cells(heat)

        def at(r: Tensor, c: Tensor) -> Tensor:
            return flat.gather(2, (r * w + c)[..., None]).squeeze(2)

        right = at(row, (col + 1).clamp(max=w - 1))
        left = at(row, (col - 1).clamp(min=0))
        down = at((row + 1).clamp(max=h - 1), col)
        up = at((row - 1).clamp(min=0), col)
        inner_x = ((col > 0) & (col < w - 1)).to(heat.dtype)
        inner_y = ((row > 0) & (row < h - 1)).to(heat.dtype)
        x = col.to(heat.dtype) + 0.25 * torch.sign(right - left) * inner_x
        y = row.to(heat.dtype) + 0.25 * torch.sign(down - up) * inner_y
        points = torch.stack([(x + 0.5) / w, (y + 0.5) / h], dim=-1)
        return points, peak.clamp(0.0, 1.0)


def _create_mapnet(variant: str, *, num_points: int, input_size: int = 256,
                   backbone: str = "resnet18", net_stride: int = 4, radius: float = 4.0,
                   deconv_channels: int = 512, heatmap_weight: float = 1.0,
                   norm_layer: str | None = None,
                   norm_placement: dict | None = None, **unknown: Any) -> LandmarkModel:
    reject_unknown(variant, unknown, _create_mapnet)
    trunk = create_backbone(backbone, norm_layer=norm_layer,
                            norm_placement=norm_placement)
    input_size = check_input_size(input_size, trunk.stride, variant,
                                  f"backbone stride {trunk.stride}")
    head = MapHead(trunk.out_channels, trunk.stride, num_points=num_points,
                   input_size=input_size, net_stride=net_stride, radius=radius,
                   deconv_channels=deconv_channels, heatmap_weight=heatmap_weight,
                   norm_layer=norm_layer)
    model = LandmarkModel(trunk, head, input_size=input_size)
    model.config = dict(name=variant, num_points=num_points, input_size=input_size,
                        backbone=backbone, net_stride=net_stride, radius=radius,
                        deconv_channels=deconv_channels, heatmap_weight=heatmap_weight,
                        norm_layer=norm_layer)
    if norm_placement is not None:  # absent from plain models' configs
        model.config["norm_placement"] = norm_placement
    return model


BUILDER = _create_mapnet  # the family's arguments (registry.model_arguments)


@register_model
def mapnet(**kwargs) -> LandmarkModel:
    """MapNet: ResNet-18, 512-channel deconvolutions to stride 4 (``net_stride`` 2 or 1:
    the paper's other variants), Gaussian radius 4 px, L2 loss, quarter-offset decoding."""
    return _create_mapnet("mapnet", **kwargs)

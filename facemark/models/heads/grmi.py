"""G-RMI: disk heatmaps plus offsets (Papandreou et al., CVPR 2017), as PIPNet's baseline.

papers/pipnet.txt, Sec. 4.6: "binary cross-entropy and smooth L1 loss are used for
classification and regression, and their loss scalars are set to 4 and 1 respectively ...
the radius of the disk is set to 15". As in the original, the backbone runs at output
stride 8 (its last stages dilated), which is what makes G-RMI's cost in Table 9 (25.5
GFLOPs on ResNet-50) so high; 1x1 convolutions give N heatmap logits and 2N offsets.

Codec (grid H x W at ``output_stride``; radius r in input pixels, r / stride in cells):

- encode: heatmap 1 on every cell whose centre lies within r of the landmark, and always on
  the cell containing it (clamped to the grid); offsets (landmark - cell centre) / r_cells
  on every cell (the loss reads only the disk);
- loss: ``4`` * BCE-with-logits over all cells + ``1`` * smooth L1 of the offsets inside
  the disk; annotated landmarks only;
- decode: the cell with the highest logit plus its offset (the original aggregates votes
  by Hough voting; at argmax the estimate is exact for a clean target). Confidence is
  sigmoid of the peak logit.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.backbones import create_backbone
from facemark.models.heads.base import (
    LandmarkHead, TensorDict, argmax_cells, check_same_grid, gather_cells, masked_mean)
from facemark.models.model import LandmarkModel
from facemark.models.registry import check_input_size, register_model, reject_unknown


class GRMIHead(LandmarkHead):
    """Disk classification + offset regression on one feature map.

    Args:
        in_channels, in_stride: from the backbone (stride 8 in the paper's setting).
        num_points: N.
        input_size: crop side S; the grid is S / in_stride a side.
        radius: disk radius in input pixels (15).
        heatmap_weight, offset_weight: loss scalars (4 and 1).

    Outputs: ``heatmap`` (B, N, H, W) logits; ``offset_x``, ``offset_y`` (B, N, H, W) in
    units of the disk radius.
    """

    def __init__(self, in_channels: int, in_stride: int, *, num_points: int, input_size: int,
                 radius: float = 15.0, heatmap_weight: float = 4.0, offset_weight: float = 1.0):
        super().__init__()
        if not radius > 0:
            raise ConfigError(f"radius: expected a positive number of pixels, got {radius!r}")
        self.num_points = num_points
        self.input_size = input_size
        self.stride = in_stride
        self.radius = float(radius)
        self.radius_cells = self.radius / in_stride
        self.heatmap_weight = float(heatmap_weight)
        self.offset_weight = float(offset_weight)
        self.grid = input_size // in_stride
        self.heatmap_layer = nn.Conv2d(in_channels, num_points, kernel_size=1)
        self.offset_layer = nn.Conv2d(in_channels, 2 * num_points, kernel_size=1)
        for layer in (self.heatmap_layer, self.offset_layer):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        off = self.offset_layer(features)
        n = self.num_points
        return {"heatmap": self.heatmap_layer(features), "offset_x": off[:, :n],
                "offset_y": off[:, n:]}

    def encode(self, landmarks: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """``heatmap`` (0/1 disks), ``offset_x``/``offset_y`` (B, N, H, W) and ``mask``."""
        landmarks, mask = self.check_landmarks(landmarks, mask)
        b, n = mask.shape
        h = w = self.grid
        px = landmarks[..., 0] * w - 0.5                 # cell-centred coordinates
        py = landmarks[..., 1] * h - 0.5
        xs = torch.arange(w, device=landmarks.device, dtype=landmarks.dtype)
        ys = torch.arange(h, device=landmarks.device, dtype=landmarks.dtype)
        dx = px[..., None, None] - xs[None, None, None, :]     # (B, N, 1, W)
        dy = py[..., None, None] - ys[None, None, :, None]     # (B, N, H, 1)
        disk = (dx.pow(2) + dy.pow(2)) <= self.radius_cells ** 2
        own = (landmarks[..., 1] * h).floor().clamp(0, h - 1) * w \
            + (landmarks[..., 0] * w).floor().clamp(0, w - 1)
        disk = disk | F.one_hot(own.long(), h * w).bool().reshape(b, n, h, w)
        disk = disk & mask[..., None, None]
        r = self.radius_cells
        return {"heatmap": disk.to(landmarks.dtype),
                "offset_x": (dx / r).expand(b, n, h, w).contiguous(),
                "offset_y": (dy / r).expand(b, n, h, w).contiguous(),
                "mask": mask}

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        """Weighted parts ``heatmap`` (BCE, all cells) and ``offset`` (smooth L1, in disks)."""
        check_same_grid("GRMIHead.loss", outputs["heatmap"], targets["heatmap"])
        mask = targets["mask"]
        bce = F.binary_cross_entropy_with_logits(outputs["heatmap"], targets["heatmap"],
                                                 reduction="none").mean(dim=(2, 3))
        parts = {"heatmap": self.heatmap_weight * masked_mean(bce, mask)}
        disk = targets["heatmap"] > 0.5                      # already False for missing points
        off = sum(masked_mean(F.smooth_l1_loss(outputs[k], targets[k], reduction="none"), disk)
                  for k in ("offset_x", "offset_y"))
        parts["offset"] = self.offset_weight * off
        return parts["heatmap"] + parts["offset"], parts

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        heat = outputs["heatmap"]
        h, w = heat.shape[2:]
        idx, row, col, peak = argmax_cells(heat)
        r = self.radius_cells
        x = col.to(heat.dtype) + gather_cells(outputs["offset_x"], idx) * r
        y = row.to(heat.dtype) + gather_cells(outputs["offset_y"], idx) * r
        points = torch.stack([(x + 0.5) / w, (y + 0.5) / h], dim=-1)
        return points, torch.sigmoid(peak)


def _create_grmi(variant: str, *, num_points: int, input_size: int = 256,
                 backbone: str = "resnet18", output_stride: int = 8, radius: float = 15.0,
                 heatmap_weight: float = 4.0, offset_weight: float = 1.0,
                 norm_layer: str | None = None,
                 norm_placement: dict | None = None, **unknown: Any) -> LandmarkModel:
    reject_unknown(variant, unknown, _create_grmi)
    trunk = create_backbone(backbone, output_stride=output_stride, norm_layer=norm_layer,
                            norm_placement=norm_placement)
    input_size = check_input_size(input_size, trunk.stride, variant,
                                  f"output stride {trunk.stride}")
    head = GRMIHead(trunk.out_channels, trunk.stride, num_points=num_points,
                    input_size=input_size, radius=radius, heatmap_weight=heatmap_weight,
                    offset_weight=offset_weight)
    model = LandmarkModel(trunk, head, input_size=input_size)
    model.config = dict(name=variant, num_points=num_points, input_size=input_size,
                        backbone=backbone, output_stride=output_stride, radius=radius,
                        heatmap_weight=heatmap_weight, offset_weight=offset_weight,
                        norm_layer=norm_layer)
    if norm_placement is not None:  # absent from plain models' configs
        model.config["norm_placement"] = norm_placement
    return model


BUILDER = _create_grmi  # the family's arguments (registry.model_arguments)


@register_model
def grmi(**kwargs) -> LandmarkModel:
    """G-RMI: ResNet-18 at output stride 8 (the paper used ResNet-50/101: pass
    ``backbone``), disk radius 15 px, BCE x4 + smooth L1 x1."""
    return _create_grmi("grmi", **kwargs)

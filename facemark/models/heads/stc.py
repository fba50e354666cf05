"""PIPNet for self-training with curriculum (STC): coarse score maps on a shared layer.

Pixel-in-Pixel Net (Jin, Liao and Shao, IJCV 2021; papers/pipnet.txt, Sec. 3.3 and Fig. 8),
as the authors' ``lib/networks_gssl.py`` runs it (REFERENCE.md): the PIPNet head of
:mod:`facemark.models.heads.pip` plus coarser score maps made by the *same* score layer
(``cls_layer``) applied to the feature map after one and two 2x2 max poolings. At 256 px and
stride 32 the maps are 8x8 (the full task: scores, offsets, neighbours), 4x4 and 2x2
(scores only). The coarse maps add no parameters: a checkpoint has exactly the keys of the
plain PIPNet of the same arguments, and inference ignores them.

Task levels (``level`` = number of 2x2 poolings before the score layer):

- level 0: the full PIP task (the paper's Task 3): score, x/y offsets and neighbours on the
  net-stride grid G x G;
- level k > 0: grid classification only, on the (G / 2^k) x (G / 2^k) map ``score_level{k}``
  (level 2 is the paper's Task 1, level 1 its Task 2).

Codec, for a batch whose samples may be at different levels (``levels`` (B,)):

- encode: each sample gets the targets of its own level only: a level-0 sample the PIP
  targets (one-hot score, offsets, neighbour offsets), a level-k sample a one-hot score at
  cell ``floor(u * G_k)`` (clamped) of ``score_level{k}``; every other map's target is zero
  and masked out.
- loss: ``score_weight`` * squared error summed over every supervised cell of every level,
  divided by the number of those cells (the authors' normalisation: the three maps are
  concatenated under one mask), plus the PIP offset and neighbour terms of the level-0
  samples. With every sample at level 0 this equals :class:`PIPHead`'s loss.
- decode: level 0 is PIPNet's decode (argmax, offsets, neighbour scatter-mean); level k
  returns the centre of the argmax cell of ``score_level{k}`` (no offsets exist there).
  Confidence is the peak score clamped to [0, 1].
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facemark.errors import ConfigError
from facemark.models.backbones import create_backbone
from facemark.models.heads.base import TensorDict, argmax_cells
from facemark.models.heads.pip import PIPHead, check_neighbour_args
from facemark.models.model import LandmarkModel
from facemark.models.registry import check_input_size, register_model, reject_unknown

#: The paper's number of coarse levels (8x8 -> 4x4 -> 2x2 at 256 px, stride 32).
PAPER_LEVELS = 2


def level_key(level: int) -> str:
    """Output key of the score map at ``level`` (``"score"`` for level 0)."""
    return "score" if level == 0 else f"score_level{level}"


def resolve_stc_levels(stc_levels: Any, grid: int) -> int:
    """Number of coarse levels for a G x G grid.

    None gives the paper's two where the grid allows it, else as many as it does (each
    level halves the grid, which must stay a whole number of cells): 8 -> 2, 4 -> 2, 2 -> 1,
    1 or odd -> 0. An explicit integer is checked against the grid.

    Raises:
        ConfigError: naming ``stc_levels``, when the value is not a non-negative integer
            or the grid cannot be halved that often.
    """
    if stc_levels is None:
        levels = 0
        while levels < PAPER_LEVELS and grid % (2 ** (levels + 1)) == 0:
            levels += 1
        return levels
    if isinstance(stc_levels, bool) or not isinstance(stc_levels, int) or stc_levels < 0:
        raise ConfigError(f"stc_levels: expected a non-negative integer, got {stc_levels!r}")
    if grid % (2 ** stc_levels):
        raise ConfigError(f"stc_levels: {stc_levels} coarse levels halve the {grid}x{grid} "
                          f"score grid {stc_levels} times, which needs a grid divisible by "
                          f"{2 ** stc_levels}; use a larger input_size or fewer levels")
    return stc_levels


class STCHead(PIPHead):
    """PIP regression + NRM with coarse score maps for self-training with curriculum.

    Args:
        in_channels, in_stride, num_points, input_size, net_stride, num_nb, mean_face,
        score_weight, offset_weight, norm_layer: as :class:`PIPHead`.
        stc_levels: coarse levels L (see :func:`resolve_stc_levels`; None = the paper's 2
            where the grid allows).

    Outputs (grid G x G = input_size / net_stride):
        PIPHead's ``score``, ``offset_x``, ``offset_y`` (B, N, G, G), ``nb_x``, ``nb_y``
        (B, C * N, G, G); and ``score_level{k}`` (B, N, G / 2^k, G / 2^k) for k = 1..L.
    """

    def __init__(self, in_channels: int, in_stride: int, *, num_points: int, input_size: int,
                 net_stride: int = 32, num_nb: int = 10, mean_face: Any = None,
                 score_weight: float = 10.0, offset_weight: float = 1.0,
                 norm_layer: Any = None, stc_levels: int | None = None):
        super().__init__(in_channels, in_stride, num_points=num_points, input_size=input_size,
                         net_stride=net_stride, num_nb=num_nb, mean_face=mean_face,
                         score_weight=score_weight, offset_weight=offset_weight,
                         norm_layer=norm_layer)
        self.levels = resolve_stc_levels(stc_levels, self.grid)
        self.encodes_other_grids = False   # its levels are sized for input_size

    def grid_at(self, level: int) -> int:
        """Side of the score map at ``level`` in cells."""
        self._check_level(level)
        return self.grid // (2 ** level)

    def _check_level(self, level: int) -> None:
        if not 0 <= int(level) <= self.levels:
            raise ValueError(f"STCHead: level {level} outside [0, {self.levels}] (this head has "
                             f"{self.levels} coarse level(s) on a {self.grid}x{self.grid} grid)")

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        x = self.extra(features)
        out = {"score": self.cls_layer(x), "offset_x": self.x_layer(x), "offset_y": self.y_layer(x)}
        if self.num_nb:
            out["nb_x"] = self.nb_x_layer(x)
            out["nb_y"] = self.nb_y_layer(x)
        for level in range(1, self.levels + 1):
            x = F.max_pool2d(x, kernel_size=2, stride=2)
            out[level_key(level)] = self.cls_layer(x)       # the shared score layer
        return out

    # -- codec ------------------------------------------------------------------------
    def encode(self, landmarks: Tensor, mask: Tensor | None = None,
               levels: Tensor | None = None) -> dict[str, Tensor]:
        """Targets of each sample at its own task level.

        Args:
            landmarks: (B, N, 2) normalised crop coordinates.
            mask: (B, N) bool, annotated points (None: all).
            levels: (B,) integer task level of each sample in [0, L] (None: all 0).

        Returns:
            PIPHead's targets with ``score``, offsets and neighbours (and ``mask``,
            ``nb_mask``) restricted to the level-0 samples; ``score_level{k}`` (B, N,
            G_k, G_k) one-hot for the level-k samples; ``point_mask`` (B, N) the annotated
            points of every sample; ``level`` (B,) int64.
        """
        landmarks, mask = self.check_landmarks(landmarks, mask)
        b = mask.shape[0]
        if levels is None:
            levels = torch.zeros(b, dtype=torch.long, device=mask.device)
        levels = torch.as_tensor(levels, device=mask.device).long().reshape(-1)
        if levels.shape != (b,):
            raise ValueError(f"STCHead.encode: levels must be ({b},), got {tuple(levels.shape)}")
        if bool(((levels < 0) | (levels > self.levels)).any()):
            bad = levels[(levels < 0) | (levels > self.levels)][0].item()
            raise ValueError(f"STCHead.encode: level {bad} outside [0, {self.levels}]")
        full = mask & (levels == 0)[:, None]
        targets = super().encode(landmarks, full)
        targets["point_mask"] = mask
        targets["level"] = levels
        for level in range(1, self.levels + 1):
            g = self.grid_at(level)
            sel = (mask & (levels == level)[:, None]).to(landmarks.dtype)
            cx = (landmarks[..., 0] * g).floor().clamp(0, g - 1)
            cy = (landmarks[..., 1] * g).floor().clamp(0, g - 1)
            onehot = F.one_hot((cy * g + cx).long(), g * g).to(landmarks.dtype) * sel[..., None]
            targets[level_key(level)] = onehot.reshape(b, -1, g, g)
        return targets

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        """Parts ``score`` (all levels, one normalisation), ``offset``, ``neighbour``."""
        total, parts = super().loss(outputs, targets)
        if "level" not in targets:        # targets from PIPHead.encode: all at level 0
            return total, parts
        point_mask, levels = targets["point_mask"], targets["level"]
        sse = outputs["score"].new_zeros(())
        cells = outputs["score"].new_zeros(())
        for level in range(self.levels + 1):
            key = level_key(level)
            if outputs[key].shape != targets[key].shape:
                raise ValueError(f"STCHead.loss: {key} outputs {tuple(outputs[key].shape)} and "
                                 f"targets {tuple(targets[key].shape)} differ")
            sel = (point_mask & (levels == level)[:, None]).to(sse.dtype)       # (B, N)
            per_point = (outputs[key] - targets[key]).pow(2).sum(dim=(2, 3))   # (B, N)
            sse = sse + (per_point * sel).sum()
            cells = cells + sel.sum() * self.grid_at(level) ** 2
        parts["score"] = self.score_weight * sse / cells.clamp(min=1.0)
        return sum(parts.values()), parts

    def decode(self, outputs: dict[str, Tensor], level: int = 0) -> tuple[Tensor, Tensor]:
        """Points (B, N, 2) in [0, 1] and confidence (B, N) from the task at ``level``."""
        if level == 0:
            return super().decode(outputs)
        self._check_level(level)
        score = outputs[level_key(level)]
        h, w = score.shape[2:]
        _, row, col, peak = argmax_cells(score)
        points = torch.stack([(col.to(score.dtype) + 0.5) / w,
                              (row.to(score.dtype) + 0.5) / h], dim=-1)
        return points, peak.clamp(0.0, 1.0)


def _create_stc(variant: str, *, num_points: int, input_size: int = 256,
                backbone: str = "resnet18", net_stride: int = 32, num_nb: int = 10,
                mean_face: Any = None, score_weight: float = 10.0, offset_weight: float = 1.0,
                norm_layer: str | None = None,
                norm_placement: dict | None = None, stc_levels: int | None = None,
                **unknown: Any) -> LandmarkModel:
    reject_unknown(variant, unknown, _create_stc)
    face = check_neighbour_args(num_points, num_nb, mean_face)      # before the slow part
    trunk = create_backbone(backbone, norm_layer=norm_layer,
                            norm_placement=norm_placement)
    input_size = check_input_size(input_size, max(net_stride, trunk.stride), variant,
                                  f"net_stride {net_stride}, backbone stride {trunk.stride}")
    resolve_stc_levels(stc_levels, input_size // net_stride)        # fail before the head
    head = STCHead(trunk.out_channels, trunk.stride, num_points=num_points,
                   input_size=input_size, net_stride=net_stride, num_nb=num_nb,
                   mean_face=face, score_weight=score_weight, offset_weight=offset_weight,
                   norm_layer=norm_layer, stc_levels=stc_levels)
    model = LandmarkModel(trunk, head, input_size=input_size)
    model.config = dict(name=variant, num_points=num_points, input_size=input_size,
                        backbone=backbone, net_stride=net_stride, num_nb=num_nb,
                        mean_face=face, score_weight=score_weight,
                        offset_weight=offset_weight, norm_layer=norm_layer,
                        stc_levels=head.levels)
    if norm_placement is not None:  # absent from plain models' configs
        model.config["norm_placement"] = norm_placement
    return model


BUILDER = _create_stc  # the family's arguments (registry.model_arguments)


@register_model
def pipnet_stc(**kwargs) -> LandmarkModel:
    """PIPNet (ResNet-18, stride 32, 10 neighbours) with the STC coarse score maps; needs
    ``mean_face``. Train it with ``facemark selftrain``; it predicts like ``pipnet``."""
    return _create_stc("pipnet_stc", **kwargs)

"""The contract every landmark head (and its codec) follows.

Coordinates are normalised crop coordinates in [0, 1]: a pixel centre ``x_px`` of an
S-pixel crop is ``(x_px + 0.5) / S``. A head with an H x W output grid covers the crop with
cells of 1 / W; cell k spans [k / W, (k + 1) / W).

A head is an ``nn.Module`` with:

- ``forward(features (B, C, h, w)) -> dict[str, Tensor]``: raw outputs;
- ``encode(landmarks (B, N, 2), mask (B, N) bool) -> dict[str, Tensor]``: training targets,
  in the same keys and shapes as ``forward``'s outputs (so ``decode(encode(x))`` recovers x
  up to the head's quantisation), plus ``mask`` and any index tensors the loss needs;
- ``loss(outputs, targets) -> (total, parts)``: ``parts`` holds the weighted terms by name,
  ``total == sum(parts.values())``; points with ``mask`` False contribute nothing;
- ``decode(outputs) -> (points (B, N, 2) in [0, 1] coordinates, confidence (B, N) in [0, 1])``;
- ``predict(features) -> decode(forward(features))`` (inference; may skip unread outputs).

Everything is vectorised over the batch, on the device of its inputs.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

TensorDict = dict[str, Tensor]
"""Named tensors: a head's outputs, its targets, or its loss parts."""


class LandmarkHead(nn.Module):
    """Base class. Subclasses set ``num_points`` and ``input_size`` and implement the codec.

    ``cell`` is the input pixels per output cell when the decode reads its grid size off the
    feature map, so that the model also runs on crops of other sides (multiples of ``cell``;
    a first pass that only places the crop, :meth:`LandmarkModel.check_other_input_size`);
    None for heads whose layers are sized for ``input_size`` (the default).
    ``encodes_other_grids``: whether ``encode`` takes ``grid=`` (targets for crops of another
    side, so training can shrink some batches: ``data.smaller_sizes``).
    """

    num_points: int
    input_size: int
    cell: int | None = None
    encodes_other_grids: bool = False   # encode(..., grid=G): targets for other crop sides

    def encode(self, landmarks: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        raise NotImplementedError

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def predict(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``decode(forward(features))``: what inference and export run. A head may
        override it to skip outputs its decode does not read (:class:`PIPHead`)."""
        return self.decode(self(features))

    def check_landmarks(self, landmarks: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Validate shapes; return (landmarks with missing points zeroed, mask as bool).

        Raises:
            ValueError: wrong shapes, or a non-finite coordinate on a point ``mask`` marks as
            annotated (missing points may hold NaN).
        """
        if landmarks.dim() != 3 or landmarks.shape[1:] != (self.num_points, 2):
            raise ValueError(f"{type(self).__name__}.encode: landmarks must be (B, "
                             f"{self.num_points}, 2), got {tuple(landmarks.shape)}")
        if mask is None:
            mask = torch.ones(landmarks.shape[:2], dtype=torch.bool, device=landmarks.device)
        if mask.shape != landmarks.shape[:2]:
            raise ValueError(f"{type(self).__name__}.encode: mask must be "
                             f"{tuple(landmarks.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.to(device=landmarks.device, dtype=torch.bool)
        landmarks = landmarks.float()
        finite = torch.isfinite(landmarks).all(-1)
        if bool((mask & ~finite).any()):
            b, i = (mask & ~finite).nonzero()[0].tolist()
            raise ValueError(f"{type(self).__name__}.encode: landmark {i} of sample {b} is "
                             f"{landmarks[b, i].tolist()} but mask marks it annotated")
        landmarks = torch.where(mask[..., None], landmarks, torch.zeros_like(landmarks))
        return landmarks, mask


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (broadcast to ``values``) is True; 0 when none is.

    Args:
        values: any shape.
        mask: bool or float, broadcastable to ``values``.
    """
    weight = mask.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def check_same_grid(name: str, outputs: Tensor, targets: Tensor) -> None:
    if outputs.shape != targets.shape:
        raise ValueError(f"{name}: outputs {tuple(outputs.shape)} and targets "
                         f"{tuple(targets.shape)} differ; were the images the model's input_size?")


def gather_cells(maps: Tensor, cell: Tensor) -> Tensor:
    """Values of ``maps`` (B, N, K, H, W) or (B, N, H, W) at flat cell ``cell`` (B, N).

    Returns (B, N, K) or (B, N).
    """
    if maps.dim() == 4:
        b, n, h, w = maps.shape
        return maps.reshape(b, n, h * w).gather(2, cell[..., None]).squeeze(2)
    b, n, k, h, w = maps.shape
    index = cell[:, :, None, None].expand(b, n, k, 1)
    return maps.reshape(b, n, k, h * w).gather(3, index).squeeze(3)


def argmax_cells(maps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Peak of each map (B, N, H, W): (flat index, row, column, peak value), each (B, N).

    Row and column use integer floor division of the flat index. (Dividing the flat index
    as a float, ``idx / W``, gives row + column / W: a well-known PIPNet pitfall.)
    """
    b, n, h, w = maps.shape
    peak, idx = maps.reshape(b, n, h * w).max(dim=2)
    row = torch.div(idx, w, rounding_mode="floor")
    col = idx - row * w
    return idx, row, col, peak

"""PIPNet: pixel-in-pixel regression with the neighbour regression module (NRM).

Pixel-in-Pixel Net: Towards Efficient Facial Landmark Detection in the Wild (Jin, Liao and
Shao, IJCV 2021; papers/pipnet.txt, Sections 3.1-3.2), as the authors' code runs it
(REFERENCE.md): on the backbone's last map (stride 32 for ResNets; one deconv for stride
16, one or two Conv3x3-s2(512)+BN+ReLU for 64 and 128), five parallel 1x1 convolutions give
a score map (N), x and y offsets (N each) and the x and y offsets of each landmark's C
neighbours (C * N each, channel ``C * i + j`` = neighbour j of landmark i).

Codec (grid H x W, landmark u in [0, 1]):

- encode: cell = floor(u * W) clamped to [0, W - 1]; score one-hot at that cell; offset
  u * W - cell (in [0, 1) inside the crop); neighbour offsets of landmark i are its
  neighbours' positions measured from i's own cell (may lie outside [0, 1]).
- loss: ``score_weight`` * MSE(score, all cells) + ``offset_weight`` * (L1 x + L1 y at the
  positive cell) + ``offset_weight`` * (L1 nb-x + L1 nb-y at the positive cell); missing
  landmarks contribute nothing, a neighbour term is dropped when the neighbour is missing.
- decode: argmax cell (integer floor division), its offsets; each landmark's final position
  is the plain mean of its own prediction and every prediction other landmarks make for it
  (a scatter-mean over any neighbour graph: landmarks that are nobody's neighbour just keep
  their own prediction).
- confidence (per landmark, in [0, 1]): with the NRM, from the agreement of the votes that
  are averaged into the landmark. ``spread`` = root-mean-square distance of the landmark's
  predictions (its own and its voters') from their mean, in crop units (fractions of the
  crop side); ``uncertainty`` = spread / sqrt(number of predictions), the standard error
  of that mean; ``confidence = exp(-uncertainty / confidence_scale)`` (scale 0.005 of the
  crop side by default, so ``uncertainty = -confidence_scale * ln(confidence)``). A
  landmark that nobody votes for takes the mean uncertainty of the face's voted
  landmarks. On LFPW test (bundled MobileNetV2 model, ground-truth crops) it ranks
  per-point errors (Spearman about -0.3, benchmarks/confidence_ranking.py) where the peak
  score does not (about -0.01). Without the NRM (``num_nb`` = 0) there are no votes and the
  confidence is the peak score clamped to [0, 1], as the authors' code.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.backbones import create_backbone
from facemark.models.backbones.base import NormLayer, resolve_norm_layer
from facemark.models.heads.base import (
    LandmarkHead, TensorDict, argmax_cells, check_same_grid, gather_cells, masked_mean)
from facemark.models.model import LandmarkModel
from facemark.models.registry import check_input_size, register_model, reject_unknown


#: Crop units (fraction of the crop side) of vote-spread uncertainty that give confidence
#: exp(-1) = 0.37; the decode's confidence is exp(-uncertainty / CONFIDENCE_SCALE).
CONFIDENCE_SCALE = 0.005


def neighbour_indices(mean_face: np.ndarray, num_nb: int) -> np.ndarray:
    """The ``num_nb`` nearest other landmarks of each landmark in the mean face.

    Args:
        mean_face: (N, 2) landmark positions (any consistent unit).
        num_nb: C, with 0 <= C < N.

    Returns:
        (N, C) int64; row i lists i's neighbours by increasing Euclidean distance (ties by
        index). A landmark is never its own neighbour, even where points coincide.
    """
    mean_face = np.asarray(mean_face, dtype=np.float64)
    n = len(mean_face)
    d = np.linalg.norm(mean_face[:, None, :] - mean_face[None, :, :], axis=-1)
    d[np.arange(n), np.arange(n)] = np.inf
    return np.argsort(d, axis=1, kind="stable")[:, :num_nb].astype(np.int64)


def check_mean_face(mean_face: Any, num_points: int) -> np.ndarray:
    """(N, 2) finite float array, or ConfigError naming ``mean_face``."""
    try:
        arr = np.asarray(mean_face, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"mean_face: expected a ({num_points}, 2) array of numbers, "
                          f"got {type(mean_face).__name__}") from None
    if arr.shape != (num_points, 2):
        raise ConfigError(f"mean_face: expected shape ({num_points}, 2) for "
                          f"num_points={num_points}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError("mean_face: contains NaN or infinite values")
    return arr


def check_neighbour_args(num_points: int, num_nb: Any, mean_face: Any) -> np.ndarray | None:
    """Validate ``num_nb`` and ``mean_face``; return the mean face as an array (or None)."""
    if isinstance(num_nb, bool) or not isinstance(num_nb, (int, np.integer)) \
            or not 0 <= num_nb < num_points:
        raise ConfigError(f"num_nb: expected an integer in [0, {num_points - 1}] for "
                          f"{num_points} landmarks, got {num_nb!r}")
    if num_nb > 0 and mean_face is None:
        raise ConfigError(f"mean_face: PIPNet with num_nb={num_nb} needs the mean face "
                          f"(an ({num_points}, 2) array of the training landmarks' mean, "
                          f"normalised to [0, 1]) to choose neighbours; pass mean_face=... "
                          f"or use num_nb=0 (pipnet_nonrm)")
    return None if mean_face is None else check_mean_face(mean_face, num_points)


def _init_normal(module: nn.Module, std: float = 0.001) -> None:
    nn.init.normal_(module.weight, std=std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def resample_layers(in_channels: int, in_stride: int, net_stride: int, norm_layer: NormLayer,
                    channels: int = 512) -> tuple[nn.Sequential, int]:
    """Layers taking a stride-``in_stride`` map to stride ``net_stride`` (PIPNet Sec. 4.2.1).

    Each doubling of the stride is Conv3x3-s2(``channels``) + norm + ReLU; each halving is
    ConvTranspose(k4, s2, ``channels``) + norm + ReLU. Weights N(0, 0.001), as the authors'.

    Returns:
        (layers, their output channels).
    """
    ratio = net_stride / in_stride
    steps = round(math.log2(ratio)) if ratio > 0 else 0
    if ratio <= 0 or 2 ** steps != ratio:
        raise ConfigError(f"net_stride: must be the backbone stride {in_stride} times a power "
                          f"of two, got {net_stride}")
    layers: list[nn.Module] = []
    ch = in_channels
    for _ in range(abs(steps)):
        if steps > 0:
            conv = nn.Conv2d(ch, channels, kernel_size=3, stride=2, padding=1)
        else:
            conv = nn.ConvTranspose2d(ch, channels, kernel_size=4, stride=2, padding=1, bias=False)
        _init_normal(conv)
        layers += [conv, norm_layer(channels), nn.ReLU(inplace=True)]
        ch = channels
    return nn.Sequential(*layers), ch


class PIPHead(LandmarkHead):
    """PIP regression (+ NRM when ``num_nb`` > 0) on one feature map.

    Args:
        in_channels, in_stride: from the backbone (``out_channels``, ``stride``).
        num_points: N.
        input_size: crop side S; the grid is S / net_stride cells a side.
        net_stride: 16, 32 (default), 64, 128 for a stride-32 backbone (any power-of-two
            multiple of ``in_stride``).
        num_nb: C neighbours per landmark (0 turns the NRM off).
        mean_face: (N, 2) mean landmark positions; required when ``num_nb`` > 0.
        score_weight, offset_weight: loss weights (authors: 10 and 1).
        norm_layer: norm used by the resampling layers (default BatchNorm2d).

    Outputs (grid H x W):
        ``score``, ``offset_x``, ``offset_y``: (B, N, H, W);
        ``nb_x``, ``nb_y``: (B, C * N, H, W) when C > 0.
    """

    def __init__(self, in_channels: int, in_stride: int, *, num_points: int, input_size: int,
                 net_stride: int = 32, num_nb: int = 10, mean_face: Any = None,
                 score_weight: float = 10.0, offset_weight: float = 1.0,
                 norm_layer: str | NormLayer | None = None):
        super().__init__()
        face = check_neighbour_args(num_points, num_nb, mean_face)
        self.num_points = num_points
        self.input_size = input_size
        self.net_stride = net_stride
        self.num_nb = int(num_nb)
        self.score_weight = float(score_weight)
        self.offset_weight = float(offset_weight)
        self.confidence_scale = CONFIDENCE_SCALE
        self.grid = input_size // net_stride
        self.cell = int(net_stride)   # decode reads the grid off the score map
        self.encodes_other_grids = True   # encode(..., grid=): training on smaller crops
        self.extra, ch = resample_layers(in_channels, in_stride, net_stride,
                                         resolve_norm_layer(norm_layer, nn.BatchNorm2d))
        # Layer names as the authors' checkpoints (cls_layer, x_layer, ...).
        self.cls_layer = nn.Conv2d(ch, num_points, kernel_size=1)
        self.x_layer = nn.Conv2d(ch, num_points, kernel_size=1)
        self.y_layer = nn.Conv2d(ch, num_points, kernel_size=1)
        layers = [self.cls_layer, self.x_layer, self.y_layer]
        if self.num_nb:
            self.nb_x_layer = nn.Conv2d(ch, self.num_nb * num_points, kernel_size=1)
            self.nb_y_layer = nn.Conv2d(ch, self.num_nb * num_points, kernel_size=1)
            layers += [self.nb_x_layer, self.nb_y_layer]
            nb = neighbour_indices(face, self.num_nb)
        else:
            nb = np.zeros((num_points, 0), dtype=np.int64)
        for layer in layers:
            _init_normal(layer)
        # (N, C): row i = the landmarks i predicts besides itself. Saved with the weights.
        self.register_buffer("nb_index", torch.from_numpy(nb))

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        x = self.extra(features)
        out = {"score": self.cls_layer(x), "offset_x": self.x_layer(x), "offset_y": self.y_layer(x)}
        if self.num_nb:
            out["nb_x"] = self.nb_x_layer(x)
            out["nb_y"] = self.nb_y_layer(x)
        return out

    # -- codec ------------------------------------------------------------------------
    def encode(self, landmarks: Tensor, mask: Tensor | None = None,
               grid: int | None = None) -> dict[str, Tensor]:
        """Targets on the S / net_stride grid (see the module docstring), or on a ``grid`` x
        ``grid`` one: the targets of crops of another side (``grid * net_stride`` px,
        training with ``data.smaller_sizes``).

        Returns:
            ``score``, ``offset_x``, ``offset_y`` (B, N, H, W); ``nb_x``, ``nb_y``
            (B, C * N, H, W); ``cell`` (B, N) flat positive-cell index; ``mask`` (B, N);
            ``nb_mask`` (B, N, C): neighbour term counts (both ends annotated).
        """
        landmarks, mask = self.check_landmarks(landmarks, mask)
        b, n = mask.shape
        h = w = self.grid if grid is None else int(grid)
        gx, gy = landmarks[..., 0] * w, landmarks[..., 1] * h
        cx = gx.floor().clamp(0, w - 1)
        cy = gy.floor().clamp(0, h - 1)
        cell = (cy * w + cx).long()
        onehot = F.one_hot(cell, h * w).to(landmarks.dtype) * mask[..., None]
        shape = (b, n, h, w)
        targets = {
            "score": onehot.reshape(shape),
            "offset_x": (onehot * (gx - cx)[..., None]).reshape(shape),
            "offset_y": (onehot * (gy - cy)[..., None]).reshape(shape),
            "cell": cell,
            "mask": mask,
        }
        c = self.num_nb
        nb = self.nb_index
        if c:
            nbx = gx[:, nb] - cx[..., None]          # (B, N, C): neighbour j from i's cell
            nby = gy[:, nb] - cy[..., None]
            nb_shape = (b, c * n, h, w)               # channel C * i + j
            targets["nb_x"] = (onehot[:, :, None, :] * nbx[..., None]).reshape(nb_shape)
            targets["nb_y"] = (onehot[:, :, None, :] * nby[..., None]).reshape(nb_shape)
        targets["nb_mask"] = mask[:, nb] & mask[..., None]
        return targets

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        """Weighted parts ``score``, ``offset`` and (with NRM) ``neighbour``; see module doc."""
        check_same_grid("PIPHead.loss", outputs["score"], targets["score"])
        mask, cell = targets["mask"], targets["cell"]
        se = (outputs["score"] - targets["score"]).pow(2).mean(dim=(2, 3))      # (B, N)
        parts = {"score": self.score_weight * masked_mean(se, mask)}
        off = sum(masked_mean((gather_cells(outputs[k], cell) - gather_cells(targets[k], cell)).abs(),
                              mask) for k in ("offset_x", "offset_y"))
        parts["offset"] = self.offset_weight * off
        if self.num_nb:
            b, n = mask.shape
            h, w = outputs["score"].shape[2:]
            nb_terms = []
            for k in ("nb_x", "nb_y"):
                pred = gather_cells(outputs[k].reshape(b, n, self.num_nb, h, w), cell)
                true = gather_cells(targets[k].reshape(b, n, self.num_nb, h, w), cell)
                nb_terms.append(masked_mean((pred - true).abs(), targets["nb_mask"]))
            parts["neighbour"] = self.offset_weight * (nb_terms[0] + nb_terms[1])
        total = sum(parts.values())
        return total, parts

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Points (B, N, 2) in [0, 1] and confidence (B, N) in [0, 1] (module docstring):
        from the spread of the neighbour votes with the NRM, else the clamped peak score."""
        score = outputs["score"]
        b, n, h, w = score.shape
        idx, row, col, peak = argmax_cells(score)
        offsets = torch.stack([gather_cells(outputs["offset_x"], idx),
                               gather_cells(outputs["offset_y"], idx)], dim=-1)
        nb_offsets = None
        if self.num_nb:
            c = self.num_nb
            nb_offsets = torch.stack([gather_cells(outputs[k].reshape(b, n, c, h, w), idx)
                                      for k in ("nb_x", "nb_y")], dim=-1)      # (B, N, C, 2)
        return self._decode_at_peaks((h, w), row, col, peak, offsets, nb_offsets)

    def predict(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``decode(forward(features))``, with the offset layers applied only where the decode
        reads them: the score map is computed everywhere, the x/y and neighbour offsets of
        landmark i only at i's peak cell (a matrix product per landmark instead of five 1x1
        convolutions over the whole grid). The same numbers up to float rounding, for a
        fraction of the head's work: the neighbour layers (2 * C * N output channels) were
        15% of the shipped 128 px model's time.

        Args:
            features: the backbone's last map (B, C_in, h, w).

        Returns:
            points (B, N, 2) in [0, 1] and confidence (B, N), as :meth:`decode`.
        """
        x = self.extra(features)
        score = self.cls_layer(x)
        b, n, h, w = score.shape
        idx, row, col, peak = argmax_cells(score)
        ch = x.shape[1]
        rows = x.reshape(b, ch, h * w).transpose(1, 2).reshape(b * h * w, ch)   # (B*H*W, ch)
        first = torch.arange(b, device=idx.device)[None, :] * (h * w)          # (1, B)
        at_peak = rows[(idx.t() + first).reshape(-1)].reshape(n, b, ch)          # (N, B, ch)
        weight, bias = self._offset_weights()                         # (N, ch, K), (N, K)
        out = torch.matmul(at_peak, weight).transpose(0, 1) + bias    # (B, N, K)
        offsets = out[..., :2]
        nb_offsets = None
        if self.num_nb:
            c = self.num_nb
            nb_offsets = torch.stack([out[..., 2:2 + c], out[..., 2 + c:]], dim=-1)  # (B, N, C, 2)
        return self._decode_at_peaks((h, w), row, col, peak, offsets, nb_offsets)

    def _offset_weights(self) -> tuple[Tensor, Tensor]:
        """The x, y and neighbour offset layers as one linear map per landmark: weight
        (N, ch, K) and bias (N, K), K = 2 + 2C (x, y, then the C neighbour x and C y)."""
        n = self.num_points
        layers = [self.x_layer, self.y_layer]
        if self.num_nb:
            layers += [self.nb_x_layer, self.nb_y_layer]
        weights = [layer.weight.reshape(n, -1, layer.weight.shape[1]) for layer in layers]
        biases = [layer.bias.reshape(n, -1) for layer in layers]
        return torch.cat(weights, dim=1).transpose(1, 2), torch.cat(biases, dim=1)

    def _decode_at_peaks(self, grid: tuple[int, int], row: Tensor, col: Tensor, peak: Tensor,
                         offsets: Tensor, nb_offsets: Tensor | None) -> tuple[Tensor, Tensor]:
        """Points and confidence from each landmark's peak cell (row, col (B, N)), its peak
        score (B, N), its own offsets (B, N, 2) and its neighbour offsets (B, N, C, 2)."""
        h, w = grid
        col_f, row_f = col.to(offsets.dtype), row.to(offsets.dtype)
        own = torch.stack([(col_f + offsets[..., 0]) / w, (row_f + offsets[..., 1]) / h], dim=-1)
        if nb_offsets is None:
            return own, peak.clamp(0.0, 1.0)
        b, n, c, _ = nb_offsets.shape
        votes = torch.stack([(col_f[..., None] + nb_offsets[..., 0]) / w,
                             (row_f[..., None] + nb_offsets[..., 1]) / h], -1)
        points, uncertainty = self.vote_statistics(own, votes.reshape(b, n * c, 2))
        return points, self.uncertainty_to_confidence(uncertainty)

    def uncertainty_to_confidence(self, uncertainty: Tensor) -> Tensor:
        """``exp(-uncertainty / confidence_scale)``: (B, N) crop units -> (B, N) in (0, 1]."""
        return torch.exp(-uncertainty.clamp(min=0.0) / self.confidence_scale)

    def vote_statistics(self, own: Tensor, votes: Tensor) -> tuple[Tensor, Tensor]:
        """The merged landmarks and the standard error of each merge.

        Args:
            own: (B, N, 2) each landmark's own prediction, crop units ([0, 1] = the crop).
            votes: (B, N * C, 2); vote ``C * i + j`` is landmark i's prediction for its
                neighbour ``nb_index[i, j]``.

        Returns:
            points (B, N, 2): :meth:`merge_votes`; uncertainty (B, N) in crop units: the
            root-mean-square distance of landmark k's predictions (own + votes) from their
            mean, divided by sqrt(their number). A landmark with no votes gets the mean
            uncertainty of the landmarks that have some (zero when none has).
        """
        assign = self._assignment(own)                              # (N + N*C, N)
        preds = torch.cat([own, votes], dim=1)                      # (B, N + N*C, 2)
        count = assign.sum(0)                                        # (N,)
        # matrix products rather than einsum: onnxruntime's Einsum took a tenth of the
        # shipped model's time, its MatMul a negligible share
        mean = torch.matmul(assign.t(), preds) / count[None, :, None]  # (B, N, 2)
        back = torch.matmul(assign, mean)                            # (B, E, 2) its mean
        sq = (preds - back).pow(2).sum(-1)                           # (B, E) squared distance
        var = torch.matmul(sq, assign) / count[None, :]              # (B, N)
        uncertainty = torch.sqrt(var / count[None, :])
        voted = (count > 1).to(own.dtype)                             # (N,)
        fill = (uncertainty * voted).sum(1, keepdim=True) / voted.sum().clamp(min=1.0)
        uncertainty = uncertainty * voted + fill * (1.0 - voted)
        return mean, uncertainty

    def _assignment(self, own: Tensor) -> Tensor:
        """(N + N*C, N) one-hot: prediction e (own first, then votes) -> its landmark."""
        n = self.num_points   # a Python int, so an ONNX export folds this into a constant
        target = torch.cat([torch.arange(n, device=own.device), self.nb_index.reshape(-1)])
        return F.one_hot(target, n).to(own.dtype)

    def merge_votes(self, own: Tensor, votes: Tensor) -> Tensor:
        """Scatter-mean: each landmark's own prediction with the votes others cast for it.

        Args:
            own: (B, N, 2) each landmark's own prediction.
            votes: (B, N * C, 2); vote ``C * i + j`` is landmark i's prediction for its
                neighbour ``nb_index[i, j]``.

        Returns:
            (B, N, 2): for landmark k, the mean of own[k] and all votes for k. The average
            runs as a matrix product with a one-hot assignment, so it is exact for any
            neighbour graph (no padding) and exports to ONNX.
        """
        assign = self._assignment(own)                               # (N + N*C, N)
        summed = torch.matmul(assign.t(), torch.cat([own, votes], dim=1))   # (B, N, 2)
        return summed / assign.sum(0)[None, :, None]


def _create_pipnet(variant: str, *, num_points: int, input_size: int = 256,
                   backbone: str = "resnet18", net_stride: int = 32, num_nb: int = 10,
                   mean_face: Any = None, score_weight: float = 10.0,
                   offset_weight: float = 1.0, norm_layer: str | None = None,
                   norm_placement: dict | None = None, backbone_stride: int | None = None,
                   **unknown: Any) -> LandmarkModel:
    """PIPNet on ``backbone``; the head works at ``net_stride`` input pixels per cell.

    ``backbone_stride`` (None: the backbone's own, 32) dilates the backbone's later stages
    instead of striding them (16 or 8): with ``net_stride`` equal to it the head needs no
    resampling layers, so a stride-32 model's weights load unchanged into a stride-16 one
    (every parameter keeps its shape). ``net_stride`` below the backbone's stride without it
    adds the paper's transposed convolutions instead.
    """
    reject_unknown(variant, unknown, _create_pipnet)
    face = check_neighbour_args(num_points, num_nb, mean_face)      # before the slow part
    trunk = create_backbone(backbone, norm_layer=norm_layer, norm_placement=norm_placement,
                            output_stride=backbone_stride)
    input_size = check_input_size(input_size, max(net_stride, trunk.stride), variant,
                                  f"net_stride {net_stride}, backbone stride {trunk.stride}")
    head = PIPHead(trunk.out_channels, trunk.stride, num_points=num_points,
                   input_size=input_size, net_stride=net_stride, num_nb=num_nb,
                   mean_face=face, score_weight=score_weight, offset_weight=offset_weight,
                   norm_layer=norm_layer)
    model = LandmarkModel(trunk, head, input_size=input_size)
    model.config = dict(name=variant, num_points=num_points, input_size=input_size,
                        backbone=backbone, net_stride=net_stride, num_nb=num_nb,
                        mean_face=face, score_weight=score_weight,
                        offset_weight=offset_weight, norm_layer=norm_layer)
    if norm_placement is not None:  # absent from plain models' configs
        model.config["norm_placement"] = norm_placement
    if backbone_stride is not None:
        model.config["backbone_stride"] = backbone_stride
    return model


BUILDER = _create_pipnet  # the family's arguments (registry.model_arguments)


@register_model
def pipnet(**kwargs) -> LandmarkModel:
    """PIPNet (PIP regression + NRM): ResNet-18, stride 32, 10 neighbours; needs ``mean_face``."""
    return _create_pipnet("pipnet", **kwargs)


@register_model
def pipnet_nonrm(**kwargs) -> LandmarkModel:
    """PIP regression without the neighbour regression module (the paper's baseline)."""
    return _create_pipnet("pipnet_nonrm", **{"num_nb": 0, **kwargs})


@register_model
def pipnet_r18(**kwargs) -> LandmarkModel:
    """PIPNet on ResNet-18 (the authors' ``pip_32_16_60_r18_l2_l1_10_1_nb10``)."""
    return _create_pipnet("pipnet_r18", **{"backbone": "resnet18", **kwargs})


@register_model
def pipnet_r50(**kwargs) -> LandmarkModel:
    """PIPNet on ResNet-50, stride 32, 10 neighbours."""
    return _create_pipnet("pipnet_r50", **{"backbone": "resnet50", **kwargs})


@register_model
def pipnet_r101(**kwargs) -> LandmarkModel:
    """PIPNet on ResNet-101, stride 32, 10 neighbours."""
    return _create_pipnet("pipnet_r101", **{"backbone": "resnet101", **kwargs})


@register_model
def pipnet_rx50(**kwargs) -> LandmarkModel:
    """PIPNet on ResNeXt-50 32x4d, stride 32, 10 neighbours."""
    return _create_pipnet("pipnet_rx50", **{"backbone": "resnext50_32x4d", **kwargs})


@register_model
def pipnet_mbv2(**kwargs) -> LandmarkModel:
    """PIPNet on MobileNetV2 (1280-channel last map), stride 32, 10 neighbours."""
    return _create_pipnet("pipnet_mbv2", **{"backbone": "mobilenet_v2", **kwargs})


@register_model
def pipnet_mbv3(**kwargs) -> LandmarkModel:
    """PIPNet on MobileNetV3-Large (960-channel last map), stride 32, 10 neighbours."""
    return _create_pipnet("pipnet_mbv3", **{"backbone": "mobilenet_v3_large", **kwargs})

"""Coordinate regression: CoordNet (PIPNet's baseline) and the SepBN paper's Vanilla CNN.

CoordNet (papers/pipnet.txt, Sec. 4.3.1): "three fully connected layers, each of which has
512, 512 and 2N channels", L1 loss (following Wing loss, Feng et al. 2018), ResNet-18. The
paper's Table 9 counts 28.3 M parameters for CoordNet on ResNet-18 (91.0 M on ResNet-50),
which is what the first layer gives when it takes the flattened 8 x 8 x C map of a 256 px
input (11.2 M + 8*8*512*512 + ...), so ``pool="flatten"`` is the default; ``pool="avg"``
(global average pooling first) is the light variant.

Vanilla CNN (papers/sepbn.txt, Table I): the Vanilla trunk flattened into
Linear(8192, 1024) -> LeakyReLU(0.01) -> Linear(1024, 2L), on 128 x 128 inputs.

Cross-protocol training (papers/sepbn.txt Fig. 5) adds "an additional convolution layer
at the beginning of each branch" so the shared features adapt to each landmark definition:
``branch_conv`` (kernel size k > 0) puts conv k x k (C -> C, with bias) -> the head's
activation before the pooling (no norm: a branch may see a single face on a 1 x 1 map); a head of its own per dataset, so each branch has its own
(the paper gives no kernel size; 0, the default, leaves it out).

``init_mean_face=True`` starts the regression at the training mean face: the last layer's
weights zero and its bias the mean face (``mean_face``, which training passes in), so the
first prediction is the mean shape instead of points scattered around the crop's corner
(useful when a budget is a few hundred steps; not in either paper).

Codec: outputs are the coordinates themselves, (B, N, 2) in [0, 1]; encode returns the
landmarks; decode returns them unchanged. This head has no score output, so its
confidence is 1 for every point (documented, not estimated).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.backbones import create_backbone
from facemark.models.heads.base import LandmarkHead, TensorDict, masked_mean
from facemark.models.model import LandmarkModel
from facemark.models.registry import check_input_size, register_model, reject_unknown

ACTIVATIONS = ("relu", "leaky_relu")
POOLS = ("flatten", "avg")


class CoordHead(LandmarkHead):
    """Fully connected regression of 2N coordinates.

    Args:
        in_channels, in_stride: from the backbone.
        num_points: N.
        input_size: crop side S (fixes the flattened size when ``pool="flatten"``).
        hidden: widths of the hidden layers (CoordNet: (512, 512); Vanilla CNN: (1024,)).
        pool: ``"flatten"`` (C * (S/s)^2 inputs) or ``"avg"`` (global average, C inputs).
        activation: ``"relu"`` or ``"leaky_relu"`` between layers.
        negative_slope: LeakyReLU slope.
        coord_weight: weight of the L1 loss.
        branch_conv: kernel size of the branch convolution before the pooling (0: none).

    Shapes: features (B, C, H, W) -> ``coords`` (B, N, 2).
    """

    def __init__(self, in_channels: int, in_stride: int, *, num_points: int, input_size: int,
                 hidden: tuple[int, ...] = (512, 512), pool: str = "flatten",
                 activation: str = "relu", negative_slope: float = 0.01,
                 coord_weight: float = 1.0, branch_conv: int = 0):
        super().__init__()
        if isinstance(branch_conv, bool) or not isinstance(branch_conv, int) or branch_conv < 0 \
                or (branch_conv and branch_conv % 2 == 0):
            raise ConfigError(f"branch_conv: expected 0 (none) or an odd kernel size, "
                              f"got {branch_conv!r}")
        if pool not in POOLS:
            raise ConfigError(f"pool: expected one of {POOLS}, got {pool!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ConfigError(f"hidden: layer widths must be positive, got {list(hidden)}")
        self.num_points = num_points
        self.input_size = input_size
        self.coord_weight = float(coord_weight)
        side = -(-input_size // in_stride)
        self.branch = None
        if branch_conv:
            act = nn.ReLU(inplace=True) if activation == "relu" else \
                nn.LeakyReLU(negative_slope, inplace=True)
            self.branch = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, branch_conv, padding=branch_conv // 2),
                act)
        if pool == "flatten":
            self.pool = nn.Flatten(1)
            width = in_channels * side * side
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
            width = in_channels
        layers: list[nn.Module] = []
        for h in hidden:
            layers.append(nn.Linear(width, h))
            layers.append(nn.ReLU(inplace=True) if activation == "relu"
                          else nn.LeakyReLU(negative_slope, inplace=True))
            width = h
        layers.append(nn.Linear(width, 2 * num_points))
        self.fc = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        if self.branch is not None:
            features = self.branch(features)
        return {"coords": self.fc(self.pool(features)).reshape(-1, self.num_points, 2)}

    def encode(self, landmarks: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """``coords`` (B, N, 2) (missing points zeroed) and ``mask`` (B, N)."""
        landmarks, mask = self.check_landmarks(landmarks, mask)
        return {"coords": landmarks, "mask": mask}

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        """``coord``: L1 over annotated points' coordinates (mean), times ``coord_weight``."""
        err = (outputs["coords"] - targets["coords"]).abs()
        parts = {"coord": self.coord_weight * masked_mean(err, targets["mask"][..., None])}
        return parts["coord"], parts

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        coords = outputs["coords"]
        return coords, torch.ones(coords.shape[:2], dtype=coords.dtype, device=coords.device)


def _create_coordnet(variant: str, *, num_points: int, input_size: int = 256,
                     backbone: str = "resnet18", hidden: tuple[int, ...] = (512, 512),
                     pool: str = "flatten", activation: str = "relu",
                     coord_weight: float = 1.0, norm_layer: str | None = None,
                     norm_placement: dict | None = None, branch_conv: int = 0,
                     init_mean_face: bool = False, mean_face=None,
                     **unknown: Any) -> LandmarkModel:
    reject_unknown(variant, unknown, _create_coordnet)
    if not isinstance(init_mean_face, bool):
        raise ConfigError(f"{variant}: init_mean_face: expected true or false, "
                          f"got {init_mean_face!r}")
    trunk = create_backbone(backbone, norm_layer=norm_layer,
                            norm_placement=norm_placement)
    input_size = check_input_size(input_size, trunk.stride if pool == "flatten" else 1,
                                  variant, f"the flattened map of backbone stride {trunk.stride}")
    head = CoordHead(trunk.out_channels, trunk.stride, num_points=num_points,
                     input_size=input_size, hidden=tuple(hidden), pool=pool,
                     activation=activation, coord_weight=coord_weight,
                     branch_conv=branch_conv)
    if init_mean_face:
        if mean_face is None:
            raise ConfigError(f"{variant}: init_mean_face needs mean_face, (N, 2) in [0, 1] "
                              "(training passes the training set's)")
        mf = torch.as_tensor(mean_face, dtype=torch.float32)
        if mf.shape != (num_points, 2):
            raise ConfigError(f"{variant}: mean_face of shape {tuple(mf.shape)}, expected "
                              f"({num_points}, 2)")
        last = head.fc[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(mf.reshape(-1))
    model = LandmarkModel(trunk, head, input_size=input_size)
    model.config = dict(name=variant, num_points=num_points, input_size=input_size,
                        backbone=backbone, hidden=list(hidden), pool=pool,
                        activation=activation, coord_weight=coord_weight,
                        norm_layer=norm_layer)
    if norm_placement is not None:  # absent from plain models' configs
        model.config["norm_placement"] = norm_placement
    if branch_conv:
        model.config["branch_conv"] = branch_conv
    if init_mean_face:   # rebuilding from the config (checkpoints, model files) starts so too
        model.config.update(init_mean_face=True, mean_face=mf)
    return model


BUILDER = _create_coordnet  # the family's arguments (registry.model_arguments)


@register_model
def coordnet(**kwargs) -> LandmarkModel:
    """CoordNet: ResNet-18, FC 512-512-2N on the flattened last map, L1 loss."""
    return _create_coordnet("coordnet", **kwargs)


@register_model
def vanilla_cnn(**kwargs) -> LandmarkModel:
    """SepBN's Vanilla CNN: six conv blocks, FC 1024-2N with LeakyReLU, 128 px input."""
    args = dict(backbone="vanilla", hidden=(1024,), activation="leaky_relu", input_size=128)
    return _create_coordnet("vanilla_cnn", **{**args, **kwargs})

"""What every backbone declares: its feature maps, its classifier keys, its norm layer.

A backbone is an ``nn.Module`` whose ``forward(x)`` maps normalised images (B, 3, H, W) to
its last feature map (B, C, H / s, W / s). Heads never guess C or s: they read
``backbone.out_channels`` and ``backbone.stride``, which come from ``feature_info`` (one
entry per stage, timm-style: ``num_chs``, ``reduction``, ``module``).

Norm layers are injectable. ``norm_layer`` is a registered name (``"batchnorm"``; other
helpers register their own with ``register_norm_layer``), a callable ``f(num_features) ->
nn.Module``, or None for the architecture's own default (torchvision's choice: plain
BatchNorm2d for ResNet and MobileNetV2, BatchNorm2d(eps=1e-3, momentum=0.01) for
MobileNetV3). Only registered names survive ``model_config``.

``norm_placement`` says where ``norm_layer`` goes (the SepBN paper's placement studies,
Tables VI, X and XI); every other position keeps the architecture's default norm:

    create_backbone("resnext50_32x4d", norm_layer="sepbn",
                    norm_placement={"positions": ["bn3"]})           # Table XI
    create_backbone("vanilla", norm_layer="sepbn",
                    norm_placement={"strides": [32, 64]})            # Table VI, 4x4 and 2x2

Keys (each optional; a layer gets ``norm_layer`` when it matches every key given):
``stages`` (indices into ``feature_info``: 0 is the stem, then one per stage),
``strides`` (the ``reduction`` of the layer's stage, i.e. the input pixels per cell of
that stage's output: 2, 4, ..., 64) and ``positions`` (the layer's role, from
``backbone.norm_positions``: ``bn1``/``bn2``/``bn3`` inside residual blocks, ``stem``,
``downsample``, ``last``, or ``bn`` in the Vanilla CNN's blocks). Parameter names never
change, so a plain model's weights load as before.
"""
from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

from facemark.errors import ConfigError

NormLayer = Callable[[int], nn.Module]

NORM_LAYERS: dict[str, NormLayer] = {"batchnorm": nn.BatchNorm2d}


def register_norm_layer(name: str, factory: NormLayer) -> NormLayer:
    """Make ``factory`` available as ``norm_layer=name`` in every backbone and head.

    Args:
        name: the key used in configs (e.g. ``"sepbn"``).
        factory: called as ``factory(num_features)``; returns a module mapping
            (B, C, H, W) -> (B, C, H, W).
    """
    if name in NORM_LAYERS and NORM_LAYERS[name] is not factory:
        raise ConfigError(f"norm_layer {name!r} is already registered to {NORM_LAYERS[name]!r}")
    NORM_LAYERS[name] = factory
    return factory


def resolve_norm_layer(norm_layer: str | NormLayer | None, default: NormLayer) -> NormLayer:
    """Turn a ``norm_layer`` argument into a callable; None gives ``default``."""
    if norm_layer is None:
        return default
    if isinstance(norm_layer, str):
        if norm_layer not in NORM_LAYERS:
            close = difflib.get_close_matches(norm_layer, list(NORM_LAYERS), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"norm_layer: unknown name {norm_layer!r}{hint} "
                              f"(registered: {sorted(NORM_LAYERS)})")
        return NORM_LAYERS[norm_layer]
    if not callable(norm_layer):
        raise ConfigError(f"norm_layer: expected a registered name or a callable, "
                          f"got {type(norm_layer).__name__}")
    return norm_layer


PLACEMENT_KEYS = ("stages", "strides", "positions")


class NormPlacement:
    """Chooses the norm layer of each position of a backbone under construction.

    Args:
        norm_layer: the ``norm_layer`` argument (name, callable or None).
        default: the architecture's own norm (what unplaced positions get).
        placement: None (``norm_layer`` everywhere) or a dict with the keys of
            ``PLACEMENT_KEYS`` (see the module docstring).
        arch: backbone name, for messages.
        positions: the position names this backbone has.

    A backbone calls ``placement(stage, reduction, position)`` for each norm it builds and
    gets the factory to call; ``check(backbone)`` (after construction) rejects stages and
    strides the backbone does not have, and placements that match no layer.
    """

    def __init__(self, norm_layer: str | NormLayer | None, default: NormLayer,
                 placement: dict | None, arch: str, positions: tuple[str, ...]):
        self.norm = resolve_norm_layer(norm_layer, default)
        self.default = default
        self.arch = arch
        self.positions = positions
        self.placed = 0
        self.spec: dict[str, set] = {}
        if placement is None:
            return
        if not isinstance(placement, dict):
            raise ConfigError(f"norm_placement: expected a mapping with keys "
                              f"{', '.join(PLACEMENT_KEYS)}, got {placement!r}")
        if norm_layer is None:
            raise ConfigError("norm_placement is set but norm_layer is not: say which norm "
                              "layer to place (e.g. norm_layer: sepbn)")
        for key, values in placement.items():
            if key not in PLACEMENT_KEYS:
                close = difflib.get_close_matches(str(key), PLACEMENT_KEYS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"norm_placement: unknown key {key!r}{hint} "
                                  f"(known: {', '.join(PLACEMENT_KEYS)})")
            if values is None:
                continue
            if not isinstance(values, (list, tuple)):
                values = [values]
            if key == "positions":
                bad = [v for v in values if v not in positions]
                if bad:
                    raise ConfigError(f"norm_placement.positions: {bad[0]!r} is not a norm "
                                      f"position of {arch!r} (its positions: "
                                      f"{', '.join(positions)})")
            elif any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
                raise ConfigError(f"norm_placement.{key}: expected non-negative integers, "
                                  f"got {list(values)}")
            self.spec[key] = set(values)

    def __call__(self, stage: int, reduction: int, position: str) -> NormLayer:
        """The factory for a norm at ``position`` of stage ``stage`` (output reduction
        ``reduction``)."""
        if position not in self.positions:  # a backbone bug, not a config error
            raise ValueError(f"{self.arch}: unknown norm position {position!r}")
        s = self.spec
        if (("stages" in s and stage not in s["stages"])
                or ("strides" in s and reduction not in s["strides"])
                or ("positions" in s and position not in s["positions"])):
            return self.default
        self.placed += 1
        return self.norm

    def check(self, backbone: "Backbone") -> None:
        """Raise ConfigError for stages / strides ``backbone`` lacks or an empty placement."""
        info = backbone.feature_info
        bad = sorted(self.spec.get("stages", set()) - set(range(len(info))))
        if bad:
            raise ConfigError(f"norm_placement.stages: {self.arch!r} has stages "
                              f"0..{len(info) - 1}, got {bad[0]}")
        have = sorted({f["reduction"] for f in info})
        bad = sorted(self.spec.get("strides", set()) - set(have))
        if bad:
            raise ConfigError(f"norm_placement.strides: {self.arch!r} has stage strides "
                              f"{have}, got {bad[0]}")
        if self.spec and not self.placed:
            raise ConfigError(f"norm_placement {self.describe()} matches no norm layer of "
                              f"{self.arch!r}")

    def describe(self) -> str:
        return "{" + ", ".join(f"{k}: {sorted(v)}" for k, v in self.spec.items()) + "}"


def norm_at(norm_layer, position: str) -> NormLayer:
    """A block's ``norm_layer``: a factory, or (built by a backbone with placement) a
    function of the position name, marked ``by_position``, that gives the factory."""
    return norm_layer(position) if getattr(norm_layer, "by_position", False) else norm_layer


def positional(placement: NormPlacement, stage: int, reduction: int) -> Callable:
    """The ``norm_layer`` a backbone hands to the blocks of one stage: position -> factory."""
    def norm_layer(position: str) -> NormLayer:
        return placement(stage, reduction, position)
    norm_layer.by_position = True
    return norm_layer


def check_output_stride(output_stride: int, allowed: tuple[int, ...], backbone: str) -> None:
    if output_stride not in allowed:
        raise ConfigError(f"output_stride: backbone {backbone!r} supports {list(allowed)}, "
                          f"got {output_stride!r}")


class Backbone(nn.Module):
    """Base class: subclasses fill ``feature_info`` in their constructor.

    Attributes:
        feature_info: one dict per stage, in order: ``num_chs`` (channels), ``reduction``
            (input pixels per feature cell; never decreases) and ``module`` (its name).
        classifier_prefixes: state-dict key prefixes of the ImageNet classifier that a
            torchvision weight file carries and this backbone does not (skipped on load).
        arch: the registry name, e.g. ``"resnet18"``.
        norm_positions: the roles of its norm layers that ``norm_placement`` can select.
    """

    classifier_prefixes: tuple[str, ...] = ()
    arch: str = ""
    norm_positions: tuple[str, ...] = ()  # what ``norm_placement.positions`` may name

    def __init__(self) -> None:
        super().__init__()
        self.feature_info: list[dict] = []

    @property
    def out_channels(self) -> int:
        """Channels C of the map ``forward`` returns."""
        return self.feature_info[-1]["num_chs"]

    @property
    def stride(self) -> int:
        """Input pixels per cell of the map ``forward`` returns (32 for a plain ResNet)."""
        return self.feature_info[-1]["reduction"]

    def _add_feature(self, num_chs: int, reduction: int, module: str) -> None:
        if self.feature_info and reduction < self.feature_info[-1]["reduction"]:
            raise ValueError(f"{type(self).__name__}: feature reduction went down "
                             f"({self.feature_info[-1]['reduction']} -> {reduction})")
        self.feature_info.append(dict(num_chs=num_chs, reduction=reduction, module=module))

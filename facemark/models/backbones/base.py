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
    """

    classifier_prefixes: tuple[str, ...] = ()
    arch: str = ""

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

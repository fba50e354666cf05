"""Backbones: ResNet-18/50/101, ResNeXt-50 32x4d, MobileNetV2, MobileNetV3-Large, Vanilla CNN.

``create_backbone(name)`` builds one; ``load_backbone_weights(backbone, path)`` loads a
torchvision ImageNet state dict (or one saved from a facemark backbone) into it, skipping
the classifier and checking every other key and shape. A ``.tflite`` MobileNetV2 ImageNet
classifier is converted on the fly (``tflite_import``; needs ``pip install
'facemark[imagenet]'``).

Module names follow torchvision exactly, so for example
``torch.save(torchvision.models.resnet18(weights="DEFAULT").state_dict(), "r18.pth")`` on a
machine with torchvision gives a file this package loads without torchvision.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

import torch

from facemark.errors import ConfigError, DataError
from facemark.models.backbones.base import (
    NORM_LAYERS, Backbone, NormLayer, register_norm_layer, resolve_norm_layer)
from facemark.models.backbones.mobilenet import (
    MobileNetV2, MobileNetV3Large, mobilenet_v2, mobilenet_v2_tf, mobilenet_v3_large)
from facemark.models.backbones.resnet import ResNet, resnet18, resnet50, resnet101, resnext50_32x4d
from facemark.models.backbones.vanilla import VanillaCNN, vanilla

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnext50_32x4d": resnext50_32x4d,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v2_tf": mobilenet_v2_tf,
    "mobilenet_v3_large": mobilenet_v3_large,
    "vanilla": vanilla,
}


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def create_backbone(name: str, *, output_stride: int | None = None,
                    norm_layer: str | NormLayer | None = None,
                    norm_placement: dict | None = None) -> Backbone:
    """Build a backbone by name with random weights.

    Args:
        name: one of ``list_backbones()``.
        output_stride: None for the architecture's own (32; 64 for ``vanilla``); ResNets and
            MobileNets also take 16 and 8 (dilated later stages).
        norm_layer: registered name, callable ``f(num_features)`` or None (architecture default).
        norm_placement: None (``norm_layer`` at every norm position) or a dict of
            ``stages`` / ``strides`` / ``positions`` saying where it goes, the other
            positions keeping the default norm (see ``facemark.models.backbones.base``).
    """
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, list(BACKBONES), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"backbone: unknown name {name!r}{hint} (known: {list_backbones()})")
    kwargs = {"norm_layer": norm_layer}
    if norm_placement is not None:
        kwargs["norm_placement"] = norm_placement
    if output_stride is not None:
        kwargs["output_stride"] = output_stride
    return BACKBONES[name](**kwargs)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(path, "backbone weights: no such file")
    if path.suffix.lower() == ".tflite":  # MobileNetV2 ImageNet classifier, converted now
        import warnings

        from facemark.models.backbones.tflite_import import mobilenet_v2_state_dict_from_tflite

        state = mobilenet_v2_state_dict_from_tflite(path)
        warnings.warn(f"{path}: converted without calibration images, so its BatchNorm "
                      f"statistics are exact in eval mode only; for training with batch "
                      f"statistics prefer 'facemark weights import-tflite {path.name} -o "
                      f"OUT.pth --calibration PHOTOS'", stacklevel=3)
        return state
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise DataError(path, f"backbone weights: cannot read as a PyTorch state dict "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise DataError(path, f"backbone weights: expected a non-empty dict of tensors "
                              f"(a state dict), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(path, f"backbone weights: expected a dict of tensors; {len(bad)} "
                              f"entries are not, e.g. {bad[0]!r}")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_backbone_weights(backbone: Backbone, path: str | Path) -> dict[str, list[str]]:
    """Load a torchvision-style state dict into ``backbone``, strictly.

    ``path`` is a ``.pth`` state dict, or a ``.tflite`` MobileNetV2 (width 1.0) ImageNet
    classifier, converted on the fly without calibration images (see
    :mod:`facemark.models.backbones.tflite_import`; ``facemark weights import-tflite ...
    --calibration PHOTOS`` writes a ``.pth`` whose BatchNorm also suits training mode).

    Keys under the backbone's ``classifier_prefixes`` (``fc.*`` for ResNets,
    ``classifier.*`` for MobileNets) are skipped; every other key must match a parameter or
    buffer of the same shape, and every parameter must be present (BatchNorm's
    ``num_batches_tracked``, absent from old torchvision files, is the one exception).

    Returns:
        ``{"skipped": [...]}``: the classifier keys that were not loaded.

    Raises:
        DataError naming ``path``: unreadable file, missing or unexpected keys (listed, with
        a hint when the file looks like another architecture), or shape mismatches.
    """
    path = Path(path)
    state = _read_state_dict(path)
    skipped = sorted(k for k in state if k.startswith(backbone.classifier_prefixes))
    state = {k: v for k, v in state.items() if k not in skipped}
    own = backbone.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    arch = backbone.arch or type(backbone).__name__
    if missing or unexpected:
        parts = [f"backbone weights do not fit {arch!r}:"]
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        if len(missing) > len(own) // 2:
            parts.append("(is this file for another architecture, or a whole model's checkpoint?)")
        raise DataError(path, " ".join(parts))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(state) if state[k].shape != own[k].shape]
    if mismatched:
        raise DataError(path, f"backbone weights do not fit {arch!r}: {len(mismatched)} "
                              f"shape mismatch(es): {_listing(mismatched, 4)}")
    for k, v in own.items():  # old torchvision files predate num_batches_tracked
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    backbone.load_state_dict(state, strict=True)
    return {"skipped": skipped}


__all__ = [
    "BACKBONES", "Backbone", "MobileNetV2", "MobileNetV3Large", "NORM_LAYERS", "ResNet",
    "VanillaCNN", "create_backbone", "list_backbones", "load_backbone_weights",
    "register_norm_layer", "resolve_norm_layer",
]

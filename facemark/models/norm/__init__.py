"""Norm layers beyond BatchNorm, registered as ``norm_layer`` names for every backbone.

- ``"sepbn"``: :class:`SepBN`, the SepBN paper's module (K = 3, G = 2, T = 3, max pooling,
  soft aggregation).
- ``"mixbn"``: :class:`MixBN`, the authors' public baseline (three whole BN branches).
- ``"sepbn_brute"``: :class:`DomainBN`, the paper's brute-force SepBN (Fig. 2, Table II):
  K = 3 whole BN branches, each sample routed by its domain label (its training dataset);
  ``"sepbn_brute_k2"`` ... ``"sepbn_brute_k6"`` for other K. Tested best-of-K (an oracle).
- the paper's ablation variants (Tables III-V), listed in ``SEPBN_VARIANTS``: e.g.
  ``"sepbn_hard"``, ``"sepbn_k4"``, ``"sepbn_g1"``, ``"sepbn_t1"``, ``"sepbn_avg"``,
  ``"sepbn_se"``.

    model = create_model("vanilla_cnn", num_points=98, norm_layer="sepbn")

Names (not callables) are what a model config saves, so a checkpoint of a SepBN model
rebuilds with ``load_model``. ``register_sepbn(name, **options)`` adds a variant of your own.
``convert_batchnorm_weights`` turns an ImageNet BatchNorm weight file into one for the same
backbone with SepBN / MixBN layers (the paper starts MobileNetV2 and ResNeXt from ImageNet).
Their temperature is annealed during training by
:class:`facemark.training.temperature.TemperatureAnnealing`; ``attention_layers(model)``
lists the layers it acts on.
"""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from facemark.errors import ConfigError, DataError
from facemark.models.backbones.base import NORM_LAYERS, register_norm_layer
from facemark.models.norm.domain import (
    DomainBN, DomainLabelError, domain_context, domain_layers, num_domains, set_domain)
from facemark.models.norm.mixbn import MixBN
from facemark.models.norm.sepbn import SepBN, adaptive_pool2d

# name -> SepBN arguments that differ from the paper's defaults (K=3, G=2, T=3, max, soft)
SEPBN_VARIANTS: dict[str, dict[str, Any]] = {
    "sepbn": {},
    "sepbn_hard": {"aggregation": "hard"},                 # Table III
    "sepbn_se": {"attention": "se"},                       # Eq. 3, "simple SepBN"
    "sepbn_avg": {"pool": "avg"},                          # average instead of max pooling
    "sepbn_gap": {"pool": "avg", "pool_size": 1},          # global average pooling
    **{f"sepbn_k{k}": {"num_routes": k} for k in (1, 2, 4, 5, 6, 7)},   # Table IV (k1 = BN)
    **{f"sepbn_g{g}": {"num_groups": g} for g in (1, 8, 64)},           # Table V
    **{f"sepbn_t{t}": {"pool_size": t} for t in (1, 2, 4)},             # Table V
}


def register_sepbn(name: str, **options: Any):
    """Register a SepBN variant as ``norm_layer=name``; returns its factory.

    Args:
        name: the config key, e.g. ``"sepbn_k3_g4"``.
        **options: :class:`SepBN` keyword arguments (``num_routes``, ``num_groups``, ...).
    """
    try:  # fail now, not when a model is built
        SepBN(8 * max(1, int(options.get("num_groups", 2))), **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"register_sepbn({name!r}): {e}") from None
    factory = partial(SepBN, **options) if options else SepBN
    return register_norm_layer(name, factory)


def attention_layers(module: nn.Module) -> Iterator[nn.Module]:
    """Every SepBN and MixBN layer inside ``module`` (what temperature annealing acts on)."""
    return (m for m in module.modules() if isinstance(m, (SepBN, MixBN)))


def batchnorm_state_to_norm(state: dict[str, torch.Tensor], module: nn.Module
                            ) -> dict[str, torch.Tensor]:
    """Map a state dict of a BatchNorm network onto ``module``, whose BNs are SepBN / MixBN.

    Each SepBN takes the BN's statistics and copies its (C,) ``weight`` / ``bias`` into all
    K sets; each MixBN (DomainBN) branch becomes a copy of the BN. Every other key must match ``module``
    by name and shape. The attention parameters (and tau) keep ``module``'s own values.
    Since all K sets (branches) are equal, the result computes exactly what the BatchNorm
    network computed, in eval mode, whatever the attention says: a pretrained start.

    Raises:
        KeyError: a key of ``module`` that ``state`` cannot fill, or a key of ``state`` that
            ``module`` has no place for, each listed.
    """
    own = module.state_dict()
    prefixes = {name: m for name, m in module.named_modules()
                if isinstance(m, (SepBN, MixBN, DomainBN))}
    out, used = {}, set()

    def take(key: str, src: str, shape: torch.Size) -> None:
        value = state[src]
        if value.shape == shape:
            out[key] = value.clone()
        elif value.dim() == 1 and len(shape) == 2 and shape[1] == value.shape[0]:
            out[key] = value.expand(shape).clone()          # SepBN: one BN affine -> K sets
        else:
            raise KeyError(f"{src}: shape {tuple(value.shape)} does not fit {key} "
                           f"{tuple(shape)}")
        used.add(src)

    missing = []
    for key, value in own.items():
        owner = max((p for p in prefixes if key.startswith(p + ".")), key=len, default=None)
        if owner is None:
            if key in state:
                take(key, key, value.shape)
            else:
                missing.append(key)
            continue
        leaf = key[len(owner) + 1:]
        if isinstance(prefixes[owner], (MixBN, DomainBN)) and leaf.startswith("branches."):
            leaf = leaf.split(".", 2)[2]                    # branches.<k>.weight -> weight
        src = f"{owner}.{leaf}"
        if leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked") \
                and src in state:
            take(key, src, value.shape)
        else:                                                # attention, tau: module's own
            out[key] = value.clone()
    unused = sorted(set(state) - used)
    if missing or unused:
        parts = [f"{len(missing)} key(s) of the model missing: {missing[:5]}"] if missing else []
        parts += [f"{len(unused)} key(s) without a place in the model: {unused[:5]}"] if unused \
            else []
        raise KeyError("; ".join(parts))
    return out


def convert_batchnorm_weights(src: str | Path, backbone: str, norm_layer: str,
                              dst: str | Path, *, norm_placement: dict | None = None) -> Path:
    """Write a torchvision-style BatchNorm weight file as one for ``backbone`` built with
    ``norm_layer`` (e.g. ImageNet MobileNetV2 weights for ``norm_layer="sepbn"``), so that
    ``model.backbone_weights: <dst>`` starts a SepBN / MixBN model from them.

    ``norm_placement`` is the model's (e.g. ``{"positions": ["bn3"]}``): the positions
    it leaves to BatchNorm copy the file's BNs unchanged.

    The classifier keys (``fc.*`` / ``classifier.*``) are dropped; see
    :func:`batchnorm_state_to_norm` for the mapping.

    Raises:
        DataError naming ``src``: unreadable file or keys that do not fit the backbone.
    """
    from facemark.models.backbones import _read_state_dict, create_backbone

    src, dst = Path(src), Path(dst)
    trunk = create_backbone(backbone, norm_layer=norm_layer, norm_placement=norm_placement)
    state = {k: v for k, v in _read_state_dict(src).items()
             if not k.startswith(trunk.classifier_prefixes)}
    try:
        converted = batchnorm_state_to_norm(state, trunk)
    except KeyError as e:
        raise DataError(src, f"cannot convert to {backbone!r} with norm_layer {norm_layer!r}: "
                             f"{e.args[0]}") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    torch.save(converted, tmp)
    os.replace(tmp, dst)
    return dst


for _name, _options in SEPBN_VARIANTS.items():
    if _name not in NORM_LAYERS:  # re-imports (importlib.reload) keep the first registration
        register_sepbn(_name, **_options)
if "mixbn" not in NORM_LAYERS:
    register_norm_layer("mixbn", MixBN)
#: brute-force SepBN names -> K (number of domain branches)
BRUTE_FORCE_VARIANTS = {"sepbn_brute": 3, **{f"sepbn_brute_k{k}": k for k in (2, 4, 5, 6)}}
for _name, _k in BRUTE_FORCE_VARIANTS.items():
    if _name not in NORM_LAYERS:
        register_norm_layer(_name, partial(DomainBN, num_domains=_k))

__all__ = ["BRUTE_FORCE_VARIANTS", "DomainBN", "DomainLabelError", "MixBN", "SEPBN_VARIANTS",
           "SepBN", "adaptive_pool2d", "attention_layers", "domain_context", "domain_layers",
           "num_domains", "set_domain",
           "batchnorm_state_to_norm", "convert_batchnorm_weights", "register_sepbn"]

"""Norm layers beyond BatchNorm, registered as ``norm_layer`` names for every backbone.

- ``"sepbn"``: :class:`SepBN`, the SepBN paper's module (K = 3, G = 2, T = 3, max pooling,
  soft aggregation).
- ``"mixbn"``: :class:`MixBN`, the authors' public baseline (three whole BN branches).
- the paper's ablation variants (Tables III-V), listed in ``SEPBN_VARIANTS``: e.g.
  ``"sepbn_hard"``, ``"sepbn_k4"``, ``"sepbn_g1"``, ``"sepbn_t1"``, ``"sepbn_avg"``,
  ``"sepbn_se"``.

    model = create_model("vanilla_cnn", num_points=98, norm_layer="sepbn")

Names (not callables) are what a model config saves, so a checkpoint of a SepBN model
rebuilds with ``load_model``. ``register_sepbn(name, **options)`` adds a variant of your own.
Their temperature is annealed during training by
:class:`facemark.training.temperature.TemperatureAnnealing`; ``attention_layers(model)``
lists the layers it acts on.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Iterator

from torch import nn

from facemark.errors import ConfigError
from facemark.models.backbones.base import NORM_LAYERS, register_norm_layer
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
    except TypeError as e:
        raise ConfigError(f"register_sepbn({name!r}): {e}") from None
    factory = partial(SepBN, **options) if options else SepBN
    return register_norm_layer(name, factory)


def attention_layers(module: nn.Module) -> Iterator[nn.Module]:
    """Every SepBN and MixBN layer inside ``module`` (what temperature annealing acts on)."""
    return (m for m in module.modules() if isinstance(m, (SepBN, MixBN)))


for _name, _options in SEPBN_VARIANTS.items():
    if _name not in NORM_LAYERS:  # re-imports (importlib.reload) keep the first registration
        register_sepbn(_name, **_options)
if "mixbn" not in NORM_LAYERS:
    register_norm_layer("mixbn", MixBN)

__all__ = ["MixBN", "SEPBN_VARIANTS", "SepBN", "adaptive_pool2d", "attention_layers",
           "register_sepbn"]

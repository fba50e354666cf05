"""Model registry: ``create_model(name, ...)`` is the one way to build a model.

Each model family (heads/pip.py, coordnet.py, mapnet.py, grmi.py) ends with short
``@register_model`` functions, one per variant, named as the registry key (timm's rule).
``create_model`` drops keyword arguments that are None, so flags a user did not set never
override a variant's defaults, and it raises ``ConfigError`` with the closest names for an
unknown model and with the accepted keys for an unknown argument.

Every model it builds carries ``model.config`` (name + constructor arguments), which
``model_config`` returns JSON-serialisable and ``model_from_config`` turns back into the
same architecture (the checkpoint then supplies the weights).
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facemark.errors import ConfigError

_MODELS: dict[str, Callable[..., Any]] = {}


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: register ``fn`` under its function name (registering twice warns)."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        warnings.warn(f"model {name!r} registered twice; the later definition wins", stacklevel=2)
    _MODELS[name] = fn
    return fn


def _load_families() -> None:
    """Import the model families so their ``@register_model`` functions run."""
    import facemark.models.heads  # noqa: F401  (registers on import)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is an fnmatch filter like ``"pipnet*"``."""
    _load_families()
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_arguments(name: str) -> list[str]:
    """Keyword arguments ``create_model(name, ...)`` accepts, e.g. to pass ``mean_face``
    only to the models that use it (PIPNet with neighbours).

    Each family module names its builder ``BUILDER``; its keyword-only parameters are the
    arguments of every variant in that family.
    """
    _load_families()
    if name not in _MODELS:
        raise ConfigError(f"model: unknown name {name!r}{_closest(name, list(_MODELS))} "
                          f"(known: {', '.join(sorted(_MODELS))})")
    builder = getattr(sys.modules[_MODELS[name].__module__], "BUILDER")
    return [p.name for p in inspect.signature(builder).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def create_model(name: str, *, num_points: int, input_size: int | None = None,
                 backbone: str | None = None, backbone_weights: str | Path | None = None,
                 **kwargs: Any):
    """Build a registered model with random weights (and, optionally, ImageNet backbone weights).

    Args:
        name: one of ``list_models()``, e.g. ``"pipnet_r18"``, ``"coordnet"``.
        num_points: landmarks N (take it from the scheme: ``get_scheme(...).num_points``).
        input_size: crop side S in pixels; None gives the variant's default (256; 128 for
            ``vanilla_cnn``, as in the SepBN paper).
        backbone: backbone name overriding the variant's (see ``list_backbones()``).
        backbone_weights: a torchvision-style state dict file for the backbone (loaded
            strictly, classifier skipped; see ``load_backbone_weights``). Not recorded in
            the config: a checkpoint restores all weights.
        **kwargs: variant arguments, e.g. ``net_stride``, ``num_nb``, ``mean_face`` (N, 2);
            None values are dropped.

    Raises:
        ConfigError: unknown name or argument, or an invalid value (the message names it).
        DataError: unreadable or mismatching ``backbone_weights``.
    """
    _load_families()
    if name not in _MODELS:
        raise ConfigError(f"model: unknown name {name!r}{_closest(name, list(_MODELS))} "
                          f"(known: {', '.join(sorted(_MODELS))})")
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) or num_points < 1:
        raise ConfigError(f"num_points: expected a positive integer, got {num_points!r}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if backbone is not None:
        kwargs["backbone"] = backbone
    if input_size is not None:
        kwargs["input_size"] = input_size
    model = _MODELS[name](num_points=int(num_points), **kwargs)
    if backbone_weights is not None:
        from facemark.models.backbones import load_backbone_weights
        load_backbone_weights(model.backbone, backbone_weights)
    return model


def reject_unknown(variant: str, unknown: dict[str, Any], builder: Callable[..., Any]) -> None:
    """Raise ConfigError for keyword arguments ``builder`` does not take."""
    if not unknown:
        return
    allowed = [p for p in inspect.signature(builder).parameters
               if p not in ("variant", "unknown")]
    key = sorted(unknown)[0]
    value = repr(unknown[key]).replace("\n", " ")
    value = value if len(value) <= 60 else value[:57] + "..."
    raise ConfigError(f"model {variant!r}: unknown argument {key}={value}"
                      f"{_closest(key, allowed)} (accepted: {', '.join(allowed)})")


def check_input_size(input_size: Any, multiple: int, variant: str, why: str) -> int:
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
        raise ConfigError(f"input_size: expected a positive integer, got {input_size!r}")
    if input_size % multiple:
        raise ConfigError(f"input_size: model {variant!r} needs a multiple of {multiple} "
                          f"({why}), got {input_size}")
    return int(input_size)


def _jsonable(value: Any, key: str) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key) for v in value]
    if isinstance(value, dict):  # e.g. norm_placement
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # a tensor
        return value.tolist()
    raise ConfigError(f"model config: {key}={value!r} cannot be saved; pass a registered "
                      f"name instead (e.g. register_norm_layer(name, factory))")


def model_config(model) -> dict[str, Any]:
    """Name and constructor arguments of a model built by ``create_model``, JSON-serialisable.

    The mean face comes back as a list of [x, y] lists. ``model_from_config`` rebuilds the
    architecture (with fresh weights) from it.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ConfigError(f"model config: this {type(model).__name__} was not built by "
                          f"create_model, so it has no config to save")
    out = {k: _jsonable(v, k) for k, v in config.items()}
    json.dumps(out)  # guaranteed by _jsonable; fails loudly if that ever breaks
    return out


def model_from_config(config: dict[str, Any]):
    """Rebuild a model from ``model_config(model)`` (e.g. read from a checkpoint)."""
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ConfigError(f"model config: expected a dict with a 'name' string, got {config!r:.200}")
    if "num_points" not in config:
        raise ConfigError(f"model config for {config['name']!r}: missing key 'num_points'")
    kwargs = {k: v for k, v in config.items() if k != "name"}
    return create_model(config["name"], **kwargs)

"""Saving and loading trained landmark models.

Two kinds of file load the same way with :func:`load_model`:

* a Lightning training checkpoint (``.ckpt``, from ``facemark train``), and
* a facemark model file (``.pt``, from :func:`save_model` / ``facemark export --format pt``):
  a plain dict ``{"format": "facemark.model", "version": 1, "model_config": ...,
  "state_dict": ..., "scheme": ..., "input_size": ..., "crop_rule": ..., "info": {...}}``
  holding everything inference needs (no optimiser state), written atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facemark.errors import DataError

FORMAT = "facemark.model"
VERSION = 1


@dataclass
class ModelInfo:
    """What a loaded model needs around it: its scheme, crop size and crop rule."""

    scheme: str
    input_size: int
    crop_rule: str
    model_config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    path: str = ""


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise DataError(path, "model file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: one clear line, not a traceback
        raise DataError(path, f"cannot read model file ({e.__class__.__name__}: {e})") from None


def load_model(path: str | Path, device: str = "cpu"):
    """Load a ``.ckpt`` or facemark ``.pt`` file -> (LandmarkModel in eval mode, ModelInfo)."""
    from facemark.models.registry import model_from_config

    path = Path(path)
    blob = _torch_load(path)
    if not isinstance(blob, dict):
        raise DataError(path, "not a facemark model file or training checkpoint")
    if blob.get("format") == FORMAT:
        if blob.get("version", 0) > VERSION:
            raise DataError(path, f"model file version {blob['version']} is newer than this "
                                  f"facemark reads ({VERSION}); upgrade facemark")
        config, state = blob["model_config"], blob["state_dict"]
        state = {k: v.float() if torch.is_tensor(v) and v.dtype == torch.float16 else v
                 for k, v in state.items()}
        meta = ModelInfo(scheme=blob["scheme"], input_size=int(blob["input_size"]),
                         crop_rule=blob.get("crop_rule", "300w"), model_config=config,
                         info=dict(blob.get("info", {})), path=str(path))
    elif "hyper_parameters" in blob and "state_dict" in blob:
        hp = blob["hyper_parameters"]
        if "model_config" not in hp:
            if "heads" in hp or "protocols" in hp or any(k.startswith("net.") for k in blob["state_dict"]):
                raise DataError(path, "a cross-protocol checkpoint holds one head per dataset: load "
                                      "one with facemark.training.cross_protocol.load_branch(path, "
                                      "scheme=...) or use the files in the run's models/ folder")
            raise DataError(path, "checkpoint was not written by facemark train (no model_config)")
        config = hp["model_config"]
        state = {k[len("model."):]: v for k, v in blob["state_dict"].items() if k.startswith("model.")}
        data = hp.get("data_info") or {}
        meta = ModelInfo(scheme=hp["scheme"], input_size=int(config.get("input_size", 256)),
                         crop_rule=data.get("crop_rule", "300w"), model_config=config,
                         info={"epoch": blob.get("epoch"), **data}, path=str(path))
    else:
        raise DataError(path, "not a facemark model file or training checkpoint")
    try:
        model = model_from_config(config)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"weights do not fit the model they describe ({e})") from None
    return model.to(device).eval(), meta


def save_model(model, info: ModelInfo, path: str | Path, extra: dict[str, Any] | None = None,
               half: bool = False) -> Path:
    """Write a facemark ``.pt`` model file atomically (temporary file, then rename).

    Args:
        half: store floating-point weights as float16 (half the file; :func:`load_model`
            turns them back into float32, so results change by about 1e-3 of a pixel).
    """
    from facemark.models.registry import model_config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    blob = {"format": FORMAT, "version": VERSION, "model_config": model_config(model),
            "state_dict": state,
            "scheme": info.scheme, "input_size": int(info.input_size),
            "crop_rule": info.crop_rule, "info": {**info.info, **(extra or {})}}
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path

"""Saving and loading trained landmark models.

Two kinds of file load the same way with :func:`load_model`:

* a Lightning training checkpoint (``.ckpt``, from ``facemark train``), and
* a facemark model file (``.pt``, from :func:`save_model` / ``facemark export --format pt``):
  a plain dict ``{"format": "facemark.model", "version": 1, "model_config": ...,
  "state_dict": ..., "scheme": ..., "scheme_definition": {...}, "input_size": ...,
  "crop_rule": ..., "info": {...}}`` holding everything inference needs (no optimiser
  state), written atomically.

``scheme`` is the scheme's name; ``scheme_definition`` the whole scheme as plain data
(:func:`facemark.data.schemes.scheme_to_dict`), so a model trained on a scheme of one's own
(a scheme file) loads anywhere without that file. Files written before it existed have only
the name, which must then be a built-in scheme; they load as before. A ``facemark train``
checkpoint keeps the definition in ``hyper_parameters["data_info"]["scheme_definition"]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facemark.data.schemes import (LandmarkScheme, adopt_scheme, get_scheme, scheme_from_dict,
                                   scheme_to_dict)
from facemark.errors import ConfigError, DataError
from facemark.io import atomic_write
from facemark.models.registry import model_config, model_from_config
from facemark.models.serialization import safe_load

FORMAT = "facemark.model"
VERSION = 1


@dataclass
class ModelInfo:
    """What a loaded model needs around it: its scheme, crop size and crop rule.

    ``scheme`` is the scheme's name; ``scheme_definition`` the whole scheme of that name as
    plain data (None for model files older than it: the name is then looked up; ignored if
    ``scheme`` was set to another name). Use :meth:`landmark_scheme` for the scheme object.
    """

    scheme: str
    input_size: int
    crop_rule: str
    model_config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    scheme_definition: dict[str, Any] | None = None

    def landmark_scheme(self) -> LandmarkScheme:
        """The model's :class:`LandmarkScheme`: from the stored definition, else by name.

        Raises:
            ConfigError: an unknown scheme name (an old file of an unregistered scheme), or a
                stored definition that clashes with another scheme of the same name.
        """
        definition = self.scheme_definition
        if definition and str(definition.get("name", "")).lower() == str(self.scheme).lower():
            return stored_scheme(self.scheme_definition, self.path or "model")
        try:
            return get_scheme(self.scheme)
        except KeyError as e:
            raise ConfigError(f"{self.path or 'model'}: {e.args[0]}") from None


def stored_scheme(definition: dict[str, Any], source: str) -> LandmarkScheme:
    """The scheme a model file or ONNX export stores, made known to ``get_scheme`` by name
    (:func:`facemark.data.schemes.adopt_scheme`); ConfigError naming ``source`` if bad."""
    return adopt_scheme(scheme_from_dict(definition, source=f"{source} (stored scheme)"),
                        source=source)


def _stored(path: Path, definition) -> tuple[str | None, dict | None]:
    """(name, definition) of a stored scheme definition, (None, None) when there is none."""
    if definition is None:
        return None, None
    try:
        return stored_scheme(definition, str(path)).name, definition
    except ConfigError as e:
        raise DataError(path, f"bad stored landmark scheme ({e})") from None


def _facemark_file(path: Path, blob: dict) -> tuple[dict, dict, ModelInfo]:
    """(model config, state dict, ModelInfo) of a facemark ``.pt`` model file's dict."""
    if blob.get("version", 0) > VERSION:
        raise DataError(path, f"model file version {blob['version']} is newer than this "
                              f"facemark reads ({VERSION}); upgrade facemark")
    missing = [k for k in ("model_config", "state_dict", "scheme", "input_size") if k not in blob]
    if missing:
        raise DataError(path, f"facemark model file without {', '.join(missing)}; export it "
                              "again with facemark export --format pt")
    config, state = blob["model_config"], blob["state_dict"]
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise DataError(path, "facemark model file whose model_config or state_dict is not a "
                              "dict; export it again with facemark export --format pt")
    state = {k: v.float() if torch.is_tensor(v) and v.dtype == torch.float16 else v
             for k, v in state.items()}
    name, definition = _stored(path, blob.get("scheme_definition"))
    meta = ModelInfo(scheme=name or str(blob["scheme"]), input_size=int(blob["input_size"]),
                     crop_rule=blob.get("crop_rule", "300w"), model_config=config,
                     info=dict(blob.get("info") or {}), path=str(path),
                     scheme_definition=definition)
    return config, state, meta


def _checkpoint(path: Path, blob: dict) -> tuple[dict, dict, ModelInfo]:
    """(model config, state dict, ModelInfo) of a ``facemark train`` checkpoint's dict."""
    hp, weights = blob["hyper_parameters"], blob["state_dict"]
    if not isinstance(hp, dict) or not isinstance(weights, dict):
        raise DataError(path, "training checkpoint whose hyper_parameters or state_dict is not "
                              "a dict: not written by facemark train")
    if "model_config" not in hp:
        if "heads" in hp or "protocols" in hp or any(str(k).startswith("net.") for k in weights):
            raise DataError(path, "a cross-protocol checkpoint holds one head per dataset: load "
                                  "one with facemark.training.cross_protocol.load_branch(path, "
                                  "scheme=...) or use the files in the run's models/ folder")
        raise DataError(path, "checkpoint was not written by facemark train (no model_config)")
    config = hp["model_config"]
    if not isinstance(config, dict) or "scheme" not in hp:
        raise DataError(path, "checkpoint was not written by facemark train (its model_config "
                              "is not a dict or it names no scheme)")
    state = {k[len("model."):]: v for k, v in weights.items() if str(k).startswith("model.")}
    data = dict(hp.get("data_info") or {})
    name, definition = _stored(path, data.pop("scheme_definition", None))
    input_size = config.get("input_size", data.get("input_size"))
    if input_size is None:      # every facemark train checkpoint has it in both places
        raise DataError(path, "training checkpoint that names no input size (neither "
                              "model_config nor data_info has input_size): not written by "
                              "facemark train")
    meta = ModelInfo(scheme=name or str(hp["scheme"]), input_size=int(input_size),
                     crop_rule=data.get("crop_rule", "300w"), model_config=config,
                     info={"epoch": blob.get("epoch"), **data}, path=str(path),
                     scheme_definition=definition)
    return config, state, meta


def load_model(path: str | Path, device: str = "cpu"):
    """Load a ``.ckpt`` or facemark ``.pt`` file -> (LandmarkModel in eval mode, ModelInfo).

    The file is read with weights-only unpickling (:func:`facemark.models.serialization.
    safe_load`): a file that would run code is refused, nothing in it is called.

    Raises:
        DataError: the file is missing, unsafe, unreadable or holds something else (one line
            naming the file).
    """
    path = Path(path)
    blob = safe_load(path)
    if not isinstance(blob, dict):
        raise DataError(path, "not a facemark model file or training checkpoint")
    try:
        if blob.get("format") == FORMAT:
            config, state, meta = _facemark_file(path, blob)
        elif "hyper_parameters" in blob and "state_dict" in blob:
            config, state, meta = _checkpoint(path, blob)
        else:
            raise DataError(path, "not a facemark model file or training checkpoint")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(path, f"model file with unexpected contents ({type(e).__name__}: "
                              f"{e})") from None
    try:
        model = model_from_config(config)
    except ConfigError as e:
        raise DataError(path, f"its model_config does not describe a model ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        detail = "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
        raise DataError(path, f"weights do not fit the model they describe "
                              f"({detail or type(e).__name__})") from None
    return model.to(device).eval(), meta


def save_model(model, info: ModelInfo, path: str | Path, extra: dict[str, Any] | None = None,
               half: bool = False) -> Path:
    """Write a facemark ``.pt`` model file atomically (temporary file, then rename).

    Args:
        half: store floating-point weights as float16 (half the file; :func:`load_model`
            turns them back into float32, so results change by about 1e-3 of a pixel).

    Raises:
        DataError: the file cannot be written (the old file, if any, is kept).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    scheme = info.landmark_scheme()
    blob = {"format": FORMAT, "version": VERSION, "model_config": model_config(model),
            "state_dict": state,
            "scheme": scheme.name, "scheme_definition": scheme_to_dict(scheme),
            "input_size": int(info.input_size),
            "crop_rule": info.crop_rule, "info": {**info.info, **(extra or {})}}
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))

"""Reading model files and training checkpoints without running code from them.

``torch.load`` unpickles, and a pickle can name any Python function to call: a crafted
``.pt``/``.ckpt`` runs code the moment it is loaded. Every facemark path that reads a model
or checkpoint (``load_model``, ``facemark.load``, ``detect --model``, ``evaluate``,
``export``, ``calibrate``, ``train --resume``, ``model.init_weights``, cross-protocol and
self-training checkpoints) goes through :func:`safe_load` (or Lightning with
``weights_only=True``): torch's weights-only unpickler plus :data:`SAFE_GLOBALS`.

What loads: tensors (also float16, quantised, ``nn.Parameter``), ``torch.Size``,
``torch.device``, dtypes, and plain containers and scalars (dict, ``OrderedDict``, list,
tuple, set, ``collections.Counter``, str, bytes, int, float, bool, None): torch's own
weights-only set. That is everything a facemark model file (``save_model``) and a Lightning
checkpoint of ``facemark train`` hold (checked on ``facemark/weights/default.pt`` and on the
checkpoints of a training run by ``tests/test_safe_loading.py``), so :data:`SAFE_GLOBALS`
adds nothing today; a type facemark starts to store must be added there by name. Anything
else (a class, a function such as ``os.system``) is refused before it is built or called.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from facemark.errors import DataError

#: Types beyond torch's weights-only set that facemark files may hold (none today).
SAFE_GLOBALS: list[Any] = []

#: Keys Lightning needs in a checkpoint to resume training from it.
RESUME_KEYS = ("epoch", "global_step", "state_dict", "optimizer_states", "loops")


# Registered once, so Lightning's own weights-only loads (``trainer.fit(ckpt_path=...,
# weights_only=True)``, ``load_from_checkpoint``) accept exactly the same files.
torch.serialization.add_safe_globals(SAFE_GLOBALS)


def _refusal(path: Path, error: Exception) -> DataError:
    text = str(error)
    named = re.search(r"GLOBAL ([\w.]+)", text)
    if named:
        return DataError(path, f"refused to load: it asks for {named.group(1)}, which no "
                               "facemark model file or training checkpoint holds (weights-only "
                               "loading; see 'Safe loading' in the README)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in text:
        lines = [ln for ln in lines if not ln.startswith(("Weights only", "Please file", "Check the"))]
    detail = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return DataError(path, f"cannot read model file ({detail})")


def safe_load(path: str | Path) -> Any:
    """``torch.load`` of a model file or checkpoint that never runs code from it.

    Args:
        path: a ``.pt`` / ``.ckpt`` file.

    Returns:
        What the file holds (tensors on the CPU).

    Raises:
        DataError: the file is missing, unreadable, or holds anything but tensors and plain
            data (the message names the file and, for a code-running pickle, what it names).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "model file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a crafted, truncated or foreign file: one clear line
        raise _refusal(path, e) from None


def read_checkpoint(path: str | Path, resume: bool = False) -> dict[str, Any]:
    """A Lightning training checkpoint read with :func:`safe_load`, its layout checked.

    Args:
        path: a ``.ckpt`` written by ``facemark train`` (or a cross-protocol /
            self-training run).
        resume: also require what Lightning needs to continue training from it.

    Raises:
        DataError: not a training checkpoint (names the file and what is missing).
    """
    blob = safe_load(path)
    if not isinstance(blob, dict):
        raise DataError(path, f"not a training checkpoint (it holds a {type(blob).__name__})")
    if blob.get("format") == "facemark.model":
        raise DataError(path, "a facemark model file, not a training checkpoint: use it as "
                              "model.init_weights to start a run from its weights")
    if not isinstance(blob.get("state_dict"), dict):
        raise DataError(path, "not a training checkpoint (no 'state_dict' of weights)")
    if not isinstance(blob.get("hyper_parameters"), dict):
        raise DataError(path, "not a training checkpoint written by facemark (its "
                              "'hyper_parameters' is missing or not a dict)")
    if not isinstance(blob.get("pytorch-lightning_version"), str):
        raise DataError(path, "not a Lightning training checkpoint (no "
                              "'pytorch-lightning_version')")
    missing = [k for k in RESUME_KEYS if k not in blob] if resume else []
    if missing:
        raise DataError(path, f"cannot resume training from it: no {', '.join(missing)} "
                              "(a checkpoint saved with weights only?)")
    return blob


__all__ = ["RESUME_KEYS", "SAFE_GLOBALS", "read_checkpoint", "safe_load"]

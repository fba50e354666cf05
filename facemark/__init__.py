"""facemark: facial landmark detection (PIPNet, SepBN), training, evaluation and inference.

>>> import facemark
>>> landmarker = facemark.load("model.pt")      # facemark.load() for the bundled model
>>> faces = landmarker.detect("photo.jpg")       # list[facemark.Face]

``load``, ``Landmarker`` and ``Face`` are imported on first use, so ``import facemark`` (and
``facemark --help``) stays fast and does not import torch.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "load", "Landmarker", "Face"]

_LAZY = {"load": "facemark.api", "Landmarker": "facemark.inference.landmarker",
         "Face": "facemark.inference.landmarker"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facemark' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + [n for n in _LAZY if n not in globals()])

"""Face finders: what boxes the faces of photos that come without face boxes.

``self_training.boxes: detector[:NAME]`` (:mod:`facemark.training.self_training`, whose
unlabelled crops DANN reuses) finds the faces of unlabelled photos with a face detector. The
detectors live in :mod:`facemark.inference.detectors`, a layer above training (see
``facemark/__init__.py``), so training cannot import them: that package registers itself here
as the ``detector`` kind when it is imported. ``facemark selftrain`` imports it; a Python
caller of ``self_train`` or ``train_dann`` with detector boxes does so too::

    import facemark.inference.detectors    # registers the "detector" face finder

A kind maps to a factory ``factory(arg)`` (``arg`` is the text after ``KIND:``, or None) that
returns a finder: an object with a ``name``, ``load()`` (returns the finder, ready to run)
and ``detect(rgb_image)``, a list of faces, best first, each with a ``box``
(x0, y0, x1, y1), like :class:`facemark.inference.detectors.FaceDetector`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facemark.errors import ConfigError

#: kind -> factory(arg) -> finder; filled by the modules that provide the finders.
FACE_FINDERS: dict[str, Callable[[str | None], Any]] = {}

#: The module that registers each kind, for the error when it was not imported.
REGISTERED_BY = {"detector": "facemark.inference.detectors"}


def register_face_finder(kind: str, factory: Callable[[str | None], Any]) -> None:
    """Make ``create_face_finder(kind, arg)`` call ``factory(arg)``.

    Raises:
        ValueError: ``kind`` is already registered.
    """
    if kind in FACE_FINDERS:
        raise ValueError(f"face finder {kind!r} is registered twice")
    FACE_FINDERS[kind] = factory


def create_face_finder(kind: str, arg: str | None = None) -> Any:
    """The finder of ``kind`` (``"detector"``), configured by ``arg`` (e.g. a detector name,
    None for its default); creating one is cheap, ``load()`` does the set-up.

    Raises:
        ConfigError: ``kind`` is not registered (naming the module to import), or the
            factory rejects ``arg``.
    """
    if kind not in FACE_FINDERS:
        if kind in REGISTERED_BY:
            raise ConfigError(f"no {kind!r} face finder is registered: import "
                              f"{REGISTERED_BY[kind]} first (facemark selftrain does)")
        raise ConfigError(f"unknown face finder {kind!r} (registered: "
                          f"{', '.join(sorted(FACE_FINDERS)) or 'none'})")
    return FACE_FINDERS[kind](arg)

"""A folder of unlabelled images (searched recursively), e.g. for self-training.

Every image file (``facemark.data.images.IMAGE_EXTENSIONS``, either case) becomes one
Sample with ``landmarks=None``; ``scheme`` is ``scheme=`` or ``300w68`` (the layout a model
trained on them predicts). ``attributes["set"]`` is the first folder below ``path`` (the
folder's own name for images directly in it), as in the ``.pts`` reader. Images are not
decoded here. A folder with no images is an error, not an empty dataset.
"""
from __future__ import annotations

import os
from pathlib import Path

from facemark.data.images import IMAGE_EXTENSIONS, list_images
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme
from facemark.errors import ConfigError, DataError, raise_error

DEFAULT_SCHEME = "300w68"


def sniff(path: Path) -> bool:
    """A folder with at least one image file somewhere below it."""
    path = Path(path)
    if not path.is_dir():
        return False
    for _, _, files in os.walk(path):
        if any(os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS for f in files):
            return True
    return False


def read(path, *, scheme: str | LandmarkScheme | None = None, on_error=raise_error,
         **unknown) -> list[Sample]:
    """List the images under a folder as unlabelled samples.

    Args:
        path: the folder.
        scheme: the scheme the samples are for (default ``300w68``).
        on_error: unused (a listed image has nothing to be wrong with before decoding);
            accepted for the common reader signature.

    Returns:
        one Sample per image, sorted by path.

    Raises:
        DataError: the folder is missing or holds no images.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format folder: {', '.join(sorted(unknown))}; "
                          "this format has no options")
    try:
        sch = get_scheme(scheme if scheme is not None else DEFAULT_SCHEME)
    except KeyError as e:
        raise ConfigError(f"scheme: {e.args[0]}") from None
    path = Path(path)
    if not path.exists():
        raise DataError(path, "dataset path not found")
    if not path.is_dir():
        raise DataError(path, "expected a folder of images")
    files = list_images(path, recursive=True)
    if not files:
        raise DataError(path, f"no images in this folder or below it "
                              f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    samples = []
    for file in files:
        rel = file.relative_to(path)
        subset = rel.parts[0] if len(rel.parts) > 1 else path.resolve().name
        samples.append(Sample(image=str(file), landmarks=None, scheme=sch.name,
                              attributes={"set": subset}, source=str(file)))
    return samples

"""AFLW-19 (Zhu et al., "Unconstrained face alignment via cascaded compositional learning",
CVPR 2016): 24386 AFLW faces, 19 points each, in ``AFLWinfo_release.mat``.

Variables (MATLAB v7, read with scipy; v7.3 works too):

* ``data``: 24386 x 38 (19 x, then 19 y);
* ``bbox``: 24386 x 4 face boxes ``x1, x2, y1, y2`` (note the order);
* ``nameList``: 24386 x 1 cell of image paths relative to ``aflw/data/flickr/``
  (``"0/image00002.jpg"``);
* ``mask_new``: 24386 x 19 visibility (1 = visible, 0 = occluded or self-occluded);
* ``ra``: 1 x 24386, a random permutation of the 1-based face numbers: the first 20000
  are the training set, the other 4386 the test set.

Protocols: ``split="train"`` (20000 faces), ``split="test"`` with ``protocol="full"``
(AFLW-Full, 4386 faces) or ``protocol="frontal"`` (AFLW-Frontal: the test faces whose 19
points are all visible, 1165 in the release). ``split="all"`` (default) gives all faces
in ``ra`` order, each with ``attributes["split"]``.

The original AFLW leaves out points that are not visible; AFLW-19's authors added the
missing positions by hand, so every point is annotated and ``mask_new`` only says whether
it is visible (``Sample.visible``). The coordinates are used as they are: they come from
the AFLW database, not from MATLAB indices (mmpose, PIPNet and FaRL read them unchanged).
``attributes`` hold ``split`` and ``frontal`` (all 19 visible); ``source`` is
``"<mat>:<row>"`` with the 1-based row of the face in the variables.

The image root is the ``images=`` option, or the first of ``flickr``, ``data/flickr``,
``aflw/data/flickr`` that exists next to the ``.mat`` or in its parent folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facemark.data.formats._common import lookup_scheme
from facemark.data.formats.cofw import MatFile, variable_names
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("images", "split", "protocol")
DEFAULT_SCHEME = "aflw19"
REQUIRED = ("data", "bbox", "nameList", "mask_new", "ra")
NUM_TRAIN = 20000
SPLITS = ("all", "train", "test")
PROTOCOLS = ("full", "frontal")
IMAGE_ROOTS = ("flickr", "data/flickr", "aflw/data/flickr")




def sniff(path: Path) -> bool:
    """A ``.mat`` file with the AFLW-19 variables (data, bbox, nameList, mask_new, ra)."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == ".mat"):
        return False
    return set(REQUIRED) <= set(variable_names(path))


def find_image_root(mat: Path) -> Path | None:
    here = mat.resolve().parent
    for base in (here, here.parent):
        for rel in IMAGE_ROOTS:
            if (base / rel).is_dir():
                return base / rel
    return None


def read(path, *, scheme: str | None = None, on_error=raise_error,
         images: str | Path | None = None, split: str = "all",
         protocol: str = "full", **unknown) -> list[Sample]:
    """Read ``AFLWinfo_release.mat``.

    Args:
        path: the ``.mat`` file.
        scheme: landmark scheme (default ``aflw19``).
        on_error: called with a DataError (file and 1-based face row) for each bad face.
        images: the ``flickr`` folder the names are relative to (searched when None).
        split: ``"all"``, ``"train"`` or ``"test"``.
        protocol: ``"full"`` or ``"frontal"`` (only with ``split="test"``).

    Returns:
        Samples in ``ra`` order: landmarks (19, 2) float32, ``visible`` from ``mask_new``,
        ``box`` x1, y1, x2, y2.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format aflw: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    path = Path(path)
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "frontal" and split != "test":
        raise ConfigError(f"protocol: 'frontal' is a subset of the test split; use split='test' "
                          f"(got split={split!r})")
    sch = _scheme(scheme)
    p = sch.num_points
    with MatFile(path) as mat:
        missing = [n for n in REQUIRED if n not in mat]
        if missing:
            raise DataError(path, f"not an AFLW-19 file: missing variable(s) "
                                  f"{', '.join(missing)} (found {', '.join(mat.names) or 'none'})")
        data = mat.matrix("data", columns=2 * p)
        bbox = mat.matrix("bbox", columns=4)
        mask = mat.matrix("mask_new", columns=p)
        names = mat.cell("nameList")
        ra = np.asarray(mat.get("ra"))
        n = len(data)
        if not (len(bbox) == len(mask) == len(names) == n):
            raise DataError(path, f"data, bbox, mask_new and nameList differ in length: "
                                  f"{n}, {len(bbox)}, {len(mask)}, {len(names)}")
        if ra.dtype.kind not in "biuf" or ra.size != n or \
                not np.array_equal(np.sort(ra.ravel()), np.arange(1, n + 1)):
            raise DataError(path, f"ra: expected a permutation of 1..{n}, got {ra.size} values "
                                  f"of type {ra.dtype}")
        order = ra.ravel().astype(np.int64) - 1
        if n <= NUM_TRAIN and split != "all":
            raise DataError(path, f"only {n} faces: the AFLW-19 protocol puts the first "
                                  f"{NUM_TRAIN} of ra in the training set")
        if images is not None:
            root = Path(images)
            if not root.is_dir():
                raise ConfigError(f"images: folder {root} not found")
        else:
            root = find_image_root(path)
            if root is None:
                raise DataError(path, "cannot find the AFLW image folder "
                                      f"({', '.join(IMAGE_ROOTS)} next to the .mat or in its "
                                      "parent); pass images=DIR")
        positions = {"all": range(n), "train": range(min(NUM_TRAIN, n)),
                     "test": range(NUM_TRAIN, n)}[split]
        samples = []
        for pos in positions:
            row = int(order[pos])
            face_split = "train" if pos < NUM_TRAIN else "test"
            try:
                sample = _face(path, row, data[row], bbox[row], mask[row], names[row], root, p)
            except DataError as e:
                on_error(e)
                continue
            if protocol == "frontal" and not sample["frontal"]:
                continue
            samples.append(Sample(image=sample["image"], landmarks=sample["points"],
                                  scheme=sch.name, box=sample["box"], visible=sample["visible"],
                                  attributes={"split": face_split, "frontal": sample["frontal"]},
                                  source=f"{path}:{row + 1}"))
    return samples


def _face(path: Path, row: int, data, bbox, mask, name, root: Path, p: int) -> dict:
    """Check and convert one face; DataError names the file and the 1-based row."""
    line = row + 1
    if not isinstance(name, str):
        raise DataError(path, f"nameList: expected an image path, got {type(name).__name__}", line)
    if not np.isfinite(data).all():
        cols = np.flatnonzero(~np.isfinite(data)) + 1
        raise DataError(path, f"data: non-finite value in column(s) "
                              f"{', '.join(map(str, cols[:5]))}", line)
    if not np.isin(mask, (0.0, 1.0)).all():
        raise DataError(path, f"mask_new: flags must be 0 or 1, got "
                              f"{sorted(set(mask.tolist()) - {0.0, 1.0})[:3]}", line)
    x1, x2, y1, y2 = bbox
    if not np.isfinite(bbox).all() or x2 < x1 or y2 < y1:
        raise DataError(path, f"bbox: expected x1, x2, y1, y2 with x1 <= x2 and y1 <= y2, got "
                              f"{bbox.tolist()}", line)
    image = root / name.strip()
    if not os.path.isfile(image):
        raise DataError(path, f"image {name.strip()} not found in {root}", line)
    visible = mask == 1
    return {"image": str(image), "points": np.stack([data[:p], data[p:]], axis=1),
            "box": np.array([x1, y1, x2, y2]), "visible": visible,
            "frontal": bool(visible.all())}


def _scheme(name) -> LandmarkScheme:
    return lookup_scheme(name, DEFAULT_SCHEME)

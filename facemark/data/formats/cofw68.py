"""COFW-68: the 507 COFW test faces re-annotated with the 68 iBUG points.

Ghiasi & Fowlkes ("Occlusion Coherence: Detecting and Localizing Occluded Faces", 2015)
released the annotations in the ``cofw68-benchmark`` repository::

    COFW68_Data/
      test_annotations/1_points.mat ... 507_points.mat
      cofw68_test_bboxes.mat

Each ``N_points.mat`` holds ``Points`` (68 x 2, x and y, 1-based MATLAB pixels) and
``Occ`` (68 flags, 1 = occluded). ``cofw68_test_bboxes.mat`` holds ``bboxes`` (507 x 4,
``x, y, w, h``, row N for face N). Face N is image N of the COFW test set (``IsT`` of
``COFW_test.mat`` or ``COFW_test_color.mat``).

``path`` is the ``test_annotations`` folder or the folder holding it. Images, in order:

1. the ``images=`` option: a COFW test ``.mat`` (its images are extracted once as PNGs,
   as the COFW reader does; ``extract_to=`` picks the folder) or a folder of
   ``im_N.png`` / ``N.png`` files;
2. ``im_N.png`` next to the annotations (the benchmark's own MATLAB code caches them there);
3. ``COFW_test_color.mat``, then ``COFW_test.mat``, searched in the annotations folder and
   its two parents, and in a ``COFW`` folder inside each.

Boxes come from ``cofw68_test_bboxes.mat`` in the annotations folder or its parent (or
the ``boxes=`` option); without it ``box`` is None. Points and boxes lose 1 (0-based).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facemark.data.formats._common import lookup_scheme
from facemark.data.formats.cofw import (MatFile, default_extract_folder, extract_image)
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("images", "boxes", "extract_to")
DEFAULT_SCHEME = "300w68"
ANNOTATION_FOLDER = "test_annotations"
BOXES_FILE = "cofw68_test_bboxes.mat"
TEST_MATS = ("COFW_test_color.mat", "COFW_test.mat")
_POINTS_FILE = re.compile(r"^(\d+)_points\.mat$")




def _annotation_folder(path: Path) -> Path | None:
    for folder in (path, path / ANNOTATION_FOLDER):
        if folder.is_dir() and any(_POINTS_FILE.match(p.name)
                                   for p in folder.glob("*_points.mat")):
            return folder
    return None


def sniff(path: Path) -> bool:
    """A folder of ``N_points.mat`` files, or one holding ``test_annotations/`` with them."""
    path = Path(path)
    return path.is_dir() and _annotation_folder(path) is not None


def annotation_files(folder: Path) -> list[tuple[int, Path]]:
    """(face number, file) for every ``N_points.mat`` in a folder, by face number."""
    found = []
    for p in folder.glob("*_points.mat"):
        m = _POINTS_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _find_test_mat(folder: Path) -> Path | None:
    here = folder.resolve()
    for base in (here, *list(here.parents)[:2]):
        for sub in (base, base / "COFW"):
            for name in TEST_MATS:
                if (sub / name).is_file():
                    return sub / name
    return None


class _Images:
    """Face number -> image path, from a folder of PNGs or a COFW test ``.mat``."""

    def __init__(self, ann: Path, images, extract_to):
        self.mat = None
        self.folder = None
        if images is not None:
            images = Path(images)
            if images.is_dir():
                self.folder = images
            elif images.is_file() and images.suffix.lower() == ".mat":
                self.mat = images
            else:
                raise ConfigError(f"images: {images} is neither a folder nor a .mat file")
        elif any(ann.glob("im_*.png")):
            self.folder = ann
        else:
            self.mat = _find_test_mat(ann)
            if self.mat is None:
                raise DataError(ann, "no COFW test images: no im_N.png next to the annotations "
                                     f"and no {' or '.join(TEST_MATS)} in it, its two parents or "
                                     "a COFW folder there; pass images=COFW_test_color.mat")
        self._cell = None
        if self.mat is not None:
            self._file = MatFile(self.mat)
            self._cell = self._file.cell("IsT")
            self._extract_to = Path(extract_to) if extract_to else default_extract_folder(self.mat)

    def path(self, number: int, source: Path) -> Path:
        if self._cell is not None:
            if not 1 <= number <= len(self._cell):
                raise DataError(source, f"face {number} has no image: {self.mat} holds "
                                        f"{len(self._cell)} images")
            return extract_image(self._cell, number - 1, self.mat, "IsT", self._extract_to)
        for name in (f"im_{number}.png", f"{number}.png"):
            if (self.folder / name).is_file():
                return self.folder / name
        raise DataError(source, f"image im_{number}.png (or {number}.png) not found in "
                                f"{self.folder}")

    def close(self) -> None:
        if self._cell is not None:
            self._file.close()


def _load_boxes(ann: Path, boxes) -> tuple[Path | None, np.ndarray | None]:
    if boxes is not None:
        path = Path(boxes)
        if not path.is_file():
            raise ConfigError(f"boxes: file {path} not found")
    else:
        path = next((p / BOXES_FILE for p in (ann, ann.parent) if (p / BOXES_FILE).is_file()), None)
        if path is None:
            return None, None
    with MatFile(path) as mat:
        return path, mat.matrix("bboxes", columns=4)


def read(path, *, scheme: str | None = None, on_error=raise_error,
         images: str | Path | None = None, boxes: str | Path | None = None,
         extract_to: str | Path | None = None, **unknown) -> list[Sample]:
    """Read the COFW-68 test annotations.

    Args:
        path: the ``test_annotations`` folder or the folder holding it.
        scheme: landmark scheme (default ``300w68``).
        on_error: called with a DataError naming the ``N_points.mat`` file for each bad face.
        images: COFW test ``.mat`` or folder of ``im_N.png`` (searched when None).
        boxes: ``cofw68_test_bboxes.mat`` (searched when None).
        extract_to: folder for PNGs extracted from a ``.mat`` (default next to the ``.mat``).

    Returns:
        one Sample per face, by face number: landmarks (68, 2) float32 0-based,
        ``visible`` = not occluded, ``box`` or None; ``source`` is the ``N_points.mat``.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format cofw68: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "COFW-68 annotation folder not found")
    sch = _scheme(scheme)
    ann = _annotation_folder(path)
    if ann is None:
        raise DataError(path, f"no N_points.mat files here or in {ANNOTATION_FOLDER}/")
    box_path, box_rows = _load_boxes(ann, boxes)
    source_images = _Images(ann, images, extract_to)
    samples = []
    try:
        for number, file in annotation_files(ann):
            try:
                with MatFile(file) as mat:
                    points = mat.matrix("Points", columns=2)
                    occ = mat.get("Occ") if "Occ" in mat else None
                if len(points) != sch.num_points:
                    raise DataError(file, f"Points: expected {sch.num_points} x 2 for scheme "
                                          f"{sch.name}, got {len(points)} x 2")
                if not np.isfinite(points).all():
                    rows = np.flatnonzero(~np.isfinite(points).all(axis=1)) + 1
                    raise DataError(file, f"Points: non-finite coordinates in row(s) "
                                          f"{', '.join(map(str, rows[:5]))}")
                visible = None
                if occ is not None:
                    flags = np.asarray(occ, dtype=np.float64).ravel()
                    if flags.size != sch.num_points or not np.isin(flags, (0.0, 1.0)).all():
                        raise DataError(file, f"Occ: expected {sch.num_points} flags of 0 or 1, "
                                              f"got {flags.size} values")
                    visible = flags == 0
                box = None
                if box_rows is not None:
                    if number > len(box_rows):
                        raise DataError(box_path, f"no box for face {number} "
                                                  f"({len(box_rows)} rows)")
                    x, y, w, h = box_rows[number - 1]
                    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
                        raise DataError(box_path, f"bboxes: expected x, y, w, h with w, h > 0, "
                                                  f"got {[x, y, w, h]}", number)
                    box = np.array([x - 1, y - 1, x - 1 + w, y - 1 + h])
                image = source_images.path(number, file)
            except DataError as e:
                on_error(e)
                continue
            samples.append(Sample(image=str(image), landmarks=points - 1.0, scheme=sch.name,
                                  box=box, visible=visible,
                                  source=str(file)))
    finally:
        source_images.close()
    return samples


def _scheme(name) -> LandmarkScheme:
    return lookup_scheme(name, DEFAULT_SCHEME)

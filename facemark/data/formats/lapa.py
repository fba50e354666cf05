"""LaPa (Liu et al., "A New Dataset and Boundary-Attention Semantic Segmentation for Face
Parsing", AAAI 2020): 22176 faces with 106 landmarks (the JD-landmark layout).

The release unpacks to ``LaPa/{train,val,test}/`` (18176 / 2000 / 2000 faces), each with::

    images/NAME.jpg      the face photo
    labels/NAME.png      the parsing mask (not read here)
    landmarks/NAME.txt   first line the point count (106), then one "x y" line per point

Coordinates are 0-based pixels, used as they are (mmpose's converter does the same).
LaPa has no face box, so ``box`` is None (crops come from the landmarks).

``path`` is one split folder (holding ``landmarks/`` and ``images/``) or the ``LaPa``
folder holding split folders; then ``split=`` picks ``"train"``, ``"val"`` or ``"test"``,
and None (default) reads all three, in that order. Each sample gets
``attributes["split"]`` = the split folder's name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facemark.data.formats._common import lookup_scheme
from facemark.data.images import IMAGE_EXTENSIONS
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("split",)
DEFAULT_SCHEME = "lapa106"
SPLITS = ("train", "val", "test")




def _is_split_folder(path: Path) -> bool:
    return (path / "landmarks").is_dir() and (path / "images").is_dir()


def _looks_like_lapa_txt(path: Path) -> bool:
    try:
        with open(path, errors="replace") as f:
            head = [f.readline().strip() for _ in range(2)]
    except OSError:
        return False
    if not head[0].isdigit():
        return False
    parts = head[1].split()
    try:
        return len(parts) == 2 and all(np.isfinite(float(t)) for t in parts)
    except ValueError:
        return False


def sniff(path: Path) -> bool:
    """A split folder (``landmarks/*.txt`` in LaPa's layout + ``images/``) or a LaPa root."""
    path = Path(path)
    if not path.is_dir():
        return False
    folders = [path] if _is_split_folder(path) else \
        [path / s for s in SPLITS if _is_split_folder(path / s)]
    for folder in folders:
        first = next((folder / "landmarks").glob("*.txt"), None)
        if first is not None and _looks_like_lapa_txt(first):
            return True
    return False


def parse_landmarks(path: Path, num_points: int) -> np.ndarray:
    """Points of one LaPa ``.txt`` as float32 (N, 2); DataError names the file and line."""
    try:
        lines = path.read_text(errors="strict").splitlines()
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"cannot read landmark file ({e.__class__.__name__})") from None
    numbered = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise DataError(path, "empty landmark file")
    header_line, header = numbered[0]
    if not header.isdigit():
        raise DataError(path, f"first line must be the point count, got {header!r}", header_line)
    declared = int(header)
    if declared != num_points:
        raise DataError(path, f"header says {declared} points, expected {num_points}", header_line)
    body = numbered[1:]
    if len(body) != declared:
        raise DataError(path, f"header says {declared} points but the file has {len(body)} "
                              "point lines")
    points = np.empty((declared, 2), dtype=np.float64)
    for i, (line_no, text) in enumerate(body):
        parts = text.split()
        try:
            if len(parts) != 2:
                raise ValueError
            points[i] = float(parts[0]), float(parts[1])
        except ValueError:
            raise DataError(path, f"expected two numbers 'x y', got {text!r}", line_no) from None
        if not np.isfinite(points[i]).all():
            raise DataError(path, f"non-finite coordinate {text!r}", line_no)
    return points.astype(np.float32)


def _image_for(images: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        for cand in (images / f"{stem}{ext}", images / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def read(path, *, scheme: str | None = None, on_error=raise_error,
         split: str | None = None, **unknown) -> list[Sample]:
    """Read one LaPa split folder or a LaPa root.

    Args:
        path: a split folder or the folder holding ``train``/``val``/``test``.
        scheme: landmark scheme (default ``lapa106``).
        on_error: called with a DataError (file and line) for each bad landmark file.
        split: with a root, the split to read (all three when None).

    Returns:
        one Sample per landmark file, sorted by name within each split: landmarks
        (106, 2) float32, ``box`` and ``visible`` None.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format lapa: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "LaPa folder not found")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    sch = _scheme(scheme)
    if _is_split_folder(path):
        if split is not None and path.name != split:
            raise ConfigError(f"split: {path} is the {path.name!r} folder, not {split!r}")
        folders = [path]
    else:
        wanted = [split] if split else list(SPLITS)
        folders = [path / s for s in wanted if _is_split_folder(path / s)]
        if not folders:
            raise DataError(path, f"not a LaPa folder: expected landmarks/ and images/ here or in "
                                  f"{'/'.join(wanted)}/")
    samples = []
    for folder in folders:
        files = sorted((folder / "landmarks").glob("*.txt"))
        if not files:
            raise DataError(folder / "landmarks", "no landmark .txt files")
        for file in files:
            try:
                points = parse_landmarks(file, sch.num_points)
                image = _image_for(folder / "images", file.stem)
                if image is None:
                    raise DataError(file, f"no image {file.stem}.jpg (or another image type) in "
                                          f"{folder / 'images'}")
            except DataError as e:
                on_error(e)
                continue
            samples.append(Sample(image=str(image), landmarks=points, scheme=sch.name,
                                  attributes={"split": folder.name}, source=str(file)))
    return samples


def _scheme(name) -> LandmarkScheme:
    return lookup_scheme(name, DEFAULT_SCHEME)

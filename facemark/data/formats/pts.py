"""300-W / Menpo / LFPW ``.pts`` landmark files.

A ``.pts`` file looks like::

    version: 1
    n_points:  68
    {
    x1 y1
    ...
    }

with 1-based pixel coordinates (the reader subtracts 1). ``path`` may be one ``.pts``
file, a folder searched recursively, or a list file naming one image or ``.pts`` per line
(relative to the list file). The image is the file with the same stem and an image
extension. The scheme comes from ``n_points`` unless given (68 -> ``300w68``).
Each sample gets ``attributes["set"]``: the first folder below the dataset root
(``afw``, ``helen``, ``lfpw``, ``ibug`` in the 300-W release).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facemark.data.images import IMAGE_EXTENSIONS
from facemark.data.sample import Sample
from facemark.data.formats._common import lookup_scheme
from facemark.data.schemes import scheme_for_count
from facemark.errors import DataError, raise_error


def sniff(path: Path) -> bool:
    if path.is_file():
        if path.suffix.lower() == ".pts":
            return True
        if path.suffix.lower() in (".txt", ".lst"):
            first = path.read_text(errors="replace").strip().splitlines()[:1]
            return bool(first) and Path(first[0].split()[0]).suffix.lower() in (".pts",) + IMAGE_EXTENSIONS
        return False
    return path.is_dir() and next(path.rglob("*.pts"), None) is not None


def parse_pts(path: str | Path) -> np.ndarray:
    """Points of one ``.pts`` file as float32 (N, 2), 0-based; DataError names file and line."""
    path = Path(path)
    try:
        lines = path.read_text(errors="strict").splitlines()
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"cannot read annotation file ({e.__class__.__name__})") from None
    declared = None
    start = None
    for i, line in enumerate(lines):
        text = line.strip()
        if text.lower().startswith("n_points"):
            try:
                declared = int(text.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DataError(path, f"bad n_points line {text!r}", i + 1) from None
        if text == "{":
            start = i + 1
            break
    if start is None:
        raise DataError(path, "no '{' line: not a .pts file")
    points = []
    for i in range(start, len(lines)):
        text = lines[i].strip()
        if text == "}":
            break
        if not text:
            continue
        parts = text.split()
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise DataError(path, f"expected two numbers 'x y', got {text!r}", i + 1) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DataError(path, f"non-finite coordinate {text!r}", i + 1)
        points.append((x - 1.0, y - 1.0))
    else:
        raise DataError(path, "no closing '}' line")
    if declared is not None and declared != len(points):
        raise DataError(path, f"header says n_points: {declared} but the file has {len(points)} points")
    return np.asarray(points, dtype=np.float32).reshape(-1, 2)


def find_image(stem_path: Path) -> Path | None:
    """The image next to an annotation: same stem, any known extension (either case)."""
    for ext in IMAGE_EXTENSIONS:
        for cand in (stem_path.with_suffix(ext), stem_path.with_suffix(ext.upper())):
            if cand.is_file():
                return cand
    return None


def _entries(path: Path, on_error) -> tuple[Path, list[tuple[Path, str]]]:
    """(root, [(pts path, source)]) for a file, a folder or a list file."""
    if path.is_dir():
        return path, [(p, str(p)) for p in sorted(path.rglob("*.pts"))]
    if path.suffix.lower() == ".pts":
        return path.parent, [(path, str(path))]
    out = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines()):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        entry = (path.parent / text.split()[0])
        out.append((entry.with_suffix(".pts"), f"{path}:{i + 1}"))
    return path.parent, out


def read(path, *, scheme: str | None = None, on_error=raise_error) -> list[Sample]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "dataset path not found")
    root, entries = _entries(path, on_error)
    if not entries:
        raise DataError(path, "no .pts files found")
    fixed = lookup_scheme(scheme)
    samples = []
    for pts_path, source in entries:
        try:
            pts = parse_pts(pts_path)
            sch = fixed or scheme_for_count(len(pts))
            if sch is None:
                raise DataError(pts_path, f"no landmark scheme has {len(pts)} points; pass scheme=")
            if len(pts) != sch.num_points:
                raise DataError(pts_path, f"expected {sch.num_points} points for scheme "
                                          f"{sch.name}, got {len(pts)}")
            image = find_image(pts_path)
            if image is None:
                raise DataError(pts_path, "no image with the same name next to it "
                                          f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
        except DataError as e:
            if source != str(pts_path):
                e = DataError(source, str(e))
            on_error(e)
            continue
        try:
            rel = pts_path.relative_to(root)
            subset = rel.parts[0] if len(rel.parts) > 1 else root.name
        except ValueError:
            subset = pts_path.parent.name
        samples.append(Sample(image=str(image), landmarks=pts, scheme=sch.name,
                              attributes={"set": subset}, source=source))
    return samples

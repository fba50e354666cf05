"""CSV landmark tables: one face per row, ``name, x0, y0, x1, y1, ...``.

This is the layout of the Udacity / YouTube-Faces 68-point set
(``ytf68/training_frames_keypoints.csv``)::

    ,0,1,2,3,...,135
    Luis_Fonsi_21.jpg,45.0,98.0,47.0,106.0,...

The first column is the image file name, relative to the image folder; the other columns
are x, y pairs in 0-based pixels (``one_based=True`` subtracts 1 from every coordinate).
The first row is a header when its first cell is not an image file name (one of
``facemark.data.images.IMAGE_EXTENSIONS``); ``header=True``/``False`` says so explicitly,
e.g. for a header-less table whose names have no extension. Blank lines are ignored.

Every data row must have ``1 + 2 * N`` columns, N the scheme's number of points. With
``scheme=None`` the scheme is the one with the point count most rows have
(``facemark.data.schemes.scheme_for_count``); rows with another count are bad records.
Empty, non-numeric and non-finite (NaN, inf) cells are bad records too: this format has no
way to mark a point as unannotated.

The image folder is ``images=DIR`` when given, otherwise the first folder that exists of:

1. the CSV's stem next to it: ``faces.csv`` -> ``faces/``;
2. the part of the stem before its first ``_``: ``training_frames_keypoints.csv`` ->
   ``training/``, ``test_frames_keypoints.csv`` -> ``test/``;
3. the CSV's own folder.

Each image must exist (it is not decoded here).
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from facemark.data.formats._common import lookup_scheme, bool_option
from facemark.data.images import IMAGE_EXTENSIONS
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, scheme_for_count
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("images", "header", "one_based")


def sniff(path: Path) -> bool:
    """A ``.csv`` file."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() == ".csv"


def image_folder(csv_path: str | Path) -> Path:
    """The folder the images of ``csv_path`` are looked up in (rules in the module doc)."""
    csv_path = Path(csv_path)
    stem = csv_path.stem
    for name in (stem, stem.split("_", 1)[0]):
        cand = csv_path.parent / name
        if name and cand.is_dir():
            return cand
    return csv_path.parent


def read(path, *, scheme: str | LandmarkScheme | None = None, on_error=raise_error,
         images: str | Path | None = None, header: bool | str | None = None,
         one_based: bool | str = False, **unknown) -> list[Sample]:
    """Read a CSV landmark table.

    Args:
        path: the ``.csv`` file.
        scheme: landmark scheme name; inferred from the column count when None.
        on_error: called with a DataError for each bad row; the row is skipped if it returns.
        images: folder the image names are relative to (default: see the module doc).
        header: True/False forces whether the first row is a header; None guesses.
        one_based: the coordinates are 1-based (subtract 1).

    Returns:
        one Sample per data row: ``landmarks`` float32 (N, 2), ``box`` None,
        ``source`` ``"file.csv:LINE"``.

    Raises:
        DataError: the file is missing or unreadable, or (with the default ``on_error``)
            names the first bad row's line.
        ConfigError: an unknown option or scheme.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format csv: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    path = Path(path)
    header = bool_option("header", header) if header is not None else None
    one_based = bool_option("one_based", one_based)
    sch = lookup_scheme(scheme)
    if not path.is_file():
        raise DataError(path, "CSV file not found")
    folder = Path(images) if images is not None else image_folder(path)
    if not folder.is_dir():
        raise DataError(folder, f"image folder for {path} not found (option images=)")

    rows = _rows(path)
    if not rows:
        raise DataError(path, "the CSV file has no rows")
    if header is None:
        header = Path(rows[0][1][0].strip()).suffix.lower() not in IMAGE_EXTENSIONS
    data = rows[1:] if header else rows
    if not data:
        raise DataError(path, "the CSV file has a header but no data rows")

    if sch is None:
        ncols, _ = Counter(len(cells) for _, cells in data).most_common(1)[0]
        count_line = next(line for line, cells in data if len(cells) == ncols)
        if ncols < 3 or (ncols - 1) % 2:
            raise DataError(path, f"expected an image name and x, y pairs, got {ncols} columns",
                            count_line)
        sch = scheme_for_count((ncols - 1) // 2)
        if sch is None:
            raise DataError(path, f"no landmark scheme has {(ncols - 1) // 2} points "
                                  f"({ncols} columns); pass scheme=", count_line)
    expected = 1 + 2 * sch.num_points

    samples = []
    for line, cells in data:
        try:
            samples.append(_parse_row(path, line, cells, sch, expected, folder, one_based))
        except DataError as e:
            on_error(e)
    return samples


def _parse_row(path: Path, line: int, cells: list[str], sch: LandmarkScheme, expected: int,
               folder: Path, one_based: bool) -> Sample:
    if len(cells) != expected:
        raise DataError(path, f"expected {expected} columns (image name + {sch.num_points} "
                              f"x, y pairs for scheme {sch.name}), got {len(cells)}", line)
    name = cells[0].strip()
    if not name:
        raise DataError(path, "empty image name in column 1", line)
    try:
        values = np.array([float(text) for text in cells[1:]], dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for col, text in enumerate(cells[1:], start=2):  # find and name the bad cell
            text = text.strip()
            if not text:
                raise DataError(path, f"column {col} is empty (expected a number)", line)
            try:
                value = float(text)
            except ValueError:
                raise DataError(path, f"column {col}: expected a number, got {text!r}",
                                line) from None
            if not np.isfinite(value):
                raise DataError(path, f"column {col}: non-finite coordinate {text!r}", line)
    image = folder / name
    if not image.is_file():
        raise DataError(path, f"image {name!r} not found in {folder}", line)
    points = values.reshape(-1, 2) - (1.0 if one_based else 0.0)
    return Sample(image=str(image), landmarks=points, scheme=sch.name, source=f"{path}:{line}")


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, cells) of every non-blank row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            out = []
            start = 1
            for cells in reader:
                if any(c.strip() for c in cells):
                    out.append((start, cells))
                start = reader.line_num + 1
            return out
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(path, f"malformed CSV: {e}", reader.line_num) from None
    except OSError as e:
        raise DataError(path, f"cannot read CSV file ({e.strerror})") from None





"""menpo ``.ljson`` landmark files (versions 1, 2 and 3), one face per file.

A version-3 file holds named groups of points::

    {"version": 3,
     "groups": {"LJSON":  {"landmarks": {"points": [[y, x], ...], "connectivity": [...]},
                           "labels": [{"label": "jaw", "mask": [0, 1, ...]}, ...]},
                "pupils": {"landmarks": {"points": [[y, x], [y, x]]}, "labels": [...]}}}

Version 2 has one unnamed group (``landmarks`` + ``labels`` at the top level); version 1
has ``groups`` as a list of labelled parts (``{"label", "landmarks": [{"point": [y, x]}]}``)
that together make one point set, as menpo reads it.

Points are menpo's ``(y, x)``, 0-based (menpo subtracts 1 when it reads ``.pts``): the
reader swaps them to ``(x, y)``. ``null`` coordinates mean "not annotated" (a NaN row);
``NaN``/``Infinity`` literals are not JSON and are rejected.

The face's points are the group ``group=NAME`` when given, otherwise the one group whose
point count matches ``scheme=`` (or, with ``scheme=None``, the one group whose count some
registered scheme has): in menpo's ``lenna.ljson`` that is the 68-point ``LJSON`` group
(-> ``300w68``). The other groups are kept in ``attributes["extra_points"]`` (group name ->
float32 (K, 2) x, y) and their labels in ``attributes["extra_labels"]`` (group name ->
{label: point indices}).

``path`` is one ``.ljson`` file or a folder searched recursively; the image is the file
with the same stem and an image extension next to it, and must exist (not decoded).
Errors name the file and the JSON record (``groups.LJSON.landmarks.points[5]``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facemark.data.formats.coco import load_json
from facemark.data.formats.pts import find_image
from facemark.data.images import IMAGE_EXTENSIONS
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme, scheme_for_count
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("group",)


def sniff(path: Path) -> bool:
    """A ``.ljson`` file, or a folder with ``.ljson`` files and no ``.pts`` files."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".ljson"
    return (path.is_dir() and next(path.rglob("*.ljson"), None) is not None
            and next(path.rglob("*.pts"), None) is None)


def parse_ljson(path: str | Path) -> dict[str, tuple[np.ndarray, dict[str, list[int]]]]:
    """Groups of one ``.ljson`` file: name -> (float64 (K, 2) x, y with NaN rows, labels).

    Version 1 and 2 files have one group, named ``"LJSON"`` as menpo names it.

    Raises:
        DataError: malformed JSON, an unknown version or a malformed group, naming the record.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise DataError(path, f"expected a JSON object, got {type(doc).__name__}")
    version = doc.get("version")
    if version == 3:
        groups = doc.get("groups")
        if not isinstance(groups, dict) or not groups:
            raise DataError(path, "version 3: 'groups' must be a non-empty object")
        out = {}
        for name, group in groups.items():
            where = f"groups.{name}"
            if not isinstance(group, dict) or not isinstance(group.get("landmarks"), dict):
                raise DataError(path, f"{where}: expected an object with 'landmarks'")
            points = _points(path, group["landmarks"].get("points"), f"{where}.landmarks.points")
            out[name] = (points, _labels(path, group.get("labels", []), len(points),
                                         f"{where}.labels"))
        return out
    if version == 2:
        if not isinstance(doc.get("landmarks"), dict):
            raise DataError(path, "version 2: expected an object 'landmarks'")
        points = _points(path, doc["landmarks"].get("points"), "landmarks.points")
        return {"LJSON": (points, _labels(path, doc.get("labels", []), len(points), "labels"))}
    if version == 1:
        parts = doc.get("groups")
        if not isinstance(parts, list) or not parts:
            raise DataError(path, "version 1: 'groups' must be a non-empty list")
        rows, labels = [], {}
        for i, part in enumerate(parts):
            where = f"groups[{i}]"
            if not isinstance(part, dict) or not isinstance(part.get("landmarks"), list):
                raise DataError(path, f"{where}: expected an object with a 'landmarks' list")
            start = len(rows)
            for j, lm in enumerate(part["landmarks"]):
                if not isinstance(lm, dict) or "point" not in lm:
                    raise DataError(path, f"{where}.landmarks[{j}]: expected {{\"point\": [y, x]}}")
                rows.append(lm["point"])
            labels[str(part.get("label", f"group_{i}"))] = list(range(start, len(rows)))
        return {"LJSON": (_points(path, rows, "groups[*].landmarks[*].point"), labels)}
    raise DataError(path, f"unknown LJSON version {version!r} (expected 1, 2 or 3)")


def _points(path: Path, rows, where: str) -> np.ndarray:
    if not isinstance(rows, list) or not rows:
        raise DataError(path, f"{where}: expected a non-empty list of [y, x] points")
    out = np.empty((len(rows), 2))
    for i, row in enumerate(rows):
        if row is None:
            row = [None, None]
        if not isinstance(row, list) or len(row) != 2:
            raise DataError(path, f"{where}[{i}]: expected a 2-D point [y, x], got {row!r}")
        if any(v is None for v in row):
            out[i] = np.nan
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise DataError(path, f"{where}[{i}]: coordinates must be numbers, got {row!r}")
        if not np.isfinite(row).all():
            raise DataError(path, f"{where}[{i}]: non-finite coordinate {row!r}")
        out[i] = (row[1], row[0])
    return out


def _labels(path: Path, labels, count: int, where: str) -> dict[str, list[int]]:
    if not isinstance(labels, list):
        raise DataError(path, f"{where}: expected a list")
    out = {}
    for i, item in enumerate(labels):
        mask = item.get("mask") if isinstance(item, dict) else None
        if not isinstance(mask, list) or not all(isinstance(m, int) and 0 <= m < count
                                                 for m in mask):
            raise DataError(path, f"{where}[{i}]: expected {{\"label\", \"mask\": [indices < "
                                  f"{count}]}}")
        out[str(item.get("label", i))] = list(mask)
    return out


def read(path, *, scheme: str | LandmarkScheme | None = None, on_error=raise_error,
         group: str | None = None, **unknown) -> list[Sample]:
    """Read one ``.ljson`` file or a folder of them.

    Args:
        path: a ``.ljson`` file or a folder searched recursively.
        scheme: landmark scheme name; inferred from the group's point count when None.
        on_error: called with a DataError for each bad file; it is skipped if it returns.
        group: the name of the group holding the face's points (see the module doc).

    Returns:
        one Sample per file, sorted by path, ``source`` the ``.ljson`` path.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format ljson: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    sch = None
    if scheme is not None:
        try:
            sch = get_scheme(scheme)
        except KeyError as e:
            raise ConfigError(f"scheme: {e.args[0]}") from None
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.ljson"))
        if not files:
            raise DataError(path, "no .ljson files found")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(path, "dataset path not found")
    samples = []
    for file in files:
        try:
            samples.append(_read_file(file, sch, group))
        except DataError as e:
            on_error(e)
    return samples


def _read_file(path: Path, sch: LandmarkScheme | None, group: str | None) -> Sample:
    groups = parse_ljson(path)
    if group is not None:
        if group not in groups:
            raise DataError(path, f"no group {group!r}; the file has {', '.join(groups)}")
        name = group
    else:
        if sch is not None:
            fits = [g for g, (pts, _) in groups.items() if len(pts) == sch.num_points]
        else:
            fits = [g for g, (pts, _) in groups.items() if scheme_for_count(len(pts)) is not None]
        counts = ", ".join(f"{g} ({len(p)})" for g, (p, _) in groups.items())
        if not fits:
            want = f"the {sch.num_points} points of scheme {sch.name}" if sch else \
                "a point count of a known landmark scheme"
            raise DataError(path, f"no group has {want}; groups (points): {counts}")
        if len(fits) > 1:
            raise DataError(path, f"several groups could be the face ({', '.join(fits)}); "
                                  "pass group=")
        name = fits[0]
    points, _ = groups[name]
    if sch is None:
        sch = scheme_for_count(len(points))
        if sch is None:
            raise DataError(path, f"group {name!r}: no landmark scheme has {len(points)} points; "
                                  "pass scheme=")
    if len(points) != sch.num_points:
        raise DataError(path, f"group {name!r}: expected {sch.num_points} points for scheme "
                              f"{sch.name}, got {len(points)}")
    if np.isnan(points).all():
        raise DataError(path, f"group {name!r}: every point is null (nothing annotated)")
    image = find_image(path)
    if image is None:
        raise DataError(path, "no image with the same name next to it "
                              f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    extra = {g: p.astype(np.float32) for g, (p, _) in groups.items() if g != name}
    attributes = {"group": name}
    if extra:
        attributes["extra_points"] = extra
        attributes["extra_labels"] = {g: lab for g, (_, lab) in groups.items() if g != name}
    return Sample(image=str(image), landmarks=points, scheme=sch.name, attributes=attributes,
                  source=str(path))

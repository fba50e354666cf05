"""COCO-style keypoint JSON, as mmpose ships its face datasets (300W, WFLW, COFW, AFLW, LaPa,
300W-LP, 300VW).

The file holds ``images`` (``id``, ``file_name``) and ``annotations`` (one face each:
``image_id``, ``keypoints`` as a flat list of ``x, y, v`` triples, optional ``bbox`` as
``x, y, w, h``). Each annotation becomes one Sample; images without annotations yield none.

- Points: the number of triples picks the scheme (``scheme_for_count``) unless ``scheme=``
  is given; with ``scheme=None`` the count most annotations have wins and annotations with
  another count are bad records.
- ``v`` follows COCO: 0 = not labelled (the row becomes NaN, whatever x, y say),
  1 = labelled but not visible, 2 = labelled and visible. mmpose's face converters write 1
  for every labelled point of 300W, WFLW, AFLW and 300VW and only COFW uses 1 vs 2 for
  occluded vs visible, and mmpose itself reads ``v > 0`` as "labelled". So with
  ``visibility="auto"`` (default) ``Sample.visible`` is ``v == 2`` only in files that
  contain some ``v == 2`` (``visible`` is None otherwise); ``"coco"`` always applies the
  COCO meaning, ``"none"`` never sets ``visible``.
- ``bbox`` ``[x, y, w, h]`` becomes ``box = [x, y, x + w, y + h]``; no bbox -> ``box`` None.
- Coordinates are taken as 0-based pixels. mmpose copies 300W/300VW ``.pts`` values
  unchanged (they are 1-based there): pass ``one_based=True`` for those files to get the
  same numbers as the ``.pts`` reader.
- Images are looked up relative to the JSON's folder, or to ``images=DIR``; each must
  exist (not decoded).
- ``attributes`` keeps the annotation ``id``, ``image_id`` and any other per-face keys
  (mmpose's ``center``, ``scale``, AFLW's ``box_size``).

JSON has no useful line numbers, so errors name the record: ``annotations[3] (id 197)``.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from facemark.data.formats._common import lookup_scheme, bool_option
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, scheme_for_count
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("images", "one_based", "visibility")
VISIBILITY_MODES = ("auto", "coco", "none")

# Annotation keys that are read into Sample fields or carry nothing per face.
_CONSUMED = frozenset({"keypoints", "bbox", "image_id", "id", "segmentation", "area",
                       "iscrowd", "category_id", "num_keypoints"})


def sniff(path: Path) -> bool:
    """A ``.json`` file whose first 64 KiB mention ``"images"`` or ``"annotations"``, or a
    folder holding exactly one such file (mmpose's sample folders: JSON + images)."""
    path = Path(path)
    if path.is_dir():
        return len(_coco_files(path)) == 1
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b'"annotations"' in head or b'"images"' in head


def _coco_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.json")) if p.is_file() and sniff(p)]


def load_json(path: str | Path):
    """Parse a JSON file; DataError with the line number on malformed JSON, NaN or Infinity."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "JSON file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(path, f"cannot read JSON file ({e.strerror})") from None

    def reject(constant):
        raise ValueError(f"{constant} is not valid JSON (write null for a missing value)")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})", e.lineno) from None
    except ValueError as e:
        raise DataError(path, f"malformed JSON: {e}") from None


def read(path, *, scheme: str | LandmarkScheme | None = None, on_error=raise_error,
         images: str | Path | None = None, one_based: bool | str = False,
         visibility: str = "auto", **unknown) -> list[Sample]:
    """Read a COCO-style keypoint JSON file.

    Args:
        path: the ``.json`` file, or a folder holding exactly one.
        scheme: landmark scheme name; inferred from the keypoint count when None.
        on_error: called with a DataError for each bad image or annotation record; the
            record is skipped if it returns.
        images: folder that ``file_name`` is relative to (default: the JSON's folder).
        one_based: the coordinates are 1-based (subtract 1).
        visibility: ``"auto"``, ``"coco"`` or ``"none"`` (see the module doc).

    Returns:
        one Sample per annotation, in file order: ``landmarks`` float32 (N, 2) with NaN
        rows for ``v == 0``, ``box`` from ``bbox``, ``visible`` per ``visibility``.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format coco: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    if visibility not in VISIBILITY_MODES:
        raise ConfigError(f"visibility: expected one of {', '.join(VISIBILITY_MODES)}, "
                          f"got {visibility!r}")
    one_based = bool_option("one_based", one_based)
    sch = lookup_scheme(scheme)
    path = Path(path)
    if path.is_dir():
        found = _coco_files(path)
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise DataError(path, f"expected one COCO keypoint .json in this folder, found "
                                  f"{len(found)} ({names}); give the file")
        path = found[0]
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list) \
            or not isinstance(doc.get("images"), list):
        raise DataError(path, "expected a JSON object with lists 'images' and 'annotations' "
                              "(COCO keypoint format)")
    folder = Path(images) if images is not None else path.parent
    if not folder.is_dir():
        raise DataError(folder, f"image folder for {path} not found (option images=)")

    image_files = _image_table(path, doc["images"], on_error)
    anns = doc["annotations"]
    if sch is None:
        counts = Counter(len(a["keypoints"]) for a in anns
                         if isinstance(a, dict) and isinstance(a.get("keypoints"), list))
        if not counts:
            raise DataError(path, "no annotation has a 'keypoints' list")
        values, _ = counts.most_common(1)[0]
        if values % 3 or values == 0:
            raise DataError(path, f"keypoints lists have {values} values, expected x, y, v triples")
        sch = scheme_for_count(values // 3)
        if sch is None:
            raise DataError(path, f"no landmark scheme has {values // 3} points; pass scheme=")
    if visibility == "auto":
        flags = (v for a in anns if isinstance(a, dict) and isinstance(a.get("keypoints"), list)
                 for v in a["keypoints"][2::3])
        visibility = "coco" if any(v == 2 for v in flags) else "none"

    samples = []
    for i, ann in enumerate(anns):
        try:
            samples.append(_parse_annotation(path, i, ann, sch, image_files, folder,
                                             one_based, visibility))
        except DataError as e:
            on_error(e)
    return samples


def _image_table(path: Path, records: list, on_error) -> dict:
    """image id -> file_name; bad image records go through ``on_error``."""
    table: dict = {}
    for i, rec in enumerate(records):
        where = f"images[{i}]"
        if not isinstance(rec, dict) or "id" not in rec or "file_name" not in rec:
            on_error(DataError(path, f"{where}: expected an object with 'id' and 'file_name'"))
            continue
        if not isinstance(rec["file_name"], str) or not rec["file_name"]:
            on_error(DataError(path, f"{where}: file_name must be a non-empty string, "
                                     f"got {rec['file_name']!r}"))
            continue
        key = _hashable(rec["id"])
        if key in table:
            on_error(DataError(path, f"{where}: image id {rec['id']!r} appears twice"))
            continue
        table[key] = rec["file_name"]
    return table


def _parse_annotation(path: Path, i: int, ann, sch: LandmarkScheme, image_files: dict,
                      folder: Path, one_based: bool, visibility: str) -> Sample:
    if not isinstance(ann, dict):
        raise DataError(path, f"annotations[{i}]: expected an object, got {type(ann).__name__}")
    where = f"annotations[{i}]" + (f" (id {ann['id']!r})" if "id" in ann else "")
    kps = ann.get("keypoints")
    if not isinstance(kps, list):
        raise DataError(path, f"{where}: no 'keypoints' list")
    if len(kps) != 3 * sch.num_points:
        got = f"{len(kps) // 3} points" if len(kps) % 3 == 0 else f"{len(kps)} values"
        raise DataError(path, f"{where}: expected {sch.num_points} points (x, y, v triples) for "
                              f"scheme {sch.name}, got {got}")
    if not all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in kps):
        bad = next(k for k in kps if not isinstance(k, (int, float)) or isinstance(k, bool))
        raise DataError(path, f"{where}: keypoints must be numbers, found {bad!r}")
    arr = np.asarray(kps, dtype=np.float64).reshape(-1, 3)
    flags = arr[:, 2]
    bad_flag = ~np.isin(flags, (0, 1, 2))
    if bad_flag.any():
        k = int(np.argmax(bad_flag))
        raise DataError(path, f"{where}: keypoint {k} has visibility {flags[k]:g}, "
                              "expected 0, 1 or 2")
    labelled = flags > 0
    if not labelled.any():
        raise DataError(path, f"{where}: no labelled keypoints (every v is 0)")
    infinite = labelled & ~np.isfinite(arr[:, :2]).all(axis=1)
    if infinite.any():
        k = int(np.argmax(infinite))
        raise DataError(path, f"{where}: keypoint {k} has a non-finite coordinate "
                              f"({arr[k, 0]:g}, {arr[k, 1]:g})")
    points = arr[:, :2] - (1.0 if one_based else 0.0)
    points[~labelled] = np.nan

    image_id = ann.get("image_id")
    if _hashable(image_id) not in image_files:
        raise DataError(path, f"{where}: image_id {image_id!r} is not in 'images'")
    file_name = image_files[_hashable(image_id)]
    image = folder / file_name
    if not image.is_file():
        raise DataError(path, f"{where}: image {file_name!r} not found in {folder}")

    box = None
    if ann.get("bbox") is not None:
        bbox = ann["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bbox)):
            raise DataError(path, f"{where}: bbox must be 4 numbers x, y, w, h, got {bbox!r}")
        x, y, w, h = (float(b) for b in bbox)
        if not np.isfinite([x, y, w, h]).all() or not (w > 0 and h > 0):
            raise DataError(path, f"{where}: bbox must be finite with width and height > 0, "
                                  f"got {bbox!r}")
        off = 1.0 if one_based else 0.0
        box = np.array([x - off, y - off, x - off + w, y - off + h])

    visible = (flags == 2) if visibility == "coco" else None
    attributes = {"id": ann.get("id"), "image_id": image_id}
    attributes.update({k: v for k, v in ann.items() if k not in _CONSUMED})
    return Sample(image=str(image), landmarks=points, scheme=sch.name, box=box, visible=visible,
                  attributes=attributes, source=f"{path}#{where.split(' ')[0]}")


def _hashable(value):
    return value if isinstance(value, (int, str, float)) or value is None else repr(value)





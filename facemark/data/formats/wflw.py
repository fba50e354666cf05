"""WFLW (Wu et al., "Look at Boundary", CVPR 2018): 98 points, box and six attributes.

The official release unpacks to::

    WFLW/
      WFLW_images/<event folder>/<name>.jpg
      WFLW_annotations/
        list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
        list_98pt_test/list_98pt_test.txt, list_98pt_test_{largepose,expression,
                       illumination,makeup,occlusion,blur}.txt

One face per line, fields separated by spaces. ``list_98pt_rect_attr_*.txt`` lines have
207 fields: 196 landmark numbers ``x0 y0 ... x97 y97``, the face box
``x_min y_min x_max y_max``, six 0/1 attribute flags (pose, expression, illumination,
make-up, occlusion, blur) and the image path relative to ``WFLW_images/``. The per-subset
lists in ``list_98pt_test/`` carry only the landmarks and the path (197 fields); for them
the box and the attributes are joined from ``list_98pt_rect_attr_test.txt`` when it is
found (same image, same landmarks), and each sample gets ``attributes["subset"]`` (e.g.
``"largepose"``). A 207-field line is accepted in a subset list as well.

Coordinates are used as they are (0-based pixels, as mmpose and PIPNet read them).
Samples get ``attributes`` = the six flags by the names in :data:`WFLW_ATTRIBUTES` plus
``"split"`` (``"train"``/``"test"``) when the file name tells it.

The images folder is the ``images=`` option, or the first ``WFLW_images`` folder found in
the list file's folder or one of its three parents (the official layout is two levels up).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from facemark.data.formats._common import lookup_scheme
from facemark.data.images import IMAGE_EXTENSIONS
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("images",)
DEFAULT_SCHEME = "wflw98"
#: Names of the six attribute flags, in the order of the annotation columns.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
IMAGES_FOLDER = "WFLW_images"
MAIN_TEST_LIST = "list_98pt_rect_attr_test.txt"
_SUBSET_NAME = re.compile(r"list_\d+pt_test_([a-z]+)\.txt$", re.IGNORECASE)




def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff(path: Path) -> bool:
    """A ``.txt`` list whose first line is landmark numbers (+ box + 6 flags) + an image path.

    A line with box and flags is recognised by its layout alone; a landmarks-only line
    (the per-subset lists) also needs the file name to say ``98pt``.
    """
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == ".txt"):
        return False
    try:
        with open(path, errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
        sch = get_scheme(DEFAULT_SCHEME)
    except (OSError, KeyError):
        return False
    fields = first.split()
    if not fields or Path(fields[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    if not all(_is_number(t) for t in fields[:-1]):
        return False
    layout = _layouts(sch, subset_list=True).get(len(fields))
    if layout == "full":
        n = 2 * sch.num_points + 4
        return all(f in ("0", "1") for f in fields[n:n + len(WFLW_ATTRIBUTES)])
    return layout == "points" and f"{sch.num_points}pt" in path.name


def find_images_folder(list_path: Path) -> Path | None:
    """The ``WFLW_images`` folder for a list file: its folder or one of three parents."""
    folder = list_path.resolve().parent
    for candidate in (folder, *list(folder.parents)[:3]):
        if (candidate / IMAGES_FOLDER).is_dir():
            return candidate / IMAGES_FOLDER
    return None


def _layouts(sch: LandmarkScheme, subset_list: bool) -> dict[int, str]:
    """Accepted field counts -> layout name (``"full"`` or ``"points"``)."""
    n = 2 * sch.num_points
    full = n + 4 + len(WFLW_ATTRIBUTES) + 1
    return {full: "full", n + 1: "points"} if subset_list else {full: "full"}


def _layout_text(sch: LandmarkScheme, subset_list: bool) -> str:
    n = 2 * sch.num_points
    full = f"{n} landmark numbers + 4 box + {len(WFLW_ATTRIBUTES)} attributes + path " \
           f"({n + 4 + len(WFLW_ATTRIBUTES) + 1} fields)"
    if subset_list:
        return f"{full} or {n} landmark numbers + path ({n + 1} fields)"
    return full


def parse_line(text: str, sch: LandmarkScheme, subset_list: bool) -> dict:
    """One annotation line -> dict(points, box, attributes, image); ValueError on bad input."""
    fields = text.split()
    layouts = _layouts(sch, subset_list)
    if len(fields) not in layouts:
        raise ValueError(f"expected {_layout_text(sch, subset_list)}, got {len(fields)}")
    n = 2 * sch.num_points
    try:
        numbers = np.array([float(t) for t in fields[:n]], dtype=np.float64)
    except ValueError:
        bad = next(i for i, t in enumerate(fields[:n]) if not _is_number(t))
        raise ValueError(f"landmark field {bad + 1} is not a number: {fields[bad]!r}") from None
    if not np.isfinite(numbers).all():
        bad = int(np.flatnonzero(~np.isfinite(numbers))[0])
        raise ValueError(f"non-finite landmark number {fields[bad]!r} in field {bad + 1}")
    out = {"points": numbers.reshape(-1, 2), "box": None, "attributes": {},
           "image": fields[-1]}
    if layouts[len(fields)] == "full":
        box_fields = fields[n:n + 4]
        try:
            box = np.array([float(t) for t in box_fields], dtype=np.float64)
        except ValueError:
            raise ValueError(f"box fields are not numbers: {' '.join(box_fields)!r}") from None
        if not np.isfinite(box).all():
            raise ValueError(f"non-finite box {' '.join(box_fields)!r}")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box x_max < x_min or y_max < y_min: {' '.join(box_fields)!r}")
        out["box"] = box
        flags = fields[n + 4:n + 4 + len(WFLW_ATTRIBUTES)]
        if any(f not in ("0", "1") for f in flags):
            raise ValueError(f"attribute flags must be 0 or 1, got {' '.join(flags)!r}")
        out["attributes"] = {k: int(v) for k, v in zip(WFLW_ATTRIBUTES, flags)}
    return out


def _main_test_index(list_path: Path, sch: LandmarkScheme) -> dict:
    """(image, rounded landmarks) -> (box, attributes) from the main test list, if found."""
    folder = list_path.resolve().parent
    candidates = [folder / MAIN_TEST_LIST,
                  folder.parent / "list_98pt_rect_attr_train_test" / MAIN_TEST_LIST]
    main = next((c for c in candidates if c.is_file()), None)
    index: dict = {}
    if main is None:
        return index
    for line in main.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = parse_line(line, sch, subset_list=False)
        except ValueError:
            continue  # the main list is read (and reported) on its own; here it only helps
        index[_key(rec)] = (rec["box"], rec["attributes"])
    return index


def _key(rec: dict) -> tuple:
    return rec["image"], tuple(np.round(rec["points"].ravel(), 3))


def read(path, *, scheme: str | None = None, on_error=raise_error,
         images: str | Path | None = None, **unknown) -> list[Sample]:
    """Read one WFLW annotation list.

    Args:
        path: ``list_98pt_rect_attr_{train,test}.txt`` or a ``list_98pt_test*.txt`` subset.
        scheme: landmark scheme (default ``wflw98``); the line layout follows its size.
        on_error: called with a DataError (file and line) for each bad line.
        images: the ``WFLW_images`` folder (found next to the annotations when None).

    Returns:
        one Sample per line, in file order: landmarks (98, 2) float32, ``box`` x1, y1, x2,
        y2 (None for subset lines with no match in the main test list), ``visible`` None.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format wflw: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "annotation list not found")
    sch = _scheme(scheme)
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise ConfigError(f"images: folder {root} not found")
    else:
        root = find_images_folder(path)
        if root is None:
            here = path.resolve().parent
            looked = ", ".join(str(p / IMAGES_FOLDER) for p in (here, *list(here.parents)[:3]))
            raise DataError(path, f"cannot find the {IMAGES_FOLDER} folder (looked in {looked}); "
                                  "pass images=DIR")
    subset_match = _SUBSET_NAME.search(path.name)
    subset_list = "rect_attr" not in path.name.lower()
    split = "train" if "train" in path.name.lower() else "test" if "test" in path.name.lower() \
        else None
    joined = _main_test_index(path, sch) if subset_list else {}
    try:
        lines = path.read_text(errors="strict").splitlines()
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"cannot read annotation list ({e.__class__.__name__})") from None
    samples = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = parse_line(line, sch, subset_list)
        except ValueError as e:
            on_error(DataError(path, str(e), i + 1))
            continue
        image = root / rec["image"]
        if not os.path.isfile(image):
            on_error(DataError(path, f"image {IMAGES_FOLDER}/{rec['image']} not found "
                                     f"(images folder: {root})", i + 1))
            continue
        box, attributes = rec["box"], dict(rec["attributes"])
        if box is None and _key(rec) in joined:
            box, found = joined[_key(rec)]
            attributes.update(found)
        if split:
            attributes["split"] = split
        if subset_match:
            attributes["subset"] = subset_match.group(1).lower()
        samples.append(Sample(image=str(image), landmarks=rec["points"], scheme=sch.name,
                              box=box, attributes=attributes, source=f"{path}:{i + 1}"))
    return samples


def _scheme(name) -> LandmarkScheme:
    return lookup_scheme(name, DEFAULT_SCHEME)

"""dlib imglab XML (``train_shape_predictor`` / ``train_object_detector`` datasets).

::

    <dataset><images>
      <image file='2007_007763.jpg'>
        <box top='90' left='194' width='37' height='37'>
          <part name='00' x='201' y='107'/>
          ...
        </box>
        <box top='10' left='20' width='30' height='30' ignore='1'/>
      </image>
    </images></dataset>

Each ``<box>`` becomes one Sample, ``box = [left, top, left + width, top + height]``.
Image files are relative to the XML file's folder and must exist (not decoded).

- Landmarks: ``<part name='NN' x=.. y=..>``, NN the 0-based point index. A file with no
  ``<part>`` at all is a detector dataset: its samples have ``landmarks=None`` and
  ``scheme`` from ``scheme=`` (default ``300w68``). In a file with parts, a box without
  parts is a bad record, and so is a box missing some parts unless ``missing="nan"``
  (dlib's "part not present"), which leaves those rows NaN.
- The scheme is ``scheme=`` or the one with (largest part index + 1) points, taking the
  value most boxes have.
- ``ignore='1'`` boxes are regions dlib's trainers skip; like dlib, the reader drops them
  (``ignored="drop"``, default) or, with ``ignored="keep"``, returns them with
  ``attributes["ignore"] = True``.
- ``<label>`` text and the box flags imglab writes (``occluded``, ``difficult``,
  ``truncated``, ``pose``, ``detection_score``, ``angle``) go into ``attributes``.

Errors name the XML file and the line of the offending element.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np

from facemark.data.formats._common import lookup_scheme
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme, scheme_for_count
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("missing", "ignored")
DEFAULT_SCHEME = "300w68"
_BOX_FLAGS = {"occluded": int, "difficult": int, "truncated": int, "pose": float,
              "detection_score": float, "angle": float}


def sniff(path: Path) -> bool:
    """An ``.xml`` file whose first 4 KiB contain ``<dataset>`` and ``<images>``."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == ".xml"):
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    return b"<dataset" in head and b"<images" in head


@dataclass
class _Node:
    tag: str
    attrs: dict
    line: int
    children: list = field(default_factory=list)
    text: str = ""


def parse_xml(path: str | Path) -> _Node:
    """The element tree of an XML file, each node with its 1-based line number.

    Raises:
        DataError: malformed XML, naming the line (expat's message).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "XML file not found") from None
    except OSError as e:
        raise DataError(path, f"cannot read XML file ({e.strerror})") from None
    parser = expat.ParserCreate()
    root = _Node("#document", {}, 0)
    stack = [root]

    def start(tag, attrs):
        node = _Node(tag, attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def text(data):
        stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise DataError(path, f"malformed XML: {expat.errors.messages[e.code]} "
                              f"(column {e.offset + 1})", e.lineno) from None
    if not root.children:
        raise DataError(path, "empty XML document")
    return root.children[0]


def read(path, *, scheme: str | LandmarkScheme | None = None, on_error=raise_error,
         missing: str = "error", ignored: str = "drop", **unknown) -> list[Sample]:
    """Read a dlib imglab XML file.

    Args:
        path: the ``.xml`` file.
        scheme: landmark scheme name; inferred from the part indices when None.
        on_error: called with a DataError for each bad image or box; it is skipped if
            ``on_error`` returns.
        missing: ``"error"`` (default) or ``"nan"``: what a box missing some parts is.
        ignored: ``"drop"`` (default) or ``"keep"``: what happens to ``ignore='1'`` boxes.

    Returns:
        one Sample per kept box, in file order, ``source`` ``"file.xml:LINE"`` of the box.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format dlib: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    if missing not in ("error", "nan"):
        raise ConfigError(f"missing: expected 'error' or 'nan', got {missing!r}")
    if ignored not in ("drop", "keep"):
        raise ConfigError(f"ignored: expected 'drop' or 'keep', got {ignored!r}")
    sch = lookup_scheme(scheme)
    path = Path(path)
    root = parse_xml(path)
    if root.tag != "dataset":
        raise DataError(path, f"expected a <dataset> root element, got <{root.tag}>", root.line)
    image_nodes = [n for c in root.children if c.tag == "images"
                   for n in c.children if n.tag == "image"]
    boxes = [b for img in image_nodes for b in img.children if b.tag == "box"]
    tops = Counter(max((int(p.attrs["name"]) for p in b.children if p.tag == "part"
                        and p.attrs.get("name", "").strip().isdigit()), default=-1)
                   for b in boxes)
    tops.pop(-1, None)
    labelled = any(p.tag == "part" for b in boxes for p in b.children)
    if labelled and sch is None:
        if not tops:
            raise DataError(path, "no <part> has a point index as its name (like '00')")
        top, _ = tops.most_common(1)[0]
        sch = scheme_for_count(top + 1)
        if sch is None:
            raise DataError(path, f"part names go up to {top} in most boxes, and no landmark "
                                  f"scheme has {top + 1} points; pass scheme=")
    if sch is None:
        sch = get_scheme(DEFAULT_SCHEME)

    folder = path.parent
    samples = []
    for img in image_nodes:
        file = img.attrs.get("file")
        if not file:
            on_error(DataError(path, "<image> without a 'file' attribute", img.line))
            continue
        image = folder / file
        if not image.is_file():
            on_error(DataError(path, f"image {file!r} not found in {folder}", img.line))
            continue
        for node in img.children:
            if node.tag != "box":
                continue
            try:
                sample = _parse_box(path, node, image, sch, labelled, missing)
            except DataError as e:
                on_error(e)
                continue
            if sample.attributes.get("ignore") and ignored == "drop":
                continue
            samples.append(sample)
    return samples


def _parse_box(path: Path, node: _Node, image: Path, sch: LandmarkScheme, labelled: bool,
               missing: str) -> Sample:
    geometry = {}
    for key in ("top", "left", "width", "height"):
        if key not in node.attrs:
            raise DataError(path, f"<box> has no '{key}' attribute", node.line)
        geometry[key] = _number(path, node, key)
    if geometry["width"] <= 0 or geometry["height"] <= 0:
        raise DataError(path, f"<box> width and height must be > 0, got "
                              f"{geometry['width']:g} x {geometry['height']:g}", node.line)
    box = [geometry["left"], geometry["top"], geometry["left"] + geometry["width"],
           geometry["top"] + geometry["height"]]
    attributes = {}
    if node.attrs.get("ignore", "0").strip() not in ("", "0"):
        attributes["ignore"] = True
    for key, kind in _BOX_FLAGS.items():
        if key in node.attrs:
            attributes[key] = kind(_number(path, node, key))
    labels = [c.text.strip() for c in node.children if c.tag == "label"]
    if labels:
        attributes["label"] = labels[0] if len(labels) == 1 else labels

    part_nodes = [c for c in node.children if c.tag == "part"]
    landmarks = None
    if labelled and not (attributes.get("ignore") and not part_nodes):
        if not part_nodes:
            raise DataError(path, "<box> has no <part> elements, but other boxes in this "
                                  "file have landmarks", node.line)
        landmarks = np.full((sch.num_points, 2), np.nan)
        for p in part_nodes:
            k = _part_index(path, p)
            if k >= sch.num_points:
                raise DataError(path, f"part {p.attrs.get('name')!r} is out of range for scheme "
                                      f"{sch.name} ({sch.num_points} points)", p.line)
            if not np.isnan(landmarks[k, 0]):
                raise DataError(path, f"part {p.attrs.get('name')!r} appears twice in this box",
                                p.line)
            landmarks[k] = (_number(path, p, "x"), _number(path, p, "y"))
        absent = np.flatnonzero(np.isnan(landmarks[:, 0]))
        if len(absent) and missing == "error":
            shown = ", ".join(str(int(a)) for a in absent[:10])
            shown += ", ..." if len(absent) > 10 else ""
            raise DataError(path, f"expected {sch.num_points} parts for scheme {sch.name}, got "
                                  f"{sch.num_points - len(absent)} (missing {shown}; "
                                  "missing='nan' allows it)", node.line)
    return Sample(image=str(image), landmarks=landmarks, scheme=sch.name, box=box,
                  attributes=attributes, source=f"{path}:{node.line}")


def _part_index(path: Path, node: _Node) -> int:
    name = node.attrs.get("name")
    try:
        index = int(name)
    except (TypeError, ValueError):
        raise DataError(path, f"<part> name must be a point index like '00', got {name!r}",
                        node.line) from None
    if index < 0:
        raise DataError(path, f"<part> name must be a point index >= 0, got {name!r}", node.line)
    return index


def _number(path: Path, node: _Node, key: str) -> float:
    text = node.attrs.get(key)
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DataError(path, f"<{node.tag}> attribute {key}={text!r} is not a number",
                        node.line) from None
    if not np.isfinite(value):
        raise DataError(path, f"<{node.tag}> attribute {key}={text!r} is not finite", node.line)
    return value



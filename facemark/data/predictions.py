"""The prediction file: landmarks any method can write, evaluated side by side.

Two encodings of the same content, chosen by the file suffix (``docs/prediction-format.md``
has the full description and an example):

* JSON (``.json``)::

    {"format": "facemark.predictions", "version": 1, "scheme": "300w68",
     "method": "pipnet_r18", "root": null,
     "faces": [{"image": "afw/134212_1.jpg", "frame": null,
                "box": [x1, y1, x2, y2] | null, "score": 0.93 | null,
                "points": [[x, y], ...], "point_scores": [...] | null,
                "pose": {"yaw": 3.1, "pitch": -2.0, "roll": 0.4, "rvec": [...],
                         "tvec": [...]}}]}     # "pose" is optional

* CSV (``.csv``): optional ``# key: value`` lines (``scheme``, ``method``, ``root``), a
  header row, one face per row: ``image,frame,x0,y0,...,x{N-1},y{N-1}`` plus the optional
  columns ``score``, ``box_x1,box_y1,box_x2,box_y2``, ``s0..s{N-1}`` (point scores) and
  the head pose ``yaw,pitch,roll,rvec_x,rvec_y,rvec_z,tvec_x,tvec_y,tvec_z``.

Coordinates are 0-based pixels of the original image ((0, 0) = centre of the top-left
pixel), in the order of the landmark scheme.
"""
from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from facemark.io import atomic_write_text
from facemark.data.schemes import get_scheme, scheme_for_count
from facemark.errors import DataError

FORMAT_NAME = "facemark.predictions"
FORMAT_VERSION = 1
DECIMALS = 4  # coordinates are written to 1e-4 pixel
SUFFIXES = (".json", ".csv")
_BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")
_POSE_ANGLES = ("yaw", "pitch", "roll")
_POSE_COLUMNS = _POSE_ANGLES + ("rvec_x", "rvec_y", "rvec_z", "tvec_x", "tvec_y", "tvec_z")


@dataclass(repr=False)
class PredictedFace:
    """One predicted face.

    Attributes:
        image: the image path as written in the file (absolute, or relative to the set's
            ``root`` / the dataset root).
        points: float64 (N, 2) 0-based pixels of the original image.
        frame: frame index for video files, None for still images.
        box: float64 (4,) ``x1, y1, x2, y2`` the face box the method used, or None.
        score: face-level confidence, or None.
        point_scores: float64 (N,) per-landmark confidence, or None.
        pose: the head pose, or None: ``{"yaw", "pitch", "roll"}`` in degrees, ``"rvec"``
            (3 numbers, Rodrigues rotation in radians) and ``"tvec"`` (3 numbers, mm), as
            ``facemark.data.pose.HeadPose.to_record`` gives it.
    """

    image: str
    points: np.ndarray
    frame: int | None = None
    box: np.ndarray | None = None
    score: float | None = None
    point_scores: np.ndarray | None = None
    pose: dict | None = None

    def __post_init__(self) -> None:
        self.image = str(self.image)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        if self.point_scores is not None:
            self.point_scores = np.asarray(self.point_scores, dtype=np.float64).reshape(-1)
        if self.frame is not None:
            self.frame = int(self.frame)
        if self.score is not None:
            self.score = float(self.score)
        if self.pose is not None:
            self.pose = pose_record(self.pose)

    def __repr__(self) -> str:
        frame = "" if self.frame is None else f"#{self.frame}"
        return f"PredictedFace({self.image!r}{frame}, {len(self.points)} points)"


@dataclass(repr=False)
class PredictionSet:
    """All faces one method predicted on a dataset.

    Attributes:
        faces: the predicted faces, in file order.
        scheme: landmark scheme name of every face's points.
        method: a name for the method (shown in reports).
        root: folder that relative image paths are relative to, or None.
        path: the file the set was read from (for error messages), or None.
        per_sample: each face was predicted for one given sample (``from_samples``), so it
            is that sample's prediction whatever it says; faces read from a file are
            matched to the annotated faces they overlap (``assign_predictions``, rule 4).
    """

    faces: list[PredictedFace]
    scheme: str
    method: str = ""
    root: str | None = None
    path: str | None = None
    info: dict = field(default_factory=dict)
    per_sample: bool = False   # made for given samples (from_samples): no overlap check

    def __len__(self) -> int:
        return len(self.faces)

    def __repr__(self) -> str:
        where = f", from {self.path}" if self.path else ""
        return f"PredictionSet({self.method!r}, {self.scheme}, {len(self.faces)} faces{where})"

    @classmethod
    def from_samples(cls, samples: Sequence, points: np.ndarray, method: str,
                     scheme: str | None = None, scores=None, boxes=None) -> "PredictionSet":
        """One face per sample, at the sample's image (and frame).

        Args:
            samples: the samples predicted on (B of them).
            points: (B, N, 2) predicted pixels.
            method: method name.
            scheme: scheme name; the samples' scheme when None.
            scores: optional (B, N) per-landmark scores.
            boxes: optional (B, 4) face boxes used.
        """
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 3 or len(points) != len(samples):
            raise ValueError(f"points must have shape ({len(samples)}, N, 2), got {points.shape}")
        if scheme is None:
            scheme = samples[0].scheme if len(samples) else "300w68"
        faces = [PredictedFace(image=s.image, points=points[i], frame=s.frame,
                               box=None if boxes is None else boxes[i],
                               point_scores=None if scores is None else scores[i])
                 for i, s in enumerate(samples)]
        return cls(faces=faces, scheme=get_scheme(scheme).name, method=method, per_sample=True)


def pose_record(pose) -> dict:
    """A pose as the file format holds it: float ``yaw, pitch, roll`` and 3-number
    ``rvec, tvec`` lists; ValueError naming what is missing or not a number."""
    try:
        out = {k: float(pose[k]) for k in _POSE_ANGLES}
        for k in ("rvec", "tvec"):
            values = [float(v) for v in pose[k]]
            if len(values) != 3:
                raise ValueError(f"pose {k}: expected 3 numbers, got {len(values)}")
            out[k] = values
    except KeyError as e:
        raise ValueError(f"pose: missing {e.args[0]!r} (expected yaw, pitch, roll, rvec, "
                         "tvec)") from None
    except TypeError:
        raise ValueError(f"pose: expected an object of numbers, got {pose!r:.80}") from None
    if not all(np.isfinite(v) for v in [*out["rvec"], *out["tvec"],
                                        *(out[k] for k in _POSE_ANGLES)]):
        raise ValueError("pose: numbers must be finite")
    return out


def _pose_cells(pose: dict) -> list[float]:
    return [pose[k] for k in _POSE_ANGLES] + pose["rvec"] + pose["tvec"]


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
def _relative(image: str, root: str | None) -> str:
    if root is None:
        return image
    try:
        return Path(image).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return image


def _check_face(face: PredictedFace, n: int, where: str) -> None:
    if face.points.shape != (n, 2):
        raise ValueError(f"{where}: expected {n} points, got {len(face.points)}")
    if not np.isfinite(face.points).all():
        raise ValueError(f"{where}: points must be finite numbers")
    if face.point_scores is not None and face.point_scores.shape != (n,):
        raise ValueError(f"{where}: expected {n} point scores, got {len(face.point_scores)}")


def _num(v) -> float | None:
    """A rounded float for JSON (None for NaN, which JSON cannot hold)."""
    v = float(v)
    return round(v, DECIMALS) if np.isfinite(v) else None


def _meta_text(value: str) -> str:
    """A ``# key: value`` value; one with a line break (or a leading quote) as a JSON string."""
    value = str(value)
    if any(c in value for c in "\r\n") or value.startswith('"') or value != value.strip():
        return json.dumps(value)
    return value


def _meta_value(value: str) -> str:
    if value.startswith('"'):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _cell_text(v) -> str:
    return repr(round(float(v), DECIMALS))


def write_predictions(path: str | Path, faces: Iterable[PredictedFace] | PredictionSet,
                      scheme: str | None = None, method: str = "",
                      root: str | Path | None = None) -> Path:
    """Write predicted faces as a ``.json`` or ``.csv`` prediction file, atomically.

    The file is written next to ``path`` under a temporary name and moved into place with
    ``os.replace``, so a reader never sees half a file.

    Args:
        path: output file; its suffix (``.json`` / ``.csv``) picks the encoding.
        faces: the faces, or a PredictionSet (its scheme and method are the defaults).
        scheme: scheme name of the points.
        method: method name to record.
        root: if given, image paths under it are written relative to it, and the file
            records it as ``root``.

    Returns:
        the path written.
    """
    path = Path(path)
    if isinstance(faces, PredictionSet):
        scheme = scheme or faces.scheme
        method = method or faces.method
        faces = faces.faces
    if scheme is None:
        raise ValueError("write_predictions needs the scheme name of the points")
    sch = get_scheme(scheme)
    faces = list(faces)
    for i, face in enumerate(faces):
        _check_face(face, sch.num_points, f"face {i} ({face.image})")
    root_s = None if root is None else str(root)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = _to_json(faces, sch.name, method, root_s)
    elif suffix == ".csv":
        text = _to_csv(faces, sch.name, sch.num_points, method, root_s)
    else:
        raise ValueError(f"{path}: prediction files end in .json or .csv, got {path.suffix!r}")
    return atomic_write_text(path, text)


def _to_json(faces, scheme: str, method: str, root: str | None) -> str:
    records = []
    for f in faces:
        record = {
            "image": _relative(f.image, root),
            "frame": f.frame,
            "box": None if f.box is None else [_num(v) for v in f.box],
            "score": None if f.score is None else _num(f.score),
            "points": [[_num(x), _num(y)] for x, y in f.points],
            "point_scores": None if f.point_scores is None else [_num(v) for v in f.point_scores],
        }
        if f.pose is not None:                      # optional: only faces that have one
            record["pose"] = {k: ([_num(x) for x in v] if isinstance(v, list) else _num(v))
                              for k, v in f.pose.items()}
        records.append(record)
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "scheme": scheme,
           "method": method, "root": root, "faces": records}
    # one face per line keeps big files diffable and error line numbers meaningful
    head = json.dumps({k: v for k, v in doc.items() if k != "faces"})[:-1]
    body = ",\n".join("  " + json.dumps(r) for r in records)
    return f'{head}, "faces": [\n{body}\n]}}\n'


def _to_csv(faces, scheme: str, n: int, method: str, root: str | None) -> str:
    has_score = any(f.score is not None for f in faces)
    has_box = any(f.box is not None for f in faces)
    has_ps = any(f.point_scores is not None for f in faces)
    has_pose = any(f.pose is not None for f in faces)
    header = ["image", "frame"] + [c for i in range(n) for c in (f"x{i}", f"y{i}")]
    header += ["score"] * has_score + list(_BOX_COLUMNS) * has_box
    header += [f"s{i}" for i in range(n)] * has_ps
    header += list(_POSE_COLUMNS) * has_pose
    buf = io.StringIO()
    buf.write(f"# {FORMAT_NAME} version {FORMAT_VERSION}\n# scheme: {scheme}\n")
    if method:
        buf.write(f"# method: {_meta_text(method)}\n")
    if root:
        buf.write(f"# root: {_meta_text(root)}\n")
    buf.write(",".join(header) + "\n")
    for f in faces:
        row = [_relative(f.image, root), "" if f.frame is None else f.frame]
        row += [_cell_text(v) for v in f.points.reshape(-1)]
        if has_score:
            row.append("" if f.score is None else _cell_text(f.score))
        if has_box:
            row += [""] * 4 if f.box is None else [_cell_text(v) for v in f.box]
        if has_ps:
            row += [""] * n if f.point_scores is None else [
                "" if not np.isfinite(v) else _cell_text(v) for v in f.point_scores]
        if has_pose:
            row += ([""] * len(_POSE_COLUMNS) if f.pose is None
                    else [_cell_text(v) for v in _pose_cells(f.pose)])
        buf.write(",".join(_csv_cell(c) for c in row) + "\n")
    return buf.getvalue()


def _csv_cell(value) -> str:
    """One CSV cell, quoted (RFC 4180) when it holds a comma, a quote or a line break.

    ``csv.writer`` with a ``"\\n"`` line terminator leaves a lone ``"\\r"`` unquoted, which
    a reader takes for a line end; image names may hold either, so quoting is done here.
    """
    text = str(value)
    if any(c in text for c in ',"\r\n') or text != text.strip(" \t"):
        return '"' + text.replace('"', '""') + '"'
    return text


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------
def read_predictions(path: str | Path, scheme: str | None = None) -> PredictionSet:
    """Read a ``.json`` or ``.csv`` prediction file.

    Args:
        path: the file.
        scheme: expected scheme name; the file's own scheme must agree with it. For a CSV
            without a ``# scheme:`` line it is required unless the point count names a
            single scheme.

    Raises:
        DataError: naming the file and the line (CSV) or ``faces[i]`` record (JSON), with
            what was expected and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "prediction file not found")
    suffix = path.suffix.lower()
    # no newline translation: a quoted "\r" inside a CSV image name stays "\r"; bytes that
    # are not UTF-8 (a CSV image name from a non-UTF-8 file name) come back as surrogates,
    # as Python holds such file names, and elsewhere fail as a bad number or key
    try:
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"cannot read prediction file ({e.__class__.__name__})") from None
    if suffix == ".json":
        pset = _read_json(path, text)
    elif suffix == ".csv":
        pset = _read_csv(path, text, scheme)
    else:
        raise DataError(path, f"prediction files end in .json or .csv, got {path.suffix!r}")
    if scheme is not None and get_scheme(scheme).name != pset.scheme:
        raise DataError(path, f"predictions are in scheme {pset.scheme!r}, expected {scheme!r}")
    if pset.root and not Path(pset.root).is_absolute():
        pset.root = str(path.parent / pset.root)  # a relative root is relative to the file
    pset.path = str(path)
    return pset


def _scheme_or_error(path: Path, name, line: int | None = None):
    try:
        return get_scheme(str(name))
    except KeyError as e:
        raise DataError(path, str(e.args[0]), line) from None


def _numbers(path: Path, values, count: int, what: str, where: str, line=None,
             allow_nan: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"{where}: {what} must be numbers, got {values!r:.80}", line) from None
    if arr.size != count:
        raise DataError(path, f"{where}: expected {count} {what}, got {arr.size}", line)
    if not allow_nan and not np.isfinite(arr).all():
        raise DataError(path, f"{where}: {what} must be finite numbers (NaN/inf found)", line)
    return arr


def _read_json(path: Path, text: str) -> PredictionSet:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON: {e.msg} (column {e.colno})", e.lineno) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(path, f'expected a JSON object with "format": "{FORMAT_NAME}", got {got!r}')
    if doc.get("version") != FORMAT_VERSION:
        raise DataError(path, f"unsupported prediction file version {doc.get('version')!r} "
                              f"(this facemark reads version {FORMAT_VERSION})")
    for key in ("scheme", "faces"):
        if key not in doc:
            raise DataError(path, f'missing key "{key}"')
    sch = _scheme_or_error(path, doc["scheme"])
    if not isinstance(doc["faces"], list):
        raise DataError(path, f'"faces" must be a list, got {type(doc["faces"]).__name__}')
    faces = []
    # faces are written one per line; report that line when the layout is ours
    lines = text.splitlines()
    first = next((i for i, t in enumerate(lines) if t.lstrip().startswith('{"image"')), None)
    one_per_line = first is not None and len(lines) - first >= len(doc["faces"])
    for i, rec in enumerate(doc["faces"]):
        where = f"faces[{i}]"
        line = first + 1 + i if one_per_line else None
        if not isinstance(rec, dict):
            raise DataError(path, f"{where}: expected an object, got {type(rec).__name__}", line)
        for key in ("image", "points"):
            if key not in rec:
                raise DataError(path, f'{where}: missing key "{key}"', line)
        if not isinstance(rec["image"], str) or not rec["image"]:
            raise DataError(path, f"{where}: image must be a non-empty string, got "
                                  f"{rec['image']!r}", line)
        pts = _numbers(path, rec["points"], 2 * sch.num_points,
                       f"coordinates ({sch.num_points} points x 2, scheme {sch.name})", where, line)
        frame = rec.get("frame")
        if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame < 0):
            raise DataError(path, f"{where}: frame must be null or an integer >= 0, got {frame!r}", line)
        box = rec.get("box")
        if box is not None:
            box = _numbers(path, box, 4, "box numbers (x1, y1, x2, y2)", where, line)
        score = rec.get("score")
        if score is not None:
            score = float(_numbers(path, [score], 1, "score", where, line, allow_nan=True)[0])
        ps = rec.get("point_scores")
        if ps is not None:
            ps = _numbers(path, [np.nan if v is None else v for v in ps], sch.num_points,
                          "point scores", where, line, allow_nan=True)
        pose = rec.get("pose")
        if pose is not None:
            try:
                pose = pose_record(pose)
            except ValueError as e:
                raise DataError(path, f"{where}: {e}", line) from None
        faces.append(PredictedFace(image=rec["image"], points=pts.reshape(-1, 2), frame=frame,
                                   box=box, score=score, point_scores=ps, pose=pose))
    return PredictionSet(faces=faces, scheme=sch.name, method=str(doc.get("method") or ""),
                         root=doc.get("root"))


_XY = re.compile(r"^([xys])(\d+)$")


def _read_csv(path: Path, text: str, scheme: str | None) -> PredictionSet:
    lines = text.splitlines(keepends=True)
    meta: dict[str, tuple[str, int]] = {}
    start = 0
    while start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        key, sep, value = lines[start][1:].partition(":")
        if sep:
            meta[key.strip().lower()] = (_meta_value(value.strip()), start + 1)
        start += 1
    if start >= len(lines):
        raise DataError(path, "no header row (expected image,frame,x0,y0,...)")
    # the csv module reads the rest as one stream, so a quoted cell may hold line breaks
    # (image names with a newline); each row keeps the file line it starts on
    reader = csv.reader(io.StringIO("".join(lines[start:]), newline=""))
    rows, row_lines = [], []
    try:
        while True:
            first_line = start + reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            rows.append(row)
            row_lines.append(first_line)
    except csv.Error as e:
        raise DataError(path, f"not valid CSV ({e})", start + reader.line_num) from None
    header = [h.strip() for h in rows[0]]
    hline = row_lines[0]
    if "image" not in header:
        raise DataError(path, f"header has no 'image' column: {','.join(header)[:120]}", hline)
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(path, f"duplicate columns in header: {dup}", hline)
    numbered = defaultdict(set)
    for h in header:
        m = _XY.match(h)
        if m:
            numbered[m.group(1)].add(int(m.group(2)))
        elif h not in ("image", "frame", "score") + _BOX_COLUMNS + _POSE_COLUMNS:
            raise DataError(path, f"unknown column {h!r}; known columns: image, frame, "
                                  "x0, y0, ..., score, box_x1..box_y2, s0, ..., "
                                  f"{', '.join(_POSE_COLUMNS)}", hline)
    n = len(numbered["x"])
    want = max(numbered["x"] | numbered["y"] | numbered["s"], default=-1) + 1
    missing = [f"{c}{i}" for i in range(want) for c in ("x", "y") if i not in numbered[c]]
    if missing:  # e.g. x67 and y67 absent while s67 is there: the points are incomplete
        shown = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        raise DataError(path, f"point columns {shown} are missing: the columns go up to point "
                              f"{want - 1} (x0,y0 .. x{want - 1},y{want - 1} needed)", hline)
    if n == 0 or numbered["x"] != set(range(n)) or numbered["y"] != set(range(n)):
        raise DataError(path, f"point columns must be x0,y0 .. x{{N-1}},y{{N-1}} for every "
                              f"point: found {n} x and {len(numbered['y'])} y columns", hline)
    if numbered["s"] and numbered["s"] != set(range(n)):
        raise DataError(path, f"point-score columns must be s0 .. s{n - 1}", hline)
    box_cols = [c for c in _BOX_COLUMNS if c in header]
    if box_cols and len(box_cols) != 4:
        raise DataError(path, f"box columns must be all of {', '.join(_BOX_COLUMNS)}, "
                              f"got {box_cols}", hline)
    pose_cols = [c for c in _POSE_COLUMNS if c in header]
    if pose_cols and len(pose_cols) != len(_POSE_COLUMNS):
        raise DataError(path, f"pose columns must be all of {', '.join(_POSE_COLUMNS)}, "
                              f"got {pose_cols}", hline)
    if "scheme" in meta:
        sch = _scheme_or_error(path, meta["scheme"][0], meta["scheme"][1])
    elif scheme is not None:
        sch = _scheme_or_error(path, scheme)
    else:
        sch = scheme_for_count(n)
        if sch is None:
            raise DataError(path, f"no '# scheme:' line and no single scheme has {n} points; "
                                  "add '# scheme: NAME' or pass the scheme", hline)
    if sch.num_points != n:
        raise DataError(path, f"scheme {sch.name} has {sch.num_points} points, the header "
                              f"has columns for {n}", hline)
    col = {h: i for i, h in enumerate(header)}
    xy_idx = [col[f"{c}{i}"] for i in range(n) for c in ("x", "y")]
    faces = []
    for row, line in zip(rows[1:], row_lines[1:]):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} columns as in the header, got "
                                  f"{len(row)}", line)
        where = f"row for {row[col['image']]!r}"
        image = row[col["image"]].strip(" \t")  # spaces after a comma; a newline is the name's
        if not image.strip():
            raise DataError(path, "empty image column", line)
        pts = _numbers(path, [_cell(path, row[i], header[i], line) for i in xy_idx], 2 * n,
                       "coordinates", where, line)
        frame = None
        if "frame" in col and row[col["frame"]].strip():
            text_f = row[col["frame"]].strip()
            if not text_f.isdigit():
                raise DataError(path, f"frame must be empty or an integer >= 0, got {text_f!r}", line)
            frame = int(text_f)
        score = None
        if "score" in col and row[col["score"]].strip():
            score = _cell(path, row[col["score"]], "score", line)
        box = None
        if box_cols:
            cells = [row[col[c]].strip() for c in _BOX_COLUMNS]
            if any(cells):
                box = _numbers(path, [_cell(path, v, c, line) for v, c in zip(cells, _BOX_COLUMNS)],
                               4, "box numbers", where, line)
        ps = None
        if numbered["s"]:
            cells = [row[col[f"s{i}"]].strip() for i in range(n)]
            if any(cells):
                ps = np.array([_cell(path, v, f"s{i}", line) if v else np.nan
                               for i, v in enumerate(cells)])
        pose = None
        if pose_cols:
            cells = [row[col[c]].strip() for c in _POSE_COLUMNS]
            if any(cells):
                v = _numbers(path, [_cell(path, x, c, line) for x, c in zip(cells, _POSE_COLUMNS)],
                             len(_POSE_COLUMNS), "pose numbers", where, line)
                pose = {"yaw": v[0], "pitch": v[1], "roll": v[2], "rvec": v[3:6].tolist(),
                        "tvec": v[6:9].tolist()}
        faces.append(PredictedFace(image=image, points=pts.reshape(-1, 2), frame=frame,
                                   box=box, score=score, point_scores=ps, pose=pose))
    method = meta.get("method", ("", 0))[0]
    root = meta.get("root", (None, 0))[0]
    return PredictionSet(faces=faces, scheme=sch.name, method=method, root=root)


def _cell(path: Path, text: str, column: str, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(path, f"column {column}: expected a number, got {text.strip()!r}", line) from None


# ---------------------------------------------------------------------------------------
# Matching predictions to ground-truth samples
# ---------------------------------------------------------------------------------------
def _parts(path: str, root: str | None = None) -> tuple[str, ...]:
    text = str(path).replace("\\", "/")
    if root is not None and not posixpath.isabs(text):
        text = posixpath.join(str(root).replace("\\", "/"), text)
    return tuple(p for p in posixpath.normpath(text).split("/") if p not in ("", "."))


def _common_tail(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n


def _centroid(points: np.ndarray | None, box: np.ndarray | None) -> np.ndarray:
    if points is not None:
        pts = np.asarray(points, dtype=np.float64)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts):
            return pts.mean(axis=0)
    if box is not None and np.isfinite(box).all():
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return np.array([np.nan, np.nan])


#: least IoU between a predicted face's landmark box and a ground-truth face's for the
#: prediction to be that face (the detector-box evaluation uses the same threshold).
MATCH_IOU = 0.25


def _face_box(points: np.ndarray | None, box: np.ndarray | None) -> np.ndarray:
    """x1, y1, x2, y2 around a face's finite points, else its box, else NaN."""
    if points is not None:
        pts = np.asarray(points, dtype=np.float64)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts):
            return np.r_[pts.min(axis=0), pts.max(axis=0)]
    if box is not None and np.isfinite(np.asarray(box, dtype=np.float64)).all():
        return np.asarray(box, dtype=np.float64)
    return np.full(4, np.nan)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1, y1, x2, y2 boxes; 1.0 when either is unknown (nothing to check)."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 1.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def assign_predictions(pred_set: PredictionSet, samples: Sequence) -> np.ndarray:
    """For each sample, the index of its predicted face in ``pred_set.faces`` (or -1).

    Matching rules (documented in ``docs/prediction-format.md``):

    1. Images: a prediction's image path matches a sample's when one path is a trailing
       part of the other (``afw/1.jpg`` matches ``/data/300w/afw/1.jpg``; a relative
       path is first joined to the set's ``root`` when it has one). When no path matches
       that way, the file name alone is used (paths written on another machine). Frames
       must be equal (both None for still images).
    2. A name that fits several different images, on either side, is ambiguous and raises
       a DataError (write paths relative to the dataset root to fix it).
    3. Several faces in one image: ground-truth faces and predicted faces are paired one
       to one, minimising the total distance between their centroids (so with one
       ground-truth face, the nearest predicted face is taken). Ground-truth faces left
       without a prediction get -1 (counted as missing: NME inf); predicted faces left over
       are not used.
    4. For faces read from a file (not ``per_sample``), a pair counts only when the two
       faces overlap: the IoU of the predicted face's box (its detector box; its
       landmarks' box when it has none) and the annotated face's landmark box is at least
       ``MATCH_IOU`` (0.25, as for detector boxes). Otherwise the prediction is another
       face (someone in the background) and the annotated face is missing.

    Raises:
        DataError: naming the prediction file, for a scheme mismatch or an ambiguous name.
    """
    where = pred_set.path or f"predictions of {pred_set.method or 'a method'}"
    pscheme = get_scheme(pred_set.scheme)
    for s in samples:
        if get_scheme(s.scheme).name != pscheme.name:
            raise DataError(where, f"predictions are in scheme {pscheme.name!r} but the dataset's "
                                   f"faces are {s.scheme!r} (first: {s.name})")
    # group both sides by image key = (path parts, frame)
    pred_keys: dict[tuple, list[int]] = defaultdict(list)
    for j, f in enumerate(pred_set.faces):
        pred_keys[(_parts(f.image, pred_set.root), f.frame)].append(j)
    by_name: dict[tuple, list[tuple]] = defaultdict(list)
    for key in pred_keys:
        by_name[(key[0][-1] if key[0] else "", key[1])].append(key)
    sample_keys: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        sample_keys[(_parts(s.image), s.frame)].append(i)

    claimed: dict[tuple, tuple] = {}
    pairs: list[tuple[tuple, tuple]] = []
    for skey in sample_keys:
        parts, frame = skey
        cands = by_name.get((parts[-1] if parts else "", frame), [])
        if not cands:
            continue
        scored = []
        for pkey in cands:
            c = _common_tail(parts, pkey[0])
            full = c == min(len(parts), len(pkey[0]))
            scored.append((full, c, pkey))
        best = max((f, c) for f, c, _ in scored)
        chosen = [p for f, c, p in scored if (f, c) == best]
        if len(chosen) > 1:
            names = ", ".join("/".join(p[0]) for p in chosen[:4])
            raise DataError(where, f"image {'/'.join(parts)} matches several predicted images "
                                   f"({names}); write image paths relative to the dataset root")
        pkey = chosen[0]
        if pkey in claimed and claimed[pkey] != skey:
            other = "/".join(claimed[pkey][0])
            raise DataError(where, f"predicted image {'/'.join(pkey[0])!r} matches several dataset "
                                   f"images ({other}, {'/'.join(parts)}); write image paths "
                                   "relative to the dataset root")
        claimed[pkey] = skey
        pairs.append((skey, pkey))

    out = np.full(len(samples), -1, dtype=np.int64)
    for skey, pkey in pairs:
        s_idx, p_idx = sample_keys[skey], pred_keys[pkey]
        if len(s_idx) == 1 and len(p_idx) == 1:
            out[s_idx[0]] = p_idx[0]
        else:
            gt_c = np.stack([_centroid(samples[i].landmarks, samples[i].box) for i in s_idx])
            pr_c = np.stack([_centroid(pred_set.faces[j].points, pred_set.faces[j].box)
                             for j in p_idx])
            cost = np.linalg.norm(gt_c[:, None] - pr_c[None], axis=2)
            cost = np.nan_to_num(cost, nan=0.0)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                out[s_idx[r]] = p_idx[c]
        for i in ([] if pred_set.per_sample else s_idx):   # rule 4: a prediction of
            j = out[i]                                       # another face is not this one's
            if j >= 0:
                face = pred_set.faces[j]
                gt = _face_box(samples[i].landmarks, samples[i].box)
                box = face.box if face.box is not None and np.isfinite(
                    np.asarray(face.box, dtype=np.float64)).all() else None
                found = box if box is not None else _face_box(face.points, None)
                if _iou(np.asarray(found, dtype=np.float64), gt) < MATCH_IOU:
                    out[i] = -1
    return out


def match_predictions(pred_set: PredictionSet, samples: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Predicted points aligned with the samples.

    Returns:
        (pred (B, N, 2) float64 pixels, NaN rows where a sample has no prediction,
         found (B,) bool). See :func:`assign_predictions` for the matching rules; missing
        predictions count as failures in the metrics (NME inf).
    """
    n = get_scheme(pred_set.scheme).num_points
    idx = assign_predictions(pred_set, samples)
    pred = np.full((len(samples), n, 2), np.nan)
    for i, j in enumerate(idx):
        if j >= 0:
            pred[i] = pred_set.faces[j].points
    return pred, idx >= 0

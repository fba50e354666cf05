"""What ``facemark detect`` reads and writes: its inputs, the result cache, the output files.

* :func:`collect_inputs` turns the command's PATHs (images, folders, videos, webcam
  indices) into a list of :class:`Input`, and :func:`shard` takes every n-th of them.
* :class:`PartCache` keeps one small JSON file per finished input under ``OUT/.parts``
  (written atomically), so a re-run skips what is done and ``--merge`` can join the parts
  that several machines wrote. A part is an internal cache file::

    {"format": "facemark.detect-part", "version": 1, "input": "photos/a.jpg",
     "kind": "image" | "video", "output": "photos/a.jpg", "settings": {...},
     "scheme": "300w68", "info": {...}, "faces": [{"frame": null, "box": [...],
     "score": 0.93, "points": [[x, y], ...], "point_scores": [...], "pose": {...}}, ...]}

  the face records being those of the prediction file format (``pose`` only with
  ``--pose``).
* The results themselves are prediction files (``docs/prediction-format.md``) written with
  ``facemark.data.predictions.write_predictions``; overlays are PNG/JPEG images and
  MP4 videos drawn by :mod:`facemark.inference.draw`.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facemark.inference.align import align
from facemark.inference.draw import draw_faces
from facemark.io import atomic_write_bytes, atomic_write_text
from facemark.data.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from facemark.errors import DataError

PART_FORMAT = "facemark.detect-part"
PART_VERSION = 1
PARTS_FOLDER = ".parts"


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
@dataclass
class Input:
    """One thing to process.

    Attributes:
        name: how it is written in the prediction files and printed: the path as you gave it
            (a folder's files as ``FOLDER/relative/path``), or ``webcam:N``.
        kind: ``"image"``, ``"video"`` or ``"webcam"``.
        path: the file (None for a webcam).
        output: relative path for its overlay / per-video files under OUT (unique in a run).
        camera: the webcam index (None otherwise).
    """

    name: str
    kind: str
    path: Path | None = None
    output: str = ""
    camera: int | None = None


def _kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def _output_name(path: Path, base: Path | None) -> str:
    """``FOLDER/relative`` for a file found in a folder, the file name for a file given."""
    if base is not None:
        rel = path.relative_to(base).as_posix()
        return f"{base.resolve().name or 'root'}/{rel}"
    return path.name


@dataclass
class Collected:
    """:func:`collect_inputs` result: the inputs, the PATHs that could not be used, and how
    many files inside folders were neither images nor videos (not processed)."""

    inputs: list[Input]
    problems: list[DataError] = field(default_factory=list)
    other_files: int = 0


def collect_inputs(paths: Sequence[str], recursive: bool = True) -> Collected:
    """The inputs of a ``facemark detect`` run, in the order given (folders sorted).

    Args:
        paths: image files, video files, folders, or webcam indices (all digits, e.g. ``0``).
        recursive: look into sub-folders of folders.

    Returns:
        a :class:`Collected`; a missing PATH, a file of unknown type, or a broken symbolic
        link or link loop (also inside folders) is a DataError in ``problems`` (reported
        and skipped, not the end of the run). The same file given
        twice is processed once.
    """
    out = Collected(inputs=[])
    seen: set[str] = set()
    used_outputs: set[str] = set()

    def add(inp: Input) -> None:
        key = inp.name if inp.path is None else str(inp.path.resolve())
        if key in seen:
            return
        seen.add(key)
        output = inp.output
        if output in used_outputs:  # two files with one name: keep both apart
            stem, dot, suffix = output.rpartition(".")
            tag = hashlib.sha1(key.encode()).hexdigest()[:8]
            output = f"{stem}-{tag}.{suffix}" if dot else f"{output}-{tag}"
        used_outputs.add(output)
        inp.output = output
        out.inputs.append(inp)

    for text in paths:
        text = str(text)
        if text.isdigit():
            add(Input(name=f"webcam:{int(text)}", kind="webcam", output=f"webcam{int(text)}.mp4",
                      camera=int(text)))
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for p in sorted(path.glob(pattern)):
                if p.is_symlink() and not p.exists():
                    out.problems.append(_broken_link(p))   # reported, never dropped silently
                    continue
                if not p.is_file():
                    continue
                kind = _kind_of(p)
                if kind is None:
                    out.other_files += 1
                    continue
                rel = p.relative_to(path).as_posix()
                name = (path / rel).as_posix() if text not in (".", "./") else rel
                add(Input(name=name, kind=kind, path=p, output=_output_name(p, path)))
        elif path.is_file():
            kind = _kind_of(path)
            if kind is None:
                known = ", ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
                out.problems.append(DataError(path, "not an image or video file (expected one "
                                                    f"of {known})"))
                continue
            add(Input(name=path.as_posix(), kind=kind, path=path, output=_output_name(path, None)))
        elif path.is_symlink():
            out.problems.append(_broken_link(path))
        else:
            out.problems.append(DataError(path, "no such file or folder"))
    return out


def _broken_link(path: Path) -> DataError:
    """The problem of a symbolic link that leads nowhere: a loop, or a missing target."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return DataError(path, "symbolic link loop (following it leads back to itself)")
    return DataError(path, f"broken symbolic link (its target {os.readlink(path)} does not "
                           "exist)")


def shard(items: Sequence, index: int, count: int) -> list:
    """Every ``count``-th item starting at ``index`` (0-based): shards 0..count-1 partition
    the items, and each shard's share differs from another's by at most one."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard: expected 0 <= index < count, got {index}/{count}")
    return list(items[index::count])


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; ValueError with the reason otherwise."""
    left, sep, right = str(text).partition("/")
    if not sep or not left.strip().isdigit() or not right.strip().isdigit():
        raise ValueError(f"expected i/n with whole numbers, e.g. 0/4, got {text!r}")
    i, n = int(left), int(right)
    if n < 1 or i >= n:
        raise ValueError(f"expected 0 <= i < n (shards are numbered from 0), got {text!r}")
    return i, n


# ---------------------------------------------------------------------------------------
# The result cache
# ---------------------------------------------------------------------------------------
def file_digest(path: str | Path, length: int = 16) -> str:
    """sha1 of a file's bytes (hex, first ``length`` digits)."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


@dataclass
class Part:
    """The result of one input: its faces (PredictedFace, frame set for videos) and info."""

    input: str
    kind: str
    faces: list
    scheme: str
    settings: dict
    output: str = ""
    info: dict = field(default_factory=dict)
    source: str = ""  # the part file it was read from


def _face_record(face) -> dict:
    num = lambda v: None if v is None or not np.isfinite(v) else round(float(v), 4)  # noqa: E731
    record = {"frame": face.frame,
              "box": None if face.box is None else [num(v) for v in face.box],
              "score": None if face.score is None else num(face.score),
              "points": [[num(x), num(y)] for x, y in face.points],
              "point_scores": (None if face.point_scores is None
                               else [num(v) for v in face.point_scores])}
    if getattr(face, "pose", None) is not None:
        record["pose"] = face.pose
    return record


class PartCache:
    """One JSON file per finished input under ``OUT/.parts``, keyed by input and settings.

    The key of an input hashes its resolved path, size and modification time together with
    ``settings`` (model file digest, detector, flip test, crop rule, ...), so changing a file
    or a setting computes it again.

    Args:
        out: the output folder.
        settings: JSON-serialisable dict of what every result depends on.
        video_settings: what only video results depend on (smoothing, frame limit).
    """

    def __init__(self, out: str | Path, settings: dict, video_settings: dict | None = None):
        self.out = Path(out)
        self.settings = settings
        self.video_settings = video_settings or {}

    @property
    def folder(self) -> Path:
        return self.out / PARTS_FOLDER

    def key(self, inp: Input) -> str:
        ident = {"name": inp.name, "settings": self.settings}
        if inp.kind != "image":
            ident["video"] = self.video_settings
        if inp.path is not None:
            st = inp.path.stat()
            ident.update(path=str(inp.path.resolve()), size=st.st_size, mtime=st.st_mtime_ns)
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]

    def path_for(self, inp: Input) -> Path:
        return self.folder / f"{self.key(inp)}.json"

    def get(self, inp: Input) -> Part | None:
        """The cached result of ``inp``, or None (never cached, or an unreadable part)."""
        if inp.kind == "webcam":
            return None
        try:
            path = self.path_for(inp)
        except OSError:
            return None
        if not path.is_file():
            return None
        try:
            return read_part(path)
        except DataError:
            return None

    def put(self, part: Part, inp: Input) -> Path:
        """Write ``part`` for ``inp`` atomically; returns its file."""
        path = self.path_for(inp)
        write_part(path, part)
        return path


def write_part(path: Path, part: Part) -> None:
    doc = {"format": PART_FORMAT, "version": PART_VERSION, "input": part.input,
           "kind": part.kind, "output": part.output, "settings": part.settings,
           "scheme": part.scheme, "info": part.info,
           "faces": [_face_record(f) for f in part.faces]}
    atomic_write_text(Path(path), json.dumps(doc) + "\n")


def read_part(path: str | Path) -> Part:
    """Read a part file; DataError naming it when it is not one."""
    from facemark.data.predictions import PredictedFace

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable result part ({e.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != PART_FORMAT:
        raise DataError(path, f'not a facemark detect part (expected "format": "{PART_FORMAT}")')
    if doc.get("version") != PART_VERSION:
        raise DataError(path, f"part version {doc.get('version')!r}, this facemark reads "
                              f"{PART_VERSION}")
    try:
        faces = [PredictedFace(image=doc["input"], points=np.array(r["points"], dtype=np.float64),
                               frame=r.get("frame"), box=r.get("box"), score=r.get("score"),
                               point_scores=None if r.get("point_scores") is None else
                               np.array([np.nan if v is None else v for v in r["point_scores"]]),
                               pose=r.get("pose"))
                 for r in doc["faces"]]
        return Part(input=doc["input"], kind=doc["kind"], faces=faces, scheme=doc["scheme"],
                    settings=doc["settings"], output=doc.get("output", ""),
                    info=doc.get("info", {}), source=str(path))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"malformed result part ({e.__class__.__name__}: {e})") from None


def read_parts(out: str | Path) -> tuple[list[Part], list[DataError]]:
    """Every part under ``OUT/.parts`` and the unreadable ones.

    Parts are sorted by input name, then oldest file first (so of two parts of one input,
    the newer comes last).
    """
    folder = Path(out) / PARTS_FOLDER
    parts, bad, mtimes = [], [], {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            parts.append(read_part(path))
            mtimes[str(path)] = path.stat().st_mtime_ns
        except DataError as e:
            bad.append(e)
    parts.sort(key=lambda p: (p.input, p.kind, mtimes[p.source]))
    return parts, bad


# ---------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------
def prediction_files(out: str | Path, stem: str, formats: str) -> list[Path]:
    """``OUT/STEM.json`` and/or ``OUT/STEM.csv`` for ``formats`` in json, csv, both."""
    suffixes = {"json": (".json",), "csv": (".csv",), "both": (".json", ".csv")}[formats]
    return [Path(out) / f"{stem}{s}" for s in suffixes]


def write_prediction_files(out: str | Path, stem: str, faces: Iterable, *, scheme: str,
                           method: str, formats: str = "json") -> list[Path]:
    """Write the faces as prediction files (the documented format), atomically."""
    from facemark.data.predictions import write_predictions

    faces = list(faces)
    return [write_predictions(p, faces, scheme=scheme, method=method)
            for p in prediction_files(out, stem, formats)]


def overlay_path(out: str | Path, inp_output: str, kind: str) -> Path:
    """``OUT/overlays/<output>``: the image's own suffix for PNG/JPEG, else ``.png``; ``.mp4``
    for videos and webcams."""
    rel = Path(inp_output)
    suffix = rel.suffix.lower()
    if kind in ("video", "webcam"):
        rel = rel.with_suffix(".mp4")
    elif suffix not in (".png", ".jpg", ".jpeg"):
        rel = rel.with_name(rel.name + ".png")
    return Path(out) / "overlays" / rel


def write_overlay_image(path: Path, rgb: np.ndarray, faces: Sequence, pose: bool = False) -> Path:
    """Draw ``faces`` on ``rgb`` (and their head pose axes with ``pose``) and write it
    (format by suffix), atomically."""
    return write_image(path, draw_faces(rgb, faces, pose=pose))


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB image (format by the suffix: .png, .jpg) atomically; DataError naming
    the file when it cannot be encoded or written."""
    import cv2

    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(Path(path).suffix, image)
    if not ok:
        raise DataError(path, "cannot encode the image")
    return atomic_write_bytes(path, data.tobytes())


def chip_paths(chips: str | Path, inp_output: str, count: int) -> list[Path]:
    """``CHIPS/<output without its suffix>_<k>.png`` for the ``count`` faces of one image
    (k from 0, in the order of the faces)."""
    rel = Path(inp_output)
    return [Path(chips) / rel.with_name(f"{rel.stem}_{k}.png") for k in range(count)]


def write_chips(chips: str | Path, inp_output: str, rgb: np.ndarray, faces: Sequence, *,
                size: int | None = None, padding: float | None = None,
                template: str = "arcface") -> list[Path]:
    """An aligned chip of every face (``facemark.inference.align.align``), one PNG each at
    :func:`chip_paths`, written atomically."""
    paths = chip_paths(chips, inp_output, len(faces))
    for path, face in zip(paths, faces):
        write_image(path, align(rgb, face, size=size, padding=padding, template=template))
    return paths


def video_output_path(out: str | Path, inp_output: str) -> Path:
    """``OUT/videos/<output>.json``: a video's own prediction file."""
    return Path(out) / "videos" / f"{inp_output}.json"

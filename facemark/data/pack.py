"""Pack labelled faces as small JPEG crops and a CSV landmark table, to train elsewhere.

A crop cache (:mod:`facemark.data.cache`) holds raw pixels: fast to read, but 110 KB per
face at 128 px with 1.5x context and 440 KB at 256 px. A pack holds the same crops as JPEG
files (about 17 KB per 300-W face at 256 px with 1.25x context, quality 85) and their
landmarks in crop pixels, in the layout the ``csv`` reader takes
(:mod:`facemark.data.formats.csv_table`)::

    OUT/NAME.csv          name, x0, y0, x1, y1, ... (0-based crop pixels), one row per face
    OUT/NAME/000000.jpg   the crops, in the dataset's order
    OUT/NAME.json         where they came from: dataset, scheme, size, context, crop rule

so a training config reads it as ``csv:OUT/NAME.csv`` on a machine without the original
images (a GPU machine that only the repository travels to). Each crop is the crop rule's
box enlarged ``context`` times about its centre, at ``round(size * context)`` pixels: the
crop rule applied again to the packed landmarks gives the same box inside the packed image,
so a config with the same ``data.crop_rule``, ``data.input_size`` = ``size`` and
``data.context`` <= ``context`` cuts the same crops as from the originals (resampled once
more, and JPEG-compressed).

Packs need landmark crop rules (the table has no face boxes) and fully annotated faces (the
CSV format cannot mark a missing point).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from facemark.data.cache import check_context, crop_sample
from facemark.data.crops import CropRule, get_crop_rule
from facemark.data.images import read_image
from facemark.data.sample import Sample
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, SkipLog
from facemark.io import atomic_write_text


@dataclasses.dataclass
class PackResult:
    """What :func:`pack_faces` wrote.

    Attributes:
        csv: the landmark table (``csv:`` + this path reads the pack).
        count: faces written.
        bytes: total size of the JPEG crops.
        skipped: messages of the faces left out (``skip_bad``).
    """

    csv: Path
    count: int
    bytes: int
    skipped: list[str]


def pack_faces(samples: Iterable[Sample], out_dir: str | Path, name: str, size: int = 256,
               rule: str | CropRule = "300w", context: float = 1.25, quality: int = 90,
               skip_bad: bool | SkipLog = False, progress: bool = True,
               overwrite: bool = False, source: str = "") -> PackResult:
    """Write ``samples`` as the pack ``out_dir/name`` (see the module docstring).

    Args:
        samples: labelled faces of one landmark scheme, every point annotated.
        out_dir: the folder that holds packs (created).
        name: the pack's name: ``NAME.csv``, ``NAME/``, ``NAME.json``.
        size: crop side S the pack is for, in pixels; images are ``round(S * context)``.
        rule: a landmark crop rule (name or CropRule).
        context: how many times the crop's side each image holds (1 to ``cache.MAX_CONTEXT``).
        quality: JPEG quality (1-100).
        skip_bad: False: raise the first DataError. True or a SkipLog: leave bad faces out
            and list them.
        progress: show a tqdm bar.
        overwrite: replace an existing pack of that name.
        source: a description of the dataset, kept in ``NAME.json``.

    Returns:
        a PackResult.

    Raises:
        ConfigError: a bad size, context, quality, name or rule (a box rule).
        DataError: a bad face (without skip_bad), an existing pack without overwrite, or
            no face left to write.
    """
    import cv2
    from tqdm import tqdm

    if not (isinstance(size, (int, np.integer)) and size > 0):
        raise ConfigError(f"pack size: expected a positive integer, got {size!r}")
    check_context(context, "pack context")
    if not (isinstance(quality, (int, np.integer)) and 1 <= quality <= 100):
        raise ConfigError(f"pack quality: expected an integer from 1 to 100, got {quality!r}")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ConfigError(f"pack name: expected a plain file name, got {name!r}")
    try:
        crop_rule = get_crop_rule(rule)
    except KeyError as e:
        raise ConfigError(f"crop rule: {e.args[0]}") from None
    if crop_rule.source == "box":
        raise ConfigError(f"crop rule {rule!r} cuts around face boxes, which a pack does not "
                          "keep: use a landmark rule (e.g. 300w)")
    cut_rule = dataclasses.replace(crop_rule, scale=crop_rule.scale * context)
    cut_size = int(round(size * context))
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    before = len(log.skipped)

    out_dir = Path(out_dir)
    csv_path, img_dir, meta_path = (out_dir / f"{name}.csv", out_dir / name,
                                    out_dir / f"{name}.json")
    if (csv_path.exists() or img_dir.exists()) and not overwrite:
        raise DataError(csv_path, "a pack of this name exists; choose another name or "
                                  "overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    samples = list(samples)
    scheme = None
    rows, total = [], 0
    decoded: dict[tuple, np.ndarray] = {}
    try:
        for sample in tqdm(samples, desc=f"packing {name}", unit="face", disable=not progress):
            where = sample.source or sample.image
            try:
                sch = get_scheme(sample.scheme)
                if scheme is None:
                    scheme = sch
                elif sch.name != scheme.name:
                    raise DataError(where, f"scheme {sch.name} differs from the pack's "
                                           f"{scheme.name}: pack one scheme at a time")
                if sample.landmarks is None or not np.isfinite(sample.landmarks).all():
                    raise DataError(where, "face without all its landmarks: a pack's CSV "
                                           "cannot mark a missing point")
                key = (sample.image, sample.frame)
                if key not in decoded:
                    decoded.clear()        # datasets list an image's faces together
                    decoded[key] = read_image(sample.image, sample.frame)
                crop, _, pts, _ = crop_sample(sample, decoded[key], cut_size, cut_rule)
            except DataError as e:
                log(e)
                continue
            file = f"{len(rows):06d}.jpg"
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise DataError(where, "JPEG encoding failed")
            (tmp / file).write_bytes(buf.tobytes())
            total += len(buf)
            rows.append(file + "," + ",".join(f"{v:.3f}" for v in pts.reshape(-1)))
        if not rows:
            first = log.skipped[before] if len(log.skipped) > before else "none"
            raise DataError(source or out_dir, f"no face to pack: all {len(samples)} were left "
                                               f"out (first: {first})")
        if img_dir.exists():
            shutil.rmtree(img_dir)
        os.replace(tmp, img_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    header = "," + ",".join(str(i) for i in range(2 * scheme.num_points))
    atomic_write_text(csv_path, "\n".join([header, *rows]) + "\n")
    skipped = [str(e) for e in log.skipped[before:]]
    atomic_write_text(meta_path, json.dumps({
        "source": source, "scheme": scheme.name, "count": len(rows), "size": int(size),
        "context": float(context), "image_size": cut_size, "quality": int(quality),
        "crop_rule": dataclasses.asdict(crop_rule), "skipped": skipped}, indent=1) + "\n")
    return PackResult(csv=csv_path, count=len(rows), bytes=total, skipped=skipped)


def read_list(path: str | Path) -> set[str]:
    """The image paths of a list file (one per line; blank lines and ``#`` comments
    ignored), resolved, for :func:`exclude_images`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(path, f"cannot read the list ({e.strerror or e})") from None
    base = path.resolve().parent
    out = set()
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.add(str((p if p.is_absolute() else base / p).resolve()))
    return out


def exclude_images(samples: list[Sample], images: set[str]) -> list[Sample]:
    """``samples`` without the faces whose image (resolved path) is in ``images``."""
    return [s for s in samples if str(Path(s.image).resolve()) not in images]

"""A folder of ready-cut face crops, so training never decodes a JPEG per step.

Layout of a cache folder (format version 1)::

    meta.json       format, version, scheme, size, crop rule, context, crop size, count,
                    source, creation info, skipped records (one message each)
    images.u8       raw uint8 memmap (M, S, S, 3), RGB
    landmarks.npy   float32 (M, N, 2) crop pixels, NaN where not annotated
    visible.npy     bool (M, N), False where occluded or not annotated
    affine.npy      float64 (M, 2, 3), image pixels -> crop pixels
    records.json    per crop: image, frame, source, attributes, box (the dataset's face box
                    or null), crop_box (the box that was cut), crop_from ("box"/"landmarks")

Crop pixel coordinates follow :mod:`facemark.data.crops`; normalised coordinates are
``(x + 0.5) / S``. A cache built with ``context`` c > 1 holds, around each model crop (the
crop rule's box, ``crop_size`` pixels), c times as much image: its crops are the rule's box
enlarged c times about its centre, ``round(crop_size * c)`` pixels a side, and
:meth:`CropCache.crop_region` is where the model crop lies in them. Augmentation that moves
or enlarges the box (detector-like jitter, shifts, zoom-out) then shows real image instead
of fill. A cache is written into ``<out>.tmp-<pid>`` and renamed into place only
when complete, with ``meta.json`` written last, so an interrupted build never leaves a
folder that opens as a cache.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facemark import __version__
from facemark.data.crops import CROP_RULES, CropRule, box_to_affine, crop_box, crop_face, \
    get_crop_rule, invert_affine, transform_points, warp_image
from facemark.data.images import read_image
from facemark.data.meanface import mean_face
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme
from facemark.errors import ConfigError, DataError, SkipLog

MAX_CONTEXT = 4.0   # largest data.context: a 4x stored crop is 16x the pixels of the crop
CACHE_FORMAT = "facemark-crop-cache"
CACHE_VERSION = 1
_FILES = ("meta.json", "images.u8", "landmarks.npy", "visible.npy", "affine.npy", "records.json")


def is_cache(path: str | Path) -> bool:
    """True if ``path`` is a folder holding a complete cache's ``meta.json``."""
    return (Path(path) / "meta.json").is_file()


class CropCache:
    """A crop cache opened for reading (use :meth:`open` or :func:`build_cache`).

    Attributes:
        path: the cache folder.
        meta: the parsed ``meta.json``.
        scheme: name of the landmark scheme of every crop (``landmark_scheme``: the object).
        size: crop side S in pixels.
        landmarks: float32 (M, N, 2) crop pixels, NaN where not annotated.
        visible: bool (M, N).
        affine: float64 (M, 2, 3) image -> crop.
        records: list of M dicts (see the module docstring).
    """

    def __init__(self, path: Path, meta: dict, landmarks: np.ndarray, visible: np.ndarray,
                 affine: np.ndarray, records: list[dict], rows: np.ndarray):
        self.path = Path(path)
        self.meta = meta
        self.landmarks = landmarks
        self.visible = visible
        self.affine = affine
        self.records = records
        self._rows = rows            # position in this (sub)cache -> row of images.u8
        self._images = None          # memmap, opened lazily (and again after pickling)

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path) -> "CropCache":
        """Open a cache folder; DataError naming the file if it is missing, broken or incomplete."""
        path = Path(path)
        if not path.is_dir():
            raise DataError(path, "crop cache folder not found")
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise DataError(path, "not a complete crop cache: no meta.json (an interrupted "
                                  "build? rebuild it with `facemark data cache`)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(meta_path, f"cannot parse ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise DataError(meta_path, f"expected format {CACHE_FORMAT!r}, got "
                                       f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
        if meta.get("version") != CACHE_VERSION:
            raise DataError(meta_path, f"cache format version {meta.get('version')!r}; this "
                                       f"facemark reads version {CACHE_VERSION}: rebuild the cache")
        for key in ("scheme", "size", "count"):
            if key not in meta:
                raise DataError(meta_path, f"missing key {key!r}")
        try:
            scheme = get_scheme(meta["scheme"])
        except KeyError as e:
            raise DataError(meta_path, e.args[0]) from None
        try:
            m, s = int(meta["count"]), int(meta["size"])
            if m < 0 or s <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(meta_path, f"count and size must be positive integers, got "
                                       f"{meta['count']!r} and {meta['size']!r}") from None
        n = scheme.num_points
        for name in _FILES[1:]:
            if not (path / name).is_file():
                raise DataError(path / name, "missing: the cache is incomplete, rebuild it")
        expected_bytes = m * s * s * 3
        got_bytes = (path / "images.u8").stat().st_size
        if got_bytes != expected_bytes:
            raise DataError(path / "images.u8", f"expected {expected_bytes} bytes for {m} crops "
                                                f"of {s}x{s}x3, got {got_bytes}")
        landmarks = _load_array(path / "landmarks.npy", (m, n, 2), np.float32)
        visible = _load_array(path / "visible.npy", (m, n), np.bool_)
        affine = _load_array(path / "affine.npy", (m, 2, 3), np.float64)
        try:
            records = json.loads((path / "records.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(path / "records.json", f"cannot parse ({e})") from None
        if not isinstance(records, list) or len(records) != m:
            got = len(records) if isinstance(records, list) else type(records).__name__
            raise DataError(path / "records.json", f"expected {m} records, got {got}")
        return cls(path, meta, landmarks, visible, affine, records, np.arange(m))

    # ----------------------------------------------------------------- access
    @property
    def scheme(self) -> str:
        """Canonical name of the landmark scheme (as ``Sample.scheme``)."""
        return str(self.meta["scheme"])

    @property
    def landmark_scheme(self) -> LandmarkScheme:
        """The :class:`LandmarkScheme` object of :attr:`scheme`."""
        return get_scheme(self.meta["scheme"])

    @property
    def size(self) -> int:
        """Side of the stored crops in pixels (``crop_size * context``, rounded)."""
        return int(self.meta["size"])

    @property
    def context(self) -> float:
        """How many times the model crop's side the stored crops cover (1: exactly the crop)."""
        return float(self.meta.get("context", 1.0))

    @property
    def crop_size(self) -> int:
        """Side of the model crop the cache was built for (``size`` when context is 1)."""
        return int(self.meta.get("crop_size", self.meta["size"]))

    def crop_region(self) -> np.ndarray:
        """float64 (4,) ``x1, y1, x2, y2``: the model crop's box in stored-crop pixels (box
        edges, as :func:`facemark.data.crops.box_to_affine` takes them). The whole stored crop
        ``(-0.5, -0.5, S - 0.5, S - 0.5)`` when context is 1."""
        s = self.size
        c = (s - 1) / 2.0
        half = s / self.context / 2.0
        return np.array([c - half, c - half, c + half, c + half], dtype=np.float64)

    @property
    def skipped(self) -> list[str]:
        """Messages of the records left out when the cache was built."""
        return list(self.meta.get("skipped", []))

    @property
    def images(self) -> np.ndarray:
        """The whole uint8 memmap (rows of the full cache; use :meth:`image` for a subset)."""
        if self._images is None:
            total = int(self.meta["count"])
            self._images = np.memmap(self.path / "images.u8", dtype=np.uint8, mode="r",
                                     shape=(total, self.size, self.size, 3))
        return self._images

    def image(self, i: int) -> np.ndarray:
        """Crop ``i`` as a read-only uint8 (S, S, 3) RGB view of the memmap."""
        return self.images[self._rows[i]]

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def labelled(self) -> np.ndarray:
        """bool (M,): True where a crop has at least one annotated landmark."""
        return np.isfinite(self.landmarks).all(axis=2).any(axis=1)

    def normalised_landmarks(self) -> np.ndarray:
        """float64 (M, N, 2) landmarks in normalised coordinates of the model crop, in [0, 1]
        inside it (``(x + 0.5) / S`` when context is 1; the crop region otherwise)."""
        return self.normalise(self.landmarks)

    def normalise(self, points: np.ndarray) -> np.ndarray:
        """float64 (..., 2): stored-crop pixels -> normalised coordinates of the model crop."""
        return transform_points(points, box_to_affine(self.crop_region(), 1)) + 0.5

    def model_crop_matrix(self) -> np.ndarray:
        """float64 (2, 3): stored-crop pixels -> model-crop pixels (``crop_size`` a side; the
        identity when context is 1)."""
        return box_to_affine(self.crop_region(), self.crop_size)

    def model_crop(self, i: int) -> np.ndarray:
        """Crop ``i`` as the model sees it without augmentation: uint8 (s, s, 3) RGB,
        s = ``crop_size``, cut out of the stored crop (the stored crop itself when context
        is 1). Points on it map back with ``invert_affine(model_crop_matrix())``."""
        image = self.image(i)
        if self.context == 1.0:
            return image
        return warp_image(image, self.model_crop_matrix(), self.crop_size)

    def mean_face(self) -> np.ndarray:
        """float64 (N, 2): :func:`facemark.data.meanface.mean_face` of the normalised
        landmarks (points not annotated in a crop are left out of their mean).

        Raises:
            DataError: some landmark is annotated in no crop (no mean exists for it).
        """
        pts = self.normalised_landmarks()
        counts = np.isfinite(pts).all(axis=2).sum(axis=0)
        if (counts == 0).any():     # checked here too, for an error that names the cache
            missing = [self.landmark_scheme.names[i] for i in np.flatnonzero(counts == 0)]
            raise DataError(self.path, f"no crop annotates landmark(s) {missing[:5]}"
                                       f"{' ...' if len(missing) > 5 else ''}; cannot compute a mean face")
        return mean_face(pts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "CropCache":
        """A view of some crops (indices into this cache, or a bool mask); images are shared."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {idx.shape} for a cache of {len(self)} crops")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices out of range for a cache of {len(self)} crops")
        idx = idx % max(len(self), 1)
        sub = CropCache(self.path, self.meta, self.landmarks[idx], self.visible[idx],
                        self.affine[idx], [self.records[i] for i in idx], self._rows[idx])
        sub._images = self._images
        return sub

    def to_image(self, i: int, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) crop pixels of crop ``i`` back to pixels of its original image."""
        return transform_points(points, invert_affine(self.affine[i]))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_images"] = None      # never pickle the memmap (it would copy every image)
        return state

    def __repr__(self) -> str:
        return (f"CropCache({str(self.path)!r}, {len(self)} crops, scheme={self.meta['scheme']}, "
                f"size={self.size})")


def _load_array(path: Path, shape: tuple[int, ...], dtype) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(path, f"cannot read array ({e})") from None
    if arr.shape != shape or arr.dtype != dtype:
        raise DataError(path, f"expected {np.dtype(dtype).name} array of shape {shape}, "
                              f"got {arr.dtype.name} {arr.shape}")
    return arr


def _rule_name(rule: str | CropRule) -> str | None:
    if isinstance(rule, str):
        return rule
    return next((k for k, v in CROP_RULES.items() if v == rule), None)


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """Refuse to clobber anything but an older cache (and only with overwrite)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder; choose another output path")
    if is_cache(out_dir):
        if not overwrite:
            raise DataError(out_dir, "a crop cache already exists here; pass overwrite=True "
                                     "(--overwrite) to replace it")
        return
    if any(out_dir.iterdir()):
        raise DataError(out_dir, "folder exists, is not empty and is not a crop cache; "
                                 "choose another output folder")


def check_context(context, what: str = "context") -> None:
    """ConfigError (``what: ...``) unless ``context`` is a number from 1 to MAX_CONTEXT: how
    many times the crop's side a stored crop holds (caches and packs)."""
    if isinstance(context, bool) or not isinstance(context, (int, float)) \
            or not 1.0 <= context <= MAX_CONTEXT:
        raise ConfigError(f"{what}: expected a number from 1 to {MAX_CONTEXT:g}, "
                          f"got {context!r}")


def build_cache(samples: Iterable[Sample], out_dir: str | Path, size: int = 256,
                rule: str | CropRule = "300w", skip_bad: bool | SkipLog = False,
                progress: bool = True, *, overwrite: bool = False, scheme: str | None = None,
                source: str = "", context: float = 1.0) -> CropCache:
    """Cut every sample into a square crop and write a cache folder.

    Each image is decoded once (with :func:`read_image`), even when several faces share it.

    Args:
        samples: the faces, all of one landmark scheme. Unlabelled samples (``landmarks``
            None) need a ``box``; their crop landmarks are all NaN.
        out_dir: the cache folder to create.
        size: crop side S in pixels.
        rule: crop rule name or CropRule (``facemark.data.crops.CROP_RULES``). A "box" rule
            uses the landmark box for samples without a face box (``crop_from`` in records).
        skip_bad: False: raise the first DataError. True or a SkipLog: skip bad samples, list
            them in ``meta.json`` ("skipped") and in the log.
        progress: show a tqdm bar.
        overwrite: replace an existing cache at ``out_dir``.
        scheme: the expected scheme name (else the first sample's).
        source: a description of where the samples came from, stored in meta.json.
        context: store this many times the crop's side around each crop (>= 1; the stored
            crops are ``round(size * context)`` pixels), for augmentation that moves the box.

    Returns:
        the new cache, opened.

    Raises:
        DataError: a bad sample (without skip_bad), an existing cache without overwrite, or
            no usable sample at all.
    """
    from tqdm import tqdm

    samples = list(samples)
    out_dir = Path(out_dir)
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    if not (isinstance(size, (int, np.integer)) and size > 0):
        raise ConfigError(f"cache size: expected a positive integer, got {size!r}")
    check_context(context, "cache context")
    try:
        crop_rule = get_crop_rule(rule)
    except KeyError as e:
        raise ConfigError(f"crop rule: {e.args[0]}") from None
    # the stored crop: the rule's box enlarged `context` times about the same centre
    cut_rule = dataclasses.replace(crop_rule, scale=crop_rule.scale * context)
    cut_size = int(round(size * context))
    try:
        sch = get_scheme(scheme) if scheme else (get_scheme(samples[0].scheme) if samples else None)
    except KeyError as e:
        raise ConfigError(f"scheme: {e.args[0]}") from None
    if sch is None:
        raise DataError(out_dir, "no samples to cache")
    _prepare(out_dir, overwrite)

    # how many samples still need each image, so each is decoded once and freed after use
    key_of = [(s.image, s.frame) for s in samples]
    remaining = Counter(key_of)
    decoded: dict[tuple, np.ndarray | DataError] = {}
    n_skipped_before = len(log.skipped)

    _remove_stale_builds(out_dir)
    tmp = out_dir.parent / f"{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        landmarks, visible, affines, records = [], [], [], []
        with open(tmp / "images.u8", "wb") as fimg, \
                tqdm(total=len(samples), desc="caching crops", unit="face", disable=not progress) as bar:
            for sample, key in zip(samples, key_of):
                bar.update(1)
                remaining[key] -= 1
                try:
                    if key not in decoded:
                        try:
                            decoded[key] = read_image(sample.image, sample.frame)
                        except DataError as e:
                            decoded[key] = e
                    image = decoded[key]
                    if remaining[key] == 0:
                        del decoded[key]
                    if isinstance(image, DataError):
                        raise image
                    crop, matrix, pts, vis, box, crop_from = _cut(sample, image, sch, cut_rule,
                                                                  cut_size)
                except DataError as e:
                    log(e)
                    continue
                fimg.write(np.ascontiguousarray(crop).tobytes())
                landmarks.append(pts)
                visible.append(vis)
                affines.append(matrix)
                records.append(dict(
                    image=sample.image, frame=sample.frame, source=sample.source,
                    attributes=_jsonable(sample.attributes),
                    box=None if sample.box is None else [float(v) for v in sample.box],
                    crop_box=[float(v) for v in box], crop_from=crop_from))
        skipped = [str(e) for e in log.skipped[n_skipped_before:]]
        count = len(records)
        if count == 0:
            raise DataError(out_dir, f"no usable samples: all {len(samples)} were skipped "
                                     f"(first: {skipped[0] if skipped else 'none'})")
        n = sch.num_points
        np.save(tmp / "landmarks.npy", np.asarray(landmarks, dtype=np.float32).reshape(count, n, 2))
        np.save(tmp / "visible.npy", np.asarray(visible, dtype=bool).reshape(count, n))
        np.save(tmp / "affine.npy", np.asarray(affines, dtype=np.float64).reshape(count, 2, 3))
        (tmp / "records.json").write_text(json.dumps(records))
        meta = dict(
            format=CACHE_FORMAT, version=CACHE_VERSION, scheme=sch.name, num_points=n,
            size=cut_size, crop_rule=dict(name=_rule_name(rule), **dataclasses.asdict(crop_rule)),
            context=float(context), crop_size=int(size), count=count, source=str(source), skipped=skipped,
            created=dict(time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), facemark=__version__,
                         host=platform.node(), python=platform.python_version(),
                         samples=len(samples)))
        with open(tmp / "meta.json", "w") as f:     # written last: marks the folder complete
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CropCache.open(out_dir)


def _remove_stale_builds(out_dir: Path) -> None:
    """Delete ``<out>.tmp-<pid>`` folders left by builds whose process no longer runs
    (killed with SIGKILL or a power cut: no ``finally`` ran). They never open as a cache."""
    if not out_dir.parent.is_dir():
        return
    for tmp in out_dir.parent.glob(f"{out_dir.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not tmp.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, OverflowError):
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:                  # PermissionError: alive, owned by someone else
            pass


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    _prepare(out_dir, overwrite)          # again: something may have appeared meanwhile
    old = None
    if out_dir.exists():
        if is_cache(out_dir):
            old = out_dir.parent / f"{out_dir.name}.old-{os.getpid()}"
            os.rename(out_dir, old)
        else:                              # an empty folder
            out_dir.rmdir()
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def crop_sample(sample: Sample, image: np.ndarray, size: int = 256,
                rule: str | CropRule = "300w") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut one face out of its decoded image exactly as :func:`build_cache` does.

    Args:
        sample: the face; ``image`` is its decoded RGB image (H, W, 3).
        size: crop side S; rule: crop rule name or CropRule.

    Returns:
        (crop uint8 (S, S, 3), affine float64 (2, 3) image -> crop, landmarks float32 (N, 2)
        crop pixels with NaN where not annotated, visible bool (N,)).

    Raises:
        DataError: naming the sample's source, if it cannot be cut.
    """
    where = sample.source or sample.image
    try:
        sch = get_scheme(sample.scheme)
    except KeyError as e:
        raise DataError(where, e.args[0]) from None
    try:
        crop_rule = get_crop_rule(rule)
    except KeyError as e:
        raise ConfigError(f"crop rule: {e.args[0]}") from None
    crop, matrix, pts, vis, _, _ = _cut(sample, image, sch, crop_rule, size)
    return crop, matrix, pts, vis


def _cut(sample: Sample, image: np.ndarray, sch: LandmarkScheme, rule: CropRule, size: int):
    """(crop, matrix, crop landmarks, visible, crop box, crop_from) of one sample."""
    where = sample.source or sample.image
    try:
        sample_scheme = get_scheme(sample.scheme).name
    except KeyError as e:
        raise DataError(where, e.args[0]) from None
    if sample_scheme != sch.name:
        raise DataError(where, f"scheme {sample.scheme!r} differs from the cache's {sch.name!r}; "
                               "build one cache per landmark scheme")
    lm = sample.landmarks
    n = sch.num_points
    if lm is not None:
        if lm.shape != (n, 2):
            raise DataError(where, f"expected {n} landmarks for scheme {sch.name}, got {len(lm)}")
        if np.isinf(lm).any():
            raise DataError(where, "infinite landmark coordinate")
    has_points = lm is not None and bool(np.isfinite(lm).all(axis=1).any())
    if not has_points and sample.box is None:
        what = "unlabelled sample" if lm is None else "sample with no annotated landmark"
        raise DataError(where, f"{what} and no face box: cannot crop it (give boxes, e.g. "
                               "from a face detector)")
    use_box = sample.box is not None and (rule.source == "box" or not has_points)
    if use_box and rule.source != "box":
        rule = dataclasses.replace(rule, source="box")
    try:
        box = crop_box(rule, landmarks=lm if has_points else None,
                       box=sample.box if use_box else None)
    except ValueError as e:
        raise DataError(where, str(e)) from None
    if not (np.isfinite(box).all() and box[2] - box[0] > 1 and box[3] - box[1] > 1):
        raise DataError(where, f"degenerate crop box {np.round(box, 2).tolist()} (face box "
                               f"{None if sample.box is None else sample.box.tolist()})")
    crop, matrix = crop_face(image, box, size)
    if sample.landmarks is None:
        pts = np.full((n, 2), np.nan, np.float32)
    else:
        pts = transform_points(sample.landmarks, matrix).astype(np.float32)
    annotated = np.isfinite(pts).all(axis=1)
    pts[~annotated] = np.nan
    if sample.visible is not None:
        if sample.visible.shape != (n,):
            raise DataError(where, f"expected {n} visibility flags, got {len(sample.visible)}")
        vis = sample.visible & annotated
    else:
        vis = annotated
    return crop, matrix, pts, vis, box, ("box" if use_box else "landmarks")


def _jsonable(value):
    """Attributes as plain JSON (numpy scalars and arrays converted)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

"""COFW (Burgos-Artizzu et al., "Robust face landmark estimation under occlusion", ICCV 2013).

The release is four MATLAB files, 1345 training and 507 test faces, 29 points each:

* ``COFW_train.mat`` / ``COFW_test.mat``: grey images (MATLAB v7, read with scipy);
* ``COFW_train_color.mat`` / ``COFW_test_color.mat``: colour images (MATLAB v7.3, i.e.
  HDF5, read with h5py; the reader falls back to h5py for any file scipy cannot read).

Variables (``Tr`` in the training files, ``T`` in the test files):

* ``IsTr`` / ``IsT``: N x 1 cell of uint8 images (H x W grey or H x W x 3 RGB);
* ``phisTr`` / ``phisT``: N x 87 doubles: 29 x, then 29 y, then 29 occlusion flags
  (1 = occluded; the position is still annotated);
* ``bboxesTr`` / ``bboxesT``: N x 4 face boxes ``x, y, w, h``.

MATLAB coordinates are 1-based, so the reader subtracts 1 from the points and from the
box corner (box ``x1, y1 = x - 1, y - 1`` and ``x2, y2 = x1 + w, y1 + h``).

The images are embedded in the ``.mat`` file. The reader writes each one once, as a PNG
named ``NNNN.png`` (1-based record number), into a cache folder: the ``extract_to=``
option, by default ``<mat folder>/<mat stem>_images/``. An existing PNG of the right size
is reused, so reading again costs no writes; samples point at these PNGs.

:class:`MatFile` (MATLAB v5/v7/v7.3 variables in MATLAB's orientation) is shared with the
COFW-68 and AFLW readers.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from facemark.data.formats._common import lookup_scheme
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("extract_to",)
DEFAULT_SCHEME = "cofw29"
#: (image cell, shape matrix, box matrix) variable names of the two halves of COFW.
VARIABLES = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}


# ---------------------------------------------------------------------------------------
# MATLAB files
# ---------------------------------------------------------------------------------------
#: MAT v5 data types (miINT8 .. miUTF32); 8, 10 and 11 are reserved.
_MI_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 18})


def v5_tag_problem(path: Path) -> str | None:
    """What is malformed in a MAT v5 file's data element tags, or None (also for files
    that are not v5: the caller's reader judges those).

    scipy.io.loadmat (1.17) reads a tag's size without checking it, so a corrupt tag (a
    "small" element claiming more than 4 bytes, an element running past its container)
    can crash the interpreter with a segmentation fault instead of raising. Every tag,
    inside compressed elements and nested matrices (cells, structs) too, is checked here
    first. Costs one extra decompression of compressed variables.
    """
    import mmap
    import zlib
    with open(path, "rb") as f:
        head = f.read(128)
        if len(head) < 128 or head[126:128] not in (b"IM", b"MI") or \
                head[124:126] not in (b"\x00\x01", b"\x01\x00"):
            return None
        order = "little" if head[126:128] == b"IM" else "big"
        if f.seek(0, 2) == 128:
            return None
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def walk(data, pos: int, end: int, depth: int) -> str | None:
        while pos < end:
            if end - pos < 8:
                return f"truncated data element tag at byte {pos}" if any(data[pos:end]) else None
            tag = int.from_bytes(data[pos:pos + 4], order)
            if tag >> 16:   # small element: type and size (1..4 bytes) in one word
                if (tag & 0xFFFF) not in _MI_TYPES - {14, 15} or (tag >> 16) > 4:
                    return f"bad small data element tag {tag:#x} at byte {pos}"
                pos += 8
                continue
            size = int.from_bytes(data[pos + 4:pos + 8], order)
            body = pos + 8
            if tag not in _MI_TYPES:
                return f"unknown data type {tag} at byte {pos}"
            if body + size > end:
                return f"data element at byte {pos} runs past its end ({size} bytes)"
            if tag == 15:
                if depth:
                    return f"nested compressed element at byte {pos}"
                try:
                    inner = zlib.decompressobj().decompress(data[body:body + size])
                except zlib.error as e:
                    return f"corrupt compressed element at byte {pos} ({e})"
                problem = walk(inner, 0, len(inner), depth + 1)
                if problem:
                    return f"in the compressed element at byte {pos}: {problem}"
                pos = body + size
                continue
            if tag == 14 and size:
                problem = walk(data, body, body + size, depth + 1)
                if problem:
                    return problem
            pos = body + size + (-size % 8)
        return None

    try:
        return walk(buf, 128, len(buf), 0)
    finally:
        buf.close()


class MatFile:
    """Read variables of a MATLAB ``.mat`` file, any version, in MATLAB's orientation.

    Versions 5/7 are read with ``scipy.io.loadmat``; version 7.3 files (HDF5) with h5py
    when scipy raises NotImplementedError. Whatever the backend, a numeric N x M MATLAB
    matrix comes back as an (N, M) array, an H x W x 3 image as (H, W, 3), a char array as
    ``str`` and a cell array as a lazy sequence (elements are converted, and for HDF5 read,
    only when indexed), in MATLAB's column-major element order.

    Args:
        path: the ``.mat`` file.

    Raises:
        DataError: the file is missing or is not a MATLAB file, naming the path.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "MATLAB file not found")
        self._h5 = None
        self._names: list[str]
        try:
            import scipy.io
            problem = v5_tag_problem(self.path)
            if problem:
                raise ValueError(problem)
            self._names = [n for n, _, _ in scipy.io.whosmat(str(self.path))]
            self.version = "5"
        except NotImplementedError:
            self._open_hdf5()
        except Exception as e:  # scipy raises ValueError, TypeError, struct.error, ... on junk
            if self._looks_hdf5():
                self._open_hdf5()
            else:
                raise DataError(self.path, f"cannot read MATLAB file ({e.__class__.__name__}: "
                                           f"{e}); expected a MATLAB v5/v7/v7.3 .mat") from None

    def _looks_hdf5(self) -> bool:
        with open(self.path, "rb") as f:
            head = f.read(520)
        return b"\x89HDF\r\n\x1a\n" in (head[:8], head[512:520])

    def _open_hdf5(self) -> None:
        import h5py
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise DataError(self.path, f"cannot read MATLAB v7.3 (HDF5) file ({e})") from None
        self._names = [n for n in self._h5.keys() if not n.startswith("#")]
        self.version = "7.3"

    def __enter__(self) -> "MatFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    @property
    def names(self) -> list[str]:
        """Variable names in the file."""
        return list(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def get(self, name: str):
        """A variable converted as described in the class docstring; DataError if absent."""
        if name not in self._names:
            have = ", ".join(self._names) or "none"
            raise DataError(self.path, f"missing variable {name!r} (variables in the file: {have})")
        try:
            if self._h5 is not None:
                return _from_hdf5(self._h5, self._h5[name])
            import scipy.io
            value = scipy.io.loadmat(str(self.path), variable_names=[name])[name]
            return _from_scipy(value)
        except DataError:
            raise
        except Exception as e:
            raise DataError(self.path, f"cannot read variable {name!r} "
                                       f"({e.__class__.__name__}: {e})") from None

    def matrix(self, name: str, columns: int | None = None) -> np.ndarray:
        """A numeric 2-D variable as float64 (rows, cols); checks the column count."""
        value = self.get(name)
        if isinstance(value, (str, _Cell)):
            raise DataError(self.path, f"variable {name!r}: expected a numeric matrix, got "
                                       f"{'text' if isinstance(value, str) else 'a cell array'}")
        value = np.asarray(value)
        if value.ndim != 2 or (columns is not None and value.shape[1] != columns):
            want = f"N x {columns}" if columns is not None else "a 2-D matrix"
            raise DataError(self.path, f"variable {name!r}: expected {want}, got shape "
                                       f"{' x '.join(map(str, value.shape))}")
        if value.dtype.kind not in "biuf":
            raise DataError(self.path, f"variable {name!r}: expected numbers, got {value.dtype}")
        return value.astype(np.float64)

    def cell(self, name: str) -> "_Cell":
        """A cell-array variable as a lazy sequence of its elements."""
        value = self.get(name)
        if not isinstance(value, _Cell):
            raise DataError(self.path, f"variable {name!r}: expected a cell array")
        return value


class _Cell:
    """Elements of a MATLAB cell array, converted when indexed."""

    def __init__(self, items, convert, shape_of):
        self._items = items
        self._convert = convert
        self._shape_of = shape_of

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int):
        return self._convert(self._items[i])

    def shape(self, i: int) -> tuple[int, ...]:
        """MATLAB shape of element ``i`` without reading its data."""
        return self._shape_of(self._items[i])


def _from_scipy(value):
    if isinstance(value, np.ndarray) and value.dtype == object:
        return _Cell(list(value.ravel(order="F")), _from_scipy, lambda v: np.shape(v))
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return "".join(value.ravel().tolist())
    return value


def _from_hdf5(h5, node):
    import h5py
    cls = node.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"unsupported MATLAB class {cls or 'struct'!r}")
    if node.attrs.get("MATLAB_empty", 0):
        return np.zeros((0, 0))
    if node.dtype == h5py.ref_dtype or cls == "cell":
        refs = list(node[()].T.ravel())  # stored transposed: .T restores MATLAB's order
        return _Cell(refs, lambda ref: _from_hdf5(h5, h5[ref]),
                     lambda ref: tuple(reversed(h5[ref].shape)))
    data = node[()]
    if cls == "char":
        return "".join(map(chr, np.asarray(data).T.ravel()))
    return np.asarray(data).T  # HDF5 holds MATLAB arrays with the axes reversed


def variable_names(path: Path) -> list[str]:
    """Variable names of a ``.mat`` file, or [] if it is not one (for ``sniff``)."""
    try:
        with MatFile(path) as mat:
            return mat.names
    except (DataError, OSError):
        return []


# ---------------------------------------------------------------------------------------
# Embedded images
# ---------------------------------------------------------------------------------------
def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None if the file is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def as_image(value, mat: Path, name: str, record: int) -> np.ndarray:
    """Check one embedded image (uint8, H x W or H x W x 3); DataError naming the record."""
    if isinstance(value, (str, _Cell)) or not isinstance(value, np.ndarray):
        raise DataError(mat, f"{name}: expected an image array, got "
                             f"{type(value).__name__}", record)
    if value.dtype != np.uint8:
        raise DataError(mat, f"{name}: expected a uint8 image, got {value.dtype}", record)
    if value.ndim == 3 and value.shape[2] == 1:
        value = value[:, :, 0]
    if not (value.ndim == 2 or (value.ndim == 3 and value.shape[2] == 3)) or 0 in value.shape:
        raise DataError(mat, f"{name}: expected H x W or H x W x 3 image, got shape "
                             f"{' x '.join(map(str, value.shape))}", record)
    return value


def extract_image(cell: _Cell, index: int, mat: Path, name: str, folder: Path) -> Path:
    """Write image ``index`` (0-based) of a cell once as ``folder/NNNN.png``; returns its path.

    An existing PNG with the same width and height is kept (it was written by an earlier
    read). The write goes to a temporary name first, so an interrupted run leaves no
    half-written PNG behind.
    """
    target = folder / f"{index + 1:04d}.png"
    size = _png_size(target)
    if size is not None and tuple(cell.shape(index)[1::-1]) == size:
        return target
    image = as_image(cell[index], mat, name, index + 1)
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise DataError(mat, f"{name}: cannot encode image as PNG", index + 1)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data.tofile(str(tmp))
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(folder, f"cannot write extracted images ({e.__class__.__name__}: {e}); "
                                "pass extract_to=DIR") from None
    return target


def default_extract_folder(mat: Path) -> Path:
    return mat.parent / f"{mat.stem}_images"


# ---------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------


def _split_of(names) -> str | None:
    for split, (images, shapes, boxes) in VARIABLES.items():
        if images in names and shapes in names:
            return split
    return None


def sniff(path: Path) -> bool:
    """A ``.mat`` file holding ``IsTr`` + ``phisTr`` or ``IsT`` + ``phisT``."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == ".mat"):
        return False
    return _split_of(variable_names(path)) is not None


def read(path, *, scheme: str | None = None, on_error=raise_error,
         extract_to: str | Path | None = None, **unknown) -> list[Sample]:
    """Read a COFW ``.mat`` file (train or test, grey or colour).

    Args:
        path: ``COFW_{train,test}[_color].mat``.
        scheme: landmark scheme (default ``cofw29``).
        on_error: called with a DataError (file and 1-based record) for each bad face.
        extract_to: folder for the extracted PNGs (default ``<mat stem>_images/`` next to
            the ``.mat``).

    Returns:
        one Sample per face, in file order: landmarks (29, 2) float32 0-based, ``visible``
        False where occluded, ``box`` x1, y1, x2, y2, ``attributes["split"]``; ``source``
        is ``"<mat>:<record>"`` (1-based).
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format cofw: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    path = Path(path)
    sch = _scheme(scheme)
    folder = Path(extract_to) if extract_to is not None else default_extract_folder(path)
    with MatFile(path) as mat:
        split = _split_of(mat.names)
        if split is None:
            found = ", ".join(mat.names) or "none"
            raise DataError(path, "not a COFW file: expected variables IsTr + phisTr + bboxesTr "
                                  f"or IsT + phisT + bboxesT, found {found}")
        images_name, shapes_name, boxes_name = VARIABLES[split]
        p = sch.num_points
        shapes = mat.matrix(shapes_name, columns=3 * p)
        boxes = mat.matrix(boxes_name, columns=4)
        images = mat.cell(images_name)
        if not (len(images) == len(shapes) == len(boxes)):
            raise DataError(path, f"{images_name}, {shapes_name} and {boxes_name} differ in "
                                  f"length: {len(images)}, {len(shapes)}, {len(boxes)}")
        samples = []
        for i in range(len(shapes)):
            try:
                points, visible, box = _face(path, i + 1, shapes[i], boxes[i], p,
                                             shapes_name, boxes_name)
                image = extract_image(images, i, path, images_name, folder)
            except DataError as e:
                on_error(e)
                continue
            samples.append(Sample(image=str(image), landmarks=points, scheme=sch.name, box=box,
                                  visible=visible, attributes={"split": split},
                                  source=f"{path}:{i + 1}"))
    return samples


def _face(path: Path, record: int, row: np.ndarray, box: np.ndarray, p: int,
          shapes_name: str, boxes_name: str):
    """Check one face; (points (p, 2) 0-based, visible (p,), box x1 y1 x2 y2) or DataError."""
    if not np.isfinite(row).all():
        cols = np.flatnonzero(~np.isfinite(row)) + 1
        raise DataError(path, f"{shapes_name}: non-finite value in column(s) "
                              f"{', '.join(map(str, cols[:5]))}", record)
    occluded = row[2 * p:]
    if not np.isin(occluded, (0.0, 1.0)).all():
        bad = sorted(set(occluded.tolist()) - {0.0, 1.0})[:3]
        raise DataError(path, f"{shapes_name}: occlusion flags (columns {2 * p + 1}-{3 * p}) "
                              f"must be 0 or 1, got {bad}", record)
    if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        raise DataError(path, f"{boxes_name}: expected x, y, w, h with w, h > 0, got "
                              f"{box.tolist()}", record)
    points = np.stack([row[:p], row[p:2 * p]], axis=1) - 1.0
    x1, y1 = box[0] - 1.0, box[1] - 1.0
    return points, occluded == 0, np.array([x1, y1, x1 + box[2], y1 + box[3]])


def _scheme(name) -> LandmarkScheme:
    return lookup_scheme(name, DEFAULT_SCHEME)

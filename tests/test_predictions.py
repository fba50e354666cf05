"""The prediction file: round trips, atomic writes, errors naming file and line, matching."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from facemark.data.sample import Sample
from facemark.errors import DataError
from facemark.data.predictions import (PredictedFace, PredictionSet, assign_predictions,
                                             match_predictions, read_predictions,
                                             write_predictions)

N = 68


def _pts(seed: int, centre=(100.0, 100.0), size=50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-size / 2, size / 2, (N, 2)) + centre


def _faces() -> list[PredictedFace]:
    return [
        PredictedFace("afw/1.jpg", _pts(0), box=[1, 2, 30, 40], score=0.9,
                      point_scores=np.linspace(0, 1, N)),
        PredictedFace("afw/2.jpg", _pts(1)),
        PredictedFace("vids/001.avi", _pts(2), frame=17, score=0.5),
    ]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip_keeps_every_field(tmp_path, suffix):
    path = write_predictions(tmp_path / f"p{suffix}", _faces(), "300w68", "toy")
    back = read_predictions(path)
    assert (back.scheme, back.method, back.path, len(back)) == ("300w68", "toy", str(path), 3)
    for a, b in zip(_faces(), back.faces):
        assert (a.image, a.frame, a.score) == (b.image, b.frame, b.score)
        np.testing.assert_allclose(b.points, a.points, atol=1e-4)
        if a.box is None:
            assert b.box is None
        else:
            np.testing.assert_allclose(b.box, a.box)
        if a.point_scores is None:
            assert b.point_scores is None
        else:
            np.testing.assert_allclose(b.point_scores, a.point_scores, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == [f"p{suffix}"]   # no temporary left


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (2, N, 2), elements=st.floats(-1e4, 1e4, allow_nan=False)),
       st.sampled_from([".json", ".csv"]))
def test_round_trip_property(tmp_path_factory, points, suffix):
    path = tmp_path_factory.mktemp("rt") / f"p{suffix}"
    faces = [PredictedFace(f"img{i}.png", points[i]) for i in range(2)]
    back = read_predictions(write_predictions(path, faces, "300w68", "m"))
    np.testing.assert_allclose(np.stack([f.points for f in back.faces]), points, atol=5.1e-5)


ODD_NAMES = ["line\nbreak.jpg", "dos\r\nbreak.jpg", "cr\ronly.jpg", "a,b.jpg", 'say "hi".jpg',
             "end\n", "\nstart.jpg", "# not a comment.jpg", "tab\tand\u00e9.jpg"]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip_keeps_odd_image_names(tmp_path, suffix):
    """Issue 12: a newline in an image name broke the CSV (quoted cells with line breaks)."""
    faces = [PredictedFace(name, _pts(i), frame=i if i % 2 else None)
             for i, name in enumerate(ODD_NAMES)]
    path = write_predictions(tmp_path / f"p{suffix}", faces, "300w68", "two\nlines",
                             root=str(tmp_path / "r\noot"))
    back = read_predictions(path)
    assert [f.image for f in back.faces] == ODD_NAMES
    assert [f.frame for f in back.faces] == [f.frame for f in faces]
    assert back.method == "two\nlines" and back.root == str(tmp_path / "r\noot")
    for a, b in zip(faces, back.faces):
        np.testing.assert_allclose(b.points, a.points, atol=1e-4)


def test_csv_quotes_names_with_line_breaks_and_numbers_lines_by_file(tmp_path):
    faces = [PredictedFace("a\nb.jpg", _pts(0)), PredictedFace("c.jpg", _pts(1))]
    path = write_predictions(tmp_path / "p.csv", faces, "300w68", "m")
    text = path.read_bytes().decode()
    assert '"a\nb.jpg",' in text and "\nc.jpg," in text
    # an error on the row after the two-line name names the file line it is on
    bad = text.replace("\nc.jpg,,", "\nc.jpg,,abc", 1)
    path.write_bytes(bad.encode())
    line = bad.split("\n").index(next(t for t in bad.split("\n") if t.startswith("c.jpg"))) + 1
    with pytest.raises(DataError, match=rf"p\.csv:{line}: column x0: expected a number"):
        read_predictions(path)
    path.write_bytes(text.replace('"a\nb.jpg"', '"a\nb.jpg', 1).encode())  # quote never closed
    with pytest.raises(DataError, match=r"p\.csv"):
        read_predictions(path)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
                .filter(lambda t: t.strip(" \t") == t and t.strip()), min_size=1, max_size=3))
def test_csv_round_trip_any_image_name(tmp_path_factory, names):
    path = tmp_path_factory.mktemp("names") / "p.csv"
    faces = [PredictedFace(n, _pts(i)) for i, n in enumerate(names)]
    assert [f.image for f in read_predictions(write_predictions(path, faces, "300w68")).faces] \
        == names


def test_json_layout_is_documented_shape(tmp_path):
    path = write_predictions(tmp_path / "p.json", _faces()[:1], "ibug68", "toy")
    doc = json.loads(path.read_text())
    assert doc["format"] == "facemark.predictions" and doc["version"] == 1
    assert doc["scheme"] == "300w68"                       # aliases are resolved
    face = doc["faces"][0]
    assert set(face) == {"image", "frame", "box", "score", "points", "point_scores"}
    assert len(face["points"]) == N and len(face["points"][0]) == 2


def test_csv_layout_and_header(tmp_path):
    path = write_predictions(tmp_path / "p.csv", _faces(), "300w68", "toy")
    lines = path.read_text().splitlines()
    assert lines[1] == "# scheme: 300w68" and lines[2] == "# method: toy"
    header = lines[3].split(",")
    assert header[:4] == ["image", "frame", "x0", "y0"] and header[2 + 2 * N - 1] == f"y{N - 1}"
    assert "score" in header and "box_x1" in header and "s0" in header
    row = lines[5].split(",")                                 # afw/2.jpg: no optional values
    assert row[0] == "afw/2.jpg" and row[1] == "" and row[header.index("score")] == ""


def test_root_makes_paths_relative_and_is_honoured_when_matching(tmp_path):
    root = tmp_path / "data"
    (root / "afw").mkdir(parents=True)
    face = PredictedFace(str(root / "afw" / "1.jpg"), _pts(0))
    path = write_predictions(tmp_path / "p.json", [face], "300w68", "m", root=root)
    back = read_predictions(path)
    assert back.faces[0].image == "afw/1.jpg" and back.root == str(root)
    sample = Sample(image=str(root / "afw" / "1.jpg"), landmarks=_pts(0), scheme="300w68")
    _, found = match_predictions(back, [sample])
    assert found.tolist() == [True]


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = write_predictions(tmp_path / "p.json", _faces(), "300w68", "old")
    before = path.read_text()
    bad = [PredictedFace("x.jpg", np.full((N, 2), np.nan))]
    with pytest.raises(ValueError, match="points must be finite"):
        write_predictions(path, bad, "300w68", "new")
    with pytest.raises(ValueError, match="expected 68 points, got 5"):
        write_predictions(path, [PredictedFace("x.jpg", np.zeros((5, 2)))], "300w68", "new")
    assert path.read_text() == before
    with pytest.raises(ValueError, match="end in .json or .csv"):
        write_predictions(tmp_path / "p.txt", _faces(), "300w68")


# ---------------------------------------------------------------------------------------
# Errors name the file and the line / record
# ---------------------------------------------------------------------------------------
def _json_file(tmp_path, faces, **top):
    doc = {"format": "facemark.predictions", "version": 1, "scheme": "300w68", "method": "m",
           "faces": faces, **top}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    return path


def test_json_errors(tmp_path):
    with pytest.raises(DataError, match="prediction file not found"):
        read_predictions(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "facemark.predictions",\n "version": 1,\n "faces": [,]}')
    with pytest.raises(DataError, match=r"bad\.json:3: not valid JSON"):
        read_predictions(bad)
    good = {"image": "a.jpg", "points": _pts(0).tolist()}
    with pytest.raises(DataError, match=r'"format": "facemark.predictions", got \'other\''):
        read_predictions(_json_file(tmp_path, [good], format="other"))
    with pytest.raises(DataError, match="unsupported prediction file version 7"):
        read_predictions(_json_file(tmp_path, [good], version=7))
    with pytest.raises(DataError, match="unknown landmark scheme 'nope'"):
        read_predictions(_json_file(tmp_path, [good], scheme="nope"))
    short = {"image": "b.jpg", "points": _pts(0)[:67].tolist()}
    with pytest.raises(DataError, match=r"p\.json: faces\[1\]: expected 136 coordinates "
                                        r"\(68 points x 2, scheme 300w68\), got 134"):
        read_predictions(_json_file(tmp_path, [good, short]))
    nan = {"image": "b.jpg", "points": [[None, 1]] * N}
    with pytest.raises(DataError, match=r"faces\[0\]: coordinates .* must be"):
        read_predictions(_json_file(tmp_path, [nan]))
    with pytest.raises(DataError, match=r'faces\[0\]: missing key "image"'):
        read_predictions(_json_file(tmp_path, [{"points": good["points"]}]))
    with pytest.raises(DataError, match=r"faces\[0\]: frame must be null or an integer"):
        read_predictions(_json_file(tmp_path, [{**good, "frame": -2}]))
    with pytest.raises(DataError, match="predictions are in scheme '300w68', expected 'wflw98'"):
        read_predictions(_json_file(tmp_path, [good]), scheme="wflw98")


def test_json_error_line_for_our_own_layout(tmp_path):
    path = write_predictions(tmp_path / "p.json", _faces(), "300w68", "m")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"frame": null', '"frame": "x"')   # the second face
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"p\.json:3: faces\[1\]: frame must be"):
        read_predictions(path)


def _csv(tmp_path, text: str):
    path = tmp_path / "p.csv"
    path.write_text(text)
    return path


def _row(name="a.jpg", frame="", n=N, value="1.5"):
    return ",".join([name, frame] + [value] * (2 * n))


def _header(n=N, extra=""):
    return "image,frame," + ",".join(f"x{i},y{i}" for i in range(n)) + extra


def test_csv_errors(tmp_path):
    head = _header()
    with pytest.raises(DataError, match=r"p\.csv:3: expected 138 columns as in the header, got 137"):
        read_predictions(_csv(tmp_path, f"{head}\n{_row()}\n{_row()[:-4]}\n"))
    with pytest.raises(DataError, match=r"p\.csv:2: column x0: expected a number, got 'abc'"):
        read_predictions(_csv(tmp_path, f"{head}\n" + _row().replace("1.5", "abc", 1) + "\n"))
    with pytest.raises(DataError, match=r"p\.csv:2: .*must be finite"):
        read_predictions(_csv(tmp_path, f"{head}\n" + _row().replace("1.5", "nan", 1) + "\n"))
    with pytest.raises(DataError, match=r"p\.csv:1: unknown column 'conf'"):
        read_predictions(_csv(tmp_path, f"{_header(extra=',conf')}\n{_row()},1\n"))
    with pytest.raises(DataError, match=r"p\.csv:1: header has no 'image' column"):
        read_predictions(_csv(tmp_path, head.replace("image", "file") + "\n"))
    with pytest.raises(DataError, match=r"p\.csv:3: frame must be empty or an integer"):
        read_predictions(_csv(tmp_path, f"# scheme: 300w68\n{head}\n{_row(frame='x')}\n"))
    with pytest.raises(DataError, match=r"no single scheme has 3 points"):
        read_predictions(_csv(tmp_path, f"{_header(3)}\n{_row(n=3)}\n"))
    with pytest.raises(DataError, match=r"p\.csv:1: box columns must be all of"):
        read_predictions(_csv(tmp_path, f"{_header(extra=',box_x1')}\n{_row()},1\n"))
    with pytest.raises(DataError, match="no header row"):
        read_predictions(_csv(tmp_path, "# scheme: 300w68\n"))


def test_csv_scheme_from_comment_or_point_count(tmp_path):
    back = read_predictions(_csv(tmp_path, f"{_header()}\n{_row(frame='3')}\n\n"))
    assert back.scheme == "300w68" and back.faces[0].frame == 3 and back.method == ""
    with pytest.raises(DataError, match=r"p\.csv:2: scheme wflw98 has 98 points, the header "
                                        r"has columns for 68"):
        read_predictions(_csv(tmp_path, f"# scheme: wflw98\n{_header()}\n{_row()}\n"))


# ---------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------
def _sample(image, seed, frame=None, centre=(100.0, 100.0)):
    return Sample(image=image, landmarks=_pts(seed, centre), scheme="300w68", frame=frame)


def test_match_by_relative_path_name_and_frame():
    samples = [_sample("/data/300w/afw/1.jpg", 0), _sample("/data/300w/helen/1.jpg", 1),
               _sample("/data/vw/001.avi", 2, frame=5), _sample("/data/vw/001.avi", 3, frame=6),
               _sample("/data/300w/afw/9.jpg", 4)]
    pset = PredictionSet(faces=[
        PredictedFace("helen/1.jpg", _pts(11)),                 # relative path
        PredictedFace("afw/1.jpg", _pts(10)),
        PredictedFace("/elsewhere/vw/001.avi", _pts(13), frame=6),   # other machine: by name
        PredictedFace("/elsewhere/vw/001.avi", _pts(12), frame=99),  # no such frame: unused
    ], scheme="300w68", method="m")
    assert assign_predictions(pset, samples).tolist() == [1, 0, -1, 2, -1]
    pred, found = match_predictions(pset, samples)
    assert found.tolist() == [True, True, False, True, False]
    np.testing.assert_array_equal(pred[0], _pts(10))
    assert np.isnan(pred[2]).all() and np.isnan(pred[4]).all()


def test_several_faces_in_one_image_pair_by_nearest_centroid():
    samples = [_sample("/d/group.jpg", 0, centre=(100, 100)),
               _sample("/d/group.jpg", 1, centre=(400, 100))]
    pset = PredictionSet(faces=[
        PredictedFace("group.jpg", _pts(5, centre=(395, 104))),   # near the second face
        PredictedFace("group.jpg", _pts(6, centre=(700, 700))),   # a false detection
        PredictedFace("group.jpg", _pts(7, centre=(104, 97))),    # near the first face
    ], scheme="300w68")
    assert assign_predictions(pset, samples).tolist() == [2, 0]
    # with one prediction only the nearest face gets it; the other is missing
    one = PredictionSet(faces=[pset.faces[0]], scheme="300w68")
    assert assign_predictions(one, samples).tolist() == [-1, 0]


def test_a_prediction_of_another_face_is_no_prediction():
    """Rule 4: the only face found in an image is someone else (no overlap with the
    annotated face): the annotated face is missing, not matched with a huge error."""
    samples = [_sample("/d/crowd.jpg", 0, centre=(100, 100))]
    other = PredictionSet(faces=[PredictedFace("crowd.jpg", _pts(1, centre=(600, 500)))],
                          scheme="300w68")
    assert assign_predictions(other, samples).tolist() == [-1]
    near = PredictionSet(faces=[PredictedFace("crowd.jpg", _pts(1, centre=(104, 97)))],
                         scheme="300w68")
    assert assign_predictions(near, samples).tolist() == [0]


def test_ambiguous_names_and_scheme_mismatch_raise():
    samples = [_sample("/d/a/1.jpg", 0), _sample("/d/b/1.jpg", 1)]
    pset = PredictionSet(faces=[PredictedFace("1.jpg", _pts(0))], scheme="300w68",
                         path="preds.json")
    with pytest.raises(DataError, match=r"preds\.json: predicted image '1\.jpg' matches several "
                                        r"dataset images"):
        assign_predictions(pset, samples)
    # full paths remove the ambiguity
    pset.faces = [PredictedFace("a/1.jpg", _pts(0)), PredictedFace("b/1.jpg", _pts(1))]
    assert assign_predictions(pset, samples).tolist() == [0, 1]
    # two predicted folders that both only share the file name with the sample
    pset.faces = [PredictedFace("/x/p/1.jpg", _pts(0)), PredictedFace("/x/q/1.jpg", _pts(1))]
    with pytest.raises(DataError, match=r"image d/a/1\.jpg matches several predicted images"):
        assign_predictions(pset, samples[:1])
    wrong = PredictionSet(faces=[], scheme="300w68", path="p.json")
    wflw = Sample(image="/d/x.jpg", landmarks=np.zeros((98, 2)), scheme="wflw98")
    with pytest.raises(DataError, match="p.json: predictions are in scheme '300w68' but the "
                                        "dataset's faces are 'wflw98'"):
        assign_predictions(wrong, [wflw])


def test_from_samples_builds_one_face_per_sample():
    samples = [_sample("/d/1.jpg", 0), _sample("/d/v.avi", 1, frame=4)]
    pset = PredictionSet.from_samples(samples, np.stack([_pts(0), _pts(1)]), "m")
    assert [(f.image, f.frame) for f in pset.faces] == [("/d/1.jpg", None), ("/d/v.avi", 4)]
    pred, found = match_predictions(pset, samples)
    assert found.all() and np.allclose(pred[1], _pts(1))
    with pytest.raises(ValueError, match=r"shape \(2, N, 2\)"):
        PredictionSet.from_samples(samples, np.zeros((3, N, 2)), "m")

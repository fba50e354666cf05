"""benchmarks/average_predictions.py: the face-by-face mean of prediction files."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facemark.data.predictions import PredictedFace, PredictionSet, read_predictions, write_predictions

_spec = importlib.util.spec_from_file_location(
    "average_predictions",
    Path(__file__).resolve().parents[1] / "benchmarks" / "average_predictions.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def _set(tmp_path, name, offset, images=("a.jpg", "b.jpg")):
    rng = np.random.default_rng(0)
    faces = [PredictedFace(image=str(tmp_path / im), points=rng.random((68, 2)) * 100 + offset)
             for im in images]
    path = tmp_path / f"{name}.json"
    write_predictions(path, PredictionSet(faces=faces, scheme="300w68", method=name))
    return path


def test_mean_of_two_files_round_trips(tmp_path):
    a, b = _set(tmp_path, "a", 0.0), _set(tmp_path, "b", 4.0)
    out = tmp_path / "mean.json"
    assert script.main([str(a), str(b), "--out", str(out)]) == 0
    got = read_predictions(out)
    want = read_predictions(a)
    assert len(got) == 2 and got.scheme == "300w68"
    for g, w in zip(got.faces, want.faces):
        assert g.image == w.image
        np.testing.assert_allclose(g.points, w.points + 2.0, atol=1e-3)


def test_files_of_other_faces_are_refused(tmp_path, capsys):
    a = _set(tmp_path, "a", 0.0)
    b = _set(tmp_path, "b", 0.0, images=("a.jpg", "c.jpg"))
    assert script.main([str(a), str(b), "--out", str(tmp_path / "m.json")]) == 1
    assert "face 1" in capsys.readouterr().err
    assert script.main([str(a), str(tmp_path / "none.json"), "--out", str(tmp_path / "m.json")]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(a), "--out", str(tmp_path / "m.json")])

"""The bundled "accurate" model (160 px, issue #9): it loads by name from the API and the
CLI with both engines, carries its detector calibrations, and is accurate on held-out 300-W
faces (../shared/data where present)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import facemark
from facemark.api import bundled_models

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BUNDLED = bundled_models().get("accurate", {})
needs_model = pytest.mark.skipif(".pt" not in BUNDLED, reason="no bundled accurate model")


@needs_model
def test_loads_by_name_with_both_engines():
    # the two engines' agreement on a real face: test_default_model.py, for every bundled model
    assert set(BUNDLED) == {".pt"} and BUNDLED[".pt"].stat().st_size <= 15 * 2 ** 20
    for engine in ("torch", "onnx"):
        lm = facemark.load("accurate", engine=engine)
        assert lm.info_.input_size == 160 and lm.scheme_.name == "300w68"
        assert {"dlib_hog", "opencv_haar"} <= set(lm.calibrations_)
        # its first pass only places the second crop, on 128 px crops (docs/results.md)
        assert lm.refine_ == 1 and lm.first_pass_size_ == 128
        assert lm.first_engine_.input_size == 128


@needs_model
def test_cli_takes_it_by_name(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "facemark", "detect", "--sample", "--model",
                           "accurate", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "grace_hopper.jpg: 1 face" in proc.stdout


@needs_model
@pytest.mark.shared_data
def test_accuracy_on_held_out_lfpw_test_faces():
    folder = SHARED / "300w" / "lfpw" / "testset"
    if not folder.is_dir():
        pytest.skip("../shared/data/300w/lfpw/testset is absent")
    from facemark.data.formats import open_dataset
    from facemark.evaluation.metrics import nme

    samples = open_dataset(f"pts:{folder}")[::8]            # 28 of the 224 test faces
    lm = facemark.load("accurate")
    errors = []
    for s in samples:
        centre = s.landmarks.mean(axis=0)
        faces = lm.detect(s.image)
        best = min(faces, key=lambda f: np.linalg.norm(f.points.mean(0) - centre), default=None)
        errors.append(np.inf if best is None else
                      float(nme(best.points[None], s.landmarks[None], "300w68")[0]))
    errors = np.array(errors)
    found = np.isfinite(errors)
    assert found.mean() > 0.9
    # all 224 faces with `facemark detect --model accurate`: 3.17% (docs/model-card.md);
    # the default model 3.28%, the first default 4.53%
    print(f"accurate on {len(samples)} LFPW test faces: NME {np.mean(errors[found]):.4f}")
    assert np.mean(errors[found]) < 0.040


def test_list_models_names_each_bundled_model(capsys, monkeypatch):
    from facemark.cli import main

    assert main(["detect", "--list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, size in (("default", 128), ("accurate", 160)):
        if name in bundled_models():
            line = next(x for x in lines if x.startswith(name))
            assert f"{size} px crops" in line and "300w68, 68 points" in line
            assert ("(the first at 128 px)" in line) == (name == "accurate")
    if "default" in bundled_models():
        assert lines[0].startswith("default (used without --model)")
    monkeypatch.setattr("facemark.inference.model_path.bundled_models", lambda: {})
    assert main(["detect", "--list-models"]) == 0
    assert "no model is bundled" in capsys.readouterr().out

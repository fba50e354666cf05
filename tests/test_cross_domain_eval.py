"""Cross-domain evaluation (issue 10, section 3): a 68-point model on WFLW (98 -> 68) and
COFW-68 from ``facemark evaluate``, with ``--convert-to`` and the GSL crops (``--crop-rule
gsl``). Tiny synthetic datasets in the benchmarks' own layouts, the bundled model, and the
real WFLW samples of ../shared/data/samples/mmpose where present."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facemark.cli import main
from facemark.data.convert import convert_landmarks, convert_samples
from facemark.data.crops import CROP_RULES, crop_box, gsl_crop_rule
from facemark.data.formats import open_dataset
from facemark.data.sample import Sample
from facemark.errors import ConfigError
from facemark.evaluation.cross_domain import convert_dataset, resolve_crop_rule
from facemark.data.predictions import PredictionSet, write_predictions
from synthetic import make_cofw68_dataset, make_wflw_dataset

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "facemark" / "weights" / "default.pt"
MMPOSE_WFLW = ROOT / ".." / "shared" / "data" / "samples" / "mmpose" / "wflw" / "test_wflw.json"
needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no bundled model")


@pytest.fixture(scope="module")
def wflw(tmp_path_factory) -> str:
    root = make_wflw_dataset(tmp_path_factory.mktemp("WFLW"), n_train=1, n_test=3, size=128)
    lst = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / \
        "list_98pt_rect_attr_test.txt"
    return f"wflw:{lst}"


@pytest.fixture(scope="module")
def cofw68(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("cofw")
    ann = make_cofw68_dataset(base / "COFW68", base / "COFW", n=3, size=128)
    return f"cofw68:{ann}?images={base / 'COFW' / 'COFW_test_color.mat'}"


# ---------------------------------------------------------------------------------------
# Data layer: converted samples, GSL crop rules
# ---------------------------------------------------------------------------------------
def test_convert_samples_converts_points_and_visibility_and_keeps_the_rest(wflw):
    samples = open_dataset(wflw)
    samples[0].visible = np.ones(98, bool)
    samples[0].visible[60] = False                     # WFLW right outer eye corner
    out = convert_samples(samples, "300w68")
    assert [s.scheme for s in out] == ["300w68"] * 3
    for s, c in zip(samples, out):
        np.testing.assert_allclose(c.landmarks, convert_landmarks(s.landmarks, "wflw98", "300w68"),
                                   atol=1e-4)
        assert c.image == s.image and np.array_equal(c.box, s.box)
        assert c.attributes == {**s.attributes, "converted_from": "wflw98"}
        assert s.scheme == "wflw98" and s.landmarks.shape == (98, 2)      # inputs unchanged
    vis = out[0].visible
    assert vis.shape == (68,) and not vis[36] and vis.sum() == 67    # only eye_r_00 uses it
    assert out[1].visible is None
    same = [Sample("a.png", np.zeros((68, 2)), "300w68")]
    assert convert_samples(same, "300w68")[0] is same[0]
    with pytest.raises(ValueError, match="no landmark conversion"):
        convert_samples(samples, "cofw29")


def test_gsl_crop_rules_follow_the_paper():
    assert gsl_crop_rule("wflw", "wflw98") == "wflw68"
    assert gsl_crop_rule("coco", "wflw98") == "wflw68"        # WFLW in another file format
    assert gsl_crop_rule("cofw68", "300w68") == "cofw68"
    assert gsl_crop_rule("pts", "300w68") == "cross"
    box = np.array([10.0, 20.0, 110.0, 120.0])
    # WFLW-68: the top 20% of the given box goes (centre y 70 -> 80), then x1.2, square
    np.testing.assert_allclose(crop_box("wflw68", box=box), [0.0, 20.0, 120.0, 140.0])
    np.testing.assert_allclose(crop_box("cofw68", box=box), [-5.0, 5.0, 125.0, 135.0])
    pts = np.array([[10.0, 20.0], [110.0, 120.0]])
    np.testing.assert_allclose(crop_box("cross", landmarks=pts), [-5.0, 5.0, 125.0, 135.0])
    assert CROP_RULES["cross"].source == "landmarks" and CROP_RULES["cofw68"].source == "box"


def test_resolve_crop_rule_and_convert_dataset(wflw, cofw68):
    assert resolve_crop_rule(None, wflw, None, "wflw98") == (None, [])
    assert resolve_crop_rule("300w", wflw, None, "wflw98") == ("300w", [])
    rule, notes = resolve_crop_rule("gsl", wflw, None, "wflw98")
    assert rule == "wflw68" and "top 20% cut" in notes[0]
    assert resolve_crop_rule("gsl", cofw68, None, "300w68")[0] == "cofw68"
    with pytest.raises(ConfigError, match="gsl"):
        resolve_crop_rule("nope", wflw, None, "wflw98")
    samples, notes = convert_dataset(open_dataset(wflw), "300w68")
    assert samples[0].scheme == "300w68" and "wflw98 to 300w68" in notes[0]
    assert convert_dataset(samples, None) == (samples, [])
    with pytest.raises(ConfigError, match="--convert-to: .*unknown"):
        convert_dataset(samples, "no-such-scheme")
    with pytest.raises(ConfigError, match="--convert-to cofw29: no landmark conversion"):
        convert_dataset(open_dataset(wflw), "cofw29")


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------
def test_cli_evaluates_a_68_point_file_on_wflw_converted(wflw, tmp_path, capsys):
    samples = convert_samples(open_dataset(wflw), "300w68")
    pset = PredictionSet.from_samples(samples, np.stack([s.landmarks for s in samples]),
                                      method="perfect", scheme="300w68")
    pred = write_predictions(tmp_path / "perfect.json", pset)
    out = tmp_path / "out"
    assert main(["evaluate", str(pred), "--data", wflw, "--convert-to", "300w68",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scheme"] == "300w68" and report["count"] == 3
    assert any("converted from wflw98 to 300w68" in n for n in report["notes"])
    text = capsys.readouterr().out
    assert "converted from wflw98 to 300w68" in text
    row = [line for line in text.splitlines() if line.startswith("perfect")][0]
    assert float(row.split()[1]) == pytest.approx(0.0, abs=1e-3)


def test_cli_bad_conversion_is_one_line(wflw, capsys):
    assert main(["evaluate", "meanface", "--train", wflw, "--data", wflw,
                 "--convert-to", "aflw19"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--convert-to aflw19" in err[0] and "known conversions" in err[0]


@needs_model
def test_cli_model_on_wflw_needs_conversion_and_says_how(wflw, capsys):
    assert main(["evaluate", str(DEFAULT_MODEL), "--data", wflw]) == 2
    err = capsys.readouterr().err
    assert "predicts scheme 300w68 but the dataset is wflw98" in err
    assert "--convert-to 300w68" in err


@needs_model
@pytest.mark.parametrize("kind", ["wflw", "cofw68"])
def test_cli_model_on_wflw68_and_cofw68_with_gsl_crops(kind, wflw, cofw68, tmp_path):
    data = wflw if kind == "wflw" else cofw68
    out = tmp_path / "out"
    assert main(["evaluate", f"m={DEFAULT_MODEL}", "--data", data, "--convert-to", "300w68",
                 "--crop-rule", "gsl", "--out", str(out), "--save-predictions"]) == 0
    report = json.loads((out / "report.json").read_text())
    rule = "wflw68" if kind == "wflw" else "cofw68"
    assert any(f"crop rule '{rule}'" in n for n in report["notes"])
    assert report["count"] == 3 and report["scheme"] == "300w68"
    faces = json.loads((out / "predictions" / "m.json").read_text())["faces"]
    assert len(faces) == 3 and all(len(f["points"]) == 68 for f in faces)
    converted = any("converted from" in n for n in report["notes"])
    assert converted == (kind == "wflw")          # COFW-68 is 68 points already


@needs_model
def test_real_wflw_samples_evaluate_as_wflw68(tmp_path, capsys):
    if not MMPOSE_WFLW.is_file():
        pytest.skip(f"real samples not found at {MMPOSE_WFLW}")
    out = tmp_path / "out"
    assert main(["evaluate", f"default={DEFAULT_MODEL}", "--data", str(MMPOSE_WFLW),
                 "--convert-to", "300w68", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scheme"] == "300w68" and report["count"] == 4
    text = capsys.readouterr().out
    row = [line for line in text.splitlines() if line.startswith("default ")][0]
    assert float(row.split()[1]) < 10.0             # % (about 6.3 with its own 300w crops)

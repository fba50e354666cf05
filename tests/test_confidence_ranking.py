"""Per-landmark confidence ranks errors on real faces (issue 10, section 4).

The bundled default model on the 300-W LFPW test faces, cropped from the ground truth as
``facemark evaluate`` does: the Spearman correlation between each point's confidence and
its normalised error must be -0.3 or stronger. Also: the exported ONNX graph returns the
same confidence as PyTorch on real crops, and the measure itself on constructed data.
Skipped when ../shared/data is absent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facemark.cli import main
from facemark.data.formats import open_dataset
from facemark.evaluation.confidence import binned, confidence_errors, ranking
from facemark.data.predictions import read_predictions

ROOT = Path(__file__).resolve().parents[1]
LFPW_TEST = ROOT / ".." / "shared" / "data" / "300w" / "lfpw" / "testset"
DEFAULT_MODEL = ROOT / "facemark" / "weights" / "default.pt"
THRESHOLD = -0.3


def _need_data():
    if not LFPW_TEST.is_dir():
        pytest.skip(f"real data not found at {LFPW_TEST} (../shared/data next to the repository)")
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no bundled model at {DEFAULT_MODEL}")


def test_ranking_measure_on_constructed_data():
    rng = np.random.default_rng(0)
    err = rng.random((50, 6))
    r = ranking(1.0 - err, err)                       # confidence = a decreasing function
    assert r["per_point"] == pytest.approx(-1.0)
    assert r["per_landmark"] == pytest.approx(-1.0) and r["per_face"] == pytest.approx(-1.0)
    r = ranking(rng.random((50, 6)), err)             # unrelated confidence
    assert abs(r["per_point"]) < 0.2
    rows = binned(1.0 - err, err, bins=5)
    assert [r["count"] for r in rows] == [60] * 5
    assert rows[0]["mean_error"] > rows[-1]["mean_error"]


def test_confidence_ranks_errors_on_lfpw_test(tmp_path, capsys):
    """Through the CLI: evaluate --save-predictions, then score the saved file."""
    _need_data()
    out = tmp_path / "eval"
    assert main(["evaluate", f"default={DEFAULT_MODEL}", "--data", str(LFPW_TEST),
                 "--out", str(out), "--save-predictions"]) == 0
    samples = open_dataset(LFPW_TEST)
    pset = read_predictions(out / "predictions" / "default.json", scheme=samples[0].scheme)
    conf, nerr = confidence_errors(pset, samples)
    assert conf.shape == nerr.shape == (len(samples), 68)
    assert np.all((conf >= 0) & (conf <= 1))
    r = ranking(conf, nerr)
    print(f"Spearman per point {r['per_point']:+.3f}, per face {r['per_face']:+.3f}")
    assert r["per_point"] <= THRESHOLD
    assert r["per_face"] < 0
    rows = binned(conf, nerr, bins=5)
    assert rows[0]["mean_error"] > rows[-1]["mean_error"]   # least confident fifth is worst


def test_onnx_export_returns_the_same_confidence_on_real_crops(tmp_path):
    _need_data()
    pytest.importorskip("onnxruntime")
    from facemark.models.crop_predict import iter_crops
    from facemark.inference.export import check_parity, export_onnx, ort_session
    from facemark.models.model_file import load_model

    model, info = load_model(DEFAULT_MODEL)
    path = export_onnx(model, tmp_path / "default.onnx", info=info)
    samples = open_dataset(LFPW_TEST)[:8]
    _, crops, _ = next(iter_crops(samples, crop_rule=info.crop_rule, input_size=info.input_size,
                                  batch_size=8))
    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / 255
    diffs = check_parity(ort_session(path, threads=1), model.float().eval(), images)
    assert diffs["confidence"] <= 1e-4

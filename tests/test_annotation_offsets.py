"""benchmarks/annotation_offsets.py: the mean signed error of a set's faces."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facemark.data.schemes import get_scheme

_spec = importlib.util.spec_from_file_location(
    "annotation_offsets",
    Path(__file__).resolve().parents[1] / "benchmarks" / "annotation_offsets.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_offset_scale_and_what_removing_the_offset_gives():
    """Predictions = labels scaled 2% about their centre, moved 1.5 crop px right and 0.5
    up, plus noise: the offset and the scale come back, and removing the offset lowers the
    NME to about that of the noise and the scale alone."""
    scheme = get_scheme("300w68")
    rng = np.random.default_rng(0)
    size = 128
    true = (rng.normal(0.5, 0.12, size=(200, scheme.num_points, 2))).astype(np.float64)
    centre = true.mean(axis=1, keepdims=True)
    noise = rng.normal(0.0, 0.004, size=true.shape)
    shift = np.array([1.5, -0.5]) / size
    pred = centre + 1.02 * (true - centre) + shift + noise
    r = script.offsets(pred, true, scheme, size)
    assert r["faces"] == 200
    assert r["shift_px"] == pytest.approx([1.5, -0.5], abs=0.02)
    assert r["scale_pct"] == pytest.approx(2.0, abs=0.1)
    plain = script.offsets(centre + 1.02 * (true - centre) + noise, true, scheme, size)
    assert r["nme_without"] < r["nme"]
    assert r["nme_without"] == pytest.approx(plain["nme"], rel=0.01)
    # NaN labels (unannotated points) are left out, not propagated
    true[0, 3] = np.nan
    assert np.isfinite(script.offsets(pred, true, scheme, size)["nme"])

"""A scheme file whose points are all points of a built-in scheme is that scheme's subset:
facemark.data.convert converts to it by name (experiments/sepbn_shared/ytf24.yaml)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facemark.data.convert import (can_convert, convert_landmarks, convert_samples,
                                   get_conversion, subset_conversion)
from facemark.data.sample import Sample
from facemark.data.schemes import get_scheme

SEVEN = """name: subset_test7
names: [eye_r_00, eye_l_03, nose_bridge_03, lip_outer_00, lip_outer_06, brow_r_02, brow_l_02]
mirror: [[eye_r_00, eye_l_03], [lip_outer_00, lip_outer_06], [brow_r_02, brow_l_02]]
outer_eye_corners: [eye_r_00, eye_l_03]
"""


@pytest.fixture
def seven(tmp_path):
    path = tmp_path / "seven.yaml"
    path.write_text(SEVEN)
    return get_scheme(path)


def test_subset_scheme_copies_the_points_of_the_same_name(seven):
    pts = np.arange(136, dtype=np.float32).reshape(68, 2)
    out = convert_landmarks(pts, "300w68", seven)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pts[[36, 45, 30, 48, 54, 19, 24]])
    assert can_convert("300w68", seven) and get_conversion("300w68", seven) is \
        subset_conversion("300w68", seven)                      # built once per pair
    assert "7 of the 68 300w68 points" in get_conversion("300w68", seven).description


def test_subset_conversion_of_samples_keeps_missing_points_missing(seven):
    pts = np.arange(136, dtype=np.float32).reshape(68, 2)
    pts[45] = np.nan
    visible = np.ones(68, bool)
    visible[30] = False
    s = Sample(image="a.jpg", landmarks=pts, scheme="300w68", visible=visible)
    (out,) = convert_samples([s], seven)
    assert out.scheme == "subset_test7" and out.attributes["converted_from"] == "300w68"
    assert np.isnan(out.landmarks[1]).all() and np.isfinite(out.landmarks[[0, 2]]).all()
    assert out.visible.tolist() == [True, True, False, True, True, True, True]


def test_only_a_user_subset_of_one_built_in_scheme_is_converted_to(seven, tmp_path):
    assert subset_conversion(seven, "300w68") is None          # no way back
    assert subset_conversion("wflw98", seven) is None          # brow_r_02 is not a wflw98 name
    assert subset_conversion("300w68", "300w68") is None
    assert not can_convert("cofw29", seven)
    with pytest.raises(ValueError, match="no landmark conversion from 'cofw29'"):
        get_conversion("cofw29", seven)
    # every name is in 300w68 and in wflw98, where eye_l_03 is a lid point: neither converts
    path = tmp_path / "both.yaml"
    path.write_text(SEVEN.replace("subset_test7", "subset_test_both").replace(", brow_r_02, brow_l_02]", ", jaw_08]")
                    .replace(", [brow_r_02, brow_l_02]", ""))
    both = get_scheme(path)
    assert not can_convert("300w68", both) and not can_convert("wflw98", both)


def test_analyze_oracle_converts_the_ground_truth(seven, tmp_path, capsys):
    from synthetic import make_pts_dataset

    from facemark.cli import main
    from facemark.models import create_model
    from facemark.models.model_file import ModelInfo, save_model

    torch.manual_seed(0)
    model = create_model("coordnet", num_points=7, backbone="vanilla", input_size=64,
                         pool="avg", hidden=[], norm_layer="sepbn_brute_k2")
    info = ModelInfo(scheme=seven.name, input_size=64, crop_rule="300w", model_config={})
    path = save_model(model, info, tmp_path / "brute7.pt")
    data = make_pts_dataset(tmp_path / "faces", n=3)
    assert main(["analyze", "oracle", str(path), "--data", str(data)]) == 2   # 68 vs 7 points
    capsys.readouterr()
    assert main(["analyze", "oracle", str(path), "--data", str(data),
                 "--convert-to", str(tmp_path / "seven.yaml")]) == 0
    text = capsys.readouterr().out
    assert "ground truth converted from 300w68 to subset_test7" in text and "ORACLE" in text


def test_meanface_is_fitted_on_training_faces_converted_like_the_test_faces(seven, tmp_path,
                                                                           capsys):
    from synthetic import make_pts_dataset

    from facemark.cli import main

    train = make_pts_dataset(tmp_path / "train", n=4, seed=1)
    data = make_pts_dataset(tmp_path / "test", n=3, seed=2)
    assert main(["evaluate", "meanface", "--train", str(train), "--data", str(data),
                 "--convert-to", str(tmp_path / "seven.yaml")]) == 0
    out = capsys.readouterr().out
    assert "meanface" in out and "subset_test7" in out

"""Metrics against values worked out by hand, NaN handling, exact AUC, subsets, mean face."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facemark.data.meanface import mean_face
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme
from facemark.evaluation import metrics as m
from facemark.evaluation.meanface import MeanFaceBaseline

# A 4-point toy scheme: the eyes are single points, so inter-ocular = inter-pupil.
TOY = LandmarkScheme(
    name="toy4", names=("eye_r", "eye_l", "nose", "mouth"), mirror=(("eye_r", "eye_l"),),
    regions={"eyes": ("eye_r", "eye_l"), "rest": ("nose", "mouth")}, nme_norm="inter_ocular",
    outer_eye_corners=("eye_r", "eye_l"), eye_contours=(("eye_r",), ("eye_l",)))
# 6 points with two-point eye contours, to tell inter-ocular from inter-pupil.
TOY6 = LandmarkScheme(
    name="toy6", names=("eye_r_out", "eye_r_in", "eye_l_in", "eye_l_out", "nose", "mouth"),
    mirror=(("eye_r_out", "eye_l_out"), ("eye_r_in", "eye_l_in")), regions={},
    nme_norm="inter_ocular", outer_eye_corners=("eye_r_out", "eye_l_out"),
    eye_contours=(("eye_r_out", "eye_r_in"), ("eye_l_in", "eye_l_out")))

NAN = np.nan


def three_faces():
    """The worked example used by several tests.

    Face A: eyes 100 px apart; every point predicted off by (3, 4) -> error 5 each.
            NME = 5 / 100 = 0.05.
    Face B: eyes 200 px apart; only the nose is off, by (6, 8) -> error 10.
            NME = (0 + 0 + 10 + 0) / 4 / 200 = 0.0125.
    Face C: eyes 50 px apart; the mouth is not annotated (NaN, ignored);
            eye_r off by (0, 12) -> 12, eye_l exact, nose off by (9, 12) -> 15.
            NME = (12 + 0 + 15) / 3 / 50 = 0.18.
    """
    gt = np.array([
        [[0, 0], [100, 0], [50, 50], [50, 80]],
        [[0, 0], [200, 0], [100, 100], [100, 160]],
        [[0, 0], [50, 0], [25, 25], [NAN, NAN]],
    ], dtype=float)
    pred = gt.copy()
    pred[0] += (3, 4)
    pred[1, 2] += (6, 8)
    pred[2, 0] += (0, 12)
    pred[2, 2] += (9, 12)
    pred[2, 3] = (30, 40)              # a prediction for an unannotated point: ignored
    return pred, gt


def test_point_errors_hand_values():
    pred, gt = three_faces()
    err = m.point_errors(pred, gt)
    np.testing.assert_allclose(err[0], [5, 5, 5, 5])
    np.testing.assert_allclose(err[1], [0, 0, 10, 0])
    np.testing.assert_allclose(err[2, :3], [12, 0, 15])
    assert np.isnan(err[2, 3])         # not annotated -> NaN, not 50


def test_nme_fr_auc_summary_hand_values():
    pred, gt = three_faces()
    nmes = m.nme(pred, gt, TOY)
    np.testing.assert_allclose(nmes, [0.05, 0.0125, 0.18])
    # FR@0.1: only face C (0.18) fails -> 1/3
    assert m.failure_rate(nmes, 0.1) == pytest.approx(1 / 3)
    # AUC@0.1 = mean(clip(1 - e/0.1, 0, 1)) = (0.5 + 0.875 + 0) / 3
    assert m.auc(nmes, 0.1) == pytest.approx(1.375 / 3)
    # at 0.05 face A sits exactly on the threshold: not a failure (NME > t fails)
    assert m.failure_rate(nmes, 0.05) == pytest.approx(1 / 3)
    s = m.summarize(nmes, 0.1)
    assert s == pytest.approx({"nme": 0.2425 / 3, "fr": 1 / 3, "auc": 1.375 / 3,
                               "count": 3, "missing": 0, "excluded": 0})


def test_per_landmark_nme_hand_values():
    pred, gt = three_faces()
    # normalised errors: A [.05 .05 .05 .05], B [0 0 .05 0], C [.24 0 .3 NaN]
    expected = [(0.05 + 0 + 0.24) / 3, 0.05 / 3, (0.05 + 0.05 + 0.3) / 3, 0.05 / 2]
    np.testing.assert_allclose(m.per_landmark_nme(pred, gt, TOY), expected)


def test_point_var_hand_values():
    pred, gt = three_faces()
    pv = m.point_var(pred, gt, TOY)
    # A: every error vector is (3, 4)/100: all equal -> variance 0 (a pure shift).
    assert pv[0] == pytest.approx(0.0, abs=1e-15)
    # B: d = 0, 0, (0.03, 0.04), 0; mean (0.0075, 0.01);
    # squared deviations 3 * 0.00015625 + 0.00140625 = 0.001875; / 4 points
    assert pv[1] == pytest.approx(0.00046875)
    # C: d = (0, .24), (0, 0), (.18, .24) over 3 annotated points; mean (.06, .16)
    # sq dev: (.06^2 + .08^2) + (.06^2 + .16^2) + (.12^2 + .08^2) = .01 + .0292 + .0208
    assert pv[2] == pytest.approx(0.06 / 3)


def test_missing_prediction_is_a_failure_and_counted():
    pred, gt = three_faces()
    pred[1] = NAN                      # face B: no prediction
    nmes = m.nme(pred, gt, TOY)
    assert np.isinf(nmes[1]) and nmes[0] == pytest.approx(0.05)
    s = m.summarize(nmes, 0.1)
    assert s["missing"] == 1 and s["count"] == 3
    assert s["nme"] == pytest.approx((0.05 + 0.18) / 2)   # mean over faces with a prediction
    assert s["fr"] == pytest.approx(2 / 3)                # B counts as a failure
    assert s["auc"] == pytest.approx(0.5 / 3)             # and adds nothing to the AUC
    assert np.isnan(m.point_var(pred, gt, TOY)[1])
    # a missing face does not poison the per-landmark means
    assert np.isfinite(m.per_landmark_nme(pred, gt, TOY)).all()


def test_partly_missing_prediction_is_inf():
    pred, gt = three_faces()
    pred[0, 3] = NAN                   # one annotated point has no prediction
    assert np.isinf(m.nme(pred, gt, TOY)[0])


def test_unscorable_faces_are_excluded():
    pred, gt = three_faces()
    gt[0, 1] = NAN                     # an outer eye corner not annotated: no distance
    gt[1] = NAN                        # no annotated point at all
    nmes = m.nme(pred, gt, TOY)
    assert np.isnan(nmes[0]) and np.isnan(nmes[1]) and nmes[2] == pytest.approx(0.18)
    s = m.summarize(nmes, 0.1)
    assert s["excluded"] == 2 and s["count"] == 1 and s["fr"] == 1.0
    assert np.isnan(m.summarize([NAN], 0.1)["nme"])


def test_normalizing_distances():
    gt = np.array([[[0, 0], [30, 0], [70, 0], [100, 0], [50, 40], [50, 90]]], dtype=float)
    assert m.normalizing_distance(gt, TOY6, "inter_ocular")[0] == pytest.approx(100)
    # pupils = contour centroids (15, 0) and (85, 0)
    assert m.normalizing_distance(gt, TOY6, "inter_pupil")[0] == pytest.approx(70)
    gt_nan = gt.copy()
    gt_nan[0, 1] = NAN                 # right contour centroid = the annotated point only
    assert m.normalizing_distance(gt_nan, TOY6, "inter_pupil")[0] == pytest.approx(85)
    # landmark box: x 0..100, y 0..90
    assert m.normalizing_distance(gt, TOY6, "box")[0] == pytest.approx(np.sqrt(100 * 90))
    assert m.normalizing_distance(gt, TOY6, "box_diag")[0] == pytest.approx(np.hypot(100, 90))
    boxes = np.array([[10, 10, 50, 100]], dtype=float)          # 40 x 90
    assert m.normalizing_distance(gt, TOY6, "box", boxes)[0] == pytest.approx(60)
    assert m.normalizing_distance(gt, TOY6, "box_diag", boxes)[0] == pytest.approx(np.sqrt(9700))
    # a NaN box row falls back to the landmark box
    two = np.concatenate([gt, gt])
    d = m.normalizing_distance(two, TOY6, "box", np.array([[10, 10, 50, 100], [NAN] * 4]))
    np.testing.assert_allclose(d, [60, np.sqrt(9000)])
    # default = the scheme's norm
    assert m.normalizing_distance(gt, TOY6)[0] == pytest.approx(100)
    assert "landmark box (1 faces)" in m.describe_norm(TOY6, "box", [[10, 10, 50, 100], [NAN] * 4])
    assert "ground-truth landmark box" in m.describe_norm(TOY6, "box", None)
    assert "eye_r_out and eye_l_out" in m.describe_norm(TOY6)


def test_68_point_scheme_uses_indices_36_and_45():
    gt = np.zeros((1, 68, 2))
    gt[0, :, 0] = np.arange(68)        # x = index
    gt[0, :, 1] = 5.0
    assert m.normalizing_distance(gt, "300w68")[0] == pytest.approx(45 - 36)


def test_bad_arguments_raise_value_errors():
    pred, gt = three_faces()
    with pytest.raises(ValueError, match="shape"):
        m.nme(pred[:, :3], gt, TOY)
    with pytest.raises(ValueError, match="unknown NME normalisation 'iod'"):
        m.nme(pred, gt, TOY, norm="iod")
    with pytest.raises(ValueError, match="threshold"):
        m.auc([0.1], 0)
    with pytest.raises(ValueError, match=r"boxes must have shape \(3, 4\)"):
        m.normalizing_distance(gt, TOY, "box", np.zeros((2, 4)))


def test_auc_is_exact_not_a_grid():
    # one face at NME 0.03: CED is 0 on [0, .03) and 1 on [.03, .1] -> area .07 -> AUC .7
    assert m.auc([0.03], 0.1) == pytest.approx(0.7, abs=1e-15)
    # the same value integrated numerically on a very fine grid agrees to the grid step
    x, y = m.ced_curve([0.03, 0.051, 0.2, np.inf], 0.1, num=100001)
    assert m.auc([0.03, 0.051, 0.2, np.inf], 0.1) == pytest.approx(np.trapezoid(y, x) / 0.1, abs=2e-5)
    # exact: (0.7 + 0.49 + 0 + 0) / 4 = 0.2975; trapezoids on a 0.01 grid give 0.3
    errors = [0.03, 0.051, 0.2, np.inf]
    assert m.auc(errors, 0.1) == pytest.approx(0.2975, abs=1e-15)
    x, y = m.ced_curve(errors, 0.1, num=11)
    assert np.trapezoid(y, x) / 0.1 == pytest.approx(0.3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 0.3, allow_nan=False), min_size=1, max_size=30),
       st.sampled_from([0.05, 0.08, 0.1]))
def test_auc_equals_area_of_the_step_function(errors, t):
    # exact area of the step CED on [0, t]: sum over sorted breakpoints
    e = np.sort(np.asarray(errors))
    xs = np.concatenate([[0.0], e[e < t], [t]])
    area = sum((xs[k + 1] - xs[k]) * np.mean(e <= xs[k]) for k in range(len(xs) - 1))
    assert m.auc(errors, t) == pytest.approx(area / t, abs=1e-12)
    assert 0.0 <= m.auc(errors, t) <= 1.0


def test_ced_curve_counts_faces_at_or_below_x():
    x, y = m.ced_curve([0.05, 0.0125, 0.18], 0.1, num=3)
    np.testing.assert_allclose(x, [0, 0.05, 0.1])
    np.testing.assert_allclose(y, [0, 2 / 3, 2 / 3])   # 0.05 <= 0.05 counts


@settings(max_examples=40, deadline=None)
@given(st.floats(0.2, 5.0), st.floats(-100, 100), st.floats(-100, 100),
       st.integers(0, 2**31 - 1))
def test_nme_is_invariant_to_scale_and_translation(scale, dx, dy, seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 100, (2, 4, 2))
    gt[:, 1, 0] += 150                 # keep the eyes apart
    pred = gt + rng.normal(0, 3, gt.shape)
    base = m.nme(pred, gt, TOY)
    moved = m.nme(pred * scale + (dx, dy), gt * scale + (dx, dy), TOY)
    np.testing.assert_allclose(moved, base, rtol=1e-9)


# ---------------------------------------------------------------------------------------
# Subsets
# ---------------------------------------------------------------------------------------
def _s(**attrs):
    return Sample(image="x.jpg", landmarks=np.zeros((4, 2)), scheme="300w68", attributes=attrs)


def test_subset_masks_300w():
    samples = [_s(set="lfpw"), _s(set="helen"), _s(set="ibug"), _s(set="afw"),
               _s(subset="challenge"), _s(set="helen")]
    samples[-1].image = "/data/300w/helen/trainset/1.jpg"    # training images are not "common"
    masks = m.subset_masks(samples, "300w")
    assert masks["common"].tolist() == [True, True, False, False, False, False]
    assert masks["challenge"].tolist() == [False, False, True, False, True, False]
    assert masks["full"].tolist() == [True, True, True, False, True, False]
    assert masks["set=afw"].tolist() == [False, False, False, True, False, False]
    assert masks["set=helen"].tolist() == [False, True, False, False, False, True]
    assert m.detect_dataset_kind(samples) == "300w"


def test_subset_masks_wflw_flags_and_lists():
    samples = [_s(pose=1, expression=0, illumination=0, makeup=0, occlusion=1, blur=0),
               _s(pose=0, expression=1, illumination=0, makeup=1, occlusion=0, blur=0),
               _s(subset="largepose")]
    assert m.detect_dataset_kind(samples) == "wflw"
    masks = m.subset_masks(samples, "auto")
    assert list(masks) == ["pose", "expression", "illumination", "makeup", "occlusion", "blur"]
    assert masks["pose"].tolist() == [True, False, True]
    assert masks["makeup"].tolist() == [False, True, False]
    assert masks["occlusion"].tolist() == [True, False, False]


def test_subset_masks_300vw_and_none():
    samples = [_s(category=1), _s(category=3), _s(category=None)]
    masks = m.subset_masks(samples)
    assert masks["category1"].tolist() == [True, False, False]
    assert masks["category3"].tolist() == [False, True, False]
    assert masks["category2"].sum() == 0
    assert m.subset_masks([_s(), _s()]) == {}
    with pytest.raises(ValueError, match="unknown dataset kind 'cofw'"):
        m.subset_masks(samples, "cofw")


# ---------------------------------------------------------------------------------------
# Mean face and the mean-face baseline
# ---------------------------------------------------------------------------------------
def test_mean_face_ignores_nan_and_names_unannotated_points():
    arr = np.array([[[0.2, 0.4], [NAN, NAN]],
                    [[0.4, 0.6], [0.5, 0.5]]])
    np.testing.assert_allclose(mean_face(arr), [[0.3, 0.5], [0.5, 0.5]])
    arr[1, 1] = NAN
    with pytest.raises(ValueError, match=r"\['b'\] are annotated in none of the 2 faces"):
        mean_face(arr, names=("a", "b"))
    with pytest.raises(ValueError, match=r"\(M, N, 2\)"):
        mean_face(np.zeros((3, 4)))


def _template(rng) -> np.ndarray:
    return rng.uniform(0, 1, (68, 2))


def test_meanface_baseline_recovers_a_shape_up_to_scale_and_shift():
    rng = np.random.default_rng(0)
    shape = _template(rng)

    def face(scale, dx, dy, name):
        return Sample(image=f"/nowhere/{name}.jpg", landmarks=shape * scale + (dx, dy),
                      scheme="300w68")

    train = [face(s, x, y, f"t{i}") for i, (s, x, y) in
             enumerate([(80, 10, 5), (150, 0, 40), (60, 300, 200)])]
    test = [face(120, 33, 44, "a"), face(45, 7, 9, "b")]
    model = MeanFaceBaseline("300w").fit(train)
    assert model.mean_.shape == (68, 2) and model.n_train_ == 3
    # normalised coordinates lie inside the 1.1x crop: [0.045, 0.955]
    assert model.mean_.min() > 0.04 and model.mean_.max() < 0.96
    pred = model.predict_points(test)
    np.testing.assert_allclose(pred, np.stack([s.landmarks for s in test]), atol=1e-3)
    pset = model.predict(test)
    assert pset.method == "meanface" and len(pset) == 2 and pset.faces[1].image == "/nowhere/b.jpg"


def test_meanface_baseline_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        MeanFaceBaseline().predict_points([])
    unlabelled = Sample(image="/x/u.jpg", landmarks=None, scheme="300w68", source="list.txt:7")
    from facemark.errors import DataError
    with pytest.raises(DataError, match="list.txt:7: .*no landmarks"):
        MeanFaceBaseline().fit([unlabelled])
    rng = np.random.default_rng(1)
    model = MeanFaceBaseline().fit([Sample(image="a.jpg", landmarks=_template(rng) * 50,
                                           scheme="300w68")])
    # a box-rule crop uses the sample's box when the face has no landmarks
    model_box = MeanFaceBaseline("wflw").fit([Sample(image="a.jpg", landmarks=_template(rng) * 50,
                                                     scheme="300w68")])
    boxed = Sample(image="b.jpg", landmarks=None, scheme="300w68", box=[0, 0, 100, 100])
    assert np.isfinite(model_box.predict_points([boxed])).all()
    with pytest.raises(DataError, match="b.jpg: the face has no landmarks"):
        model.predict_points([boxed])
    assert get_scheme(model.scheme_).num_points == 68


# ---------------------------------------------------------------------------------------
# Paired comparison of two methods
# ---------------------------------------------------------------------------------------
def test_paired_difference_by_hand():
    ref = np.array([0.03, 0.04, 0.05, np.inf, np.nan])
    same = m.paired_difference(ref, ref)
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0 and same["count"] == 3
    shifted = m.paired_difference(ref - 0.01, ref)      # better by 1 point on every face
    assert shifted["diff"] == pytest.approx(-0.01)
    assert shifted["low"] == pytest.approx(-0.01) and shifted["high"] == pytest.approx(-0.01)
    assert shifted["better"] == 1.0
    # faces only one method predicted, or not scored, are left out of the pairing
    one_missing = m.paired_difference(np.array([0.02, np.inf, 0.05]), np.array([0.03, 0.01, np.nan]))
    assert one_missing["count"] == 1 and one_missing["diff"] == pytest.approx(-0.01)
    none = m.paired_difference(np.array([np.inf]), np.array([0.1]))
    assert none["count"] == 0 and np.isnan(none["diff"])
    with pytest.raises(ValueError, match="same faces"):
        m.paired_difference(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="level"):
        m.paired_difference(np.zeros(3), np.zeros(3), level=1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 0.2), min_size=2, max_size=40),
       st.lists(st.floats(-0.05, 0.05), min_size=40, max_size=40))
def test_paired_interval_holds_the_mean_and_is_reproducible(ref, noise):
    ref = np.array(ref)
    a = ref + np.array(noise[:len(ref)])
    p = m.paired_difference(a, ref, resamples=500, seed=3)
    assert p["low"] - 1e-12 <= p["diff"] <= p["high"] + 1e-12
    assert p == m.paired_difference(a, ref, resamples=500, seed=3)
    d = a - ref
    assert d.min() - 1e-12 <= p["low"] and p["high"] <= d.max() + 1e-12

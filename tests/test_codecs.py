"""Codec tests for every head: encode/decode round trips, NRM merging, masking, pitfalls.

Heads are built directly on a fake 8-channel feature map, so no backbone runs here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facemark.errors import ConfigError
from facemark.models.heads import CoordHead, GRMIHead, MapHead, PIPHead, neighbour_indices
from facemark.models.heads.base import argmax_cells

CH = 8  # channels of the fake feature map


def pip_head(n, grid, num_nb, mean_face=None, net_stride=32, seed=0):
    if mean_face is None and num_nb:
        mean_face = np.random.default_rng(seed).random((n, 2))
    return PIPHead(CH, 32, num_points=n, input_size=grid * net_stride, net_stride=net_stride,
                   num_nb=num_nb, mean_face=mean_face)


def outputs_from_targets(head, targets):
    """The perfect network output: targets carry the output keys with the output shapes."""
    keys = ["score", "offset_x", "offset_y"] + (["nb_x", "nb_y"] if head.num_nb else [])
    return {k: targets[k] for k in keys}


# ---------------------------------------------------------------------------------------
# PIP regression + NRM
# ---------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), grid=st.integers(1, 8), batch=st.integers(1, 3),
       nb_frac=st.floats(0, 1), seed=st.integers(0, 10_000), outside=st.booleans())
def test_pip_round_trip_is_exact(n, grid, batch, nb_frac, seed, outside):
    num_nb = int(nb_frac * (n - 1))
    head = pip_head(n, grid, num_nb, seed=seed)
    g = torch.Generator().manual_seed(seed)
    lo, hi = (-0.3, 1.3) if outside else (0.0, 1.0)
    lm = torch.rand(batch, n, 2, generator=g) * (hi - lo) + lo
    targets = head.encode(lm)
    points, conf = head.decode(outputs_from_targets(head, targets))
    assert points.shape == (batch, n, 2) and conf.shape == (batch, n)
    torch.testing.assert_close(points, lm, atol=2e-6, rtol=0)
    # perfect outputs: the votes agree (confidence 1 up to float rounding) or the peak is 1
    torch.testing.assert_close(conf, torch.ones_like(conf), atol=1e-3, rtol=0)


def test_pip_encode_follows_the_paper_example():
    # Fig. 4: 256 px, stride 32 -> 8x8; a landmark 30% / 80% into its cell.
    head = pip_head(2, 8, 1, mean_face=np.array([[0.1, 0.1], [0.2, 0.2]]))
    lm = torch.tensor([[[(5 + 0.3) / 8, (2 + 0.8) / 8], [(6 + 0.8) / 8, (3 + 0.7) / 8]]])
    t = head.encode(lm)
    assert t["score"][0, 0].nonzero().tolist() == [[2, 5]]
    assert t["cell"][0, 0].item() == 2 * 8 + 5
    assert t["offset_x"][0, 0, 2, 5].item() == pytest.approx(0.3, abs=1e-6)
    assert t["offset_y"][0, 0, 2, 5].item() == pytest.approx(0.8, abs=1e-6)
    # neighbour (landmark 1) measured from landmark 0's cell: 1.8 and 1.7 cells
    assert t["nb_x"][0, 0, 2, 5].item() == pytest.approx(1.8, abs=1e-5)
    assert t["nb_y"][0, 0, 2, 5].item() == pytest.approx(1.7, abs=1e-5)
    assert t["score"].sum().item() == 2 and t["offset_x"][0, 0].count_nonzero() == 1


def test_pip_cells_clamp_for_points_outside_the_crop():
    head = pip_head(2, 4, 0)
    t = head.encode(torch.tensor([[[-0.1, 1.2], [1.0, 0.999]]]))
    assert t["cell"].tolist() == [[3 * 4 + 0, 3 * 4 + 3]]
    assert t["offset_x"][0, 0, 3, 0].item() == pytest.approx(-0.4, abs=1e-6)
    assert t["offset_y"][0, 0, 3, 0].item() == pytest.approx(1.8, abs=1e-6)


def test_neighbours_are_the_nearest_others_and_never_self():
    face = np.array([[0.0, 0], [1, 0], [3, 0], [7, 0], [15, 0], [15, 0]])
    nb = neighbour_indices(face, 2)
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1], [5, 3], [4, 3]]
    assert all(i not in row for i, row in enumerate(nb.tolist()))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 12), grid=st.integers(1, 6), batch=st.integers(1, 4),
       nb_frac=st.floats(0, 1), net_stride=st.sampled_from([16, 32, 64]),
       seed=st.integers(0, 10_000), other_grid=st.booleans())
def test_pip_predict_is_decode_of_forward(n, grid, batch, nb_frac, net_stride, seed, other_grid):
    """predict computes the offsets at the peak cells only: the same points and confidence
    as decoding all five maps, with or without the NRM and resampling layers, on the
    head's own grid or another one (a first pass on smaller crops)."""
    num_nb = int(nb_frac * (n - 1))
    torch.manual_seed(seed)
    head = pip_head(n, grid, num_nb, net_stride=net_stride, seed=seed).eval()
    for layer in [head.x_layer, head.y_layer] + ([head.nb_x_layer, head.nb_y_layer] if num_nb else []):
        torch.nn.init.normal_(layer.weight, std=0.3)       # offsets of a realistic size
        torch.nn.init.normal_(layer.bias, std=0.3)
    side = max(1, grid - 1) if other_grid else grid          # the stride-32 map's side
    features = torch.randn(batch, CH, side, side)            # the head resamples it
    assert_predict_is_decode_of_forward(head, features, atol_points=1e-5, atol_conf=1e-4)


def test_stc_head_predict_is_its_level_zero_decode():
    from facemark.models.heads import STCHead

    torch.manual_seed(0)
    head = STCHead(CH, 32, num_points=6, input_size=128, num_nb=3,
                   mean_face=np.random.default_rng(0).random((6, 2))).eval()
    assert_predict_is_decode_of_forward(head, torch.randn(2, CH, 4, 4),
                                        atol_points=1e-6, atol_conf=1e-5)


def assert_predict_is_decode_of_forward(head, features, atol_points, atol_conf):
    """``head.predict(features)`` gives ``decode(forward(features))``'s points and confidence."""
    with torch.no_grad():
        expected = head.decode(head(features))
        got = head.predict(features)
    torch.testing.assert_close(got[0], expected[0], atol=atol_points, rtol=0)
    torch.testing.assert_close(got[1], expected[1], atol=atol_conf, rtol=0)


def test_neighbour_channel_layout_is_C_times_i_plus_j():
    face = np.array([[0.0, 0.0], [0.1, 0.0], [0.3, 0.0], [0.6, 0.0]])
    head = pip_head(4, 4, 2, mean_face=face)
    nb = head.nb_index.tolist()
    assert nb == [[1, 2], [0, 2], [1, 0], [2, 1]]
    lm = torch.tensor([[[0.1, 0.1], [0.3, 0.35], [0.6, 0.6], [0.9, 0.85]]])
    t = head.encode(lm)
    g = lm[0] * 4
    for i in range(4):
        r, c = (g[i, 1].floor().int().item(), g[i, 0].floor().int().item())
        for j in range(2):
            k = nb[i][j]
            assert t["nb_x"][0, 2 * i + j, r, c].item() == pytest.approx(g[k, 0].item() - c, abs=1e-5)
            assert t["nb_y"][0, 2 * i + j, r, c].item() == pytest.approx(g[k, 1].item() - r, abs=1e-5)
    # decode reads the same layout: a vote placed in channel C*i+j lands on nb_index[i, j]
    out = outputs_from_targets(head, t)
    out["nb_x"] = out["nb_x"].clone()
    r, c = 0, 0                                   # landmark 0's cell
    out["nb_x"][0, 2 * 0 + 1, r, c] += 4.0        # landmark 0's vote for neighbour j=1 (= 2)
    points, _ = head.decode(out)
    votes_for_2 = 1 + sum(row.count(2) for row in nb)
    assert points[0, 2, 0].item() == pytest.approx(0.6 + 1.0 / votes_for_2, abs=1e-5)
    others = [0, 1, 3]
    torch.testing.assert_close(points[0, others], lm[0, others], atol=1e-6, rtol=0)


def reference_merge(own, votes, nb_index):
    """Plain-Python NRM merge: mean of own prediction and every vote for the landmark."""
    n, c = nb_index.shape
    lists = {k: [own[k]] for k in range(n)}
    for i in range(n):
        for j in range(c):
            lists[int(nb_index[i, j])].append(votes[i * c + j])
    return torch.stack([torch.stack(lists[k]).mean(0) for k in range(n)])


def test_nrm_merge_with_a_landmark_that_is_nobodys_neighbour():
    # Four clustered points and one far away: with C = 1 nobody picks landmark 4, which
    # is where padding-by-repetition (the authors' code) breaks.
    face = np.array([[0.40, 0.40], [0.42, 0.40], [0.40, 0.43], [0.44, 0.44], [0.95, 0.05]])
    head = pip_head(5, 4, 1, mean_face=face)
    nb = head.nb_index
    assert 4 not in nb.flatten().tolist()
    assert nb[4].item() in (0, 1, 2, 3)
    g = torch.Generator().manual_seed(3)
    own, votes = torch.rand(2, 5, 2, generator=g), torch.rand(2, 5, 2, generator=g)
    merged = head.merge_votes(own, votes)
    for b in range(2):
        torch.testing.assert_close(merged[b], reference_merge(own[b], votes[b], nb), atol=1e-6, rtol=0)
    torch.testing.assert_close(merged[:, 4], own[:, 4])             # keeps its own prediction
    counts = torch.bincount(nb.flatten(), minlength=5)
    assert counts.tolist()[4] == 0 and max(counts.tolist()) >= 2     # uneven vote counts


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 10), c=st.integers(1, 9), seed=st.integers(0, 1000))
def test_nrm_merge_matches_reference_on_any_neighbour_graph(n, c, seed):
    c = min(c, n - 1)
    head = pip_head(n, 2, c, seed=seed)
    g = torch.Generator().manual_seed(seed)
    own, votes = torch.rand(1, n, 2, generator=g), torch.rand(1, n * c, 2, generator=g)
    torch.testing.assert_close(head.merge_votes(own, votes)[0],
                               reference_merge(own[0], votes[0], head.nb_index), atol=1e-6, rtol=0)


def reference_uncertainty(own, votes, nb_index):
    """Plain-Python standard error of each landmark's merged predictions (crop units)."""
    n, c = nb_index.shape
    lists = {k: [own[k]] for k in range(n)}
    for i in range(n):
        for j in range(c):
            lists[int(nb_index[i, j])].append(votes[i * c + j])
    out = []
    for k in range(n):
        p = torch.stack(lists[k]).double()
        rms = (p - p.mean(0)).pow(2).sum(1).mean().sqrt()
        out.append(rms / len(p) ** 0.5)
    u = torch.stack(out)
    voted = torch.tensor([len(lists[k]) > 1 for k in range(n)])
    u[~voted] = u[voted].mean() if voted.any() else 0.0
    return u


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 10), c=st.integers(1, 9), seed=st.integers(0, 1000))
def test_nrm_uncertainty_matches_reference_on_any_neighbour_graph(n, c, seed):
    c = min(c, n - 1)
    head = pip_head(n, 2, c, seed=seed)
    g = torch.Generator().manual_seed(seed)
    own, votes = torch.rand(2, n, 2, generator=g), torch.rand(2, n * c, 2, generator=g)
    points, unc = head.vote_statistics(own, votes)
    for b in range(2):
        torch.testing.assert_close(points[b], reference_merge(own[b], votes[b], head.nb_index),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(unc[b].double(),
                                   reference_uncertainty(own[b], votes[b], head.nb_index),
                                   atol=1e-6, rtol=0)


def test_nrm_confidence_falls_as_the_votes_disagree():
    face = np.array([[0.40, 0.40], [0.42, 0.40], [0.40, 0.43], [0.44, 0.44], [0.95, 0.05]])
    head = pip_head(5, 4, 2, mean_face=face)
    lm = torch.tensor(face, dtype=torch.float32)[None]
    out = outputs_from_targets(head, head.encode(lm))
    _, conf0 = head.decode(out)
    torch.testing.assert_close(conf0, torch.ones_like(conf0), atol=1e-3, rtol=0)
    # landmark 0 moves one vote for neighbour 1 by 0.1 cell, then by 0.4 cell
    r, col = (lm[0, 0] * 4).floor().long().tolist()[::-1]
    confs = []
    for shift in (0.1, 0.4):
        bad = {k: v.clone() for k, v in out.items()}
        bad["nb_x"][0, 2 * 0 + 0, r, col] += shift
        _, conf = head.decode(bad)
        confs.append(conf[0])
    target = int(head.nb_index[0, 0])
    assert 1.0 > confs[0][target] > confs[1][target] > 0.0
    # the expected value: two or more predictions, one off by shift / W crop units
    count = 1 + int((head.nb_index == target).sum())
    spread = (0.4 / 4) * ((count - 1) ** 0.5 / count)    # rms distance from the mean
    expected = np.exp(-spread / count ** 0.5 / head.confidence_scale)
    assert confs[1][target].item() == pytest.approx(expected, rel=1e-3)
    # landmark 4 is nobody's neighbour: it takes the mean uncertainty of the others
    assert int((head.nb_index == 4).sum()) == 0
    assert 0.0 < confs[1][4].item() < 1.0


def test_cell_index_uses_floor_division_not_float_division():
    # The well-known pitfall: row = idx / W as a float is row + col / W.
    head = pip_head(3, 8, 0)
    score = torch.zeros(1, 3, 8, 8)
    cells = [(2, 5), (7, 7), (0, 6)]                    # (row, col)
    for i, (r, c) in enumerate(cells):
        score[0, i, r, c] = 0.9
    ox = torch.full((1, 3, 8, 8), 0.25)
    oy = torch.full((1, 3, 8, 8), 0.75)
    points, conf = head.decode({"score": score, "offset_x": ox, "offset_y": oy})
    expected = torch.tensor([[[(c + 0.25) / 8, (r + 0.75) / 8] for r, c in cells]])
    torch.testing.assert_close(points, expected)
    assert torch.allclose(conf, torch.full((1, 3), 0.9))
    idx = torch.tensor(2 * 8 + 5)
    assert (idx / 8).item() != 2                         # what float division would give


def test_argmax_cells_on_a_rectangular_map():
    maps = torch.zeros(1, 35, 5, 7)
    for k in range(35):
        maps[0, k, k // 7, k % 7] = 1.0
    idx, row, col, peak = argmax_cells(maps)
    assert idx[0].tolist() == list(range(35))
    assert row[0].tolist() == [k // 7 for k in range(35)]
    assert col[0].tolist() == [k % 7 for k in range(35)]
    assert row.dtype == torch.int64 and torch.all(peak == 1)


def test_pip_confidence_is_clamped_peak_score():
    head = pip_head(2, 2, 0)
    score = torch.tensor([[[[1.7, 0.0], [0.0, 0.0]], [[-0.5, -0.6], [-0.9, -0.7]]]])
    zeros = torch.zeros_like(score)
    _, conf = head.decode({"score": score, "offset_x": zeros, "offset_y": zeros})
    assert conf.tolist() == [[1.0, 0.0]]


def test_pip_loss_matches_the_authors_formula_when_all_points_are_annotated():
    head = pip_head(3, 4, 2, seed=1)
    g = torch.Generator().manual_seed(0)
    lm = torch.rand(2, 3, 2, generator=g)
    t = head.encode(lm)
    keys = ("score", "offset_x", "offset_y", "nb_x", "nb_y")
    out = {k: torch.randn(t[k].shape, generator=g) for k in keys}
    total, parts = head.loss(out, t)
    b, n, c, hw = 2, 3, 2, 16
    cell = t["cell"]

    def at(m, ch):  # value at each landmark's positive cell, (B, n, ch)
        return m.reshape(b, n, ch, hw).gather(3, cell[:, :, None, None].expand(b, n, ch, 1)).squeeze(3)

    score = 10 * ((out["score"] - t["score"]) ** 2).mean()
    off = sum((at(out[k], 1) - at(t[k], 1)).abs().mean() for k in ("offset_x", "offset_y"))
    nbl = sum((at(out[k], c) - at(t[k], c)).abs().mean() for k in ("nb_x", "nb_y"))
    torch.testing.assert_close(parts["score"], score)
    torch.testing.assert_close(parts["offset"], off)
    torch.testing.assert_close(parts["neighbour"], nbl)
    torch.testing.assert_close(total, score + off + nbl)


# ---------------------------------------------------------------------------------------
# Masking (all heads)
# ---------------------------------------------------------------------------------------
HEAD_IDS = ["pip_nrm", "pip", "coord", "map", "grmi"]


def all_heads(n=5):
    face = np.random.default_rng(0).random((n, 2))
    return [
        pip_head(n, 2, 2, mean_face=face),
        pip_head(n, 2, 0),
        CoordHead(CH, 32, num_points=n, input_size=64, hidden=(16,)),
        MapHead(CH, 32, num_points=n, input_size=64, net_stride=4, deconv_channels=8),
        GRMIHead(CH, 8, num_points=n, input_size=64),
    ]


@pytest.mark.parametrize("head", all_heads(), ids=HEAD_IDS)
def test_masked_points_do_not_change_the_loss(head):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, CH, 2 if not isinstance(head, GRMIHead) else 8,
                        2 if not isinstance(head, GRMIHead) else 8, generator=g)
    out = head(feats)
    lm = torch.rand(2, 5, 2, generator=g) * 0.8 + 0.1
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 1] = False
    base, base_parts = head.loss(out, head.encode(lm, mask))
    moved = lm.clone()
    moved[0, 1] = torch.tensor([0.95, 0.02])
    same, same_parts = head.loss(out, head.encode(moved, mask))
    assert same.item() == pytest.approx(base.item(), abs=1e-7)
    for k in base_parts:
        assert same_parts[k].item() == pytest.approx(base_parts[k].item(), abs=1e-7)
    nan = lm.clone()
    nan[0, 1] = float("nan")                       # missing points may hold NaN
    assert head.loss(out, head.encode(nan, mask))[0].item() == pytest.approx(base.item(), abs=1e-7)
    # the same move on an annotated point does change the loss
    changed, _ = head.loss(out, head.encode(moved, torch.ones(2, 5, dtype=torch.bool)))
    unmasked_base, _ = head.loss(out, head.encode(lm, torch.ones(2, 5, dtype=torch.bool)))
    assert abs(changed.item() - unmasked_base.item()) > 1e-6


@pytest.mark.parametrize("head", all_heads(), ids=HEAD_IDS)
def test_loss_with_every_point_missing_is_zero_not_nan(head):
    feats = torch.randn(1, CH, 8, 8) if isinstance(head, GRMIHead) else torch.randn(1, CH, 2, 2)
    out = head(feats)
    total, parts = head.loss(out, head.encode(torch.rand(1, 5, 2), torch.zeros(1, 5, dtype=torch.bool)))
    assert total.item() == 0.0 and all(torch.isfinite(v) for v in parts.values())


def test_encode_rejects_bad_shapes_and_unmasked_nan():
    head = pip_head(4, 2, 0)
    with pytest.raises(ValueError, match=r"\(B, 4, 2\)"):
        head.encode(torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match="mask"):
        head.encode(torch.rand(2, 4, 2), torch.ones(2, 3, dtype=torch.bool))
    lm = torch.rand(2, 4, 2)
    lm[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="landmark 2 of sample 1"):
        head.encode(lm)


def test_pip_neighbour_term_is_dropped_when_the_neighbour_is_missing():
    face = np.array([[0.0, 0.0], [0.1, 0.0], [0.9, 0.9]])
    head = pip_head(3, 2, 1, mean_face=face)          # 0 <-> 1 neighbours, 2 -> 1
    mask = torch.tensor([[True, False, True]])
    t = head.encode(torch.rand(1, 3, 2), mask)
    assert t["nb_mask"].tolist() == [[[False], [False], [False]]]
    mask = torch.tensor([[True, True, False]])
    t = head.encode(torch.rand(1, 3, 2), mask)
    assert t["nb_mask"].tolist() == [[[True], [True], [False]]]


def test_pip_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="mean_face"):
        PIPHead(CH, 32, num_points=4, input_size=64, num_nb=2)
    with pytest.raises(ConfigError, match=r"mean_face: expected shape \(4, 2\)"):
        PIPHead(CH, 32, num_points=4, input_size=64, num_nb=2, mean_face=np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="num_nb"):
        PIPHead(CH, 32, num_points=4, input_size=64, num_nb=4, mean_face=np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="net_stride"):
        PIPHead(CH, 32, num_points=4, input_size=96, net_stride=48, num_nb=0)


# ---------------------------------------------------------------------------------------
# MapNet, G-RMI, CoordNet
# ---------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(stride=st.sampled_from([1, 2, 4]), seed=st.integers(0, 10_000))
def test_mapnet_round_trip_within_a_quarter_cell(stride, seed):
    head = MapHead(CH, 32, num_points=6, input_size=64, net_stride=stride, deconv_channels=4)
    lm = torch.rand(2, 6, 2, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1
    t = head.encode(lm)
    assert head.sigma == pytest.approx(4.0 / stride)            # radius 4, 2, 1 cells
    points, conf = head.decode({"heatmap": t["heatmap"]})
    grid = 64 // stride
    assert (points - lm).abs().max().item() <= 0.25 / grid + 1e-6
    assert torch.all((conf > 0.6) & (conf <= 1.0))


def test_mapnet_quarter_offset_points_towards_the_higher_neighbour():
    head = MapHead(CH, 32, num_points=1, input_size=32, net_stride=4, deconv_channels=4)
    heat = torch.zeros(1, 1, 8, 8)
    heat[0, 0, 3, 4] = 1.0
    heat[0, 0, 3, 5] = 0.6        # right neighbour higher than left: +0.25 in x
    heat[0, 0, 2, 4] = 0.3        # upper neighbour higher than lower: -0.25 in y
    points, conf = head.decode({"heatmap": heat})
    torch.testing.assert_close(points[0, 0], torch.tensor([(4.25 + 0.5) / 8, (2.75 + 0.5) / 8]))
    assert conf.item() == 1.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), outside=st.booleans())
def test_grmi_round_trip_is_exact(seed, outside):
    head = GRMIHead(CH, 8, num_points=7, input_size=64)
    lo, hi = (-0.2, 1.2) if outside else (0.0, 1.0)
    lm = torch.rand(3, 7, 2, generator=torch.Generator().manual_seed(seed)) * (hi - lo) + lo
    t = head.encode(lm)
    points, conf = head.decode({k: t[k] for k in ("heatmap", "offset_x", "offset_y")})
    torch.testing.assert_close(points, lm, atol=2e-6, rtol=0)
    assert torch.all(t["heatmap"].sum(dim=(2, 3)) >= 1)           # never an empty disk


def test_grmi_disk_radius_is_in_input_pixels():
    lm = torch.tensor([[[(3 + 0.5) / 8, (4 + 0.5) / 8]]])            # a cell centre
    head8 = GRMIHead(CH, 8, num_points=1, input_size=64, radius=15.0)   # 1.875 cells
    assert head8.encode(lm)["heatmap"].sum().item() == 9                # 3x3 block
    head4 = GRMIHead(CH, 4, num_points=1, input_size=128, radius=15.0)  # 3.75 cells
    lm4 = torch.tensor([[[(7 + 0.5) / 32, (9 + 0.5) / 32]]])
    n = sum(1 for dx in range(-4, 5) for dy in range(-4, 5) if dx * dx + dy * dy <= 3.75 ** 2)
    assert head4.encode(lm4)["heatmap"].sum().item() == n


def test_grmi_loss_weights_are_four_and_one():
    head = GRMIHead(CH, 8, num_points=2, input_size=32)
    t = head.encode(torch.tensor([[[0.3, 0.4], [0.6, 0.7]]]))
    out = {"heatmap": torch.zeros(1, 2, 4, 4), "offset_x": t["offset_x"] + 0.5,
           "offset_y": t["offset_y"]}
    total, parts = head.loss(out, t)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out["heatmap"], t["heatmap"])
    torch.testing.assert_close(parts["heatmap"], 4 * bce)
    torch.testing.assert_close(parts["offset"], torch.tensor(0.5 * 0.5 ** 2))   # smooth L1
    torch.testing.assert_close(total, parts["heatmap"] + parts["offset"])


def test_coord_head_round_trip_and_unit_confidence():
    head = CoordHead(CH, 32, num_points=4, input_size=64)
    lm = torch.rand(3, 4, 2)
    points, conf = head.decode({"coords": head.encode(lm)["coords"]})
    assert torch.equal(points, lm) and torch.all(conf == 1)
    assert head.fc[0].in_features == CH * 2 * 2            # flattened 2x2 map
    avg = CoordHead(CH, 32, num_points=4, input_size=64, pool="avg")
    assert avg.fc[0].in_features == CH
    with pytest.raises(ConfigError, match="pool"):
        CoordHead(CH, 32, num_points=4, input_size=64, pool="max")

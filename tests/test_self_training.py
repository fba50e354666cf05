"""Self-training with curriculum: the STC head, the plan, unlabelled crops, batches, and a
tiny end-to-end run on synthetic faces (rounds, pseudo-labels, kill and resume, CLI)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import make_pts_dataset, make_unlabelled_crops

from facemark.cli import main
from facemark.configs import bundled_config_names, resolve_config
from facemark.errors import ConfigError, DataError, SkipLog
from facemark.models import create_model
from facemark.models.heads.pip import PIPHead
from facemark.models.heads.stc import STCHead, level_key, resolve_stc_levels
from facemark.training.config import load_config
from facemark.training.pseudo_labels import load_pseudo_labels
from facemark.training.self_training import (MixedBatchSampler, check_self_training,
                                             curriculum_plan, self_train)
from facemark.training.unlabelled import unlabelled_rules, unlabelled_samples

N = 68
MEAN_FACE = np.random.default_rng(0).uniform(0.2, 0.8, (N, 2))


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):   # (conftest.py)
    yield


def stc_model(size=128, stride=16, **kw):
    torch.manual_seed(0)
    return create_model("pipnet_stc", num_points=N, input_size=size, net_stride=stride,
                        num_nb=4, mean_face=MEAN_FACE, **kw)


# ---------------------------------------------------------------------------------------
# The STC head
# ---------------------------------------------------------------------------------------
def test_stc_head_shapes_shared_layer_and_no_extra_weights():
    m = stc_model().eval()                   # 128 px / stride 16: 8x8, as 256 px / stride 32
    assert isinstance(m.head, STCHead) and m.head.grid == 8 and m.head.levels == 2
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        out = m(x)
        feats = m.head.extra(m.backbone((x - m.mean) / m.std))
    assert out["score"].shape == (2, N, 8, 8)
    assert out["score_level1"].shape == (2, N, 4, 4) and out["score_level2"].shape == (2, N, 2, 2)
    assert out["nb_x"].shape == (2, 4 * N, 8, 8)
    # the coarse maps are the *shared* score layer on max-pooled features (authors' code),
    # which is not the same as max-pooling the 8x8 score map
    for k in (1, 2):
        pooled = F.max_pool2d(feats, 2 ** k)
        torch.testing.assert_close(out[level_key(k)], m.head.cls_layer(pooled))
    assert not torch.allclose(out["score_level1"], F.max_pool2d(out["score"], 2))
    # no parameters of its own: a PIPNet of the same arguments has the same state dict
    plain = create_model("pipnet", num_points=N, input_size=128, net_stride=16, num_nb=4,
                         mean_face=MEAN_FACE)
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in m.state_dict().items()}
    # inference (predict, the exported path) is PIPNet's full-task decode
    points, _ = m.predict(x)
    torch.testing.assert_close(points, PIPHead.decode(m.head, out)[0])


@pytest.mark.parametrize("level,grid", [(0, 8), (1, 4), (2, 2)])
def test_stc_encode_decode_round_trip_at_each_level(level, grid):
    head = stc_model().head
    lm = torch.rand(3, N, 2, generator=torch.Generator().manual_seed(level)) * 0.9 + 0.05
    targets = head.encode(lm, levels=torch.full((3,), level))
    points, conf = head.decode(targets, level=level)
    if level == 0:
        torch.testing.assert_close(points, lm, atol=2e-6, rtol=0)
    else:
        cell = (lm * grid).floor()
        torch.testing.assert_close(points, (cell + 0.5) / grid)        # the cell centre
        assert (points - lm).abs().max() <= 0.5 / grid + 1e-6
    # level 0: the NRM votes agree (confidence 1 up to float rounding); coarser: peak 1
    torch.testing.assert_close(conf, torch.ones_like(conf), atol=1e-3, rtol=0)
    assert targets[level_key(level)].sum() == 3 * N                 # one positive per point
    for other in {0, 1, 2} - {level}:                               # other maps: no target
        assert targets[level_key(other)].sum() == 0


def test_stc_loss_supervises_each_sample_at_its_own_level():
    m = stc_model().eval()
    head = m.head
    with torch.no_grad():
        out = m(torch.rand(2, 3, 128, 128))
    lm = torch.rand(2, N, 2, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    # all at level 0: exactly PIPNet's loss
    full, parts = head.loss(out, head.encode(lm))
    ref, _ = PIPHead.loss(head, out, PIPHead.encode(head, lm))
    torch.testing.assert_close(full, ref)
    # sample 1 at level 2: its 8x8 score, offsets and neighbours no longer count ...
    mixed_t = head.encode(lm, levels=torch.tensor([0, 2]))
    base, parts = head.loss(out, mixed_t)
    torch.testing.assert_close(base, sum(parts.values()))
    changed = {k: v.clone() for k, v in out.items()}
    for k in ("score", "offset_x", "offset_y", "nb_x", "nb_y"):
        changed[k][1] += 5.0
    torch.testing.assert_close(head.loss(changed, mixed_t)[0], base)
    # ... its 2x2 map does, and sample 0's does not
    changed = {k: v.clone() for k, v in out.items()}
    changed["score_level2"][1] += 1.0
    assert head.loss(changed, mixed_t)[0] > base + 1e-3
    changed = {k: v.clone() for k, v in out.items()}
    changed["score_level2"][0] += 1.0
    torch.testing.assert_close(head.loss(changed, mixed_t)[0], base)
    # one normalisation over every supervised cell (the authors' concatenated maps)
    se = ((out["score"][0] - mixed_t["score"][0]) ** 2).sum() + \
        ((out["score_level2"][1] - mixed_t["score_level2"][1]) ** 2).sum()
    torch.testing.assert_close(parts["score"], head.score_weight * se / (N * 64 + N * 4))
    # a missing point at level 2 contributes nothing
    mask = torch.ones(2, N, dtype=torch.bool)
    mask[1, 7] = False
    moved = lm.clone()
    moved[1, 7] = torch.tensor([0.01, 0.99])
    lv = torch.tensor([0, 2])
    torch.testing.assert_close(head.loss(out, head.encode(moved, mask, lv))[0],
                               head.loss(out, head.encode(lm, mask, lv))[0])
    with pytest.raises(ValueError, match="level 3 outside"):
        head.encode(lm, levels=torch.tensor([0, 3]))


def test_stc_levels_follow_the_grid():
    assert [resolve_stc_levels(None, g) for g in (8, 4, 2, 1, 7, 16)] == [2, 2, 1, 0, 0, 2]
    assert stc_model(size=64, stride=32).head.levels == 1            # 2x2 grid -> 1x1
    with pytest.raises(ConfigError, match="stc_levels: 2 coarse levels.*divisible by 4"):
        stc_model(size=64, stride=32, stc_levels=2)
    with pytest.raises(ConfigError, match="stc_levels: expected a non-negative integer"):
        stc_model(stc_levels=-1)
    assert stc_model(stc_levels=1).config["stc_levels"] == 1


# ---------------------------------------------------------------------------------------
# The plan and its config
# ---------------------------------------------------------------------------------------
def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "st.yaml"
    path.write_text(text)
    return path


def test_curriculum_is_coarse_to_fine_then_full_three_times(tmp_path):
    cfg = load_config(write_config(tmp_path, "data: {train: [a], unlabelled: [b]}\n"))
    assert curriculum_plan(cfg) == [None, 2, 1, 0, 0, 0]      # Task 1, Task 2, Task 3 x3
    names = [n for n in bundled_config_names() if "/selftrain/" in n and "dann" not in n]
    assert {"300w/selftrain/stc_cofw68_wflw68", "300w/selftrain/selftrain_cofw68_wflw68",
            "300w/selftrain/stc_celeba", "300w/selftrain/selftrain_celeba",
            "300w/selftrain/shared68_stc"} <= set(names)
    for name in names:
        bundled = load_config(resolve_config(name))
        want = [0, 0, 0] if "/selftrain_" in name else [2, 1, 0, 0, 0]
        assert bundled.self_training.curriculum == want, name
        assert bundled.data.unlabelled and bundled.model.name == \
            ("pipnet" if "/selftrain_" in name else "pipnet_stc")
        assert len(unlabelled_rules(bundled)) == len(bundled.data.unlabelled)


@pytest.mark.parametrize("override,message", [
    ("self_training.curriculum=[2,-1]", r"curriculum\[1\]"),
    ("self_training.curriculum=[]", "curriculum' is empty"),
    ("data.unlabelled=[]", "data.unlabelled' is empty"),
    ("self_training.labelled_fraction=1.5", "labelled_fraction"),
    ("self_training.boxes=detektor", "self_training.boxes"),
    ("self_training.crop_rule=[300w,cofw,wflw]", "3 rules for 1 unlabelled"),
    ("self_training.crop_rule=300x", "unknown crop rule '300x'"),
    ("self_training.crop_rule={scale: 1.2, shift: 0.1}", "unknown field 'shift'"),
    ("trainer.devices=2", "one device"),
    ("data.smaller_sizes=[96]", "smaller_sizes' is for supervised training"),
    ("self_training.init_checkpoint=nowhere.ckpt", "init_checkpoint.*not found"),
])
def test_config_errors_name_the_key(tmp_path, override, message):
    path = write_config(tmp_path, "data: {train: [a], unlabelled: [b]}\n")
    with pytest.raises(ConfigError, match=message):
        check_self_training(load_config(path, [override]))


def test_detector_boxes_use_the_registered_detectors(tmp_path, monkeypatch):
    import facemark.data.face_finders as face_finders

    path = write_config(tmp_path, "data: {train: [a], unlabelled: [b]}\n")
    # facemark.inference.detectors (imported by facemark selftrain) registers them
    monkeypatch.setattr(face_finders, "FACE_FINDERS", {})
    with pytest.raises(ConfigError, match=r"self_training.boxes.*import "
                                          r"facemark.inference.detectors first"):
        check_self_training(load_config(path, ["self_training.boxes=detector"]))
    monkeypatch.undo()
    import facemark.inference.detectors as detectors

    assert isinstance(face_finders.create_face_finder("detector", "haar"), detectors.HaarDetector)
    with pytest.raises(ConfigError, match=r"self_training.boxes.*unknown name 'nope'"):
        check_self_training(load_config(path, ["self_training.boxes=detector:nope"]))
    check_self_training(load_config(path, ["self_training.boxes=detector:opencv_haar"]))


def test_refuses_a_supervised_run_folder(tmp_path):
    path = write_config(tmp_path, f"experiment: sup\ntrainer: {{out_dir: {tmp_path}}}\n"
                                  "data: {train: [a], unlabelled: [b]}\n"
                                  "model: {name: pipnet_stc}\n")
    (tmp_path / "sup" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="supervised training.*another experiment name"):
        self_train(load_config(path, ["data.input_size=128"]))
    with pytest.raises(ConfigError, match="2x2 halves 1 time.*raise data.input_size"):
        self_train(load_config(path, ["data.input_size=64"]))


def test_crop_rule_mapping_becomes_a_box_rule(tmp_path):
    path = write_config(tmp_path, "data: {train: [a], unlabelled: [b, c]}\nself_training: "
                                  "{crop_rule: [{scale: 1.0, shift_y: 0.17}, wflw68]}\n")
    first, second = unlabelled_rules(load_config(path))
    assert (first.source, first.scale, first.shift_y) == ("box", 1.0, 0.17)
    assert (second.scale, second.top_cut) == (1.2, 0.2)


# ---------------------------------------------------------------------------------------
# Unlabelled faces and mixed batches
# ---------------------------------------------------------------------------------------
class FakeDetector:
    """Two faces in the first image, none in the second."""

    name = "fake"

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        from facemark.inference.detectors import DetectedFace

        self.calls += 1
        if self.calls == 1:
            return [DetectedFace([1, 2, 30, 40], 0.9), DetectedFace([40, 2, 70, 40], 0.8)]
        return []


def test_unlabelled_samples_get_boxes_and_lose_their_labels(tmp_path):
    folder = make_pts_dataset(tmp_path / "lab", n=2, size=80)
    # dataset boxes: a .pts folder has none -> an error naming the file
    with pytest.raises(DataError, match=r"face_000.pts.*no face box.*boxes=detector"):
        unlabelled_samples(f"pts:{folder}", "300w68", "dataset", SkipLog())
    # whole image, in the pixel-centre convention; landmarks dropped
    samples, no_face = unlabelled_samples(f"pts:{folder}", "300w68", "image", SkipLog())
    assert len(samples) == 2 and no_face == [] and samples[0].landmarks is None
    np.testing.assert_allclose(samples[0].box, [-0.5, -0.5, 79.5, 79.5])
    # a detector: one sample per face, images without a face listed
    samples, no_face = unlabelled_samples(f"folder:{folder}", "300w68", "detector", SkipLog(),
                                          detector=FakeDetector())
    assert [s.box.tolist() for s in samples] == [[1, 2, 30, 40], [40, 2, 70, 40]]
    assert len(no_face) == 1 and "face_001.png: no face found by fake" in no_face[0]


def test_mixed_batches_hold_a_fixed_labelled_share():
    sampler = MixedBatchSampler(n_labelled=10, n_pseudo=7, batch_size=4, fraction=0.25, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10                     # one labelled crop a batch
    assert all(len(b) == 4 and sum(i < 10 for i in b) == 1 for b in batches)
    assert sorted(i for b in batches for i in b if i < 10) == list(range(10))
    pseudo = [i for b in batches for i in b if i >= 10]
    assert set(pseudo) == set(range(10, 17))                      # every pseudo crop is used
    assert batches == list(sampler)                               # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches


@settings(max_examples=60, deadline=None)
@given(n_lab=st.integers(1, 40), n_pseudo=st.integers(1, 40), batch=st.integers(2, 12),
       fraction=st.floats(0.01, 0.99), seed=st.integers(0, 3), epoch=st.integers(0, 3))
def test_mixed_batch_sampler_properties(n_lab, n_pseudo, batch, fraction, seed, epoch):
    sampler = MixedBatchSampler(n_lab, n_pseudo, batch, fraction, seed)
    sampler.set_epoch(epoch)
    k = sampler.k
    assert 1 <= k <= batch - 1
    batches = list(sampler)
    assert len(batches) == len(sampler) >= 1
    for b in batches:
        assert len(b) == batch and sum(i < n_lab for i in b) == k
        assert all(0 <= i < n_lab + n_pseudo for i in b)
    lab = [i for b in batches for i in b if i < n_lab]
    if n_lab >= k:                       # one pass: no labelled crop twice, few left out
        assert len(set(lab)) == len(lab) and n_lab - len(lab) < k


# ---------------------------------------------------------------------------------------
# End to end on synthetic faces
# ---------------------------------------------------------------------------------------
def tiny_setup(tmp_path: Path) -> Path:
    labelled = make_pts_dataset(tmp_path / "faces", n=12)
    unlabelled = make_unlabelled_crops(tmp_path / "unlabelled", 8)   # as ytf68/unlabeled
    return write_config(tmp_path, f"""
experiment: tiny_stc
data:
  train: [pts:{labelled}]
  unlabelled: [folder:{unlabelled}]
  test: [pts:{labelled}]
  val_fraction: 0.25
  input_size: 64
  cache_dir: {tmp_path / 'cache'}
  num_workers: 0
  augment: none
model:
  name: pipnet_stc
  backbone: mobilenet_v2     # a third of ResNet-18's weights: smaller checkpoints, faster
  num_nb: 4
optim:
  lr: 1.0e-3
  epochs: 2
  batch_size: 8
trainer:
  out_dir: {tmp_path / 'runs'}
  accelerator: cpu
  devices: 1
  log_every_n_steps: 1
  logger: none
self_training:
  curriculum: [1, 0]
  boxes: image
  reinit: false
""")


@pytest.mark.slow   # trains a model end to end
def test_self_training_rounds_kill_resume_and_pseudo_labels(tmp_path, capsys):
    import lightning as L

    cfg_path = tiny_setup(tmp_path)
    cfg = load_config(cfg_path)
    run = tmp_path / "runs" / "tiny_stc"
    seen: list[tuple] = []

    held_out: dict[int, list] = {}

    class Spy(L.Callback):
        """Records (round, epoch, levels, pseudo flags, landmarks, rows) of each batch, and
        each round's validation faces."""

        def on_train_start(self, trainer, module):
            r = module.hparams.data_info["self_training"]["round"]
            held_out[r] = list(trainer.datamodule.val_set.indices)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            r = module.hparams.data_info["self_training"]["round"]
            seen.append((r, trainer.current_epoch, batch["level"].tolist(),
                         batch["pseudo"].tolist(), batch["landmarks"].clone(),
                         batch["index"].tolist()))

    class Kill(L.Callback):
        """Dies at the start of round 1's second epoch (its first is checkpointed)."""

        def on_train_epoch_start(self, trainer, module):
            r = module.hparams.data_info["self_training"]["round"]
            if r == 1 and trainer.current_epoch == 1:
                raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        self_train(cfg, callbacks=[Spy(), Kill()], progress=False)
    assert (run / "round_0" / "round.json").is_file()
    assert not (run / "round_1" / "round.json").exists()
    assert (run / "round_1" / "checkpoints" / "last.ckpt").is_file()
    pfile = run / "round_1" / "pseudo_labels.npz"
    stamp = pfile.stat().st_mtime_ns, (run / "round_0" / "round.json").stat().st_mtime_ns

    # round 0 trains on labelled crops only, at the full task
    r0 = [s for s in seen if s[0] == 0]
    assert r0 and all(lv == [0] * len(lv) and not any(p) for _, _, lv, p, _, _ in r0)

    seen.clear()
    result = self_train(load_config(cfg_path), callbacks=[Spy()], progress=False)
    # round 0 kept, round 1 resumed after its last complete epoch with the same pseudo-labels
    assert (pfile.stat().st_mtime_ns, (run / "round_0" / "round.json").stat().st_mtime_ns) == stamp
    assert sorted({(r, e) for r, e, *_ in seen}) == [(1, 1), (2, 0), (2, 1)]
    assert [r["round"] for r in result.rounds] == [0, 1, 2]
    # every round holds out the run's validation faces (each round once drew its own split,
    # so later rounds trained on faces that earlier rounds and `facemark train` validate on)
    from facemark.training.datamodule import LandmarkDataModule

    base = LandmarkDataModule(cfg.data, seed=cfg.seed)
    base.setup()
    assert sorted(held_out) == [0, 1, 2] and len(base.val_set.indices) == 3
    assert all(v == list(base.val_set.indices) for v in held_out.values())
    assert [r["level"] for r in result.rounds] == [None, 1, 0]
    assert all(r["epochs"] == 2 for r in result.rounds)

    # pseudo-labels: every unlabelled crop, redone each round by the newer model, and they
    # are what the pseudo-labelled items of the batches carry (augment: none)
    from facemark.data.cache import CropCache

    caches = [CropCache.open(p) for p in json.loads(json.dumps(
        [str(x) for x in np.load(pfile)["caches"]]))]
    p1, _ = load_pseudo_labels(pfile, caches)
    p2, _ = load_pseudo_labels(run / "round_2" / "pseudo_labels.npz", caches)
    assert p1[0].shape == (8, N, 2) and np.isfinite(p1[0]).all()
    shift = np.abs(p1[0] - p2[0]).max()
    assert shift > 0.1                                              # pixels of a 64 px crop
    assert result.rounds[2]["pseudo_shift"] > 0
    n_lab = result.rounds[1]["labelled"]
    assert result.rounds[1]["pseudo"] == 8
    for r, pts in ((1, p1[0]), (2, p2[0])):
        batches = [s for s in seen if s[0] == r]
        levels = {lv for _, _, lvs, ps, _, _ in batches for lv, p in zip(lvs, ps) if p}
        assert levels == {result.rounds[r]["level"]}
        used = 0
        for _, _, lvs, ps, lms, idx in batches:
            for j, (p, i) in enumerate(zip(ps, idx)):
                if p:
                    expected = torch.from_numpy((pts[i - n_lab] + 0.5) / 64).float()
                    torch.testing.assert_close(lms[j], expected)
                    used += 1
                else:
                    assert lvs[j] == 0
        assert used > 0

    # a fixed labelled share per batch (self_training.labelled_fraction) over the same data
    from facemark.training.self_training import SelfTrainingData

    data = SelfTrainingData(cfg.data, batch_size=8, pseudo=list(zip(caches, p2)), level=1,
                            labelled_fraction=0.5)
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert len(batches) == n_lab // 4
    for b in batches:
        assert b["pseudo"].tolist() == [False] * 4 + [True] * 4
        assert b["level"].tolist() == [0] * 4 + [1] * 4

    # the final model loads and predicts like a PIPNet; test NME is recorded per round
    from facemark.models.model_file import load_model

    model, info = load_model(result.model_path)
    assert info.input_size == 64 and model.predict(torch.rand(1, 3, 64, 64))[0].shape == (1, N, 2)
    assert all(0 < next(iter(r["test"].values()))["nme"] < 1 for r in result.rounds)
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["rounds"]) == 3 and summary["no_face"] == {cfg.data.unlabelled[0]: []}

    # the CLI: a complete run is not retrained; a changed curriculum is refused
    capsys.readouterr()
    assert main(["selftrain", str(cfg_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("complete, skipped") == 3 and "level 1 (1x1 scores)" in out
    assert main(["selftrain", str(cfg_path), "self_training.curriculum=[0,0]"]) == 2
    assert "round 1 was trained at level 1" in capsys.readouterr().err
    assert main(["selftrain", str(cfg_path), "model.name=pipnet",
                 "self_training.curriculum=[1,0]", "--restart"]) == 2
    assert "has 0 coarse level(s)" in capsys.readouterr().err
    assert (run / "round_0" / "round.json").is_file()        # refused before deleting anything


def test_cli_lists_configs_and_reports_errors(tmp_path, capsys):
    assert main(["selftrain", "--list-configs"]) == 0
    assert "300w/selftrain/stc_cofw68_wflw68" in capsys.readouterr().out
    assert main(["selftrain"]) == 2
    path = write_config(tmp_path, "data: {train: [a], unlabelled: [b]}\n")
    assert main(["selftrain", str(path), "self_training.curriculm=[1]"]) == 2
    assert "did you mean 'self_training.curriculum'" in capsys.readouterr().err


@pytest.mark.slow   # trains a model for one epoch
def test_a_teacher_of_another_input_size_labels_its_own_crops(tmp_path, capsys):
    """Distillation (issue #9 item 5): a 96 px teacher as round 0 labels 96 px crops of the
    unlabelled faces; its points reach the 64 px student's crops through the image, and the
    student starts from model.init_weights."""
    from facemark.data.cache import CropCache
    from facemark.models.model_file import ModelInfo, load_model, save_model

    cfg_path = tiny_setup(tmp_path)
    torch.manual_seed(1)
    kw = dict(num_points=N, net_stride=32, num_nb=4, mean_face=MEAN_FACE,
              backbone="mobilenet_v2")
    teacher = create_model("pipnet", input_size=96, **kw).eval()
    save_model(teacher, ModelInfo("300w68", 96, "300w", {}),
               tmp_path / "teacher.pt")
    student0 = create_model("pipnet", input_size=64, **kw)
    save_model(student0, ModelInfo("300w68", 64, "300w", {}),
               tmp_path / "student0.pt")
    cfg = load_config(cfg_path, [
        f"self_training.init_checkpoint={tmp_path / 'teacher.pt'}",
        f"model.init_weights={tmp_path / 'student0.pt'}", "model.name=pipnet",
        "model.net_stride=32", "self_training.curriculum=[0]", "self_training.reinit=true",
        "optim.epochs=1"])
    starts = []

    import lightning as L

    class Start(L.Callback):
        def on_train_start(self, trainer, module):
            starts.append({k: v.clone() for k, v in module.model.state_dict().items()})

    result = self_train(cfg, callbacks=[Start()], progress=False)
    run = tmp_path / "runs" / "tiny_stc"
    assert result.rounds[0]["init_checkpoint"] and result.rounds[0]["test"] is None
    assert "n/a" in result.table()                          # round 0 has no test numbers
    # the student started from model.init_weights, not from the teacher
    ref = load_model(tmp_path / "student0.pt")[0].state_dict()
    assert all(torch.equal(starts[0][k], ref[k]) for k in ref if ref[k].is_floating_point())
    # the teacher labelled its own 96 px crops; the student's labels are the same points
    names = [str(x) for x in np.load(run / "round_1" / "pseudo_labels.npz")["caches"]]
    student_cache = CropCache.open(names[0])
    assert student_cache.size == 64
    teacher_dir = [p for p in (tmp_path / "cache").rglob("meta.json")
                   if json.loads(p.read_text())["size"] == 96]
    assert len(teacher_dir) == 1
    teacher_cache = CropCache.open(teacher_dir[0].parent)
    assert len(teacher_cache) == len(student_cache) == 8
    crops = np.stack([teacher_cache.image(i) for i in range(8)])
    with torch.no_grad():
        expected, _ = teacher.predict(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    expected = expected.numpy() * 96 - 0.5                  # teacher crop pixels
    points, _ = load_pseudo_labels(run / "round_1" / "pseudo_labels.npz", [student_cache])
    # same crop region at two sizes: student pixel = (teacher pixel + 0.5) * 64 / 96 - 0.5
    np.testing.assert_allclose(points[0], (expected + 0.5) * 64 / 96 - 0.5, atol=2e-3)
    assert load_model(result.model_path)[1].input_size == 64


def test_unlabelled_crops_keep_context_and_pseudo_labels_come_back_in_stored_pixels(tmp_path):
    """With data.context > 1, unlabelled crops are stored with that room around them (as
    labelled ones are) so box jitter finds image, not black fill; the model still labels
    the model crop, and its points come back in the stored crop's pixels."""
    from facemark.training.pseudo_labels import pseudo_label
    from facemark.training.unlabelled import open_or_build_unlabelled_cache

    cfg_path = tiny_setup(tmp_path)
    torch.manual_seed(0)
    model = create_model("pipnet", num_points=N, input_size=64, net_stride=32, num_nb=4,
                         mean_face=MEAN_FACE, backbone="mobilenet_v2").eval()
    out = {}
    for context in (1.0, 1.5):
        cfg = load_config(cfg_path, [f"data.context={context}"])
        rule = unlabelled_rules(cfg)[0]
        cache, _ = open_or_build_unlabelled_cache(cfg.data.unlabelled[0], rule, cfg, SkipLog(),
                                                  progress=False)
        assert (cache.context, cache.crop_size, cache.size) == (context, 64, round(64 * context))
        np.testing.assert_array_equal(cache.model_crop(0).shape, (64, 64, 3))
        points, conf = pseudo_label(model, cache, batch_size=4)
        out[context] = (cache, points, conf)
    plain, wide = out[1.0], out[1.5]
    # the same faces, the same model crops: the same points, once mapped to the model crop
    np.testing.assert_allclose(wide[0].model_crop(3), plain[0].model_crop(3), atol=2)
    np.testing.assert_allclose(wide[0].normalise(wide[1]), plain[0].normalise(plain[1]),
                               atol=2e-3)
    np.testing.assert_allclose(wide[2], plain[2], atol=2e-2)
    # stored-crop pixels: the model crop sits 16 px in from the stored crop's edge
    np.testing.assert_allclose(wide[1], plain[1] + 16, atol=0.2)


@pytest.mark.slow   # trains a model end to end
def test_self_training_with_context_reports_test_numbers(tmp_path):
    """Regression: with data.context > 1 the rounds' test evaluation asked the model for
    crops of the stored (context) size and stopped the run after its first round."""
    cfg = load_config(tiny_setup(tmp_path), ["data.context=1.5", "self_training.curriculum=[0]",
                                             "optim.epochs=1", "data.augment=pipnet"])
    result = self_train(cfg, progress=False)
    assert [r["test"] is not None for r in result.rounds] == [True, True]
    nme = [next(iter(r["test"].values()))["nme"] for r in result.rounds]
    assert all(np.isfinite(nme))

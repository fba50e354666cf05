"""DANN (domain-adversarial training, PIPNet Table 7's baseline): gradient reversal, the
coefficient schedule, the domain classifier, config errors, and a tiny end-to-end run on
synthetic faces (mixed batches, kill and resume, the model file, the CLI)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from synthetic import make_face, make_pts_dataset, make_unlabelled_crops

from facemark.cli import main
from facemark.configs import bundled_config_names, resolve_config
from facemark.errors import ConfigError
from facemark.models import create_model
from facemark.models.adversarial import (DomainClassifier, GradientReversal, grl_coefficient,
                                         reverse_gradient)
from facemark.training.config import load_config
from facemark.training.dann import DANNModule, check_dann, train_dann
from facemark.training.self_training import self_train
from facemark.training.unlabelled import unlabelled_rules

N = 68


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):   # (conftest.py)
    yield


# ---------------------------------------------------------------------------------------
# Gradient reversal, its schedule, the domain classifier
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("coeff", [0.0, 0.37, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_flips_and_scales_the_gradient(coeff):
    x = torch.randn(3, 5, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    y = reverse_gradient(x, coeff)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.equal(x.grad, -coeff * w)             # exactly -coeff times the gradient
    # as a module whose coefficient the trainer changes between steps
    layer = GradientReversal(coeff)
    x.grad = None
    (layer(x) * w).sum().backward()
    assert torch.equal(x.grad, -coeff * w)
    layer.coeff = 0.5
    x.grad = None
    (layer(x) * w).sum().backward()
    assert torch.equal(x.grad, -0.5 * w)


def test_gradient_reversal_only_touches_the_branch_behind_it():
    x = torch.randn(4, 3, requires_grad=True)
    (x.sum() + reverse_gradient(x, 0.25).pow(2).sum()).backward()
    torch.testing.assert_close(x.grad, 1 - 0.25 * 2 * x.detach(), rtol=0, atol=1e-6)


def test_coefficient_schedule_is_ganins():
    assert grl_coefficient(0.0) == 0.0
    for p in (0.1, 0.25, 0.5, 0.9, 1.0):
        assert grl_coefficient(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1, abs=1e-12)
    assert grl_coefficient(1.0) == pytest.approx(math.tanh(5))       # 0.9866 at the end
    ps = np.linspace(0, 1, 101)
    values = [grl_coefficient(p) for p in ps]
    assert all(b > a for a, b in zip(values, values[1:]))           # rises all the way
    assert grl_coefficient(-1) == 0.0 and grl_coefficient(7) == grl_coefficient(1)  # clipped
    assert grl_coefficient(0.3, gamma=5, max_coeff=0.1) == \
        pytest.approx(0.1 * (2 / (1 + math.exp(-1.5)) - 1))


def test_domain_classifier_shapes_and_errors():
    clf = DomainClassifier(16, hidden=[8, 4], dropout=0.1)
    assert clf(torch.rand(5, 16, 3, 3)).shape == (5,)
    assert clf(torch.rand(5, 16)).shape == (5,)
    assert DomainClassifier(16, hidden=[])(torch.rand(2, 16, 1, 1)).shape == (2,)
    with pytest.raises(ValueError, match=r"expected features \(B, 16, h, w\).*got \(5, 8, 3, 3\)"):
        clf(torch.rand(5, 8, 3, 3))
    with pytest.raises(ConfigError, match="hidden widths must be positive"):
        DomainClassifier(16, hidden=[0])
    with pytest.raises(ConfigError, match="dropout must be in"):
        DomainClassifier(16, dropout=1.0)


def test_model_features_feed_the_head():
    mean = np.random.default_rng(0).uniform(0.2, 0.8, (N, 2))
    m = create_model("pipnet", num_points=N, input_size=64, backbone="mobilenet_v2",
                     num_nb=4, mean_face=mean).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        feats = m.forward_features(x)
        assert feats.shape == (2, m.backbone.out_channels, 2, 2)
        out = m(x)
        for k, v in m.head(feats).items():
            torch.testing.assert_close(v, out[k])


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------
def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dann.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("override,message", [
    ("self_training.epochs=3", r"self_training.epochs.*optim.epochs"),
    ("self_training.labelled_fraction=0.5", r"labelled_fraction.*target_batch_size"),
    ("self_training.init_checkpoint=m.pt", r"init_checkpoint.*model.init_weights"),
    ("self_training.dann.gamma=0", r"'self_training.dann.gamma' must be > 0"),
    ("self_training.dann.loss_weight=-1", r"'self_training.dann.loss_weight' must be >= 0"),
    ("self_training.dann.dropout=1", r"'self_training.dann.dropout' must be in \[0, 1\)"),
    ("self_training.dann.target_batch_size=0", r"target_batch_size' must be >= 1"),
    ("self_training.dann.hidden=[64,0]", r"'self_training.dann.hidden' widths must be >= 1"),
    ("data.unlabelled=[]", "data.unlabelled' is empty"),
    ("self_training.boxes=detektor", "self_training.boxes"),
    ("trainer.devices=2", "dann: training with unlabelled data runs on one device"),
])
def test_config_errors_name_the_key(tmp_path, override, message):
    path = write_config(tmp_path, "data: {train: [a], unlabelled: [b]}\n"
                                  "self_training: {method: dann}\n")
    with pytest.raises(ConfigError, match=message):
        check_dann(load_config(path, [override]))


def test_config_parse_errors_and_the_other_trainer(tmp_path):
    path = write_config(tmp_path, "data: {train: [a], unlabelled: [b]}\n")
    with pytest.raises(ConfigError, match="'self_training.method': 'danm' is not one of stc, dann"):
        load_config(path, ["self_training.method=danm"])
    with pytest.raises(ConfigError, match="did you mean 'self_training.dann.loss_weight'"):
        load_config(path, ["self_training.dann.weight=2"])
    with pytest.raises(ConfigError, match="train_dann needs self_training.method=dann"):
        check_dann(load_config(path))
    with pytest.raises(ConfigError, match=r"method is 'dann': train it with .*train_dann"):
        self_train(load_config(path, ["self_training.method=dann"]))
    cfg = load_config(path, ["self_training.method=dann"])
    assert cfg.self_training.dann.hidden == [1024, 1024] and cfg.self_training.dann.gamma == 10


def test_bundled_dann_configs():
    import facemark.inference.detectors  # noqa: F401  (registers the "detector" face finder)

    names = [n for n in bundled_config_names() if "/selftrain/" in n and "dann" in n]
    assert {"300w/selftrain/dann_cofw68_wflw68", "300w/selftrain/dann_celeba",
            "300w/selftrain/shared68_dann"} <= set(names)
    for name in names:
        cfg = load_config(resolve_config(name))
        check_dann(cfg)
        assert cfg.model.name == "pipnet" and cfg.data.unlabelled
        assert len(unlabelled_rules(cfg)) == len(cfg.data.unlabelled)


# ---------------------------------------------------------------------------------------
# End to end on synthetic faces
# ---------------------------------------------------------------------------------------
def tiny_setup(tmp_path: Path, epochs: int = 2) -> Path:
    labelled = make_pts_dataset(tmp_path / "faces", n=12)
    unlabelled = make_unlabelled_crops(tmp_path / "unlabelled", 6)   # as ytf68/unlabeled
    return write_config(tmp_path, f"""
experiment: tiny_dann
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
  name: pipnet
  backbone: mobilenet_v2
  num_nb: 4
optim:
  lr: 1.0e-3
  epochs: {epochs}
  batch_size: 4
trainer:
  out_dir: {tmp_path / 'runs'}
  accelerator: cpu
  devices: 1
  log_every_n_steps: 1
  logger: csv
self_training:
  method: dann
  boxes: image
  dann: {{hidden: [32], target_batch_size: 2}}
""")


@pytest.mark.slow   # trains a model end to end (about 10 s)
def test_dann_trains_resumes_and_writes_a_plain_landmark_model(tmp_path, capsys):
    import lightning as L

    import facemark

    cfg_path = tiny_setup(tmp_path)
    run = tmp_path / "runs" / "tiny_dann"
    seen: list[tuple] = []

    class Spy(L.Callback):
        """Records (epoch, step, domain flags, mask rows, coefficient) of each batch."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append((trainer.current_epoch, trainer.global_step, batch["pseudo"].tolist(),
                         batch["mask"].any(dim=1).tolist(), module.grl.coeff))

    class Kill(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                raise RuntimeError("killed")

    grads: dict[str, float] = {}

    class Grads(L.Callback):
        def on_after_backward(self, trainer, module):
            grads["classifier"] = sum(float(p.grad.abs().sum())
                                      for p in module.domain_classifier.parameters())
            grads["backbone"] = sum(float(p.grad.abs().sum())
                                    for p in module.model.backbone.parameters())

    with pytest.raises(RuntimeError, match="killed"):
        train_dann(load_config(cfg_path), callbacks=[Spy(), Kill(), Grads()], progress=False)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "model.pt").exists()
    # 9 labelled training crops (3 validate), batches of 4 labelled + 2 unlabelled: 2 steps
    assert [(e, s) for e, s, *_ in seen] == [(0, 1), (0, 2)]
    for _, _, pseudo, labelled, _ in seen:
        assert pseudo == [False] * 4 + [True] * 2                  # source first, then target
        assert labelled == [True] * 4 + [False] * 2                # target crops: no landmark
    assert seen[0][4] == 0.0                                       # p = 0 at the first step
    assert seen[1][4] == pytest.approx(grl_coefficient(1 / 4))      # 1 of 4 steps done
    assert grads["classifier"] > 0 and grads["backbone"] > 0

    seen.clear()
    result = train_dann(load_config(cfg_path), callbacks=[Spy()], progress=False)
    assert [(e, s) for e, s, *_ in seen] == [(1, 3), (1, 4)]       # resumed at epoch 1
    assert seen[0][4] == pytest.approx(grl_coefficient(2 / 4))
    assert result.epochs == 2 and result.model_path == run / "model.pt"
    assert 0 < next(iter(result.test.values()))["nme"] < 1

    # the model file is an ordinary landmark model: no domain classifier in it
    blob = torch.load(result.model_path, map_location="cpu", weights_only=True)
    assert not any("domain" in k for k in blob["state_dict"])
    assert blob["info"]["self_training"]["method"] == "dann"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any(k.startswith("domain_classifier.") for k in ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["dann"]["hidden"] == [32]
    for path in (result.model_path, run / "checkpoints" / "last.ckpt"):
        landmarker = facemark.load(path)
        img, pts = make_face(np.random.default_rng(3), 160)
        box = np.concatenate([pts.min(0), pts.max(0)])[None]
        faces = landmarker.detect(img, boxes=box)
        assert len(faces) == 1 and faces[0].points.shape == (N, 2)
        assert np.isfinite(faces[0].points).all()
    from facemark.models.model_file import load_model

    model, info = load_model(result.model_path)
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[f"model.{k}"])        # the last epoch's weights
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "dann" and summary["labelled"] == 9 and summary["unlabelled"] == 6
    logs = "".join(p.read_text() for p in run.glob("logs/*/metrics.csv"))
    assert "train/domain_loss" in logs and "train/grl_coeff" in logs

    # the CLI: a finished run is not trained again; --method picks the trainer
    capsys.readouterr()
    assert main(["selftrain", str(cfg_path)]) == 0
    assert "test faces" in capsys.readouterr().out
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert after["global_step"] == 4
    assert main(["selftrain", str(cfg_path), "--method", "stc",           # not an STC folder
                 "self_training.curriculum=[0]"]) == 2
    assert "run folder of a supervised training" in capsys.readouterr().err
    assert main(["selftrain", str(cfg_path), "--init", "x.pt"]) == 2
    assert "model.init_weights" in capsys.readouterr().err


def test_module_needs_domain_flags():
    mean = np.random.default_rng(0).uniform(0.2, 0.8, (N, 2))
    m = create_model("pipnet", num_points=N, input_size=64, backbone="mobilenet_v2", num_nb=4,
                     mean_face=mean)
    from facemark.models.registry import model_config

    module = DANNModule(model_config(m), "300w68", {"lr": 1e-3}, dann={"hidden": [8]})
    assert module.domain_classifier.in_channels == m.backbone.out_channels
    assert module.grl_coefficient() == 0.0                           # outside a fit
    batch = {"image": torch.rand(2, 3, 64, 64), "landmarks": torch.rand(2, N, 2),
             "mask": torch.ones(2, N, dtype=torch.bool), "index": torch.arange(2)}
    with pytest.raises(ConfigError, match="'pseudo' flag"):
        module.training_step(batch, 0)


def test_runs_saved_before_the_dann_keys_still_resume(tmp_path):
    """A run folder's config.yaml written before ``self_training.method``/``dann`` existed
    resumes: keys it lacks that are at their defaults are no change of recipe."""
    import yaml

    from facemark.training.config import save_config
    from facemark.training.run import check_same_recipe

    path = write_config(tmp_path, "data: {train: [a]}\n")
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del old["self_training"]["method"], old["self_training"]["dann"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_same_recipe(cfg, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"another recipe \(self_training.method: None -> 'dann'"):
        check_same_recipe(load_config(path, ["self_training.method=dann"]),
                          tmp_path / "config.yaml")

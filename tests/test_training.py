"""End-to-end training on synthetic faces: fit, checkpoints, resume after a kill, NaN stop."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from synthetic import make_pts_dataset

from facemark.cli import main
from facemark.errors import ConfigError
from facemark.training.config import load_config
from facemark.training.module import NonFiniteLossError
from facemark.training.run import train

REPO = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **extra) -> Path:
    data = make_pts_dataset(tmp_path / "faces", n=24)
    text = f"""
experiment: tiny
data:
  train: [pts:{data}]
  val_fraction: 0.25
  input_size: 64
  cache_dir: {tmp_path / 'cache'}
  num_workers: 0
model:
  name: pipnet
  backbone: resnet18
  net_stride: 32
  num_nb: 4
optim:
  lr: 1.0e-3
  epochs: {extra.get('epochs', 2)}
  batch_size: 6
  milestones: [1]
trainer:
  out_dir: {tmp_path / 'runs'}
  accelerator: cpu
  devices: 1
  log_every_n_steps: 1
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow   # trains a model end to end
def test_train_writes_checkpoints_and_summary(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(tiny_config(tmp_path))
    result = train(cfg)
    run = tmp_path / "runs" / "tiny"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "config.yaml").is_file() and (run / "summary.json").is_file()
    assert result.epochs == 2
    assert result.best_val_nme is not None and result.best_val_nme > 0
    # The checkpoint rebuilds the model without the training config.
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["model_config"]["name"] == "pipnet"
    assert ckpt["epoch"] == 1
    # Running the same config again resumes; with no epochs left it ends at once.
    again = train(cfg)
    assert again.epochs == 2
    # ... but not with another recipe: the checkpoint's schedule belongs to the first one
    changed = load_config(tiny_config(tmp_path), ["optim.lr=0.5", "trainer.devices=1"])
    with pytest.raises(ConfigError, match=r"another recipe \(optim.lr: .* -> 0.5\).*--restart"):
        train(changed)


@pytest.mark.parametrize("has_val", [True, False])
def test_checkpoint_callbacks_have_distinct_state_keys(tmp_path, has_val):
    """Lightning refuses two ModelCheckpoints with one state key (issue 10: every bundled
    config has no validation set, and the best and last callbacks then collided)."""
    from facemark.training.checkpoints import RunCheckpoints

    callbacks = RunCheckpoints(tmp_path, has_val).callbacks
    assert len({cb.state_key for cb in callbacks}) == len(callbacks)


@pytest.mark.slow   # trains a model end to end
def test_train_without_validation_keeps_the_last_epoch_as_best(tmp_path):
    import json

    torch.set_num_threads(1)
    cfg = load_config(tiny_config(tmp_path, epochs=2),
                      ["data.val_fraction=0.0", "trainer.limit_train_batches=1"])
    result = train(cfg)
    ckpt = tmp_path / "runs" / "tiny" / "checkpoints"
    assert result.best_checkpoint == ckpt / "best.ckpt" and result.best_val_nme is None
    assert result.best_by == "last epoch (no validation set)" and "no validation set" in result.table()
    epochs = [torch.load(ckpt / f, map_location="cpu", weights_only=False)["epoch"]
              for f in ("best.ckpt", "last.ckpt")]
    assert epochs == [1, 1]
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert summary["best_by"] == result.best_by
    assert train(cfg).epochs == 2  # resumes from last.ckpt: nothing left to do


@pytest.mark.slow   # trains a model end to end
def test_resume_after_kill_continues_from_last_complete_epoch(tmp_path):
    cfg_path = tiny_config(tmp_path, epochs=6)
    last = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "facemark", "train", str(cfg_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while not last.is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert last.is_file(), "no checkpoint appeared before the kill"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert done < 5, "the run finished before it could be killed"
    seen = []

    import lightning as L

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen.append(trainer.current_epoch)

    result = train(load_config(cfg_path), callbacks=[Record()])
    assert seen[0] == done + 1  # continues after the last complete epoch, not from zero
    assert result.epochs == 6


@pytest.mark.slow   # trains a model end to end
def test_weight_average_is_validated_saved_and_resumed(tmp_path):
    """optim.ema_decay: checkpoints hold the average as their weights (what validation
    scored and what load_model reads) and the trained weights beside them; a resumed run
    trains on from the trained weights and keeps averaging."""
    import lightning as L

    from facemark.models.model_file import load_model

    torch.set_num_threads(1)
    cfg = load_config(tiny_config(tmp_path, epochs=2), ["optim.ema_decay=0.9"])

    class Interrupted(Exception):
        pass

    class StopAtSecondEpoch(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                raise Interrupted   # last.ckpt has epoch 0

    with pytest.raises(Interrupted):
        train(cfg, callbacks=[StopAtSecondEpoch()])
    last = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0
    average, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert set(average) == set(current) and "n_averaged" in ckpt["averaging_state"]
    moved = [k for k in average if average[k].is_floating_point()
             and not torch.equal(average[k], current[k])]
    assert any(k.endswith("weight") for k in moved), "the average equals the trained weights"
    model, _ = load_model(last)   # a checkpoint predicts with the average
    key = next(k for k in moved if k.endswith("weight"))
    assert torch.equal(model.state_dict()[key.removeprefix("model.")], average[key])

    seen = {}

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen["weights"] = module.state_dict()[key].clone()

    result = train(cfg, callbacks=[Record()])
    assert result.epochs == 2
    assert torch.equal(seen["weights"], current[key])   # trains on from the trained weights
    after = torch.load(last, map_location="cpu", weights_only=False)
    assert after["epoch"] == 1 and int(after["averaging_state"]["n_averaged"]) > \
        int(ckpt["averaging_state"]["n_averaged"])


def test_nan_loss_stops_with_the_batch(tmp_path, monkeypatch):
    cfg = load_config(tiny_config(tmp_path))
    from facemark.models.model import LandmarkModel

    original = LandmarkModel.loss

    def bad_loss(self, outputs, targets):
        total, parts = original(self, outputs, targets)
        return total * float("nan"), parts

    monkeypatch.setattr(LandmarkModel, "loss", bad_loss)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch 0 \(samples: face_"):
        train(cfg)


def test_cli_train_reports_config_errors(tmp_path, capsys):
    cfg_path = tiny_config(tmp_path)
    assert main(["train", str(cfg_path), "optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    assert main(["train", "no/such/config"]) == 2


@pytest.mark.slow   # trains a model end to end
def test_evaluate_a_checkpoint_and_a_model_file(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = load_config(tiny_config(tmp_path, epochs=1))
    train(cfg)
    ckpt = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    data = tmp_path / "faces"
    out = tmp_path / "eval"
    assert main(["evaluate", f"r18={ckpt}", "--data", str(data), "--out", str(out),
                 "--flip-test"]) == 0
    text = capsys.readouterr().out
    assert "r18" in text
    assert (out / "report.json").is_file() and (out / "ced.png").is_file()

    from facemark.models.model_file import load_model, save_model

    model, info = load_model(ckpt)
    assert info.crop_rule == "300w" and info.input_size == 64 and info.scheme == "300w68"
    pt = save_model(model, info, tmp_path / "tiny.pt")
    again, info2 = load_model(pt)
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(model.predict(x)[0], again.predict(x)[0])
    # A model of another scheme is refused with a clear message.
    bad = tmp_path / "bad.pt"
    info2.scheme = "wflw98"
    save_model(again, info2, bad)
    assert main(["evaluate", str(bad), "--data", str(data)]) == 2
    assert "scheme wflw98" in capsys.readouterr().err
    # A broken file names itself.
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert main(["evaluate", str(tmp_path / "junk.pt"), "--data", str(data)]) == 2
    assert "junk.pt" in capsys.readouterr().err


@pytest.mark.slow   # trains a model end to end
def test_ddp_on_two_cpu_processes(tmp_path):
    """--devices 2 with strategy=ddp: two processes, one summary, one set of checkpoints."""
    cfg_path = tiny_config(tmp_path, epochs=1)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "facemark", "train", str(cfg_path), "--devices", "2",
                          "trainer.strategy=ddp"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("best val NME") == 1
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow   # trains a model end to end
def test_fine_tune_from_weights_with_augment_overrides(tmp_path):
    torch.set_num_threads(1)
    first = train(load_config(tiny_config(tmp_path, epochs=1)))
    ckpt = first.last_checkpoint
    from facemark.models.model_file import load_model

    trained, _ = load_model(ckpt)
    seen = {}

    import lightning as L

    class Grab(L.Callback):
        def on_train_start(self, trainer, module):
            seen["state"] = {k: v.clone() for k, v in module.model.state_dict().items()}

    cfg = load_config(tiny_config(tmp_path, epochs=1), [
        "experiment=tuned", f"model.init_weights={ckpt}",
        "data.augment_args={corner_jitter: 0.1, p_corner: 1.0}"])
    assert cfg.data.augment_args == {"corner_jitter": 0.1, "p_corner": 1.0}
    train(cfg, callbacks=[Grab()])
    for k, v in trained.state_dict().items():
        assert torch.equal(seen["state"][k], v), k

    bad = load_config(tiny_config(tmp_path, epochs=1), ["experiment=bad1",
                                                        "data.augment_args={jiggle: 1}"])
    with pytest.raises(ConfigError, match="data.augment_args.*jiggle"):
        train(bad)
    other = load_config(tiny_config(tmp_path, epochs=1), ["experiment=bad2", "model.num_nb=2",
                                                          f"model.init_weights={ckpt}"])
    with pytest.raises(ConfigError, match="model.init_weights.*another architecture"):
        train(other)
    missing = load_config(tiny_config(tmp_path, epochs=1), ["experiment=bad3",
                                                            "model.init_weights=nope.ckpt"])
    with pytest.raises(ConfigError, match="model.init_weights.*not found"):
        train(missing)


@pytest.mark.slow   # trains a model end to end
def test_backbone_weights_reach_the_trained_model(tmp_path):
    """model.backbone_weights initialises the backbone of the model that trains (it once
    loaded into a throwaway model while training started from random weights)."""
    torch.set_num_threads(1)
    from facemark.models.backbones import create_backbone

    source = create_backbone("resnet18")
    with torch.no_grad():
        for p in source.parameters():
            p.fill_(0.0125)
    weights = tmp_path / "r18.pth"
    torch.save(source.state_dict(), weights)
    seen = {}

    import lightning as L

    class Grab(L.Callback):
        def on_train_start(self, trainer, module):
            seen["state"] = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}

    cfg = load_config(tiny_config(tmp_path, epochs=1), [f"model.backbone_weights={weights}"])
    train(cfg, callbacks=[Grab()])
    for k, v in source.state_dict().items():
        assert torch.equal(seen["state"][k], v), k
    bad = load_config(tiny_config(tmp_path, epochs=1), ["experiment=bad",
                                                        f"model.backbone_weights={tmp_path}/no.pth"])
    with pytest.raises(ConfigError, match="model.backbone_weights.*no such file"):
        train(bad)


def test_validation_split_has_its_own_seed(tmp_path):
    """The augmentation seed can change (self-training rounds) without moving the held-out
    faces: ``split_seed`` alone draws the split."""
    from facemark.training.datamodule import LandmarkDataModule

    cfg = load_config(tiny_config(tmp_path))
    splits = {}
    for seed, split_seed in ((0, None), (3, 0), (3, None)):
        data = LandmarkDataModule(cfg.data, seed=seed, split_seed=split_seed)
        data.setup()
        splits[(seed, split_seed)] = list(data.val_set.indices)
    assert splits[(3, 0)] == splits[(0, None)]
    assert splits[(3, None)] != splits[(0, None)]

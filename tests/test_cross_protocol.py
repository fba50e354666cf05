"""Cross-protocol training: config checks, batches mixing schemes, per-head losses, the two
stages end to end through ``facemark train`` on two synthetic datasets with different
schemes (68 points and face5), resuming, and per-scheme model files."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthetic import make_pts_dataset, write_pts

from facemark.cli import main
from facemark.data.convert import convert_landmarks
from facemark.errors import ConfigError, DataError
from facemark.models.model_file import load_model
from facemark.models import create_model, model_config
from facemark.models.norm import SepBN, attention_layers
from facemark.training.config import load_config
from facemark.models.cross_protocol import CrossProtocolNet
from facemark.training.cross_protocol import (
    CrossProtocolDataModule, CrossProtocolModule, FinetuneModule, ProtocolCollate, load_branch,
    parse_datasets)
from facemark.training.optim import build_optimizer

torch.set_num_threads(1)

MODEL = {"name": "pipnet", "backbone": "mobilenet_v2", "net_stride": 32, "num_nb": 4,
         "kwargs": {"norm_layer": "sepbn"}}


def face5_dataset(folder: Path, n: int, seed: int) -> Path:
    """Synthetic faces annotated with the 5-point scheme (converted from 68 points)."""
    make_pts_dataset(folder, n=n, seed=seed)
    for path in folder.glob("*.pts"):
        lines = path.read_text().splitlines()[3:3 + 68]
        pts = np.array([[float(v) - 1 for v in line.split()] for line in lines])
        write_pts(path, convert_landmarks(pts, "300w68", "face5"))
    return folder


def write_config(folder: Path, d68: Path, d5: Path, **cross) -> Path:
    tree = {
        "experiment": "cnt",
        "data": {"input_size": 64, "cache_dir": str(folder / "cache"), "num_workers": 0,
                 "val_fraction": 0.25, "augment": "sepbn"},
        "cross_protocol": {
            "datasets": [{"name": "ibug", "scheme": "300w68", "train": [f"pts:{d68}"]},
                         {"name": "five", "scheme": "face5", "train": [f"pts:{d5}"],
                          "crop_rule": "cross"}],
            **cross},
        "model": MODEL,
        "optim": {"optimizer": "sgd", "lr": 1e-2, "min_lr": 5e-5, "weight_decay": 5e-4,
                  "schedule": "cosine", "epochs": 2, "batch_size": 8},
        "temperature": {"start": 30.0, "end": 1.0, "epochs": 2},
        "trainer": {"out_dir": str(folder / "runs"), "accelerator": "cpu", "devices": 1,
                    "log_every_n_steps": 1},
    }
    path = folder / "cnt.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both stages through the CLI: 2 joint epochs, then 1 fine-tuning epoch per dataset."""
    folder = tmp_path_factory.mktemp("cnt")
    d68 = make_pts_dataset(folder / "f68", n=12, seed=0)
    d5 = face5_dataset(folder / "f5", n=8, seed=1)
    cfg = write_config(folder, d68, d5, finetune_epochs=1, finetune_backbone_lr=1e-7)
    assert main(["train", str(cfg)]) == 0
    return {"folder": folder, "config": cfg, "dir": folder / "runs" / "cnt", "d68": d68, "d5": d5}


# ---------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------
@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_train_writes_both_stages_and_per_head_models(run):
    d = run["dir"]
    for rel in ("config.yaml", "summary.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
                "models/ibug.pt", "models/five.pt", "models/ibug.finetuned.pt",
                "models/five.finetuned.pt", "finetune/ibug/checkpoints/last.ckpt",
                "finetune/five/checkpoints/last.ckpt"):
        assert (d / rel).is_file(), rel
    ckpt = torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1
    heads = ckpt["hyper_parameters"]["heads"]
    assert list(heads) == ["ibug", "five"]
    assert [h["scheme"] for h in heads.values()] == ["300w68", "face5"]
    assert heads["five"]["crop_rule"] == "cross" and heads["ibug"]["crop_rule"] == "300w"
    # one backbone, two heads; each head's mean face is its own dataset's
    keys = ckpt["state_dict"]
    assert any(k.startswith("net.heads.ibug.") for k in keys)
    assert any(k.startswith("net.heads.five.") for k in keys)
    assert not any(k.startswith("net.heads.") and ".backbone." in k for k in keys)
    assert np.shape(heads["ibug"]["model_config"]["mean_face"]) == (68, 2)
    assert np.shape(heads["five"]["model_config"]["mean_face"]) == (5, 2)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["epochs"] == 2 and set(summary["models"]) == {"ibug", "five"}
    assert set(summary["finetuned"]) == {"ibug", "five"}
    assert summary["best_val_nme"] > 0


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_both_datasets_feed_their_heads_and_the_temperature_anneals(run):
    rows = list(csv.DictReader(open(run["dir"] / "logs" / "version_0" / "metrics.csv")))
    ibug = [r["train/ibug/loss"] for r in rows if r.get("train/ibug/loss")]
    five = [r["train/five/loss"] for r in rows if r.get("train/five/loss")]
    assert ibug and five and all(np.isfinite(float(v)) for v in ibug + five)
    taus = [float(r["train/temperature"]) for r in rows if r.get("train/temperature")]
    assert taus == [30.0, 15.5]                        # 30 -> 1 over 2 epochs, per epoch
    for key in ("val/ibug/nme", "val/five/nme", "val/nme"):
        assert any(r.get(key) for r in rows), key


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_model_files_load_per_scheme_and_share_the_backbone(run):
    models = run["dir"] / "models"
    ibug, info68 = load_model(models / "ibug.pt")
    five, info5 = load_model(models / "five.pt")
    assert (info68.scheme, info68.crop_rule, info68.input_size) == ("300w68", "300w", 64)
    assert (info5.scheme, info5.crop_rule, info5.info["head"]) == ("face5", "cross", "five")
    assert all(isinstance(m, SepBN) for m in attention_layers(five)) and \
        len(list(attention_layers(five))) > 0
    epoch = torch.load(run["dir"] / "checkpoints" / "best.ckpt", map_location="cpu",
                       weights_only=False)["epoch"]
    assert list(attention_layers(five))[0].temperature == [30.0, 15.5][epoch]  # as trained
    a, b = ibug.state_dict(), five.state_dict()
    backbone = [k for k in a if k.startswith("backbone.")]
    assert backbone and all(torch.equal(a[k], b[k]) for k in backbone)
    x = torch.rand(3, 3, 64, 64)
    assert ibug.predict(x)[0].shape == (3, 68, 2)
    assert five.predict(x)[0].shape == (3, 5, 2)
    # a head read straight from the checkpoint is the exported file
    branch, info = load_branch(run["dir"] / "checkpoints" / "best.ckpt", scheme="face5")
    assert info.scheme == "face5" and branch.num_points == 5
    torch.testing.assert_close(branch.predict(x)[0], five.predict(x)[0])
    same, _ = load_branch(run["dir"] / "checkpoints" / "best.ckpt", name="ibug")
    torch.testing.assert_close(same.predict(x)[0], ibug.predict(x)[0])


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_fine_tuning_moves_the_head_and_barely_the_backbone(run):
    models = run["dir"] / "models"
    for name in ("ibug", "five"):
        before, _ = load_model(models / f"{name}.pt")
        after, info = load_model(models / f"{name}.finetuned.pt")
        assert info.info["head"] == name
        b = dict(before.named_parameters())
        a = dict(after.named_parameters())
        backbone = max((a[k] - b[k]).abs().max().item() for k in a if k.startswith("backbone."))
        head = max((a[k] - b[k]).abs().max().item() for k in a if k.startswith("head."))
        assert backbone < 1e-5 < head                 # lr 1e-7 vs 1e-2
    ft = torch.load(run["dir"] / "finetune" / "five" / "checkpoints" / "last.ckpt",
                    map_location="cpu", weights_only=False)
    assert ft["hyper_parameters"]["scheme"] == "face5"
    model, info = load_model(run["dir"] / "finetune" / "five" / "checkpoints" / "last.ckpt")
    assert model.num_points == 5 and info.crop_rule == "cross"


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_checkpoint_errors_say_what_to_do(run):
    best = run["dir"] / "checkpoints" / "best.ckpt"
    with pytest.raises(DataError, match=r"no head for scheme 'wflw98'.*ibug \(300w68\)"):
        load_branch(best, scheme="wflw98")
    with pytest.raises(DataError, match="no head named 'cofw'"):
        load_branch(best, name="cofw")
    with pytest.raises(ConfigError, match="name the head"):
        load_branch(best)
    with pytest.raises(DataError, match="not a cross-protocol checkpoint"):
        load_branch(run["dir"] / "finetune" / "five" / "checkpoints" / "last.ckpt", scheme="face5")
    with pytest.raises(DataError, match="not found"):
        load_branch(run["dir"] / "nope.ckpt", scheme="face5")


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_rerun_resumes_and_more_epochs_continue(run, capsys):
    cfg = str(run["config"])
    last = run["dir"] / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1
    capsys.readouterr()
    assert main(["train", cfg, "optim.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 2
    logs = sorted((run["dir"] / "logs").glob("version_*"), key=lambda p: int(p.name[8:]))
    rows = list(csv.DictReader(open(logs[-1] / "metrics.csv")))
    assert [float(r["train/temperature"]) for r in rows if r.get("train/temperature")] == [1.0]
    # the fine-tuning runs start again only if stage 1's best checkpoint changed
    best = torch.load(run["dir"] / "checkpoints" / "best.ckpt", map_location="cpu",
                      weights_only=False)
    assert ("fine-tuning it again" in out) == (best["epoch"] == 2)


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_changed_dataset_names_refuse_to_resume(run, tmp_path):
    text = run["config"].read_text().replace("name: five", "name: fives")
    cfg = tmp_path / "renamed.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match="differ from the heads"):
        from facemark.training.run import train
        train(load_config(cfg))


# ---------------------------------------------------------------------------------------
# Data: sampling and batches
# ---------------------------------------------------------------------------------------
def _data_module(run, sampling):
    cfg = load_config(run["config"])
    data = CrossProtocolDataModule(parse_datasets(cfg), cfg.data, batch_size=5, seed=0,
                                   sampling=sampling)
    data.setup("fit")                                  # caches exist already
    return data


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_proportional_sampling_sees_every_face_once_per_epoch(run):
    data = _data_module(run, "proportional")
    assert data.sizes == {"ibug": 9, "five": 6}       # 12 and 8 faces, 25% validate
    seen = {"ibug": 0, "five": 0}
    for batch in data.train_dataloader():
        assert batch["image"].shape[1:] == (3, 64, 64)
        for name, t in batch["targets"].items():
            assert t["landmarks"].shape[1:] == ((68, 2) if name == "ibug" else (5, 2))
            seen[name] += len(t["rows"])
    assert seen == {"ibug": 9, "five": 6}             # 3 batches of 5: every face once
    assert [len(v) for v in (data.val_sets[0], data.val_sets[1])] == [3, 2]


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_uniform_sampling_balances_the_datasets(run):
    data = _data_module(run, "uniform")
    weights = data.sampler_weights()
    assert float(weights[:9].sum()) == pytest.approx(1.0)
    assert float(weights[9:].sum()) == pytest.approx(1.0)
    draws = torch.multinomial(weights, 6000, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    assert abs(float((draws < 9).float().mean()) - 0.5) < 0.03


def test_collate_groups_faces_by_head():
    items = [{"image": torch.full((3, 4, 4), float(i)), "landmarks": torch.rand(n, 2),
              "mask": torch.ones(n, dtype=torch.bool), "index": i, "protocol": k}
             for i, (k, n) in enumerate([(1, 5), (0, 68), (1, 5), (1, 5)])]
    batch = ProtocolCollate(["ibug", "five"])(items)
    assert batch["protocol"].tolist() == [1, 0, 1, 1]
    assert batch["targets"]["five"]["rows"].tolist() == [0, 2, 3]
    assert batch["targets"]["ibug"]["rows"].tolist() == [1]
    torch.testing.assert_close(batch["targets"]["five"]["landmarks"][1], items[2]["landmarks"])
    assert batch["image"][3, 0, 0, 0] == 3.0


# ---------------------------------------------------------------------------------------
# Network and loss
# ---------------------------------------------------------------------------------------
def _coord_config(n: int, **kw) -> dict:
    with torch.device("meta"):
        model = create_model("coordnet", num_points=n, backbone="mobilenet_v2", input_size=64,
                             pool="avg", hidden=[8], norm_layer="sepbn", **kw)
    return model_config(model)


def test_heads_share_one_backbone_and_must_describe_the_same_network():
    net = CrossProtocolNet({"a": _coord_config(68), "b": _coord_config(5)})
    assert net.branch("a").backbone is net.backbone is net.branch("b").backbone
    assert net.branch("b").head is net.heads["b"] and net.branch("b").num_points == 5
    outputs = net(torch.rand(2, 3, 64, 64))
    assert outputs["a"]["coords"].shape == (2, 68, 2) and outputs["b"]["coords"].shape == (2, 5, 2)
    with pytest.raises(ConfigError, match=r"heads 'a' and 'b' describe different networks.*norm"):
        CrossProtocolNet({"a": _coord_config(68), "b": {**_coord_config(5), "norm_layer": "mixbn"}})
    with pytest.raises(ConfigError, match="no head 'c'"):
        net.branch("c")


@pytest.mark.parametrize("weighting", ["samples", "datasets"])
def test_each_face_is_penalised_by_its_own_head(weighting):
    torch.manual_seed(0)
    heads = {"a": {"model_config": _coord_config(68), "scheme": "300w68", "weight": 1.0},
             "b": {"model_config": _coord_config(5), "scheme": "face5", "weight": 2.0}}
    optim = {"optimizer": "sgd", "lr": 1e-3, "min_lr": 0.0, "momentum": 0.9,
             "weight_decay": 0.0, "schedule": "constant", "milestones": [], "gamma": 0.1,
             "epochs": 1}
    module = CrossProtocolModule(heads, optim, loss_weighting=weighting).eval()  # fixed stats
    items = [{"image": torch.rand(3, 64, 64), "landmarks": torch.rand(n, 2),
              "mask": torch.rand(n) > 0.2, "index": i, "protocol": k}
             for i, (k, n) in enumerate([(0, 68), (1, 5), (1, 5), (0, 68), (1, 5)])]
    batch = ProtocolCollate(["a", "b"])(items)
    with torch.no_grad():
        total = module.training_step(batch, 0)
        losses = {}
        for name, rows in (("a", [0, 3]), ("b", [1, 2, 4])):
            model = module.net.branch(name)
            out = model(torch.stack([items[i]["image"] for i in rows]))
            target = model.encode(torch.stack([items[i]["landmarks"] for i in rows]),
                                  torch.stack([items[i]["mask"] for i in rows]))
            losses[name] = model.loss(out, target)[0]
    expected = (2 / 5 * losses["a"] + 2.0 * 3 / 5 * losses["b"]) if weighting == "samples" \
        else (losses["a"] + 2.0 * losses["b"]) / 2
    torch.testing.assert_close(total, expected)


def test_finetune_optimizer_has_two_learning_rates_and_cosine_scales_both():
    optim = {"optimizer": "sgd", "lr": 1e-3, "min_lr": 5e-6, "momentum": 0.9,
             "weight_decay": 5e-4, "schedule": "cosine", "milestones": [], "gamma": 0.1,
             "epochs": 10}
    module = FinetuneModule(_coord_config(5), "face5", optim, backbone_lr=1e-7)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert [g["lr"] for g in opt.param_groups] == [1e-7, 1e-3]
    n_backbone = sum(p.numel() for p in module.model.backbone.parameters())
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == n_backbone
    for _ in range(10):
        opt.step()
        sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[1] == pytest.approx(5e-6) and lrs[0] == pytest.approx(1e-7 * 5e-3)
    step = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1.0}],
                           {**optim, "lr": 1.0, "schedule": "multistep", "milestones": [2, 4]})
    factors = [step["lr_scheduler"]["scheduler"].lr_lambdas[0](e) for e in range(6)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


# ---------------------------------------------------------------------------------------
# Config errors
# ---------------------------------------------------------------------------------------
def _cfg(tmp_path, datasets, **extra):
    tree = {"cross_protocol": {"datasets": datasets}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree))
    return load_config(path)


@pytest.mark.parametrize("datasets, match", [
    ([{"train": ["a"]}], r"datasets\[0\]\.scheme' is missing"),
    ([{"scheme": "wflw99", "train": ["a"]}], r"datasets\[0\]\.scheme"),
    ([{"scheme": "face5"}], r"datasets\[0\]\.train' is empty"),
    ([{"scheme": "face5", "train": [3]}], r"datasets\[0\]\.train' expects a list"),
    ([{"scheme": "face5", "train": ["a"], "wieght": 2}], r"datasets\[0\]\.wieght"),
    ([{"scheme": "face5", "train": ["a"], "weight": 0}], r"datasets\[0\]\.weight"),
    ([{"scheme": "face5", "train": ["a"], "crop_rule": "tight"}], r"datasets\[0\]\.crop_rule"),
    ([{"scheme": "face5", "train": ["a"]}, {"scheme": "face5", "train": ["b"]}],
     r"datasets\[1\]\.name': 'face5' is used twice"),
    ([{"name": "a.b", "scheme": "face5", "train": ["a"]}], r"datasets\[0\]\.name"),
])
def test_bad_dataset_entries_name_the_key(tmp_path, datasets, match):
    with pytest.raises(ConfigError, match=match):
        parse_datasets(_cfg(tmp_path, datasets))


def test_config_section_checks(tmp_path):
    ok = [{"scheme": "face5", "train": ["faces"]}]
    parsed = parse_datasets(_cfg(tmp_path, ok))
    assert parsed[0].name == "face5" and Path(parsed[0].train[0]).is_absolute()  # resolved
    with pytest.raises(ConfigError, match="data.train' must be empty"):
        parse_datasets(_cfg(tmp_path, ok, data={"train": ["x"]}))
    with pytest.raises(ConfigError, match="cross_protocol.sampling"):
        _cfg(tmp_path, ok, cross_protocol={"datasets": ok, "sampling": "balanced"})
    with pytest.raises(ConfigError, match="temperature.schedule"):
        _cfg(tmp_path, ok, temperature={"schedule": "cosine"})
    with pytest.raises(ConfigError, match="smaller_sizes' is for single-head"):
        _cfg(tmp_path, ok, data={"smaller_sizes": [96]})
    with pytest.raises(ConfigError, match="data.train' is empty"):
        _cfg(tmp_path, [])


@pytest.mark.slow   # needs the two-stage training run (module fixture)
def test_backbone_weights_initialise_the_shared_backbone(run, tmp_path):
    import lightning as L
    import torch

    from facemark.models.backbones import create_backbone
    from facemark.training.run import train

    source = create_backbone(MODEL["backbone"], norm_layer=MODEL["kwargs"]["norm_layer"])
    with torch.no_grad():
        for p in source.parameters():
            p.fill_(0.02)
    weights = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), weights)
    seen = {}

    class Grab(L.Callback):
        def on_train_start(self, trainer, module):
            seen["state"] = {k: v.clone() for k, v in module.net.backbone.state_dict().items()}

    cfg = load_config(run["config"], ["experiment=cnt_imagenet", "optim.epochs=1",
                                      "cross_protocol.finetune_epochs=0",
                                      f"trainer.out_dir={tmp_path / 'runs'}",
                                      f"model.backbone_weights={weights}"])
    train(cfg, callbacks=[Grab()])
    for k, v in source.state_dict().items():
        assert torch.equal(seen["state"][k], v), k


def test_brute_force_sepbn_is_refused_with_what_to_use(tmp_path):
    from facemark.errors import ConfigError
    from facemark.training.run import train

    d68 = make_pts_dataset(tmp_path / "f68", n=6, seed=0)
    d5 = face5_dataset(tmp_path / "f5", n=6, seed=1)
    cfg = load_config(write_config(tmp_path, d68, d5), ["model.kwargs.norm_layer=sepbn_brute"])
    with pytest.raises(ConfigError, match="norm_layer: sepbn"):
        train(cfg)
    assert not (tmp_path / "runs" / "cnt" / "checkpoints").exists()

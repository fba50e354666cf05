"""Training config: YAML, overrides, and errors that name the key."""
from pathlib import Path

import numpy as np
import pytest

from facemark.errors import ConfigError
from facemark.training.config import load_config, parse_override


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_are_the_paper_recipe(tmp_path):
    cfg = load_config(write(tmp_path, "data:\n  train: [x]\n"))
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.milestones, cfg.optim.epochs,
            cfg.optim.batch_size) == ("adam", 1e-4, [30, 50], 60, 16)
    assert (cfg.model.backbone, cfg.model.net_stride, cfg.model.num_nb) == ("resnet18", 32, 10)
    assert cfg.data.input_size == 256


def test_overrides_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, "data:\n  train: [pts:faces]\n"),
                      ["optim.lr=1e-3", "optim.milestones=[5, 8]", "trainer.devices=2",
                       "data.input_size=128"])
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.milestones == [5, 8]
    assert cfg.trainer.devices == 2 and cfg.data.input_size == 128
    assert cfg.data.train == [f"pts:{(tmp_path / 'faces').resolve()}"]


def test_paths_in_overrides_are_the_current_directorys(tmp_path, monkeypatch):
    """A path typed at a shell means the shell's folder; one in the file, the file's."""
    conf = tmp_path / "configs"
    conf.mkdir()
    shell = tmp_path / "shell"
    shell.mkdir()
    path = conf / "cfg.yaml"
    path.write_text("data:\n  train: [pts:faces]\n  cache_dir: cache\n"
                    "model:\n  init_weights: a.ckpt\n")
    monkeypatch.chdir(shell)
    cfg = load_config(path, ["model.backbone_weights=../w.pth", "trainer.out_dir=runs",
                             "self_training.init_checkpoint=t.ckpt",
                             "data.unlabelled=[folder:photos, folder:/abs/x]"])
    assert cfg.data.train == [f"pts:{conf.resolve() / 'faces'}"]
    assert cfg.data.cache_dir == str(conf.resolve() / "cache")
    assert cfg.model.init_weights == str(conf.resolve() / "a.ckpt")
    assert cfg.model.backbone_weights == str(tmp_path.resolve() / "w.pth")
    assert cfg.trainer.out_dir == str(shell.resolve() / "runs")
    assert cfg.self_training.init_checkpoint == str(shell.resolve() / "t.ckpt")
    assert cfg.data.unlabelled == [f"folder:{shell.resolve() / 'photos'}", "folder:/abs/x"]
    cfg = load_config(path, ["data.train=[pts:faces]", "model.init_weights=b.ckpt",
                             "data.scheme=own.yaml"], check=False)
    assert cfg.data.train == [f"pts:{shell.resolve() / 'faces'}"]
    assert cfg.data.scheme == str(shell.resolve() / "own.yaml")
    assert cfg.model.init_weights == str(shell.resolve() / "b.ckpt")


def test_environment_variables_in_dataset_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEMARK_DATA", str(tmp_path))
    cfg = load_config(write(tmp_path, "data:\n  train: [wflw:$FACEMARK_DATA/list.txt]\n"))
    assert cfg.data.train == [f"wflw:{tmp_path}/list.txt"]


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", ["optim.lrr", "optim.lr"]),
    ("optim.epochs=abc", ["optim.epochs", "int", "abc"]),
    ("optim.optimizer=rmsprop", ["optim.optimizer", "rmsprop", "adam"]),
    ("optim.lr=-1", ["optim.lr", "> 0"]),
    ("trainer.precision=8bit", ["trainer.precision"]),
    ("nosection.key=1", ["nosection"]),
    ("data.skip_bad=maybe", ["data.skip_bad", "true/false"]),
    ("data.context=0.8", ["data.context", "[1, 4]"]),
    ("data.repeat=[0]", ["data.repeat", "at least one of them > 0"]),
    ("data.repeat=[-1]", ["data.repeat", ">= 0"]),
    ("trainer.threads=0", ["trainer.threads", ">= 1"]),
    ("optim.ema_decay=1.0", ["optim.ema_decay", "[0, 1)"]),
    ("optim.ema_decay=-0.1", ["optim.ema_decay", "[0, 1)"]),
])
def test_bad_values_name_the_key(tmp_path, override, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "data:\n  train: [x]\n"), [override])
    for w in words:
        assert w in str(err.value)


def test_empty_training_set_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="data.train"):
        load_config(write(tmp_path, "optim:\n  lr: 0.1\n"))
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: invalid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=1e-3") == ("a.b", 1e-3)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=null") == ("a.b", None)
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_output_folders_follow_the_config_file(tmp_path):
    sub = tmp_path / "exp"
    sub.mkdir()
    cfg = load_config(write(sub, "data:\n  train: [x]\n  cache_dir: c\ntrainer:\n  out_dir: ../r\n"))
    assert cfg.data.cache_dir == str((sub / "c").resolve())
    assert cfg.trainer.out_dir == str((tmp_path / "r").resolve())


def test_bundled_configs_put_outputs_in_the_working_directory(tmp_path, monkeypatch):
    from facemark.configs import resolve_config

    monkeypatch.chdir(tmp_path)
    cfg = load_config(resolve_config("300w/pipnet_r18"), check=False)
    assert cfg.data.cache_dir == str(tmp_path / "cache")
    assert cfg.trainer.out_dir == str(tmp_path / "runs")


def test_cache_folders_differ_by_context_and_keep_their_old_names():
    from facemark.training.datamodule import cache_path

    plain = cache_path("c", "pts:x/afw", "300w68", "300w", 128)
    assert plain == cache_path("c", "pts:x/afw", "300w68", "300w", 128, 1.0)
    assert plain.name == "afw-300w-128-" + __import__("hashlib").sha1(
        b"pts:x/afw|300w68|300w|128").hexdigest()[:10]
    assert cache_path("c", "pts:x/afw", "300w68", "300w", 128, 1.5) != plain


def test_repeat_zero_keeps_a_set_in_the_split_but_trains_on_none_of_it(tmp_path):
    """data.repeat 0: the set's faces still take part in the seeded validation split (so the
    validation faces are those of the run with repeat 1) but none of them is trained on."""
    from facemark.training.datamodule import LandmarkDataModule

    cfg = load_config(write(tmp_path, "data:\n  train: [a, b]\n  repeat: [2, 0]\n"))
    assert cfg.data.repeat == [2, 0]
    module = LandmarkDataModule.__new__(LandmarkDataModule)
    module.data = cfg.data
    module.train_caches = [[None] * 3, [None] * 4]      # two sets of 3 and 4 faces
    assert module._repeated(np.arange(7)) == [0, 0, 1, 1, 2, 2]


def test_trainer_threads_sets_pytorchs_cpu_threads(tmp_path):
    import torch

    from facemark.training.fit import make_trainer

    class NoCheckpoints:
        callbacks = []

    cfg = load_config(write(tmp_path, "data:\n  train: [x]\n"),
                      ["trainer.threads=1", "trainer.logger=none", "trainer.accelerator=cpu"])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        make_trainer(cfg, tmp_path / "run", data=None, checkpoints=NoCheckpoints())
        assert torch.get_num_threads() == 1
        cfg.trainer.threads = None                  # the default leaves PyTorch's setting alone
        torch.set_num_threads(2)
        make_trainer(cfg, tmp_path / "run", data=None, checkpoints=NoCheckpoints())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_flip_per_training_set(tmp_path):
    """data.flip [true, false]: the second set's faces are never mirrored (its annotations'
    left-right offset survives), the first set's follow the recipe; a wrong length, a
    non-boolean or flip without augmentation name the key."""
    from synthetic import make_pts_dataset

    from facemark.training.datamodule import LandmarkDataModule

    a = make_pts_dataset(tmp_path / "a", n=3)
    b = make_pts_dataset(tmp_path / "b", n=3)
    text = (f"data:\n  train: [pts:{a}, pts:{b}]\n  input_size: 64\n  val_fraction: 0\n"
            f"  cache_dir: {tmp_path / 'cache'}\n  flip: [true, false]\n")
    cfg = load_config(write(tmp_path, text))
    module = LandmarkDataModule(cfg.data)
    module.setup()
    sets = module.train_augmented.inner.datasets
    assert [d.augment.flip for d in sets] == [0.5, 0.0]
    assert sets[0].augment.rotation == sets[1].augment.rotation   # the rest of the recipe
    drawn = [sets[1].augment.draw(np.random.default_rng(s)).flipped for s in range(40)]
    assert not any(drawn)
    for override, words in [("data.flip=[true]", ["data.flip", "one entry per"]),
                            ("data.flip=[1, 0]", ["data.flip[0]", "true/false"])]:
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, text), [override])
        assert all(w in str(err.value) for w in words)
    with pytest.raises(ConfigError, match="data.flip"):
        LandmarkDataModule(load_config(write(tmp_path, text), ["data.augment=none"]).data).setup()

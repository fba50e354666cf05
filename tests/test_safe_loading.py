"""Model files and checkpoints load weights only: a crafted file runs nothing, and a file
with the wrong contents gives one line naming it (issue 12, security part)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import facemark
from facemark.cli import main
from facemark.errors import DataError
from facemark.models.model_file import load_model
from facemark.models.serialization import read_checkpoint, safe_load

DEFAULT_PT = Path(facemark.__file__).parent / "weights" / "default.pt"


class _RunsCode:
    """Unpickling this calls ``os.system`` (the issue's reproduction)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture()
def evil(tmp_path):
    """(a crafted .pt, the same as .ckpt, the file it would create if it ran)."""
    marker = tmp_path / "pwned"
    pt = tmp_path / "evil.pt"
    torch.save(_RunsCode(marker), pt)
    ckpt = tmp_path / "evil.ckpt"
    ckpt.write_bytes(pt.read_bytes())
    return pt, ckpt, marker


def _one_line_error(capsys, path: Path) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facemark: error: "), err
    assert str(path) in err
    return err


def test_shipped_model_holds_only_allowed_types():
    assert torch.serialization.get_unsafe_globals_in_checkpoint(DEFAULT_PT) == []
    blob = safe_load(DEFAULT_PT)
    assert blob["format"] == "facemark.model" and "model_config" in blob


def test_crafted_file_runs_nothing_in_any_loader(evil):
    pt, ckpt, marker = evil
    for path in (pt, ckpt):
        with pytest.raises(DataError, match=rf"{path.name}: refused to load: it asks for "
                                            r"(posix|os|nt)\.system"):
            load_model(path)
        with pytest.raises(DataError, match="refused to load"):
            facemark.load(str(path))
    from facemark.training.cross_protocol import load_branch
    from facemark.training.module import LandmarkModule

    with pytest.raises(DataError, match="refused to load"):
        load_branch(ckpt, scheme="300w68")
    with pytest.raises(DataError, match="refused to load"):
        LandmarkModule.load_from_checkpoint(ckpt)
    assert not marker.exists()


def test_crafted_file_on_the_command_line(evil, tmp_path, capsys):
    pt, ckpt, marker = evil
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 128, np.uint8))
    assert main(["detect", str(photo), "--model", str(pt), "-o", str(tmp_path / "out")]) == 2
    assert "refused to load" in _one_line_error(capsys, pt)
    data = tmp_path / "data"
    data.mkdir()
    cv2.imwrite(str(data / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    pts = "\n".join(f"{10 + i % 40} {10 + i // 2}" for i in range(68))
    (data / "a.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts}\n}}\n")
    assert main(["evaluate", str(ckpt), "--data", str(data)]) == 2
    assert "refused to load" in _one_line_error(capsys, ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("contents, message", [
    ({"state_dict": {}, "hyper_parameters": 5}, "hyper_parameters or state_dict is not a dict"),
    ({"format": "facemark.model", "version": 1, "state_dict": {}, "scheme": "300w68",
      "input_size": 64}, "facemark model file without model_config"),
    ({"format": "facemark.model", "version": 1, "model_config": {"name": "nope"},
      "state_dict": {}, "scheme": "300w68", "input_size": 64}, "does not describe a model"),
    ([1, 2, 3], "not a facemark model file or training checkpoint"),
    ({"state_dict": {}, "hyper_parameters": {"model_config": {"name": "pipnet_r18",
                                                               "num_points": 68},
                                             "scheme": "300w68", "data_info": {}}},
     "checkpoint that names no input size"),
])
def test_wrong_contents_are_one_line(contents, message, tmp_path, capsys):
    path = tmp_path / "model.ckpt"
    torch.save(contents, path)
    with pytest.raises(DataError, match=message) as info:
        load_model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 128, np.uint8))
    assert main(["detect", str(photo), "--model", str(path), "-o", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.ckpt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="random.ckpt: cannot read model file") as info:
        read_checkpoint(path, resume=True)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch training run on synthetic faces: (config path, run folder)."""
    from test_training import tiny_config

    from facemark.training.config import load_config
    from facemark.training.run import train

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("tiny")
    cfg_path = tiny_config(tmp, epochs=1)
    train(load_config(cfg_path))
    return cfg_path, tmp / "runs" / "tiny"


def test_training_checkpoints_hold_only_allowed_types(tiny_run):
    _, run = tiny_run
    for name in ("last.ckpt", "best.ckpt"):
        path = run / "checkpoints" / name
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        read_checkpoint(path, resume=True)
        model, info = load_model(path)
        assert info.scheme == "300w68"


@pytest.mark.parametrize("kind", ["crafted", "random", "model file", "weights only"])
def test_train_resume_refuses_bad_checkpoints(kind, tiny_run, evil, tmp_path, capsys):
    cfg_path, run = tiny_run
    pt, ckpt, marker = evil
    if kind == "crafted":
        bad = ckpt
    elif kind == "random":
        bad = tmp_path / "random.ckpt"
        bad.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "model file":
        bad = DEFAULT_PT
    else:
        blob = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        bad = tmp_path / "weights.ckpt"
        torch.save({k: blob[k] for k in ("state_dict", "hyper_parameters",
                                          "pytorch-lightning_version")}, bad)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(["train", str(cfg_path), "--resume", str(bad)]) == 2
    err = _one_line_error(capsys, bad)
    assert {"crafted": "refused to load", "random": "cannot read model file",
            "model file": "a facemark model file, not a training checkpoint",
            "weights only": "cannot resume training from it"}[kind] in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert not marker.exists()

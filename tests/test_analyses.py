"""The paper's analyses: grid accuracy, head comparison, implicit prior."""
from pathlib import Path

import numpy as np
import pytest
import torch

from synthetic import make_pts_dataset

from facemark.cli import main
from facemark.data.formats import open_dataset
from facemark.evaluation.analyses import grid_accuracy, implicit_prior, probe_images
from facemark.models.crop_predict import iter_crops
from facemark.models.model_file import ModelInfo, load_model, save_model
from facemark.models.registry import create_model


class PeakModel:
    """A fake head: a 4x4 score map peaking at the true cell of every landmark (shifted by
    ``shift`` cells in x), to check grid_accuracy against a known answer."""

    def __init__(self, samples, size, shift=0):
        self.samples, self.size, self.shift, self.calls = samples, size, shift, 0
        self.maps = None

    def prepare(self, crop_rule):
        maps = []
        for idx, _, mats in iter_crops(self.samples, crop_rule=crop_rule, input_size=self.size,
                                       batch_size=1000):
            for j, i in enumerate(idx):
                from facemark.data.crops import transform_points

                gt = (transform_points(self.samples[i].landmarks, mats[j]) + 0.5) / self.size
                cell = np.clip(np.floor(gt * 4), 0, 3).astype(int)
                m = np.zeros((len(gt), 4, 4), np.float32)
                m[np.arange(len(gt)), cell[:, 1], (cell[:, 0] + self.shift) % 4] = 1
                maps.append(m)
        self.maps = torch.from_numpy(np.stack(maps))

    def __call__(self, x):
        out = self.maps[self.calls:self.calls + len(x)]
        self.calls += len(x)
        return {"score": out}


def test_grid_accuracy_known_answers(tmp_path):
    samples = open_dataset(make_pts_dataset(tmp_path / "faces", n=6))
    right = PeakModel(samples, 64)
    right.prepare("300w")
    assert grid_accuracy(right, samples, crop_rule="300w", input_size=64, batch_size=1000) == 1.0
    wrong = PeakModel(samples, 64, shift=1)
    wrong.prepare("300w")
    assert grid_accuracy(wrong, samples, crop_rule="300w", input_size=64, batch_size=1000) == 0.0


def tiny_model_file(tmp_path: Path, name="pipnet", **kw) -> Path:
    torch.manual_seed(0)
    mean = np.random.default_rng(0).uniform(0.2, 0.8, (68, 2))
    extra = {"mean_face": mean, "num_nb": 4} if name == "pipnet" else {}
    model = create_model(name, num_points=68, input_size=64, backbone="resnet18", **extra, **kw)
    info = ModelInfo(scheme="300w68", input_size=64, crop_rule="300w", model_config={})
    return save_model(model, info, tmp_path / f"{name}.pt")


def test_analyze_cli_writes_tables_and_figures(tmp_path, capsys):
    data = make_pts_dataset(tmp_path / "faces", n=6)
    pip = tiny_model_file(tmp_path)
    coord = tiny_model_file(tmp_path, "coordnet")
    out = tmp_path / "out"
    assert main(["analyze", "grid", f"pip={pip}", "--data", str(data), "--out", str(out)]) == 0
    assert (out / "grid_accuracy.md").is_file() and (out / "grid_accuracy.png").is_file()
    assert main(["analyze", "heads", f"pip={pip}", f"coord={coord}", "--data", str(data),
                 "--out", str(out)]) == 0
    table = (out / "heads.md").read_text()
    assert "| pip |" in table and "| coord |" in table
    # several test sets (Fig. 12's groups): one column block each, named or by folder
    other = make_pts_dataset(tmp_path / "other", n=4, seed=3)
    assert main(["analyze", "heads", f"pip={pip}", f"coord={coord}", "--data", f"a={data}",
                 "--data", str(other), "--out", str(out)]) == 0
    table = (out / "heads.md").read_text()
    assert "NME % (a)" in table and "Point-Var (e-3) (other)" in table
    assert (out / "heads.png").is_file()
    assert main(["analyze", "heads", str(pip), "--data", str(data), "--data", str(data)]) == 2
    assert "two test sets named" in capsys.readouterr().err
    assert main(["analyze", "prior", str(pip), "--out", str(out)]) == 0
    assert (out / "implicit_prior.png").is_file()
    # CoordNet has no score map: a clear error, not a traceback.
    assert main(["analyze", "grid", str(coord), "--data", str(data)]) == 2
    assert "score map" in capsys.readouterr().err


def test_implicit_prior_distance_is_zero_for_the_mean_face(tmp_path):
    model, info = load_model(tiny_model_file(tmp_path))
    mean = np.asarray(info.model_config["mean_face"])

    class Constant:
        def predict(self, x):
            return torch.from_numpy(np.repeat(mean[None], len(x), 0)), torch.ones(len(x), 68)

    res = implicit_prior(Constant(), info, probe_images(64))
    assert set(res) == {"black", "grey", "noise"}
    for _, dist in res.values():
        assert dist == pytest.approx(0.0, abs=1e-9)

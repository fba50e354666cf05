"""Every bundled config runs end to end: one optimiser step on tiny synthetic data.

The configs read the official dataset releases through ``$FACEMARK_DATA`` (and
``shared68_stc`` through ``../shared/data`` from the current directory). Here three faces
per dataset are written in each release's own layout under a temporary ``$FACEMARK_DATA``
(300-W, Menpo and 300VW ``.pts`` folders, the AFLW-19 ``.mat``, COFW and COFW-68 ``.mat``
files, WFLW's lists, CelebA's image folder, ytf68's CSV tables), and each config is run
through the command it is meant for: ``facemark selftrain`` for configs with
``data.unlabelled`` (STC rounds, or one DANN run with ``self_training.method: dann``),
``facemark train`` otherwise (which runs the cross-protocol stages
when the config has ``cross_protocol.datasets``). The overrides keep each config's model,
data and recipe and shrink only the run: one epoch of one batch of 2 faces (one optimiser
step per fit; every self-training round and every fine-tuning stage is a fit), the
smallest input size the architecture accepts, no loader workers. Configs are ordered by
the datasets they read and share one crop cache folder, so each cache is built once per
dataset and input size.

Test-only departures from the real data: AFLW-19's training split (the first 20000
faces of ``ra``) is lowered to the first 3, so a config does not open 20000 crops; and
synthetic faces are invisible to real face detectors, so configs that find the unlabelled
faces with a detector run with a stub detector that boxes the middle of each image.

The list is read from the config folder, so a config added later is run too. A config that
cannot run on tiny CPU data goes in ``CANNOT_RUN`` with the reason (none today).
Time: 138 configs in about 4 minutes of CPU, one thread (3.4 min user + 0.7 min system on
the 2-core development machine; the ResNet-101, MapNet-s1, self-training and CNT
configs take 5-20 s each, most others about 1 s).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthetic import (make_300vw_dataset, make_aflw_dataset, make_cofw68_dataset,
                       make_cofw_dataset, make_csv_dataset, make_image_folder,
                       make_pts_dataset, make_wflw_dataset)

from facemark.cli import main
from facemark.configs import bundled_config_names, resolve_config
from facemark.data.formats import aflw
from facemark.training.config import load_config

pytestmark = pytest.mark.slow

#: bundled configs that cannot run on tiny CPU data, with the reason (skipped, reported)
CANNOT_RUN: dict[str, str] = {}

#: AFLW-19's training split is the first 20000 faces of ``ra``; here the first 3
#: (aflw.NUM_TRAIN is lowered in each test)
AFLW_TRAIN = 3

#: input sizes tried, smallest first: the first one the model (and curriculum) accepts
SIZES = (32, 64, 128, 256)


def _layout_key(name: str) -> tuple:
    """Group the configs by what they run and the training data they read."""
    cfg = load_config(resolve_config(name), check=False)
    specs = list(cfg.data.train)
    for d in cfg.cross_protocol.datasets:
        train = d.get("train") or []
        specs += [train] if isinstance(train, str) else list(train)
    return (bool(cfg.cross_protocol.datasets), bool(cfg.data.unlabelled), sorted(map(str, specs)),
            name)


CONFIGS = sorted(bundled_config_names(), key=_layout_key)


# ---------------------------------------------------------------------------------------
# tiny datasets in the official layouts
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """``<root>/data`` is $FACEMARK_DATA, ``<root>/shared/data`` the development data,
    ``<root>/work`` the current directory, ``<root>/cache`` the crop caches of all runs."""
    root = tmp_path_factory.mktemp("bundled")
    data = root / "data"
    n = 3
    for i, rel in enumerate(("300W/lfpw/trainset", "300W/helen/trainset", "300W/afw",
                             "300W/lfpw/testset", "300W/helen/testset", "300W/ibug",
                             "Menpo/trainset", "Menpo/testset")):
        make_pts_dataset(data / rel, n=n, seed=i, size=96)
    # 300VW: video 001 is a training video of the protocol, 114 a test video (category 1)
    make_300vw_dataset(data / "300VW", {"001": n, "114": n})
    make_aflw_dataset(data / "AFLW", n_images=n, n_test=n, num_train=AFLW_TRAIN)
    make_cofw_dataset(data / "COFW", n_train=n, n_test=n)
    make_cofw68_dataset(data / "COFW68", data / "COFW", n=n)
    make_wflw_dataset(data / "WFLW", n_train=n, n_test=n)
    make_image_folder(data / "CelebA" / "img_celeba", n=n)
    shared = root / "shared" / "data"
    make_pts_dataset(shared / "300w" / "helen", n=n, seed=20, size=96)
    make_pts_dataset(shared / "300w" / "afw", n=n, seed=21, size=96)
    make_csv_dataset(shared / "ytf68" / "training_frames_keypoints.csv", n=n, seed=22)
    make_csv_dataset(shared / "ytf68" / "test_frames_keypoints.csv", n=n, seed=23)
    make_image_folder(shared / "ytf68" / "unlabeled", n=n, seed=24)
    (root / "work").mkdir()
    return root


class _StubDetector:
    """Boxes the middle of every image, where the synthetic face is."""

    name = "stub"

    def load(self):
        return self

    def detect(self, image):
        h, w = image.shape[:2]
        return [SimpleNamespace(box=np.array([0.2 * w, 0.15 * h, 0.8 * w, 0.85 * h],
                                             np.float32), score=1.0)]


def _smallest_input_size(name: str, overrides: list[str]) -> int:
    """The smallest of SIZES at which the config's model (and curriculum) can be built."""
    from facemark.data.schemes import get_scheme
    from facemark.training.run import build_model_config
    from facemark.training.self_training import _check_model_levels

    errors = []
    for size in SIZES:
        cfg = load_config(resolve_config(name), [*overrides, f"data.input_size={size}"],
                          check=False)
        schemes = [d.get("scheme", cfg.data.scheme) for d in cfg.cross_protocol.datasets] \
            or [cfg.data.scheme]
        try:
            for scheme in schemes:
                cfg.data.scheme = scheme
                n = get_scheme(scheme).num_points
                mean = np.stack([np.linspace(0.2, 0.8, n), np.linspace(0.3, 0.7, n)], axis=1)
                with torch.device("meta"):
                    build_model_config(cfg, mean)
                if cfg.data.unlabelled:
                    _check_model_levels(cfg)
            return size
        except Exception as e:  # noqa: BLE001 - the next size may fit
            errors.append(f"{size}: {e}")
    pytest.fail(f"{name}: no input size in {SIZES} builds: {'; '.join(errors)}")


# ---------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------
@pytest.fixture
def out_dir(tmp_path):
    """The runs' folder, deleted after each test: a config's checkpoints take up to 1.5 GB
    (ResNet-101 with Adam's moments), all of them together tens of GB."""
    out = tmp_path / "runs"
    yield out
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("name", CONFIGS)
def test_bundled_config_runs_one_step(name, data_root, out_dir, monkeypatch, capsys):
    if name in CANNOT_RUN:
        pytest.skip(f"{name} cannot run on tiny CPU data: {CANNOT_RUN[name]}")
    torch.set_num_threads(1)
    monkeypatch.setenv("FACEMARK_DATA", str(data_root / "data"))
    monkeypatch.setattr(aflw, "NUM_TRAIN", AFLW_TRAIN)
    monkeypatch.chdir(data_root / "work")     # shared68_stc reads ../shared/data
    base = load_config(resolve_config(name))
    overrides = [
        "optim.epochs=1", "optim.batch_size=2", "data.num_workers=0",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "trainer.accelerator=cpu", "trainer.devices=1", "trainer.log_every_n_steps=1",
        f"data.cache_dir={data_root / 'cache'}", f"trainer.out_dir={out_dir}",
    ]
    if base.cross_protocol.finetune_epochs > 0:
        overrides.append("cross_protocol.finetune_epochs=1")
    if base.self_training.epochs is not None:
        overrides.append("self_training.epochs=1")
    selftrain = bool(base.data.unlabelled)
    if selftrain:
        overrides.append("self_training.pseudo_batch_size=4")
        if base.self_training.boxes.startswith("detector"):
            import facemark.inference.detectors as detectors

            monkeypatch.setattr(detectors, "create_detector", lambda *a, **k: _StubDetector())
    overrides.append(f"data.input_size={_smallest_input_size(name, overrides)}")

    rc = main(["selftrain" if selftrain else "train", name, *overrides])
    captured = capsys.readouterr()
    assert rc == 0, f"{name} failed:\n{captured.err[-3000:]}"

    run = out_dir / base.experiment
    summary = json.loads((run / "summary.json").read_text())
    if selftrain and base.self_training.method == "dann":   # one run, a plain model file
        assert summary["method"] == "dann" and summary["epochs"] == 1
        assert (run / "model.pt").is_file()
        step = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu",
                          weights_only=False, mmap=True)["global_step"]
        assert step == 1, f"{name}: {step} optimiser steps"
        return
    if selftrain:
        rounds = summary["rounds"]
        assert len(rounds) == 1 + len(base.self_training.curriculum)
        assert all(r["epochs"] == 1 for r in rounds)
        assert (run / "model.pt").is_file()
        for r in range(len(rounds)):
            assert (run / f"round_{r}" / "checkpoints" / "last.ckpt").is_file()
        return
    ckpt = run / "checkpoints"
    assert (ckpt / "last.ckpt").is_file() and (ckpt / "best.ckpt").is_file()
    assert summary["epochs"] == 1
    step = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=False,
                      mmap=True)["global_step"]
    assert step == 1, f"{name}: {step} optimiser steps"
    has_val = bool(base.data.val) or base.data.val_fraction > 0 or \
        any(d.get("val") for d in base.cross_protocol.datasets)
    if not has_val:   # no validation set: the best checkpoint is the last epoch, and says so
        assert summary["best_by"] == "last epoch (no validation set)"
        assert Path(summary["best_checkpoint"]) == ckpt / "best.ckpt"
        assert summary["best_val_nme"] is None
    if base.cross_protocol.datasets:   # a model file per head, and per fine-tuned head
        from facemark.training.cross_protocol import parse_datasets

        for d in parse_datasets(base):
            assert (run / "models" / f"{d.name}.pt").is_file()
            if base.cross_protocol.finetune_epochs > 0:
                assert (run / "models" / f"{d.name}.finetuned.pt").is_file()

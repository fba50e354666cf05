"""Run a supervised training experiment from a :class:`TrainConfig`.

Layout of a run folder ``<trainer.out_dir>/<experiment>/``::

    config.yaml              the full resolved config
    checkpoints/last.ckpt    end of the last complete epoch (resume point)
    checkpoints/best.ckpt    lowest validation NME; without a validation set the last
                             epoch (last.ckpt links to it; the summary's best_by says which)
    logs/                    CSV (and/or TensorBoard) logs
    summary.json             final numbers, written at the end

Running the same command again resumes from ``last.ckpt`` (the last complete epoch);
Lightning writes checkpoints atomically, so a kill never leaves a broken resume point.
"""
from __future__ import annotations

import json
import time
from typing import Any
from pathlib import Path

from facemark.data.schemes import get_scheme, scheme_to_dict
from facemark.errors import ConfigError, FacemarkError
from facemark.io import atomic_write_text
from facemark.training.checkpoints import RunCheckpoints
from facemark.training.config import TrainConfig, save_config
from facemark.training.cross_protocol import train_cross_protocol
from facemark.training.datamodule import LandmarkDataModule
from facemark.training.fit import (TrainResult, build_model_config, initialise_model,
                                   make_trainer)
from facemark.training.memory_format import ChannelsLast
from facemark.training.module import LandmarkModule, fit
from facemark.training.temperature import TemperatureAnnealing


#: config keys that may change between a run and its resumption (where and how it runs).
RESUMABLE_CHANGES = ("trainer.", "data.num_workers", "data.cache_dir", "data.skip_bad")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def check_same_recipe(cfg: TrainConfig, saved: Path) -> None:
    """Refuse to resume a run whose saved ``config.yaml`` has another recipe (data, model,
    optimiser, schedule): the checkpoint's optimiser and schedule state belong to it."""
    import yaml

    if not saved.is_file():
        return
    try:
        before = _flatten(yaml.safe_load(saved.read_text()) or {})
    except yaml.YAMLError:
        return
    now = _flatten(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    # keys absent from the saved config are settings added to facemark since (at defaults)
    defaults = _flatten(yaml.safe_load(yaml.safe_dump(TrainConfig().to_dict())))
    changed = [k for k in sorted(set(before) | set(now))
               if not k.startswith(RESUMABLE_CHANGES) and before.get(k) != now.get(k)
               and not (k not in before and (now.get(k) in (None, [], {})
                                             or now.get(k) == defaults.get(k)))]
    if changed:
        diff = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise ConfigError(f"{saved.parent} was started with another recipe ({diff}); resuming "
                          "would mix the two. Start again with --restart "
                          "(train(..., overwrite=True)) or set another experiment name")


def train(cfg: TrainConfig, *, resume: str | None = "auto", overwrite: bool = False,
          callbacks: list | None = None) -> TrainResult:
    """Train (or resume) the experiment described by ``cfg``.

    Args:
        cfg: the resolved config (``load_config``).
        resume: ``"auto"`` continues from ``last.ckpt`` when the run folder has one, a path
            resumes from that checkpoint, None always starts fresh (then the run folder must
            be new or ``overwrite`` set).
        overwrite: allow starting fresh in a run folder that already has checkpoints.
        callbacks: extra Lightning callbacks (tests use this to interrupt a run).
    """
    if cfg.cross_protocol.datasets:  # one backbone, a head per dataset (SepBN paper, Sec. IV)
        return train_cross_protocol(cfg, resume=resume, overwrite=overwrite, callbacks=callbacks)
    import lightning as L

    start = time.time()
    run_dir = Path(cfg.trainer.out_dir) / cfg.experiment
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path = None
    if resume == "auto":
        ckpt_path = str(last) if last.is_file() else None
    elif resume:
        if not Path(resume).is_file():
            raise ConfigError(f"--resume: checkpoint not found: {resume}")
        ckpt_path = str(resume)
    elif last.is_file() and not overwrite:
        raise ConfigError(f"{run_dir} already has checkpoints; resume it (default), pick another "
                          "experiment name, or start again with --restart "
                          "(train(..., overwrite=True))")
    if ckpt_path and resume == "auto":
        check_same_recipe(cfg, run_dir / "config.yaml")
    if ckpt_path:
        print(f"resuming from {ckpt_path}")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = LandmarkDataModule(cfg.data, batch_size=cfg.optim.batch_size, seed=cfg.seed)
    data.prepare_data()
    data.setup("fit")
    if ckpt_path:
        module = LandmarkModule.load_from_checkpoint(ckpt_path, map_location="cpu",
                                                     sample_names=data.train_names)
    else:
        model_cfg = build_model_config(cfg, data.mean_face())
        scheme = get_scheme(cfg.data.scheme)   # a name or a scheme file: stored whole
        data_info = {"crop_rule": cfg.data.crop_rule, "input_size": cfg.data.input_size,
                     "train": list(cfg.data.train), "experiment": cfg.experiment,
                     "scheme_definition": scheme_to_dict(scheme)}
        module = LandmarkModule(model_cfg, scheme.name, cfg.to_dict()["optim"],
                                data_info=data_info, sample_names=data.train_names,
                                smaller_sizes=cfg.data.smaller_sizes,
                                smaller_p=cfg.data.smaller_p)
        initialise_model(module.model, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    has_val = data.val_set is not None and len(data.val_set) > 0
    checkpoints = RunCheckpoints(ckpt_dir, has_val)
    trainer = make_trainer(
        cfg, run_dir, data, checkpoints,
        [TemperatureAnnealing.from_config(cfg.temperature),  # SepBN/MixBN only
         *([ChannelsLast()] if cfg.trainer.channels_last else []), *(callbacks or [])])
    fit(trainer, module, data, ckpt_path)  # weights only: a crafted checkpoint runs nothing

    result = TrainResult(
        run_dir=run_dir, best_checkpoint=checkpoints.best_path(),
        last_checkpoint=last if last.is_file() else None,
        best_val_nme=checkpoints.best_score(),
        epochs=trainer.current_epoch, seconds=time.time() - start,
        is_global_zero=trainer.is_global_zero, best_by=checkpoints.best_by)
    if trainer.is_global_zero:
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(result).items()
                   if k != "is_global_zero"}
        summary["skipped"] = [str(e) for e in data.skip_log.skipped]
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return result


__all__ = ["TrainResult", "train", "build_model_config", "FacemarkError"]

"""What every trainer shares (supervised ``run.py``, ``self_training.py``,
``cross_protocol.py``): the run result, the model config and its initial weights, the
loggers, the per-epoch data seed, and one Lightning ``Trainer`` factory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError
from facemark.models.backbones import load_backbone_weights
from facemark.models.model_file import load_model
from facemark.models.registry import create_model, model_arguments, model_config
from facemark.training.config import TrainConfig


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_val_nme: float | None
    epochs: int
    seconds: float
    is_global_zero: bool = True  # False on the other processes of a DDP run
    best_by: str = "lowest val/nme"  # or "last epoch (no validation set)"

    def table(self) -> str:
        rows = [("run", str(self.run_dir)),
                ("epochs", str(self.epochs)),
                ("best val NME", "n/a" if self.best_val_nme is None else f"{100 * self.best_val_nme:.3f}%"),
                ("best checkpoint", f"{self.best_checkpoint} ({self.best_by})"),
                ("last checkpoint", str(self.last_checkpoint)),
                ("time", f"{self.seconds / 60:.1f} min")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_model_config(cfg: TrainConfig, mean_face) -> dict:
    """The model registry config for this experiment (mean face from the training data)."""
    m = cfg.model
    kwargs = dict(m.kwargs)
    kwargs.update(backbone=m.backbone, net_stride=m.net_stride, num_nb=m.num_nb)
    if "mean_face" in model_arguments(m.name):
        kwargs["mean_face"] = mean_face
    try:
        model = create_model(m.name, num_points=get_scheme(cfg.data.scheme).num_points,
                             input_size=cfg.data.input_size, **kwargs)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"config section 'model': {e}") from None
    return model_config(model)


def load_backbone_init(model, path: str) -> None:
    """Load ``model.backbone_weights`` (ImageNet) into a freshly built model's backbone.

    The model config holds the architecture only, so every trainer calls this on the model
    it trains, after building it from the config.

    Raises:
        ConfigError: unreadable or mismatching weights (the message names the file).
    """
    try:
        report = load_backbone_weights(model.backbone, path)
    except DataError as e:
        raise ConfigError(f"config key 'model.backbone_weights': {e}") from None
    print(f"backbone initialised from {path} (skipped: {len(report.get('skipped', []))} "
          "classifier keys)")


def init_from(model, path: str) -> None:
    """Load a trained model's weights (``.ckpt`` / ``.pt``) into ``model`` (fine-tuning).

    Raises:
        ConfigError: the file is missing, or its architecture differs (names the key).
    """
    try:
        source, _ = load_model(path)
    except DataError as e:
        raise ConfigError(f"config key 'model.init_weights': {e}") from None
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"config key 'model.init_weights': {path} holds another architecture "
                          f"({first})") from None
    print(f"initialised from {path}")


def initialise_model(model, cfg) -> None:
    """A fresh (not resumed) run's start: ``model.backbone_weights`` (ImageNet) into the
    backbone, then ``model.init_weights`` (a trained model) over the whole model."""
    if cfg.model.backbone_weights:
        load_backbone_init(model, cfg.model.backbone_weights)
    if cfg.model.init_weights:
        init_from(model, cfg.model.init_weights)


class EpochSeed:
    """Lightning callback: tell the training data which epoch starts (fresh augmentation)."""

    def __new__(cls, datamodule):
        from lightning.pytorch.callbacks import Callback

        class EpochSeed(Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                datamodule.set_epoch(trainer.current_epoch)

        return EpochSeed()


def make_loggers(cfg: TrainConfig, run_dir: Path):
    """The loggers ``trainer.logger`` asks for (False for "none")."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    kind = cfg.trainer.logger
    out = []
    if kind in ("csv", "both"):
        out.append(CSVLogger(run_dir, name="logs"))  # version_N: a resume never overwrites
    if kind in ("tensorboard", "both"):
        try:
            out.append(TensorBoardLogger(run_dir, name="tb"))
        except ModuleNotFoundError as e:
            raise ConfigError(f"trainer.logger={kind} needs tensorboard installed ({e})") from None
    return out or False


def weight_average(decay: float):
    """Lightning's EMA callback: after every optimiser step the average becomes
    ``decay * average + (1 - decay) * weights`` (batch-norm statistics too). Lightning
    swaps the average in for validation, saves it as the checkpoint's ``state_dict`` (the
    weights being trained go to ``current_model_state``, from which a resume continues) and
    leaves it in the model when training ends."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    return EMAWeightAveraging(decay=float(decay))


def make_trainer(cfg: TrainConfig, run_dir: Path, data, checkpoints, callbacks=(), *,
                 epochs: int | None = None, strategy: str | None = None,
                 devices=None, num_nodes: int | None = None):
    """A Lightning Trainer with the run layout every trainer uses.

    Args:
        cfg: the run's config (``trainer`` section: accelerator, precision, logging, limits;
            ``threads`` sets PyTorch's CPU thread count for this process here).
        run_dir: the run folder (logs under it).
        data: the data module (told each epoch's number, :class:`EpochSeed`).
        checkpoints: the run's :class:`~facemark.training.checkpoints.RunCheckpoints`.
        callbacks: more callbacks, after the standard ones (checkpoints, learning-rate
            monitor where there is a logger, progress bar, epoch seed, and the weight
            average where ``optim.ema_decay`` asks for one).
        epochs, strategy, devices, num_nodes: instead of ``cfg.optim.epochs`` and
            ``cfg.trainer``'s.
    """
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar

    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    loggers = make_loggers(cfg, run_dir)
    monitor = [LearningRateMonitor("epoch")] if loggers else []   # it needs a logger
    average = [weight_average(cfg.optim.ema_decay)] if cfg.optim.ema_decay else []
    return L.Trainer(
        max_epochs=cfg.optim.epochs if epochs is None else epochs,
        accelerator=t.accelerator, devices=t.devices if devices is None else devices,
        num_nodes=t.num_nodes if num_nodes is None else num_nodes,
        strategy=t.strategy if strategy is None else strategy, precision=t.precision,
        logger=loggers, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip_val, default_root_dir=run_dir,
        callbacks=[*checkpoints.callbacks, *monitor, TQDMProgressBar(), EpochSeed(data),
                   *average, *callbacks],
        enable_model_summary=False, deterministic=False)

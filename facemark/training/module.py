"""The supervised LightningModule: one landmark model, its loss, validation NME, optimiser.

The module owns no model code: it builds a :class:`facemark.models.model.LandmarkModel`
from a JSON-able model config (so a checkpoint rebuilds it without the training config),
encodes targets with the model's codec, and validates with the same ``decode`` that
evaluation and inference use.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, FacemarkError
from facemark.evaluation.metrics import nme, summarize
from facemark.evaluation.sepbn import best_of_k_points
from facemark.models.norm import num_domains, set_domain
from facemark.models.registry import model_from_config
from facemark.models.serialization import read_checkpoint
from facemark.training.optim import build_optimizer


class SafeCheckpoints:
    """Mixin for LightningModules: ``load_from_checkpoint`` never runs code from the file.

    The checkpoint is first read and checked with
    :func:`facemark.models.serialization.read_checkpoint` (a crafted, corrupt or foreign
    file gives a one-line ``DataError`` naming it), then Lightning loads it with
    ``weights_only=True``.
    """

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **kwargs):
        read_checkpoint(checkpoint_path)
        kwargs["weights_only"] = True
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location, **kwargs)


class NonFiniteLossError(FacemarkError):
    """The loss became NaN or infinite; the message names the batch's samples."""


def check_smaller_sizes(model, sizes: list[int] | None, p: float) -> list[int]:
    """The ``smaller_sizes`` of :class:`LandmarkModule`, checked against ``model``.

    Raises:
        ConfigError: naming ``data.smaller_sizes`` / ``data.smaller_p``.
    """
    sizes = list(sizes or [])
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"config key 'data.smaller_p' must be in [0, 1], got {p!r}")
    for size in sizes:
        if not model.head.encodes_other_grids:
            raise ConfigError(f"config key 'data.smaller_sizes': {type(model.head).__name__} "
                              f"trains on {model.input_size} px crops only")
        try:
            model.check_other_input_size(size)
        except ConfigError as e:
            raise ConfigError(f"config key 'data.smaller_sizes': {e}") from None
        if size == model.input_size:
            raise ConfigError(f"config key 'data.smaller_sizes': {size} is the model's own "
                              "input size; list smaller sides only")
    return sizes


def fit(trainer, module, datamodule, ckpt_path: str | None = None) -> None:
    """``trainer.fit``, resuming from ``ckpt_path`` (if given) without running code from it.

    Raises:
        DataError: ``ckpt_path`` is crafted, corrupt, or not a resumable training checkpoint.
    """
    if ckpt_path:
        read_checkpoint(ckpt_path, resume=True)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)


class LandmarkModule(SafeCheckpoints, L.LightningModule):
    """Supervised training of one landmark model.

    Args:
        model_config: ``facemark.models.registry.model_config`` output (name + kwargs,
            mean face included), from which the model is built.
        scheme: landmark scheme name (validation NME uses its normaliser).
        optim: the ``optim`` section of the training config as a dict.
        data_info: crop rule, input size and training sets, stored in checkpoints so a
            checkpoint alone predicts (``facemark.models.model_file.load_model``).
        sample_names: names of the training crops, to name the culprits of a NaN loss.
        smaller_sizes: crop sides (pixels, below the model's input size) that a training
            batch is shrunk to with probability ``smaller_p`` (one of them at random,
            bilinear), with targets on that size's grid: the model learns to predict on the
            smaller first-pass crops of ``Landmarker(first_pass_size=...)`` too. Validation
            stays at the model's own size.
        smaller_p: probability that a batch is shrunk (0 to 1).

    Raises:
        ConfigError: a size the model cannot train on (its head encodes one grid only, or
            the size is not a multiple of its cell), or ``smaller_p`` outside [0, 1].
    """

    def __init__(self, model_config: dict[str, Any], scheme: str, optim: dict[str, Any],
                 data_info: dict[str, Any] | None = None, sample_names: list[str] | None = None,
                 smaller_sizes: list[int] | None = None, smaller_p: float = 0.5):
        super().__init__()
        self.save_hyperparameters(ignore=["sample_names"])
        self.model = model_from_config(model_config)
        self.smaller_sizes = check_smaller_sizes(self.model, smaller_sizes, smaller_p)
        self.smaller_p = float(smaller_p)
        # brute-force SepBN: route each face by its dataset (batch["domain"]); validate
        # best-of-K, an oracle (facemark.evaluation.sepbn)
        self.num_domains = num_domains(self.model)
        self.scheme_name = scheme
        self.optim = dict(optim)
        self.sample_names = sample_names
        self._val_pred: list[np.ndarray] = []
        self._val_true: list[np.ndarray] = []

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1] -> (points (B, N, 2) normalised, confidence (B, N))."""
        return self.model.predict(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.num_domains:
            set_domain(self.model, batch["domain"])
        images, size = self.training_images(batch["image"])
        outputs = self.model(images)
        targets = self.model.encode(batch["landmarks"], batch["mask"], input_size=size)
        loss, parts = self.model.loss(outputs, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._nan_message(batch, batch_idx, loss))
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bs)
        return loss

    def train(self, mode: bool = True) -> "LandmarkModule":
        """``nn.Module.train``; with ``optim.norm_eval`` the batch-norm layers stay in eval
        mode (they normalise with their running statistics and do not update them)."""
        super().train(mode)
        if mode and self.optim.get("norm_eval"):
            for module in self.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def on_train_start(self) -> None:
        # Lightning never calls train() on the module (it keeps the modes it was given and
        # restores them after validation): apply norm_eval here, for fresh and resumed runs
        if self.optim.get("norm_eval"):
            self.train()

    def training_images(self, images: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        """The batch as trained: shrunk to one of ``smaller_sizes`` with probability
        ``smaller_p`` (drawn from torch's seeded generator), else as it is; and the side it
        was shrunk to (None: unchanged). Normalised landmark coordinates do not change:
        ``align_corners=False`` keeps the pixel-centre convention of the crops."""
        if not self.smaller_sizes or float(torch.rand(())) >= self.smaller_p:
            return images, None
        size = self.smaller_sizes[int(torch.randint(len(self.smaller_sizes), ()))]
        shrunk = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                 align_corners=False)
        return shrunk, size

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.num_domains:  # no stale labels outside training steps
            set_domain(self.model, None)

    def _nan_message(self, batch, batch_idx: int, loss: torch.Tensor) -> str:
        idx = batch["index"].tolist()
        names = [self.sample_names[i] for i in idx] if self.sample_names else idx
        shown = ", ".join(str(n) for n in names[:8]) + (" ..." if len(names) > 8 else "")
        return (f"training loss is {loss.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (samples: {shown}); lower optim.lr, check these samples with "
                "'facemark data check', or try trainer.precision=32-true")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        true = batch["landmarks"].clone()
        true[~batch["mask"]] = float("nan")
        if self.num_domains:  # the paper's best-of-K test: an oracle (logged as val/nme too)
            best, _ = best_of_k_points(self.model, batch["image"], true.float().cpu().numpy(),
                                       self.scheme_name)
            points = torch.from_numpy(best)
        else:
            points, _ = self.model.predict(batch["image"])
        self._val_pred.append(points.float().cpu().numpy())
        self._val_true.append(true.float().cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        if not self._val_pred:
            return
        pred = np.concatenate(self._val_pred)
        true = np.concatenate(self._val_true)
        self._val_pred.clear()
        self._val_true.clear()
        pred_t = torch.from_numpy(pred).to(self.device)
        true_t = torch.from_numpy(true).to(self.device)
        # DDP: every rank holds a shard of the validation set; gather them all.
        if self.trainer.world_size > 1:
            pred = self.all_gather(pred_t).reshape(-1, *pred.shape[1:]).cpu().numpy()
            true = self.all_gather(true_t).reshape(-1, *true.shape[1:]).cpu().numpy()
        # NME is scale invariant, so normalised crop coordinates give the image-space NME.
        errors = nme(pred, true, get_scheme(self.scheme_name))
        stats = summarize(errors, threshold=0.1)
        self.log("val/nme", float(stats["nme"]), prog_bar=True, sync_dist=False, rank_zero_only=False)
        self.log("val/fr", float(stats["fr"]), sync_dist=False)
        self.log("val/auc", float(stats["auc"]), sync_dist=False)
        if self.num_domains:  # say in the logs that val/nme is the best-of-K oracle
            self.log("val/nme_best_of_k_oracle", float(stats["nme"]), sync_dist=False)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return build_optimizer(params, self.optim, torch_schedulers=True)

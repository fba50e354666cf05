"""Domain-adversarial training (DANN): the UDA / GSSL baseline of PIPNet's Table 7.

Ganin and Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015. The
PIPNet paper (papers/pipnet.txt, Sec. 4.5, Table 7) runs it next to standard self-training
and STC on the same data: 300W labelled, COFW + WFLW training images (UDA) or CelebA
(GSSL) unlabelled. One training run, no pseudo-labels:

* every batch holds ``optim.batch_size`` labelled crops (the source domain, label 0) and
  ``self_training.dann.target_batch_size`` unlabelled crops (the target domain, label 1),
  from the same crop caches, boxes and crop rules as self-training
  (:func:`facemark.training.unlabelled.open_or_build_unlabelled_cache`);
* the landmark loss counts the labelled crops only (unlabelled crops have no annotated
  point, so the head's masked loss skips them); an epoch is one pass over the labelled
  crops, so the landmark training sees what ``facemark train`` would;
* a :class:`~facemark.models.adversarial.DomainClassifier` on the backbone's globally
  pooled features, behind a :class:`~facemark.models.adversarial.GradientReversal`
  layer, learns source vs target (binary cross-entropy); the reversed gradient pushes
  the backbone towards features it cannot tell apart. The reversal coefficient follows
  ``max_coeff * (2 / (1 + exp(-gamma * p)) - 1)``, p = optimiser steps done / all steps.

Loss = landmark loss + ``loss_weight`` * domain loss. The optimiser and schedule are the
``optim`` section's, over the model and the domain classifier (Ganin's annealed SGD
learning rate is not reproduced: the comparison with self-training keeps one recipe).

``self_training`` keys (``method: dann``; :class:`facemark.training.config.DANNConfig`):

``boxes``, ``crop_rule``
    how the unlabelled faces are found and cropped, as for self-training.
``dann.loss_weight``
    weight of the domain loss (default 1).
``dann.max_coeff``, ``dann.gamma``
    the reversal coefficient's schedule (default 1 and 10, Ganin and Lempitsky's).
``dann.hidden``, ``dann.dropout``
    the domain classifier's hidden widths (default [1024, 1024]) and dropout (0.5).
``dann.target_batch_size``
    unlabelled crops per batch (None, the default: ``optim.batch_size``, half of each
    batch, as Ganin and Lempitsky).

The pseudo-label keys (``curriculum``, ``reinit``, ``pseudo_batch_size``, ``flip_test``)
do not apply; ``epochs``, ``labelled_fraction`` and ``init_checkpoint`` are refused
(``optim.epochs``, ``dann.target_batch_size`` and ``model.init_weights`` say those here).

Run folder ``<trainer.out_dir>/<experiment>/``, as ``facemark train``'s plus the model::

    config.yaml                   the resolved config
    checkpoints/last.ckpt         end of the last complete epoch (resume point)
    checkpoints/best.ckpt         lowest validation NME (labelled data); without a
                                  validation set the last epoch
    logs/                         CSV logs: train/domain_loss, train/domain_acc,
                                  train/grl_coeff besides the landmark losses
    model.pt                      the landmark model at the last epoch, without the domain
                                  classifier (``facemark detect``/``evaluate`` load it)
    summary.json                  numbers of the run, test NME per data.test entry

Running the same command again resumes a killed run from ``last.ckpt``. Both
checkpoints also load as landmark models (``facemark.load``): their ``model.*`` weights
are the landmark model's.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facemark.errors import ConfigError, FacemarkError
from facemark.io import atomic_write_text
from facemark.models.adversarial import DomainClassifier, GradientReversal, grl_coefficient
from facemark.models.model_file import ModelInfo, load_model, save_model
from facemark.training.checkpoints import RunCheckpoints
from facemark.training.config import DANNConfig, TrainConfig, save_config
from facemark.training.fit import TrainResult, initialise_model, make_trainer
from facemark.training.memory_format import ChannelsLast
from facemark.training.module import LandmarkModule, NonFiniteLossError, fit
from facemark.training.run import check_same_recipe
from facemark.training.self_training import SelfTrainingData, evaluate_caches, prepare_inputs
from facemark.training.temperature import TemperatureAnnealing
from facemark.training.unlabelled import check_unlabelled


class TrainingIncomplete(FacemarkError):
    """The run stopped before its last epoch (interrupted, or a callback stopped it)."""


def check_dann(cfg: TrainConfig) -> None:
    """Validate ``self_training`` for ``method: dann`` and what it needs elsewhere.

    Raises:
        ConfigError: naming the key and saying what to set instead.
    """
    st = cfg.self_training
    if cfg.data.smaller_sizes:
        raise ConfigError("config key 'data.smaller_sizes' is for supervised training "
                          "(facemark train), not DANN")
    if st.method != "dann":
        raise ConfigError(f"config key 'self_training.method' is {st.method!r}; train_dann "
                          "needs self_training.method=dann")
    check_unlabelled(cfg)
    if st.epochs is not None:
        raise ConfigError(f"config key 'self_training.epochs' ({st.epochs}) counts the epochs "
                          "of each self-training round; DANN trains once for optim.epochs: set "
                          "self_training.epochs=null")
    if st.labelled_fraction is not None:
        raise ConfigError(f"config key 'self_training.labelled_fraction' ({st.labelled_fraction}) "
                          "is for self-training; a DANN batch holds optim.batch_size labelled "
                          "crops and self_training.dann.target_batch_size unlabelled ones: set "
                          "labelled_fraction=null")
    if st.init_checkpoint:
        raise ConfigError("config key 'self_training.init_checkpoint' names a model that "
                          "pseudo-labels; DANN has no pseudo-labels: start from a trained model "
                          "with model.init_weights (or ImageNet weights with "
                          "model.backbone_weights)")
    d = st.dann
    checks = [
        ("loss_weight", d.loss_weight >= 0, "must be >= 0"),
        ("max_coeff", d.max_coeff >= 0, "must be >= 0"),
        ("gamma", d.gamma > 0, "must be > 0"),
        ("hidden", all(w >= 1 for w in d.hidden), "widths must be >= 1 (an empty list: a "
                                                   "linear classifier)"),
        ("dropout", 0 <= d.dropout < 1, "must be in [0, 1)"),
        ("target_batch_size", d.target_batch_size is None or d.target_batch_size >= 1,
         "must be >= 1, or null for optim.batch_size"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"config key 'self_training.dann.{key}' {why}, got "
                              f"{getattr(d, key)!r}")


# ---------------------------------------------------------------------------------------
# Data and module
# ---------------------------------------------------------------------------------------
class DANNData(SelfTrainingData):
    """Labelled crops (source) and unlabelled crops (target) in every training batch.

    The batches of :class:`~facemark.training.self_training.SelfTrainingData` with a fixed
    labelled share (:class:`~facemark.training.self_training.MixedBatchSampler`): the
    unlabelled crops come without landmarks (mask all False), and their items' ``pseudo``
    flag is the domain label. Validation is on labelled data, as ``facemark train``.

    Args:
        data, seed: as LandmarkDataModule.
        unlabelled: the CropCaches of ``data.unlabelled``.
        labelled_batch_size: labelled crops per batch (``optim.batch_size``).
        target_batch_size: unlabelled crops per batch.
    """

    def __init__(self, data, unlabelled: list, labelled_batch_size: int = 16,
                 target_batch_size: int = 16, seed: int = 0):
        total = int(labelled_batch_size) + int(target_batch_size)
        pseudo = [(c, np.full(c.landmarks.shape, np.nan, np.float32)) for c in unlabelled]
        super().__init__(data, batch_size=total, seed=seed, pseudo=pseudo, level=0,
                         labelled_fraction=int(labelled_batch_size) / total)
        self.labelled_batch_size = int(labelled_batch_size)
        self.target_batch_size = int(target_batch_size)

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "mixed_set", None) is not None:
            return
        super().setup(stage)
        n = self.n_labelled
        self.mixed_names[n:] = [name.replace(" (pseudo-labelled)", " (unlabelled)")
                                for name in self.mixed_names[n:]]

    def val_dataloader(self):
        if self.val_set is None:
            return []
        saved, self.batch_size = self.batch_size, self.labelled_batch_size
        try:
            return self._loader(self.val_set, shuffle=False)
        finally:
            self.batch_size = saved


class DANNModule(LandmarkModule):
    """:class:`LandmarkModule` plus a domain classifier behind gradient reversal.

    Args:
        model_config, scheme, optim, data_info, sample_names: as LandmarkModule.
        dann: the ``self_training.dann`` section as a dict (defaults for missing keys).

    Attributes:
        model: the landmark model (what ``model.pt`` holds).
        grl: the :class:`~facemark.models.adversarial.GradientReversal` layer; its
            ``coeff`` is set every training step.
        domain_classifier: :class:`~facemark.models.adversarial.DomainClassifier` on the
            backbone's pooled features; trained here, never saved with the model.
    """

    def __init__(self, model_config: dict[str, Any], scheme: str, optim: dict[str, Any],
                 data_info: dict[str, Any] | None = None, sample_names: list[str] | None = None,
                 dann: dict[str, Any] | None = None):
        super().__init__(model_config, scheme, optim, data_info=data_info,
                         sample_names=sample_names)
        self.dann = {**dataclasses.asdict(DANNConfig()), **(dann or {})}
        self.grl = GradientReversal(0.0)
        self.domain_classifier = DomainClassifier(self.model.backbone.out_channels,
                                                  hidden=self.dann["hidden"],
                                                  dropout=self.dann["dropout"])

    def grl_coefficient(self) -> float:
        """The reversal coefficient at the current optimiser step (0 outside a fit)."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        total = max(float(trainer.estimated_stepping_batches), 1.0)
        return grl_coefficient(self.global_step / total, self.dann["gamma"],
                               self.dann["max_coeff"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "pseudo" not in batch:
            raise ConfigError("DANNModule: batches need a 'pseudo' flag per crop (the domain: "
                              "True = unlabelled target); train it with DANNData")
        features = self.model.forward_features(batch["image"])
        outputs = self.model.head(features)
        # unlabelled crops have mask all False: the masked landmark loss skips them
        targets = self.model.encode(batch["landmarks"], batch["mask"])
        landmark_loss, parts = self.model.loss(outputs, targets)
        self.grl.coeff = self.grl_coefficient()
        logits = self.domain_classifier(self.grl(features)).float()
        domain = batch["pseudo"].to(logits.device, torch.float32)
        domain_loss = F.binary_cross_entropy_with_logits(logits, domain)
        loss = landmark_loss + self.dann["loss_weight"] * domain_loss
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._nan_message(batch, batch_idx, loss))
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/landmark_loss", landmark_loss, batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bs)
        self.log("train/domain_loss", domain_loss, prog_bar=True, batch_size=bs)
        self.log("train/domain_acc", ((logits > 0).float() == domain).float().mean(),
                 batch_size=bs)
        self.log("train/grl_coeff", self.grl.coeff, batch_size=bs)
        return loss


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
@dataclass
class DANNResult(TrainResult):
    """What a finished DANN run produced: ``facemark train``'s numbers plus the model file
    and the test NME of each ``data.test`` entry."""

    model_path: Path | None = None
    test: dict[str, dict] = field(default_factory=dict)

    def table(self) -> str:
        rows = [super().table(), f"model            {self.model_path}"]
        for spec, stats in self.test.items():
            rows.append(f"test {Path(spec).name[:30]:<30}  NME {100 * stats['nme']:.3f}%  "
                        f"FR@0.1 {100 * stats['fr']:.2f}%")
        return "\n".join(rows)


def train_dann(cfg: TrainConfig, *, restart: bool = False, callbacks: list | None = None,
               progress: bool = True) -> DANNResult:
    """Train (or resume) domain-adversarially as ``cfg`` describes (``method: dann``).

    Args:
        cfg: the resolved config (``load_config``) with ``data.unlabelled`` and
            ``self_training.method: dann``.
        restart: delete this experiment's checkpoints and model and start again (otherwise a
            killed run resumes from its last complete epoch).
        callbacks: extra Lightning callbacks (tests use them to interrupt).
        progress: show progress bars for cache building and face finding.

    Returns:
        DANNResult; the landmark model is ``run_dir/model.pt``.

    Raises:
        ConfigError, DataError: bad config or data (the message names the key or file).
        TrainingIncomplete: training stopped before its last epoch (run again to resume).
    """
    import lightning as L

    start = time.time()
    check_dann(cfg)
    st = cfg.self_training
    run_dir = Path(cfg.trainer.out_dir) / cfg.experiment
    if any(run_dir.glob("round_*")):
        raise ConfigError(f"{run_dir} is the run folder of a self-training run (rounds); pick "
                          "another experiment name for DANN")
    ckpt_dir = run_dir / "checkpoints"
    if restart and run_dir.is_dir():
        for old in (ckpt_dir, run_dir / "model.pt", run_dir / "summary.json"):
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if last.is_file() else None
    if ckpt_path:
        check_same_recipe(cfg, run_dir / "config.yaml")

    inp = prepare_inputs(cfg, progress)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    target_bs = st.dann.target_batch_size or cfg.optim.batch_size
    data = DANNData(cfg.data, inp.unlabelled, labelled_batch_size=cfg.optim.batch_size,
                    target_batch_size=target_bs, seed=cfg.seed)
    data.skip_log = inp.log
    data.setup("fit")
    data_info = {"crop_rule": cfg.data.crop_rule, "input_size": cfg.data.input_size,
                 "train": list(cfg.data.train), "experiment": cfg.experiment,
                 "self_training": {"method": "dann", "unlabelled": list(cfg.data.unlabelled)}}
    module = DANNModule(inp.model_cfg, cfg.data.scheme, cfg.to_dict()["optim"],
                        data_info=data_info, sample_names=data.mixed_names,
                        dann=dataclasses.asdict(st.dann))
    if module.num_domains:
        raise ConfigError("brute-force SepBN (norm_layer: sepbn_brute) routes each face by its "
                          "training dataset, and unlabelled faces have none: DANN cannot train "
                          "it; pick another model.kwargs.norm_layer")
    if ckpt_path:
        print(f"resuming from {ckpt_path}")
    else:
        initialise_model(module.model, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    print(f"DANN {cfg.experiment}: {data.n_labelled} labelled (source) and {data.n_pseudo} "
          f"unlabelled (target) training crops "
          f"({sum(len(v) for v in inp.no_face.values())} image(s) without a detected face); "
          f"batches of {cfg.optim.batch_size} + {target_bs}")

    has_val = data.val_set is not None and len(data.val_set) > 0
    checkpoints = RunCheckpoints(ckpt_dir, has_val)
    trainer = make_trainer(
        cfg, run_dir, data, checkpoints,
        [TemperatureAnnealing.from_config(cfg.temperature),  # SepBN/MixBN only
         *([ChannelsLast()] if cfg.trainer.channels_last else []), *(callbacks or [])],
        devices=1, num_nodes=1)
    fit(trainer, module, data, ckpt_path)  # weights only: a crafted checkpoint runs nothing
    if trainer.interrupted or trainer.current_epoch < cfg.optim.epochs or not last.is_file():
        raise TrainingIncomplete(f"DANN training stopped after {trainer.current_epoch} of "
                                 f"{cfg.optim.epochs} epochs; run the same command again to "
                                 "resume it")

    final, _ = load_model(last)       # the landmark model only: model.* of the checkpoint
    model_path = save_model(
        final, ModelInfo(scheme=cfg.data.scheme, input_size=cfg.data.input_size,
                         crop_rule=cfg.data.crop_rule, model_config=inp.model_cfg),
        run_dir / "model.pt", extra={"experiment": cfg.experiment, "self_training": {
            "method": "dann", **dataclasses.asdict(st.dann)}})
    test = evaluate_caches(final, inp.tests, cfg.data.scheme, st.pseudo_batch_size)
    result = DANNResult(
        run_dir=run_dir, best_checkpoint=checkpoints.best_path(), last_checkpoint=last,
        best_val_nme=checkpoints.best_score(), epochs=int(trainer.current_epoch),
        seconds=time.time() - start, best_by=checkpoints.best_by, model_path=model_path,
        test=test)
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(result).items()
               if k != "is_global_zero"}
    summary.update(method="dann", labelled=data.n_labelled, unlabelled=data.n_pseudo,
                   no_face=inp.no_face, skipped=[str(e) for e in inp.log.skipped])
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return result


__all__ = ["DANNData", "DANNModule", "DANNResult", "TrainingIncomplete", "check_dann",
           "train_dann"]

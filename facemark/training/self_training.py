"""Self-training with curriculum (STC) and generalizable semi-supervised training (GSSL).

PIPNet (Jin, Liao and Shao, IJCV 2021; papers/pipnet.txt, Sec. 3.3 and 4.5), as the
authors' ``lib/train_gssl.py`` runs it:

1. round 0 trains the model on the labelled data (``data.train``) at the full task;
2. each later round r pseudo-labels *every* unlabelled crop (``data.unlabelled``) with the
   model at the end of round r-1 (full-resolution decode), then trains on labelled +
   pseudo-labelled crops: labelled crops always at the full task, pseudo-labelled ones at
   task level ``self_training.curriculum[r-1]``. Level k is grid classification on the
   score map after k 2x2 max poolings (:mod:`facemark.models.heads.stc`); the paper's
   curriculum is [2, 1, 0, 0, 0]: Task 1 (2x2), Task 2 (4x4), then the full task three times.
   ``[0, 0, 0]`` is standard self-training (any PIPNet works for that).

The ``self_training`` config section (:class:`facemark.training.config.SelfTrainingConfig`):

``method``
    ``stc`` (default): this module. ``dann``: domain-adversarial training, the paper's other
    baseline (:mod:`facemark.training.dann`); it shares ``boxes`` and ``crop_rule`` (the
    unlabelled crops) and ignores the pseudo-label keys.
``curriculum``
    list of task levels, one per pseudo-label round (default [2, 1, 0, 0, 0]).
``epochs``
    epochs of every round, round 0 included (None: ``optim.epochs``; the paper: 60 each).
    The learning-rate schedule restarts in each round.
``labelled_fraction``
    None (default, the authors' code): labelled and pseudo-labelled crops are shuffled
    together, so a batch holds them in proportion to their counts. A number in (0, 1):
    every batch holds ``round(fraction * batch_size)`` labelled crops and the rest
    pseudo-labelled ones (useful when the unlabelled set dwarfs the labelled one); an epoch
    is then one pass over the labelled crops.
``reinit``
    True (default, the authors'): every round trains a freshly initialised model. False:
    round r starts from round r-1's weights (fine-tuning; needs the same architecture).
``init_checkpoint``
    a model (``.ckpt`` of ``facemark train`` or ``.pt``) used as round 0 instead of
    training it: it only pseudo-labels, so any landmark model of the scheme will do. A
    model of another input size is a *teacher* (distillation, issue #9 item 5): it labels
    its own crops of the same unlabelled faces (same boxes and crop rule, cached at its
    size) and its points are mapped through the image into the student's crops. Round 0
    then reports no test numbers (the test crops are cached at the student's size). The
    student of round 1 starts from ``model.init_weights`` when given (e.g. the model being
    distilled into), else from ``model.backbone_weights``, else from scratch; with
    ``reinit: false`` it starts from the teacher's weights (same architecture only).
``boxes``
    where the unlabelled faces' boxes come from: ``dataset`` (the dataset's own boxes;
    landmarks, if any, are never used), ``image`` (the whole image is the box: for
    already-cropped faces), ``detector`` or ``detector:NAME`` (a face detector from
    :mod:`facemark.inference.detectors`, every face it finds; images where it finds none
    are listed in the run summary). Training reaches the detectors through the face-finder
    registry (:mod:`facemark.data.face_finders`), which that package fills when imported:
    ``facemark selftrain`` imports it, a Python caller imports it before :func:`self_train`.
``crop_rule``
    how an unlabelled box becomes a crop: a rule name of ``facemark.data.crops.CROP_RULES``
    or a mapping of :class:`~facemark.data.crops.CropRule` fields (``scale``, ``shift_y``,
    ``top_cut``, ``square``), or a list of these, one per unlabelled dataset. None:
    ``data.crop_rule``. The crops should look like the labelled ones (Sec. 3.4).
``pseudo_batch_size``, ``flip_test``
    batch size and flip-averaging of the pseudo-labelling pass (the authors: no flip).

Run folder ``<trainer.out_dir>/<experiment>/``::

    config.yaml                   the resolved config
    round_0/ ... round_R/         one per round:
        pseudo_labels.npz         (rounds >= 1) the pseudo-labels this round trains on
        checkpoints/last.ckpt     end of its last complete epoch (resume point)
        checkpoints/best.ckpt     lowest validation NME (on labelled data); without a
                                  validation set the last epoch (last.ckpt links to it)
        logs/                     CSV logs
        round.json                written when the round is complete: its numbers
    model.pt                      the final model (``facemark evaluate``/``detect`` load it)
    summary.json                  one row per round

Running the same command again skips complete rounds and resumes a killed round from its
``last.ckpt`` with its saved pseudo-labels. Training runs on one device (pseudo-labelling
between rounds is not distributed).
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
from torch.utils.data import DataLoader, Dataset, Sampler

from facemark.data.augment import Augment
from facemark.data.dataset import LandmarkDataset
from facemark.data.face_finders import create_face_finder
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, FacemarkError, SkipLog
from facemark.evaluation.metrics import nme, summarize
from facemark.io import atomic_write_text
from facemark.models.model_file import ModelInfo, load_model, save_model
from facemark.models.registry import model_from_config
from facemark.training.checkpoints import RunCheckpoints
from facemark.training.config import TrainConfig, save_config
from facemark.training.datamodule import LandmarkDataModule, open_or_build_cache
from facemark.training.fit import build_model_config, initialise_model, make_trainer
from facemark.training.module import LandmarkModule, NonFiniteLossError, fit
from facemark.training.pseudo_labels import (load_pseudo_labels, pseudo_label, save_pseudo_labels,
                                             to_student_crops)
from facemark.training.unlabelled import (box_mode, check_unlabelled,
                                          open_or_build_unlabelled_cache, unlabelled_rules)

# Config keys whose change makes a run folder's finished rounds belong to another experiment.
_CHANGES_RESULTS = ("seed", "data.train", "data.val", "data.unlabelled", "data.val_fraction",
                    "data.scheme", "data.crop_rule", "data.input_size", "data.augment",
                    "model", "optim", "self_training.epochs",
                    "self_training.labelled_fraction", "self_training.reinit",
                    "self_training.init_checkpoint", "self_training.boxes",
                    "self_training.crop_rule", "self_training.flip_test")


class RoundIncomplete(FacemarkError):
    """A round's training ended before its last epoch (a callback stopped it)."""


# ---------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------
def curriculum_plan(cfg: TrainConfig) -> list[int | None]:
    """Task level of the pseudo-labelled crops in each round: None for round 0 (labelled
    data only), then ``self_training.curriculum`` (e.g. [None, 2, 1, 0, 0, 0])."""
    return [None, *cfg.self_training.curriculum]


def describe_level(level: int | None, grid: int | None = None) -> str:
    """``"labelled only"``, ``"full task"`` or ``"level 2 (2x2 scores)"``."""
    if level is None:
        return "labelled only"
    if level == 0:
        return "full task" + (f" ({grid}x{grid})" if grid else "")
    side = f" ({grid // 2 ** level}x{grid // 2 ** level} scores)" if grid else ""
    return f"level {level}{side}"


def check_self_training(cfg: TrainConfig) -> None:
    """Validate the ``self_training`` section and what it needs elsewhere.

    Raises:
        ConfigError: naming the key, for a bad value, an empty ``data.unlabelled``, more
            than one device, or ``self_training.method: dann`` (trained by
            :func:`facemark.training.dann.train_dann`).
    """
    st = cfg.self_training
    if cfg.data.smaller_sizes:
        raise ConfigError("config key 'data.smaller_sizes' is for supervised training "
                          "(facemark train), not self-training")
    if st.method != "stc":
        raise ConfigError(f"self_training.method is {st.method!r}: train it with "
                          "facemark.training.dann.train_dann(cfg) (facemark selftrain picks the "
                          "trainer by method), or set self_training.method=stc")
    if not st.curriculum:
        raise ConfigError("config key 'self_training.curriculum' is empty: list the task level "
                          "of each pseudo-label round, e.g. [2, 1, 0, 0, 0]")
    for i, level in enumerate(st.curriculum):
        if level < 0:
            raise ConfigError(f"config key 'self_training.curriculum[{i}]': task levels are >= 0 "
                              f"(0 = full task, k = scores after k 2x2 poolings), got {level}")
    if st.epochs is not None and st.epochs < 1:
        raise ConfigError(f"config key 'self_training.epochs' must be >= 1, got {st.epochs}")
    if st.labelled_fraction is not None and not 0 < st.labelled_fraction < 1:
        raise ConfigError("config key 'self_training.labelled_fraction' must be in (0, 1) or "
                          f"null (shuffle labelled and pseudo-labelled crops together), got "
                          f"{st.labelled_fraction}")
    if st.pseudo_batch_size < 1:
        raise ConfigError(f"config key 'self_training.pseudo_batch_size' must be >= 1, got "
                          f"{st.pseudo_batch_size}")
    check_unlabelled(cfg)
    if st.init_checkpoint and not Path(st.init_checkpoint).is_file():
        raise ConfigError(f"config key 'self_training.init_checkpoint': file not found: "
                          f"{st.init_checkpoint}")


# ---------------------------------------------------------------------------------------
# Data and module
# ---------------------------------------------------------------------------------------
class MixedBatchSampler(Sampler):
    """Batches with a fixed share of labelled crops.

    Indices ``[0, n_labelled)`` are labelled, ``[n_labelled, n_labelled + n_pseudo)``
    pseudo-labelled. Every batch takes ``k = round(fraction * batch_size)`` (at least 1, at
    most ``batch_size - 1``) labelled crops and ``batch_size - k`` pseudo-labelled ones. An
    epoch is one pass over the labelled crops in a random order (the incomplete last batch
    is dropped when there is more than one batch); pseudo-labelled crops come from a random
    order that restarts each time it runs out. Orders depend on (seed, epoch) only.
    """

    def __init__(self, n_labelled: int, n_pseudo: int, batch_size: int, fraction: float,
                 seed: int = 0):
        self.n_labelled, self.n_pseudo = int(n_labelled), int(n_pseudo)
        self.batch_size = int(batch_size)
        self.k = min(max(int(round(fraction * batch_size)), 1), max(batch_size - 1, 1))
        self.seed = int(seed)
        self.epoch = 0
        if self.n_labelled < 1 or (self.n_pseudo < 1 and self.k < batch_size):
            raise ValueError(f"MixedBatchSampler: need labelled and pseudo-labelled crops, got "
                             f"{n_labelled} and {n_pseudo}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(self.n_labelled // self.k, 1)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch, 7))
        lab = rng.permutation(self.n_labelled)
        if len(lab) < self.k:
            lab = np.resize(lab, self.k)
        need = len(self) * (self.batch_size - self.k)
        runs = [rng.permutation(self.n_pseudo) for _ in range(-(-need // max(self.n_pseudo, 1)))]
        pseudo = np.concatenate(runs) if runs else np.zeros(0, np.int64)
        m = self.batch_size - self.k
        for b in range(len(self)):
            yield ([int(i) for i in lab[b * self.k:(b + 1) * self.k]] +
                   [self.n_labelled + int(i) for i in pseudo[b * m:(b + 1) * m]])


class _Mixed(Dataset):
    """Labelled then pseudo-labelled datasets; items gain ``level``, ``pseudo`` and a global
    ``index``."""

    def __init__(self, parts: list[tuple[Dataset, int, bool]]):
        self.parts = parts
        self.ends = np.cumsum([len(d) for d, _, _ in parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i: int) -> dict:
        k = int(np.searchsorted(self.ends, i, side="right"))
        start = 0 if k == 0 else int(self.ends[k - 1])
        dataset, level, pseudo = self.parts[k]
        item = dict(dataset[i - start])
        item.update(index=i, level=level, pseudo=pseudo)
        # every item of a batch needs the same keys: labelled crops carry their dataset's
        # index (brute-force SepBN's domain label), pseudo-labelled ones their part's
        item.setdefault("domain", k)
        return item


class SelfTrainingData(LandmarkDataModule):
    """The labelled data of :class:`LandmarkDataModule` plus pseudo-labelled crops.

    Args:
        data, batch_size, seed, split_seed: as LandmarkDataModule.
        pseudo: (CropCache, points (M, N, 2) crop pixels) per unlabelled dataset; empty for
            round 0.
        level: task level of the pseudo-labelled crops.
        labelled_fraction: see the module docstring (None: shuffle together).
    """

    def __init__(self, data, batch_size: int = 16, seed: int = 0,
                 pseudo: list | None = None, level: int = 0,
                 labelled_fraction: float | None = None, split_seed: int | None = None):
        super().__init__(data, batch_size=batch_size, seed=seed, split_seed=split_seed)
        self.pseudo = list(pseudo or [])
        self.level = int(level)
        self.labelled_fraction = labelled_fraction

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "mixed_set", None) is not None:
            return
        super().setup(stage)
        labelled = self.train_set
        if isinstance(labelled, torch.utils.data.Subset):
            names = [self.train_names[j] for j in labelled.indices]
        else:
            names = list(self.train_names)
        scheme = get_scheme(self.data.scheme)
        presets = {"pipnet": Augment.pipnet, "sepbn": Augment.sepbn}
        augment = None if self.data.augment == "none" else \
            presets[self.data.augment](scheme, self.data.input_size,
                                       **dict(self.data.augment_args))
        self.pseudo_sets = [LandmarkDataset(c, augment=augment, seed=self.seed + 1000 + i,
                                            landmarks=p)
                            for i, (c, p) in enumerate(self.pseudo)]
        for c in (c for c, _ in self.pseudo):
            names += [f"{Path(r['image']).name} (pseudo-labelled)" for r in c.records]
        self.n_labelled = len(labelled)
        self.n_pseudo = sum(len(d) for d in self.pseudo_sets)
        self.mixed_set = _Mixed([(labelled, 0, False)] +
                                [(d, self.level, True) for d in self.pseudo_sets])
        self.mixed_names = names

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for d in getattr(self, "pseudo_sets", []):
            d.set_epoch(epoch)
        if getattr(self, "batch_sampler", None) is not None:   # Lightning only reaches samplers
            self.batch_sampler.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        if self.trainer is not None:
            self.set_epoch(self.trainer.current_epoch)
        if self.labelled_fraction is None or not self.n_pseudo:
            return self._loader(self.mixed_set, shuffle=True)
        self.batch_sampler = MixedBatchSampler(self.n_labelled, self.n_pseudo, self.batch_size,
                                               self.labelled_fraction, seed=self.seed)
        if self.trainer is not None:
            self.batch_sampler.set_epoch(self.trainer.current_epoch)
        return DataLoader(self.mixed_set, batch_sampler=self.batch_sampler,
                          num_workers=self.data.num_workers,
                          pin_memory=torch.cuda.is_available())


class SelfTrainingModule(LandmarkModule):
    """:class:`LandmarkModule` whose batches mix task levels: each crop is encoded at its
    ``level`` (STC heads); ``train/pseudo_share`` logs the pseudo-labelled share."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        outputs = self.model(batch["image"])
        levels = batch.get("level")
        if levels is not None and hasattr(self.model.head, "levels"):
            targets = self.model.head.encode(batch["landmarks"], batch["mask"], levels)
        elif levels is not None and bool((levels > 0).any()):
            raise ConfigError(f"model {type(self.model.head).__name__} has no coarse score "
                              "maps; use model.name=pipnet_stc for curriculum levels > 0")
        else:
            targets = self.model.encode(batch["landmarks"], batch["mask"])
        loss, parts = self.model.loss(outputs, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._nan_message(batch, batch_idx, loss))
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bs)
        if "pseudo" in batch:
            self.log("train/pseudo_share", batch["pseudo"].float().mean(), batch_size=bs)
        return loss


# ---------------------------------------------------------------------------------------
# The round loop
# ---------------------------------------------------------------------------------------
@dataclass
class SelfTrainResult:
    """What a finished self-training run produced."""

    run_dir: Path
    model_path: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        """One line per round: level, epochs, validation NME, pseudo-label numbers, tests."""
        tests = sorted({k for r in self.rounds for k in (r.get("test") or {})})
        head = ["round", "task", "epochs", "val NME", "pseudo conf", "pseudo shift"] + \
            [f"test {Path(t).name[:18]}" for t in tests]
        rows = [head]
        for r in self.rounds:
            pct = (lambda v: "n/a" if v is None else f"{100 * v:.3f}%")
            row = [str(r["round"]), r["task"], str(r["epochs"]), pct(r.get("best_val_nme")),
                   "n/a" if r.get("pseudo_confidence") is None else f"{r['pseudo_confidence']:.3f}",
                   "n/a" if r.get("pseudo_shift") is None else f"{100 * r['pseudo_shift']:.2f}%"]
            row += [pct((r.get("test") or {}).get(t, {}).get("nme")) for t in tests]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
        lines += [f"model: {self.model_path}", f"time: {self.seconds / 60:.1f} min"]
        return "\n".join(lines)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _check_same_experiment(run_dir: Path, cfg: TrainConfig) -> None:
    """ConfigError when the run folder's finished rounds were made with another config."""
    import yaml

    old_path = run_dir / "config.yaml"
    if not old_path.is_file() or not any(run_dir.glob("round_*/round.json")):
        return
    try:
        old = _flat(yaml.safe_load(old_path.read_text()) or {})
    except yaml.YAMLError as e:
        raise DataError(old_path, f"invalid YAML ({e})") from None
    new = _flat(cfg.to_dict())
    for key in sorted(set(old) | set(new)):
        if not key.startswith(_CHANGES_RESULTS) or old.get(key) == new.get(key):
            continue
        raise ConfigError(f"{run_dir} holds rounds trained with {key}={old.get(key)!r}, the "
                          f"config now says {new.get(key)!r}; pass --restart to start again, "
                          "or pick another experiment name")
    done = sorted(run_dir.glob("round_*/round.json"))
    old_curr = old.get("self_training.curriculum") or []
    new_curr = cfg.self_training.curriculum
    for path in done:
        r = json.loads(path.read_text())["round"]
        if r >= 1 and (r - 1 >= len(new_curr) or r - 1 >= len(old_curr)
                       or old_curr[r - 1] != new_curr[r - 1]):
            raise ConfigError(f"{run_dir}: round {r} was trained at level "
                              f"{old_curr[r - 1] if r - 1 < len(old_curr) else '?'}, "
                              f"self_training.curriculum now says {new_curr}; pass --restart "
                              "or pick another experiment name")


def _round_config(cfg: TrainConfig) -> TrainConfig:
    """The config every round's module sees: ``optim.epochs`` = the round's epochs."""
    out = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim))
    if cfg.self_training.epochs is not None:
        out.optim.epochs = cfg.self_training.epochs
    return out


def evaluate_caches(model, caches: dict[str, Any], scheme: str,
                    batch_size: int) -> dict[str, dict]:
    """NME / FR / AUC at 0.1 of ``model`` on each labelled cache (crops as cached)."""
    out = {}
    for spec, cache in caches.items():
        points, _ = pseudo_label(model, cache, batch_size)
        pred = cache.normalise(points)
        true = cache.normalised_landmarks()
        stats = summarize(nme(pred, true, scheme), threshold=0.1)
        out[spec] = {k: float(v) if isinstance(v, (float, np.floating)) else v
                     for k, v in stats.items()}
    return out


def _fit_round(cfg: TrainConfig, rdir: Path, data: SelfTrainingData, model_cfg: dict,
               init_state: dict | None, round_info: dict, callbacks: list | None):
    """Train one round in ``rdir`` (resuming from its last.ckpt); returns (trainer,
    module, RunCheckpoints)."""
    ckpt_dir = rdir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if last.is_file() else None
    data_info = {"crop_rule": cfg.data.crop_rule, "input_size": cfg.data.input_size,
                 "train": list(cfg.data.train), "experiment": cfg.experiment,
                 "self_training": round_info}
    module = SelfTrainingModule(model_cfg, cfg.data.scheme, cfg.to_dict()["optim"],
                                data_info=data_info, sample_names=data.mixed_names)
    if ckpt_path:
        print(f"resuming round {round_info['round']} from {ckpt_path}")
    elif init_state is not None:
        try:
            module.model.load_state_dict(init_state, strict=True)
        except RuntimeError as e:
            raise ConfigError(f"self_training.reinit=false: the previous round's weights do not "
                              f"fit model {model_cfg['name']!r} ({str(e).splitlines()[0]}); use "
                              "reinit=true or an init_checkpoint of the same "
                              "architecture") from None
    else:        # a fresh round: model.backbone_weights (ImageNet), then model.init_weights
        initialise_model(module.model, cfg)
    has_val = data.val_set is not None and len(data.val_set) > 0
    checkpoints = RunCheckpoints(ckpt_dir, has_val)
    trainer = make_trainer(cfg, rdir, data, checkpoints, callbacks or [], devices=1,
                           num_nodes=1)
    fit(trainer, module, data, ckpt_path)  # weights only: a crafted checkpoint runs nothing
    return trainer, module, checkpoints


def _check_model_levels(cfg: TrainConfig) -> int | None:
    """ConfigError unless the model has the coarse levels the curriculum uses; returns its
    score grid side (None for heads without one). Built on the meta device: no weights.
    Methods other than STC have no curriculum: None."""
    if cfg.self_training.method != "stc":
        return None
    n = get_scheme(cfg.data.scheme).num_points
    placeholder = np.stack([np.linspace(0.1, 0.9, n), np.linspace(0.2, 0.8, n)], axis=1)
    with torch.device("meta"):
        model = model_from_config(build_model_config(cfg, placeholder))
    have, grid = getattr(model.head, "levels", 0), getattr(model.head, "grid", None)
    need = max(cfg.self_training.curriculum)
    if need > have:
        fix = (f"a score grid of {grid}x{grid} halves {have} time(s): raise data.input_size or "
               "lower model.net_stride" if hasattr(model.head, "levels") else
               "use model.name=pipnet_stc")
        raise ConfigError(f"self_training.curriculum uses task level {need} but model "
                          f"{cfg.model.name!r} at input_size {cfg.data.input_size} has "
                          f"{have} coarse level(s); {fix}, or lower the levels")
    return grid


@dataclass
class _Inputs:
    """Everything the rounds share: built once per run."""

    base: LandmarkDataModule
    log: SkipLog
    model_cfg: dict
    unlabelled: list
    no_face: dict[str, list[str]]
    tests: dict[str, Any]
    teacher_unlabelled: list | None = None   # the same faces at a teacher's input size


def prepare_inputs(cfg: TrainConfig, progress: bool) -> _Inputs:
    """Labelled caches (as ``facemark train`` builds them), the model config (mean face of
    the labelled training crops), unlabelled caches (boxes found once) and test caches."""
    base = LandmarkDataModule(cfg.data, batch_size=cfg.optim.batch_size, seed=cfg.seed)
    base.prepare_data()
    base.setup("fit")
    log = base.skip_log
    model_cfg = build_model_config(cfg, base.mean_face())
    mode, name = box_mode(cfg.self_training.boxes)
    detector = create_face_finder("detector", name) if mode == "detector" else None
    unlabelled, no_face, teacher = [], {}, []
    teacher_size = _teacher_size(cfg)
    for spec, rule in zip(cfg.data.unlabelled, unlabelled_rules(cfg)):
        cache, missing = open_or_build_unlabelled_cache(spec, rule, cfg, log, detector, progress)
        unlabelled.append(cache)
        no_face[spec] = missing
        if teacher_size:
            teacher.append(open_or_build_unlabelled_cache(spec, rule, cfg, log, detector,
                                                          progress, size=teacher_size)[0])
    tests = {spec: open_or_build_cache(spec, cfg.data, log) for spec in cfg.data.test}
    return _Inputs(base, log, model_cfg, unlabelled, no_face, tests, teacher or None)


def _teacher_size(cfg: TrainConfig) -> int | None:
    """The input size of ``self_training.init_checkpoint`` when it differs from the
    student's (a teacher that labels its own crops), else None."""
    if not cfg.self_training.init_checkpoint:
        return None
    model, _ = load_model(cfg.self_training.init_checkpoint)
    return model.input_size if model.input_size != cfg.data.input_size else None


def _load_round_model(path: Path, cfg: TrainConfig, any_size: bool = False):
    """A round's model (or the init checkpoint), checked against the data it must label
    (``any_size``: a teacher of another input size, which labels its own crops)."""
    model, info = load_model(path)
    wrong_size = model.input_size != cfg.data.input_size and not any_size
    if wrong_size or info.scheme != cfg.data.scheme:
        raise ConfigError(f"{path}: a model of {info.scheme} at {model.input_size} px cannot "
                          f"label {cfg.data.scheme} crops of data.input_size="
                          f"{cfg.data.input_size}")
    return model


def _round_pseudo_labels(rdir: Path, prev_ckpt: Path, cfg: TrainConfig, caches: list,
                         progress: bool, teacher_caches: list | None = None
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The round's pseudo-labels: read back when saved (a resumed round), else made by the
    previous round's model and saved before training starts. A model of another input size
    (a teacher) labels ``teacher_caches``, the same faces at its size, and its points are
    mapped into ``caches``' crops."""
    path = rdir / "pseudo_labels.npz"
    if path.is_file():
        return load_pseudo_labels(path, caches)
    st = cfg.self_training
    model = _load_round_model(prev_ckpt, cfg, any_size=teacher_caches is not None)
    teacher = teacher_caches if model.input_size != cfg.data.input_size else None
    print(f"{rdir.name}: pseudo-labelling {sum(len(c) for c in caches)} crops with {prev_ckpt}"
          + (f" (a teacher at {model.input_size} px)" if teacher else ""))
    out = [pseudo_label(model, c, st.pseudo_batch_size, st.flip_test, progress=progress)
           for c in (teacher or caches)]
    points, conf = [p for p, _ in out], [c for _, c in out]
    if teacher:
        points = [to_student_crops(p, t, c) for p, t, c in zip(points, teacher, caches)]
    save_pseudo_labels(path, caches, points, conf, str(prev_ckpt))
    return points, conf


def self_train(cfg: TrainConfig, *, restart: bool = False, callbacks: list | None = None,
               progress: bool = True) -> SelfTrainResult:
    """Run (or continue) self-training with curriculum as ``cfg`` describes.

    Args:
        cfg: the resolved config (``load_config``) with a ``self_training`` section.
        restart: delete this experiment's rounds and start again (otherwise complete rounds
            are kept and a killed round resumes from its last complete epoch).
        callbacks: extra Lightning callbacks for every round (tests use them to interrupt).
        progress: show progress bars for cache building, face finding and pseudo-labelling.

    Returns:
        SelfTrainResult; the final model is ``run_dir/model.pt``.

    Raises:
        ConfigError, DataError: bad config or data (the message names the key or file).
    """
    import lightning as L

    start = time.time()
    check_self_training(cfg)
    cfg = _round_config(cfg)
    st = cfg.self_training
    run_dir = Path(cfg.trainer.out_dir) / cfg.experiment
    grid = _check_model_levels(cfg)              # before anything is built or deleted
    if (run_dir / "checkpoints").is_dir():
        raise ConfigError(f"{run_dir} is the run folder of a supervised training (facemark "
                          "train); pick another experiment name for self-training")
    if restart and run_dir.is_dir():
        for old in [*run_dir.glob("round_*"), run_dir / "model.pt", run_dir / "summary.json"]:
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
    _check_same_experiment(run_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    inp = prepare_inputs(cfg, progress)
    plan = curriculum_plan(cfg)
    print(f"self-training {cfg.experiment}: {len(inp.base.train_set)} labelled training crops, "
          f"{sum(len(c) for c in inp.unlabelled)} unlabelled crops "
          f"({sum(len(v) for v in inp.no_face.values())} image(s) without a detected face); "
          f"rounds: {', '.join(describe_level(lv, grid) for lv in plan)}")

    rounds: list[dict] = []
    prev_ckpt: Path | None = None
    prev_points: list[np.ndarray] | None = None
    for r, level in enumerate(plan):
        rdir = run_dir / f"round_{r}"
        done_file = rdir / "round.json"
        if done_file.is_file():                                   # complete: keep it
            info = json.loads(done_file.read_text())
            rounds.append(info)
            prev_ckpt = run_dir / info["checkpoint"]               # relative, or absolute
            if r >= 1:
                prev_points, _ = load_pseudo_labels(rdir / "pseudo_labels.npz", inp.unlabelled)
            print(f"round {r} ({info['task']}): complete, skipped")
            continue
        rdir.mkdir(parents=True, exist_ok=True)
        info = {"round": r, "level": level, "task": describe_level(level, grid)}
        if r == 0 and st.init_checkpoint:                         # round 0 given, not trained
            teacher = inp.teacher_unlabelled is not None
            model = _load_round_model(Path(st.init_checkpoint), cfg, any_size=teacher)
            info.update(checkpoint=str(Path(st.init_checkpoint).resolve()), epochs=0,
                        best_val_nme=None, init_checkpoint=True,
                        test=None if teacher else evaluate_caches(
                            model, inp.tests, cfg.data.scheme, st.pseudo_batch_size))
            atomic_write_text(done_file, json.dumps(info, indent=1))
            rounds.append(info)
            prev_ckpt = Path(st.init_checkpoint)
            print(f"round 0: using {st.init_checkpoint} instead of training")
            continue

        pseudo = []
        if r >= 1:
            points, conf = _round_pseudo_labels(rdir, prev_ckpt, cfg, inp.unlabelled, progress,
                                                inp.teacher_unlabelled if r == 1 else None)
            info["pseudo_confidence"] = float(np.mean([c.mean() for c in conf]))
            if prev_points is not None:       # how far this round's labels moved (crop sides)
                info["pseudo_shift"] = float(np.mean(
                    [np.linalg.norm(p - q, axis=-1).mean() / c.size
                     for p, q, c in zip(points, prev_points, inp.unlabelled)]))
            pseudo, prev_points = list(zip(inp.unlabelled, points)), points
        print(f"round {r}/{len(plan) - 1}: {info['task']}")

        L.seed_everything(cfg.seed + r, workers=True, verbose=False)
        # each round draws new augmentation, but holds out the run's validation faces
        data = SelfTrainingData(cfg.data, batch_size=cfg.optim.batch_size, seed=cfg.seed + r,
                                split_seed=cfg.seed, pseudo=pseudo, level=level or 0,
                                labelled_fraction=st.labelled_fraction)
        data.skip_log = inp.log
        data.setup("fit")
        init_state = None
        if r >= 1 and not st.reinit:
            init_state = _load_round_model(prev_ckpt, cfg, any_size=r == 1).state_dict()
        trainer, module, checkpoints = _fit_round(cfg, rdir, data, inp.model_cfg, init_state,
                                              {"round": r, "level": level}, callbacks)
        last = rdir / "checkpoints" / "last.ckpt"
        if trainer.interrupted or trainer.current_epoch < cfg.optim.epochs or not last.is_file():
            raise RoundIncomplete(f"round {r} stopped after {trainer.current_epoch} of "
                                  f"{cfg.optim.epochs} epochs; run the same command again to "
                                  "resume it")
        info.update(checkpoint=str(last.relative_to(run_dir)), epochs=int(trainer.current_epoch),
                    best_val_nme=checkpoints.best_score(), best_by=checkpoints.best_by,
                    labelled=data.n_labelled, pseudo=data.n_pseudo,
                    test=evaluate_caches(module.model.eval(), inp.tests, cfg.data.scheme,
                                   st.pseudo_batch_size))
        atomic_write_text(done_file, json.dumps(info, indent=1))
        rounds.append(info)
        prev_ckpt = last

    final = _load_round_model(prev_ckpt, cfg)
    model_path = save_model(
        final, ModelInfo(scheme=cfg.data.scheme, input_size=cfg.data.input_size,
                         crop_rule=cfg.data.crop_rule, model_config=inp.model_cfg),
        run_dir / "model.pt", extra={"experiment": cfg.experiment, "self_training": {
            "curriculum": list(st.curriculum), "rounds": len(rounds)}})
    result = SelfTrainResult(run_dir=run_dir, model_path=model_path, rounds=rounds,
                             seconds=time.time() - start)
    summary = {"run_dir": str(run_dir), "model": str(model_path), "rounds": rounds,
               "seconds": result.seconds, "no_face": inp.no_face,
               "skipped": [str(e) for e in inp.log.skipped]}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return result


__all__ = ["RoundIncomplete", "SelfTrainResult", "SelfTrainingData", "SelfTrainingModule",
           "MixedBatchSampler", "check_self_training", "curriculum_plan", "evaluate_caches",
           "prepare_inputs", "self_train"]

"""Cross-protocol network training (CNT): one shared backbone, one head per landmark scheme.

Separable Batch Normalization for Robust Facial Landmark Localization with Cross-protocol
Network Training (papers/sepbn.txt, Sec. IV and V-A). Datasets annotated with different
landmark schemes (COFW-29, AFLW-19, WFLW-98, 300W-68, ...) train one network:

- **Stage 1 (joint).** All convolution layers form the shared backbone; each dataset has
  its own branch (head) regressing its own points. Faces are drawn from the pooled
  training sets, so "the probability of sampling faces from each dataset is proportional to
  the size of the dataset" (``sampling: proportional``); a batch therefore mixes datasets,
  goes through the backbone together (one set of batch statistics, as the paper's shared
  normalisation), and every face is decoded and penalised only by its own head. The loss is
  each head's own loss (L1 for the coordinate heads of the paper) on its faces; by default
  every face counts once (``loss_weighting: samples``: head k's mean loss weighted by its
  share of the batch), times the dataset's ``weight``.
- **Stage 2 (fine-tuning, optional).** For each dataset, the network keeps only that
  dataset's branch and is fine-tuned on it, the backbone at a tiny learning rate (paper:
  1e-7) and the branch at the normal one (``finetune_epochs > 0``).

Config (any model of the registry works as the per-dataset network; the paper uses
``vanilla_cnn`` with ``norm_layer: sepbn``)::

    cross_protocol:
      datasets:                       # one head each, in this order
      - name: cofw                    # head name (default: the scheme); [A-Za-z][A-Za-z0-9_-]*
        scheme: cofw29                # required
        train: [cofw:$FACEMARK_DATA/COFW/COFW_train_color.mat]   # required
        val: []                       # optional; empty: data.val_fraction of train
        test: []                      # optional; recorded in the exported model's info
        crop_rule: cofw               # optional, default data.crop_rule
        weight: 1.0                   # optional loss weight
      - {name: wflw, scheme: wflw98, train: [...], crop_rule: wflw}
      sampling: proportional          # proportional (paper) | uniform (each dataset equally)
      loss_weighting: samples         # samples (each face once) | datasets (each head once)
      finetune_epochs: 0              # stage 2 length; 0 skips it
      finetune_lr: null               # head learning rate in stage 2 (null: optim.lr)
      finetune_backbone_lr: 1.0e-7    # backbone learning rate in stage 2 (paper)

``data.*`` holds what the datasets share (input size, augmentation recipe, cache folder,
workers, val_fraction); ``data.train`` must stay empty. ``facemark train CONFIG`` runs it
(``facemark.training.run.train`` hands configs with ``cross_protocol.datasets`` to
:func:`train_cross_protocol`). The run folder holds::

    checkpoints/{last,best}.ckpt      stage 1 (best: lowest mean validation NME)
    models/<name>.pt                  each head as a plain model file (load_model)
    finetune/<name>/checkpoints/...   stage 2 runs (ordinary facemark checkpoints)
    models/<name>.finetuned.pt        their best (or last) weights as model files
    summary.json

``facemark.models.model_file.load_model`` loads ``models/<name>.pt`` and the stage-2
checkpoints; :func:`load_branch` takes one head straight from a stage-1 checkpoint, by name
or by scheme, and :func:`export_heads` rewrites ``models/`` from any stage-1 checkpoint. The
network itself is :class:`facemark.models.cross_protocol.CrossProtocolNet`.

Not in the paper's recipe here: Fig. 5 adds one convolution at the start of every branch;
our branches are the chosen model's own head (for ``vanilla_cnn``: FC 1024 -> 2L), so that
each exported branch is a registered model that ``load_model`` rebuilds.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, WeightedRandomSampler

from facemark.data.crops import CROP_RULES
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError
from facemark.evaluation.metrics import nme, summarize
from facemark.io import atomic_write_text
from facemark.models.cross_protocol import CrossProtocolNet
from facemark.models.model_file import ModelInfo, load_model, save_model
from facemark.models.norm.domain import num_domains
from facemark.models.serialization import safe_load
from facemark.training.checkpoints import RunCheckpoints
from facemark.training.config import DataConfig, TrainConfig, save_config
from facemark.training.datamodule import LandmarkDataModule
from facemark.training.module import LandmarkModule, NonFiniteLossError, SafeCheckpoints, fit
from facemark.training.optim import build_optimizer
from facemark.training.fit import (TrainResult, build_model_config, load_backbone_init,
                                   make_trainer)
from facemark.training.temperature import TemperatureAnnealing

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
DATASET_KEYS = ("name", "scheme", "train", "val", "test", "crop_rule", "weight")


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------
@dataclass
class ProtocolDataset:
    """One entry of ``cross_protocol.datasets``: a training set and the head it feeds."""

    name: str
    scheme: str
    train: list[str]
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    crop_rule: str = "300w"
    weight: float = 1.0

    def data_config(self, data: DataConfig) -> DataConfig:
        """The shared ``data`` section with this dataset's sets, scheme and crop rule."""
        return dataclasses.replace(data, train=list(self.train), val=list(self.val),
                                   test=list(self.test), unlabelled=[], scheme=self.scheme,
                                   crop_rule=self.crop_rule)


def _spec_list(entry: dict, key: str, where: str, required: bool) -> list[str]:
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"config key '{where}.{key}' expects a list of dataset strings, "
                          f"got {value!r}")
    if required and not value:
        raise ConfigError(f"config key '{where}.{key}' is empty: name at least one training set")
    return list(value)


def parse_datasets(cfg: TrainConfig) -> list[ProtocolDataset]:
    """Check ``cross_protocol.datasets`` and return one :class:`ProtocolDataset` per entry.

    Raises:
        ConfigError naming the dotted key (``cross_protocol.datasets[1].scheme``) for an
        unknown key, scheme or crop rule, a missing ``train``, a bad ``weight``, a duplicate
        or malformed name, or a non-empty ``data.train``.
    """
    entries = cfg.cross_protocol.datasets
    if not entries:
        raise ConfigError("config key 'cross_protocol.datasets' is empty: list the datasets, "
                          "each with a scheme and training sets")
    if cfg.data.train:
        raise ConfigError("config key 'data.train' must be empty in cross-protocol training: "
                          "list each dataset's training sets under "
                          "cross_protocol.datasets[i].train")
    out: list[ProtocolDataset] = []
    for i, entry in enumerate(entries):
        where = f"cross_protocol.datasets[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"config key {where!r} must be a mapping, got {entry!r}")
        unknown = sorted(set(entry) - set(DATASET_KEYS))
        if unknown:
            raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (known: "
                              f"{', '.join(DATASET_KEYS)})")
        if "scheme" not in entry:
            raise ConfigError(f"config key '{where}.scheme' is missing: name the dataset's "
                              "landmark scheme (e.g. wflw98)")
        try:
            scheme = get_scheme(str(entry["scheme"])).name
        except KeyError as e:
            raise ConfigError(f"config key '{where}.scheme': {e.args[0]}") from None
        name = str(entry.get("name", scheme))
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"config key '{where}.name': {name!r} must start with a letter and "
                              "hold only letters, digits, '_' and '-'")
        if any(d.name == name for d in out):
            raise ConfigError(f"config key '{where}.name': {name!r} is used twice; give each "
                              "dataset its own name")
        crop_rule = str(entry.get("crop_rule", cfg.data.crop_rule))
        if crop_rule not in CROP_RULES:
            raise ConfigError(f"config key '{where}.crop_rule': {crop_rule!r} is not one of "
                              f"{', '.join(CROP_RULES)}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                not math.isfinite(weight) or weight <= 0:
            raise ConfigError(f"config key '{where}.weight' must be a number > 0, got {weight!r}")
        out.append(ProtocolDataset(
            name=name, scheme=scheme, train=_spec_list(entry, "train", where, True),
            val=_spec_list(entry, "val", where, False),
            test=_spec_list(entry, "test", where, False),
            crop_rule=crop_rule, weight=float(weight)))
    return out


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
class _Tagged(Dataset):
    """Items of ``dataset`` with ``protocol`` (the head's position) added."""

    def __init__(self, dataset, protocol: int):
        self.dataset = dataset
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        item["protocol"] = self.protocol
        return item


class ProtocolCollate:
    """Batch faces of several schemes: one image tensor, per-head targets.

    Returns a dict with ``image`` (B, 3, S, S), ``protocol`` (B,) and ``index`` (B,) (the
    face's index in its dataset), and ``targets``: head name -> ``rows`` (b,) positions in
    the batch, ``landmarks`` (b, N_head, 2), ``mask`` (b, N_head).
    """

    def __init__(self, names: list[str]):
        self.names = list(names)

    def __call__(self, items: list[dict]) -> dict:
        protocol = torch.tensor([int(it["protocol"]) for it in items], dtype=torch.long)
        targets = {}
        for k in sorted(set(protocol.tolist())):
            rows = [i for i, it in enumerate(items) if it["protocol"] == k]
            targets[self.names[k]] = {
                "rows": torch.tensor(rows, dtype=torch.long),
                "landmarks": torch.stack([items[i]["landmarks"] for i in rows]),
                "mask": torch.stack([items[i]["mask"] for i in rows])}
        return {"image": torch.stack([it["image"] for it in items]), "protocol": protocol,
                "index": torch.tensor([int(it["index"]) for it in items], dtype=torch.long),
                "targets": targets}


class CrossProtocolDataModule(L.LightningDataModule):
    """Pooled training faces of several datasets; one validation loader per dataset.

    Args:
        datasets: the parsed ``cross_protocol.datasets``.
        data: the shared ``data`` section (input size, augmentation, caches, workers).
        batch_size: faces per batch (all datasets together).
        seed: seeds the validation splits, the augmentation and the sampler.
        sampling: ``"proportional"`` (uniform over all faces: a dataset's share is its
            size, as the paper) or ``"uniform"`` (each dataset equally often, with
            replacement; an epoch still has as many faces as all datasets together).
    """

    def __init__(self, datasets: list[ProtocolDataset], data: DataConfig, batch_size: int = 8,
                 seed: int = 0, sampling: str = "proportional"):
        super().__init__()
        if sampling not in ("proportional", "uniform"):
            raise ConfigError(f"config key 'cross_protocol.sampling': {sampling!r} is not one "
                              "of proportional, uniform")
        self.datasets = list(datasets)
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.sampling = sampling
        self.parts = [LandmarkDataModule(d.data_config(data), batch_size=batch_size, seed=seed)
                      for d in self.datasets]
        self.collate = ProtocolCollate([d.name for d in self.datasets])
        self.train_set = None

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.datasets]

    def prepare_data(self) -> None:
        for part in self.parts:
            part.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        for part in self.parts:
            part.setup(stage)
        self.train_sets = [_Tagged(p.train_set, k) for k, p in enumerate(self.parts)]
        self.train_set = ConcatDataset(self.train_sets)
        self.val_sets = [_Tagged(p.val_set, k) for k, p in enumerate(self.parts)
                         if p.val_set is not None and len(p.val_set) > 0]

    @property
    def sizes(self) -> dict[str, int]:
        """Training faces per dataset."""
        self.setup()
        return {d.name: len(s) for d, s in zip(self.datasets, self.train_sets)}

    @property
    def train_names(self) -> dict[str, list[str]]:
        """Per dataset, the names of its crops (by the ``index`` its items carry)."""
        self.setup()
        return {d.name: p.train_names for d, p in zip(self.datasets, self.parts)}

    def set_epoch(self, epoch: int) -> None:
        """A fresh augmentation stream per epoch in every dataset."""
        for part in self.parts:
            part.set_epoch(epoch)

    def sampler_weights(self) -> torch.Tensor:
        """Per-face sampling weight for ``sampling="uniform"`` (1 / size of its dataset)."""
        sizes = [len(s) for s in self.train_sets]
        return torch.cat([torch.full((n,), 1.0 / n, dtype=torch.double) for n in sizes if n])

    def _loader(self, dataset, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size,
                          shuffle=shuffle and sampler is None, sampler=sampler,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          num_workers=self.data.num_workers, collate_fn=self.collate,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        if self.trainer is not None:  # resumed runs: the first batches already use this epoch
            self.set_epoch(self.trainer.current_epoch)
        sampler = None
        if self.sampling == "uniform":
            gen = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(self.sampler_weights(), len(self.train_set),
                                            replacement=True, generator=gen)
        return self._loader(self.train_set, shuffle=True, sampler=sampler)

    def val_dataloader(self):
        return [self._loader(s, shuffle=False) for s in self.val_sets]


# ---------------------------------------------------------------------------------------
# Stage 1: joint training
# ---------------------------------------------------------------------------------------
class CrossProtocolModule(SafeCheckpoints, L.LightningModule):
    """Joint training of a :class:`CrossProtocolNet` on batches that mix datasets.

    Args:
        heads: name -> ``{"model_config", "scheme", "crop_rule", "weight", ...}`` (extra keys,
            such as the training sets, are kept for the exported models' info).
        optim: the ``optim`` config section as a dict.
        loss_weighting: ``"samples"`` (head loss x its share of the batch: every face counts
            once) or ``"datasets"`` (every head present in the batch counts once).
        data_info: input size and run facts stored in checkpoints.
        sample_names: name -> crop names of that dataset, for the NaN-loss message.

    Logs ``train/loss``, ``train/<name>/loss``, and per validation set ``val/<name>/nme``
    (also ``fr``, ``auc``) plus ``val/nme``, the mean over the datasets.
    """

    def __init__(self, heads: dict[str, dict[str, Any]], optim: dict[str, Any],
                 loss_weighting: str = "samples", data_info: dict[str, Any] | None = None,
                 sample_names: dict[str, list[str]] | None = None):
        super().__init__()
        if loss_weighting not in ("samples", "datasets"):
            raise ConfigError(f"config key 'cross_protocol.loss_weighting': {loss_weighting!r} "
                              "is not one of samples, datasets")
        self.save_hyperparameters(ignore=["sample_names"])
        self.net = CrossProtocolNet({n: h["model_config"] for n, h in heads.items()})
        self.head_info = {n: dict(h) for n, h in heads.items()}
        self.optim = dict(optim)
        self.loss_weighting = loss_weighting
        self.sample_names = sample_names
        self._val: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def forward(self, images: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """name -> (points (B, N, 2) in [0, 1], confidence (B, N)) from every head."""
        return {n: self.net.heads[n].decode(out) for n, out in self.net(images).items()}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        feats = self.net.features(batch["image"])
        size = batch["image"].shape[0]
        total = feats.new_zeros(())
        present = batch["targets"]
        for name, t in present.items():
            head = self.net.heads[name]
            rows = t["rows"]
            outputs = head(feats.index_select(0, rows))
            loss, parts = head.loss(outputs, head.encode(t["landmarks"], t["mask"]))
            share = rows.numel() / size if self.loss_weighting == "samples" else 1.0 / len(present)
            total = total + self.head_info[name].get("weight", 1.0) * share * loss
            self.log(f"train/{name}/loss", loss, batch_size=rows.numel())
        if not torch.isfinite(total):
            raise NonFiniteLossError(self._nan_message(batch, batch_idx, total))
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        return total

    def _nan_message(self, batch: dict, batch_idx: int, loss: Tensor) -> str:
        names = []
        for k, i in zip(batch["protocol"].tolist(), batch["index"].tolist()):
            dataset = self.net.names[k]
            known = (self.sample_names or {}).get(dataset)
            names.append(f"{dataset}/{known[i] if known else i}")
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        return (f"training loss is {loss.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (samples: {shown}); lower optim.lr, check these samples with "
                "'facemark data check', or try trainer.precision=32-true")

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        feats = self.net.features(batch["image"])
        for name, t in batch["targets"].items():
            head = self.net.heads[name]
            points, _ = head.decode(head(feats.index_select(0, t["rows"])))
            true = t["landmarks"].clone()
            true[~t["mask"]] = float("nan")
            pred_list, true_list = self._val.setdefault(name, ([], []))
            pred_list.append(points.float().cpu().numpy())
            true_list.append(true.float().cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        means = []
        for name in self.net.names:
            if name not in self._val:
                continue
            pred, true = (np.concatenate(x) for x in self._val[name])
            if self.trainer.world_size > 1:  # DDP: every rank holds a shard; gather them all
                pred = self.all_gather(torch.from_numpy(pred).to(self.device))
                true = self.all_gather(torch.from_numpy(true).to(self.device))
                pred = pred.reshape(-1, *pred.shape[2:]).cpu().numpy()
                true = true.reshape(-1, *true.shape[2:]).cpu().numpy()
            stats = summarize(nme(pred, true, get_scheme(self.head_info[name]["scheme"])),
                              threshold=0.1)
            means.append(float(stats["nme"]))
            self.log(f"val/{name}/nme", float(stats["nme"]), sync_dist=False)
            self.log(f"val/{name}/fr", float(stats["fr"]), sync_dist=False)
            self.log(f"val/{name}/auc", float(stats["auc"]), sync_dist=False)
        self._val.clear()
        self.log("val/nme", float(np.mean(means)), prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        return build_optimizer([{"params": [p for p in self.parameters() if p.requires_grad],
                                 "lr": self.optim["lr"]}], self.optim)


# ---------------------------------------------------------------------------------------
# Stage 2: fine-tuning one branch
# ---------------------------------------------------------------------------------------
class FinetuneModule(LandmarkModule):
    """A single-dataset :class:`LandmarkModule` whose backbone learns at ``backbone_lr``
    and whose head at ``optim["lr"]`` (the paper's second CNT stage). Its checkpoints are
    ordinary facemark checkpoints (``load_model`` reads them)."""

    def __init__(self, model_config: dict[str, Any], scheme: str, optim: dict[str, Any],
                 data_info: dict[str, Any] | None = None, sample_names: list[str] | None = None,
                 backbone_lr: float = 1e-7):
        super().__init__(model_config, scheme, optim, data_info=data_info,
                         sample_names=sample_names)
        self.save_hyperparameters(ignore=["sample_names"])
        self.backbone_lr = float(backbone_lr)

    def configure_optimizers(self):
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return build_optimizer([{"params": backbone, "lr": self.backbone_lr},
                                {"params": rest, "lr": self.optim["lr"]}], self.optim)


# ---------------------------------------------------------------------------------------
# Checkpoints -> per-head models
# ---------------------------------------------------------------------------------------
def _read_checkpoint(path: str | Path) -> tuple[CrossProtocolNet, dict[str, Any], dict]:
    """(network with the checkpoint's weights, in eval mode; its heads; the raw checkpoint)."""
    heads, blob = _read_blob(Path(path))
    return _build_net(Path(path), heads, blob), heads, blob


def _read_blob(path: Path) -> tuple[dict[str, Any], dict]:
    if not path.is_file():
        raise DataError(path, "cross-protocol checkpoint not found")
    blob = safe_load(path)  # weights only: a crafted file runs nothing
    hp = blob.get("hyper_parameters", {}) if isinstance(blob, dict) else {}
    if not isinstance(hp, dict) or not isinstance(hp.get("heads"), dict) \
            or not isinstance(blob.get("state_dict"), dict):
        raise DataError(path, "not a cross-protocol checkpoint (no 'heads' in its hyper-"
                              "parameters); single-dataset checkpoints load with load_model")
    return hp["heads"], blob


def _build_net(path: Path, heads: dict[str, Any], blob: dict) -> CrossProtocolNet:
    net = CrossProtocolNet({n: h["model_config"] for n, h in heads.items()})
    state = {k[len("net."):]: v for k, v in blob["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(path, f"weights do not fit the network they describe ({e})") from None
    return net.eval()


def _model_info(path: Path, name: str, head: dict[str, Any], net: CrossProtocolNet,
                blob: dict):
    info = {"cross_protocol": str(path), "head": name, "epoch": blob.get("epoch"),
            "heads": list(net.names)}
    info.update({k: v for k, v in head.items()
                 if k in ("train", "val", "test", "weight", "experiment")})
    return ModelInfo(scheme=head["scheme"], input_size=net.input_size,
                     crop_rule=head.get("crop_rule", "300w"),
                     model_config=net.configs[name], info=info, path=str(path))


def _pick_head(path: Path, heads: dict[str, dict], name: str | None, scheme: str | None) -> str:
    if name is not None:
        if name not in heads:
            raise DataError(path, f"no head named {name!r} (heads: {', '.join(heads)})")
        return name
    listing = ", ".join(f"{n} ({h['scheme']})" for n, h in heads.items())
    if scheme is None:
        raise ConfigError(f"{path}: name the head (name=...) or its scheme (scheme=...); "
                          f"heads: {listing}")
    try:
        wanted = get_scheme(scheme).name
    except KeyError as e:
        raise ConfigError(f"scheme: {e.args[0]}") from None
    found = [n for n, h in heads.items() if h["scheme"] == wanted]
    if len(found) != 1:
        why = "no head" if not found else f"{len(found)} heads ({', '.join(found)})"
        raise DataError(path, f"{why} for scheme {wanted!r}; heads: {listing}"
                              + ("; pick one with name=..." if found else ""))
    return found[0]


def load_branch(path: str | Path, *, name: str | None = None, scheme: str | None = None,
                device: str = "cpu"):
    """One head of a stage-1 checkpoint as a single-scheme model.

    Args:
        path: a ``CrossProtocolModule`` checkpoint (``checkpoints/best.ckpt``).
        name: the head's name, or
        scheme: its landmark scheme (when exactly one head has it), e.g. ``"wflw98"``.

    Returns:
        (LandmarkModel in eval mode, ModelInfo), like ``facemark.models.model_file.load_model``.
    """
    path = Path(path)
    heads, blob = _read_blob(path)
    chosen = _pick_head(path, heads, name, scheme)
    net = _build_net(path, heads, blob)
    return net.branch(chosen).to(device).eval(), _model_info(path, chosen, heads[chosen], net, blob)


def export_heads(path: str | Path, out_dir: str | Path, suffix: str = "") -> dict[str, Path]:
    """Write every head of a stage-1 checkpoint as ``out_dir/<name><suffix>.pt`` model files.

    Returns:
        name -> path of its model file (``load_model`` loads each).
    """
    path = Path(path)
    net, heads, blob = _read_checkpoint(path)
    out = {}
    for name in net.names:
        out[name] = save_model(net.branch(name), _model_info(path, name, heads[name], net, blob),
                               Path(out_dir) / f"{name}{suffix}.pt")
    return out


# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------
@dataclass
class CrossProtocolResult(TrainResult):
    """A finished cross-protocol run: stage 1 numbers plus the per-head model files."""

    last_val_nme: dict[str, float] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    finetuned: dict[str, Path] = field(default_factory=dict)
    finetune_val_nme: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        rows = [(f"last val NME {n}", f"{100 * v:.3f}%") for n, v in self.last_val_nme.items()]
        rows += [(f"model {n}", str(p)) for n, p in self.models.items()]
        rows += [(f"fine-tuned val NME {n}", f"{100 * v:.3f}%")
                 for n, v in self.finetune_val_nme.items()]
        rows += [(f"fine-tuned {n}", str(p)) for n, p in self.finetuned.items()]
        if not rows:
            return super().table()
        width = max(len(k) for k, _ in rows)
        return super().table() + "\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _checkpoint_to_resume(run_dir: Path, resume: str | None, overwrite: bool) -> str | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume == "auto":
        return str(last) if last.is_file() else None
    if resume:
        if not Path(resume).is_file():
            raise ConfigError(f"--resume: checkpoint not found: {resume}")
        return str(resume)
    if last.is_file() and not overwrite:
        raise ConfigError(f"{run_dir} already has checkpoints; resume it (default), pick another "
                          "experiment name, or pass --overwrite to start again")
    return None


def _fit(cfg: TrainConfig, module, data, run_dir: Path, epochs: int, has_val: bool,
         ckpt_path: str | None, callbacks: list, strategy: str):
    """Lightning fit with the run layout of ``facemark.training.run``; returns (trainer,
    RunCheckpoints)."""
    checkpoints = RunCheckpoints(run_dir / "checkpoints", has_val)
    trainer = make_trainer(cfg, run_dir, data, checkpoints, callbacks, epochs=epochs,
                           strategy=strategy)
    fit(trainer, module, data, ckpt_path)  # weights only: a crafted checkpoint runs nothing
    return trainer, checkpoints


def _write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))


def _logged(trainer, key: str) -> float | None:
    value = trainer.callback_metrics.get(key)
    return None if value is None else float(value)


def train_cross_protocol(cfg: TrainConfig, *, resume: str | None = "auto",
                         overwrite: bool = False, callbacks: list | None = None
                         ) -> CrossProtocolResult:
    """Run both CNT stages for ``cfg`` (a config with ``cross_protocol.datasets``).

    Args, resuming and the run folder: as :func:`facemark.training.run.train` (running the
    same command again resumes stage 1 and then each fine-tuning run from its last complete
    epoch); ``callbacks`` are added to stage 1 only.
    """
    start = time.time()
    datasets = parse_datasets(cfg)
    cp = cfg.cross_protocol
    annealing = TemperatureAnnealing.from_config(cfg.temperature)
    run_dir = Path(cfg.trainer.out_dir) / cfg.experiment
    ckpt_path = _checkpoint_to_resume(run_dir, resume, overwrite)
    if ckpt_path:
        print(f"resuming from {ckpt_path}")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = CrossProtocolDataModule(datasets, cfg.data, batch_size=cfg.optim.batch_size,
                                   seed=cfg.seed, sampling=cp.sampling)
    data.prepare_data()
    data.setup("fit")
    if ckpt_path:
        module = CrossProtocolModule.load_from_checkpoint(ckpt_path, map_location="cpu",
                                                          sample_names=data.train_names)
        if module.net.names != data.names:
            raise ConfigError(f"cross_protocol.datasets names {data.names} differ from the heads "
                              f"of {ckpt_path} ({module.net.names}); restore the config or start "
                              "a new experiment")
    else:
        heads = {}
        for d, part in zip(datasets, data.parts):
            one = dataclasses.replace(cfg, data=d.data_config(cfg.data))
            heads[d.name] = {"model_config": build_model_config(one, part.mean_face()),
                             "scheme": d.scheme, "crop_rule": d.crop_rule, "weight": d.weight,
                             "train": d.train, "val": d.val, "test": d.test,
                             "experiment": cfg.experiment}
        data_info = {"input_size": cfg.data.input_size, "experiment": cfg.experiment,
                     "sizes": data.sizes, "sampling": cp.sampling}
        module = CrossProtocolModule(heads, cfg.to_dict()["optim"], cp.loss_weighting,
                                     data_info=data_info, sample_names=data.train_names)
        if num_domains(module.net):
            raise ConfigError(
                "brute-force SepBN (norm_layer: sepbn_brute) routes each face by its index in "
                "data.train, and a cross-protocol network gives each dataset a head instead, "
                "so no branch could be picked for its exported models: use norm_layer: sepbn "
                "(the paper's CNT + SepBN), or train brute-force SepBN on one scheme with the "
                "domains listed in data.train")
        if cfg.model.backbone_weights:   # the one shared backbone starts from ImageNet
            load_backbone_init(module.net, cfg.model.backbone_weights)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    # A batch need not reach every head: DDP must expect parameters without gradients.
    strategy = "ddp_find_unused_parameters_true" if cfg.trainer.strategy == "ddp" \
        else cfg.trainer.strategy
    trainer, checkpoints = _fit(cfg, module, data, run_dir, cfg.optim.epochs,
                                bool(data.val_sets), ckpt_path, [annealing, *(callbacks or [])],
                                strategy)
    last = checkpoints.last_path
    best = checkpoints.best_path()
    source = best if best is not None else last
    result = CrossProtocolResult(
        run_dir=run_dir, best_checkpoint=best, last_checkpoint=last if last.is_file() else None,
        best_val_nme=checkpoints.best_score(), epochs=trainer.current_epoch, seconds=0.0,
        is_global_zero=trainer.is_global_zero, best_by=checkpoints.best_by)
    result.last_val_nme = {n: v for n in data.names
                      if (v := _logged(trainer, f"val/{n}/nme")) is not None}
    if trainer.is_global_zero and source.is_file():
        result.models = export_heads(source, run_dir / "models")
    if cp.finetune_epochs > 0 and source.is_file():
        net, heads, blob = _read_checkpoint(source)
        origin = {"checkpoint": source.name, "epoch": blob.get("epoch"),
                  "global_step": blob.get("global_step")}
        for d, part in zip(datasets, data.parts):
            path, score = _finetune(cfg, d, part, net, origin, run_dir / "finetune" / d.name,
                                    resume, overwrite)
            if path is not None:
                result.finetuned[d.name] = path
            if score is not None:
                result.finetune_val_nme[d.name] = score
    result.seconds = time.time() - start
    if result.is_global_zero:
        summary = {k: v for k, v in dataclasses.asdict(result).items() if k != "is_global_zero"}
        summary["skipped"] = [str(e) for p in data.parts for e in p.skip_log.skipped]
        _write_summary(run_dir, summary)
    return result


def _finetune(cfg: TrainConfig, dataset: ProtocolDataset, data, net: CrossProtocolNet,
              origin: dict[str, Any], run_dir: Path, resume: str | None, overwrite: bool
              ) -> tuple[Path | None, float | None]:
    """Stage 2 for one dataset: its branch alone, backbone at ``finetune_backbone_lr``.

    ``origin`` names the stage-1 checkpoint it starts from; a fine-tuning run that started
    from another one (stage 1 trained on since) starts again instead of resuming.
    """
    cp = cfg.cross_protocol
    optim = cfg.to_dict()["optim"]
    # the warm-up belongs to stage 1 (training from scratch), not to fine-tuning
    optim.update(epochs=cp.finetune_epochs, lr=cp.finetune_lr or cfg.optim.lr, warmup_epochs=0)
    ckpt_path = _checkpoint_to_resume(run_dir, "auto" if resume else None, overwrite)
    data_info = {"crop_rule": dataset.crop_rule, "input_size": cfg.data.input_size,
                 "train": list(dataset.train), "experiment": f"{cfg.experiment}/{dataset.name}",
                 "cross_protocol_head": dataset.name, "stage1": origin}
    module = None
    if ckpt_path:
        module = FinetuneModule.load_from_checkpoint(ckpt_path, map_location="cpu",
                                                     sample_names=data.train_names)
        if (module.hparams.get("data_info") or {}).get("stage1") != origin:
            print(f"stage 1 changed since {run_dir} was fine-tuned: fine-tuning it again")
            module, ckpt_path = None, None
    if module is None:
        module = FinetuneModule(net.configs[dataset.name], dataset.scheme, optim,
                                data_info=data_info, sample_names=data.train_names,
                                backbone_lr=cp.finetune_backbone_lr)
        module.model.load_state_dict(net.branch(dataset.name).state_dict(), strict=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_val = data.val_set is not None and len(data.val_set) > 0
    trainer, checkpoints = _fit(cfg, module, data, run_dir, cp.finetune_epochs, has_val,
                                ckpt_path, [], cfg.trainer.strategy)
    best = checkpoints.best_path()
    source = best if best is not None else checkpoints.last_path
    if not (trainer.is_global_zero and source.is_file()):
        return None, None
    model, info = load_model(source)
    info.info.update(cross_protocol=str(run_dir.parent.parent), head=dataset.name)
    models = run_dir.parent.parent / "models"
    path = save_model(model, info, models / f"{dataset.name}.finetuned.pt")
    return path, checkpoints.best_score()


__all__ = ["CrossProtocolDataModule", "CrossProtocolModule", "CrossProtocolResult",
           "FinetuneModule", "ProtocolCollate", "ProtocolDataset", "export_heads", "load_branch",
           "parse_datasets", "train_cross_protocol"]

"""Data for training: crop caches built once per dataset, split, augmented, batched.

Every dataset string in the config becomes one crop cache (built on the first run with a
progress bar, then memory-mapped); training never decodes a JPEG per step.
"""
from __future__ import annotations

import bisect
import hashlib
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from facemark.data.augment import Augment
from facemark.data.cache import CropCache, build_cache
from facemark.data.dataset import LandmarkDataset
from facemark.data.formats import open_dataset
from facemark.data.meanface import mean_face
from facemark.data.schemes import get_scheme, is_scheme_file
from facemark.errors import ConfigError, SkipLog
from facemark.training.config import DataConfig


def cache_path(cache_dir: str | Path, spec: str, scheme: str, rule: str, size: int,
               context: float = 1.0) -> Path:
    """The cache folder of one dataset string: readable prefix + hash of what shapes it."""
    key = f"{spec}|{scheme}|{rule}|{size}" + (f"|context={context:g}" if context != 1.0 else "")
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9]+", "_", Path(spec.split(":", 1)[-1]).name).strip("_")[:40]
    return Path(cache_dir) / f"{stem or 'data'}-{rule}-{size}-{digest}"


def open_or_build_cache(spec: str, cfg: DataConfig, log: SkipLog | None = None):
    """The CropCache of a dataset string, building it first if it does not exist yet."""
    if is_scheme_file(cfg.scheme):   # known by its name before a cache's meta.json names it
        get_scheme(cfg.scheme)
    path = cache_path(cfg.cache_dir, spec, cfg.scheme, cfg.crop_rule, cfg.input_size, cfg.context)
    if (path / "meta.json").is_file():
        return CropCache.open(path)
    log = log or SkipLog(cfg.skip_bad)
    samples = open_dataset(spec, scheme=cfg.scheme, skip_bad=log)
    return build_cache(samples, path, size=cfg.input_size, rule=cfg.crop_rule, skip_bad=log,
                       context=cfg.context)


class _GlobalIndex(torch.utils.data.Dataset):
    """A ConcatDataset whose items carry their index in the concatenation (for messages)
    and ``domain``: which of the concatenated datasets the item comes from (0, 1, ...; the
    domain label of brute-force SepBN, ``facemark.models.norm.domain``)."""

    def __init__(self, datasets, blank: bool = False):
        self.inner = ConcatDataset(datasets)
        self.blank = blank

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.inner[i])
        item["index"] = i
        item["domain"] = bisect.bisect_right(self.inner.cumulative_sizes, i)
        if self.blank:  # same landmarks, no face: what a CNN learns from position alone
            item["image"] = torch.zeros_like(item["image"])
        return item

    def set_epoch(self, epoch: int) -> None:
        for d in self.inner.datasets:
            d.set_epoch(epoch)


class LandmarkDataModule(L.LightningDataModule):
    """Train/val/test loaders over crop caches.

    Args:
        data: the ``data`` section of the config.
        batch_size: per-device batch size.
        seed: seeds the augmentation, and the validation split unless ``split_seed`` is
            given.
        split_seed: seeds the validation split (``data.val_fraction``) alone, so that runs
            which vary the augmentation seed (self-training rounds) hold out the same faces.
    """

    def __init__(self, data: DataConfig, batch_size: int = 16, seed: int = 0,
                 split_seed: int | None = None):
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.split_seed = seed if split_seed is None else split_seed
        self.skip_log = SkipLog(data.skip_bad)

    def prepare_data(self) -> None:
        # Runs on one process per node: build every missing cache once.
        for spec in self.data.train + self.data.val + self.data.test:
            open_or_build_cache(spec, self.data, self.skip_log)

    def _caches(self, specs):
        caches = [open_or_build_cache(s, self.data, self.skip_log) for s in specs]
        wanted = get_scheme(self.data.scheme).name
        for spec, cache in zip(specs, caches):
            if cache.scheme != wanted:
                raise ConfigError(f"dataset {spec} has scheme {cache.scheme!r} but data.scheme is "
                                  f"{self.data.scheme!r}")
        return caches

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        scheme = get_scheme(self.data.scheme)
        presets = {"pipnet": Augment.pipnet, "sepbn": Augment.sepbn}
        if self.data.augment not in presets and self.data.augment != "none":
            raise ConfigError(f"config key 'data.augment': {self.data.augment!r} is not one of "
                              f"{', '.join(presets)}, none")
        if self.data.augment_args and self.data.augment == "none":
            raise ConfigError("config key 'data.augment_args' is set but data.augment is none")
        if self.data.flip and self.data.augment == "none":
            raise ConfigError("config key 'data.flip' is set but data.augment is none")
        flips = self.data.flip or [True] * len(self.data.train)
        try:
            augments = {f: None if self.data.augment == "none" else
                        presets[self.data.augment](scheme, self.data.input_size,
                                                   **{**dict(self.data.augment_args),
                                                      **({} if f else {"flip": 0.0})})
                        for f in set(flips)}
        except TypeError as e:   # an argument Augment does not have
            raise ConfigError(f"config key 'data.augment_args': {e}") from None
        self.train_caches = self._caches(self.data.train)
        blank = self.data.blank_images
        train_aug = _GlobalIndex([LandmarkDataset(c, augment=augments[f], seed=self.seed)
                                  for c, f in zip(self.train_caches, flips)], blank)
        train_plain = _GlobalIndex([LandmarkDataset(c, augment=None) for c in self.train_caches],
                                   blank)
        names = [Path(r["image"]).name for c in self.train_caches for r in c.records]
        if self.data.val:
            self.val_caches = self._caches(self.data.val)
            self.train_set = Subset(train_aug, self._repeated(np.arange(len(train_aug))))
            self.train_augmented = train_aug
            self.val_set = _GlobalIndex([LandmarkDataset(c) for c in self.val_caches], blank)
            self.train_names = names
        else:
            n = len(train_aug)
            n_val = int(round(n * self.data.val_fraction))
            order = np.random.default_rng(self.split_seed).permutation(n)
            val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
            self.train_set = Subset(train_aug, self._repeated(train_idx))
            self.train_augmented = train_aug
            self.val_set = Subset(train_plain, val_idx.tolist()) if n_val else None
            self.train_names = names
        self.test_set = _GlobalIndex([LandmarkDataset(c) for c in self._caches(self.data.test)]) \
            if self.data.test else None

    def _repeated(self, indices: np.ndarray) -> list[int]:
        """Training indices with each face of ``data.train[d]`` listed ``data.repeat[d]`` times."""
        repeat = self.data.repeat or [1] * len(self.train_caches)
        ends = np.cumsum([len(c) for c in self.train_caches])
        which = np.searchsorted(ends, indices, side="right")
        counts = np.asarray(repeat)[which]
        return np.repeat(indices, counts).tolist()

    def set_epoch(self, epoch: int) -> None:
        """Give the augmentation a new random stream each epoch (workers see it too)."""
        self.train_augmented.set_epoch(epoch)

    def mean_face(self) -> np.ndarray:
        """(N, 2) mean of the training landmarks in normalised crop coordinates."""
        self.setup()
        return mean_face(np.concatenate([c.normalised_landmarks() for c in self.train_caches]))

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        workers = self.data.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          num_workers=workers, persistent_workers=False,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        if self.trainer is not None:  # resumed runs: the first batches already use this epoch
            self.set_epoch(self.trainer.current_epoch)
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

    def test_dataloader(self):
        return self._loader(self.test_set, shuffle=False) if self.test_set is not None else []

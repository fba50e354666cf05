"""PyTorch datasets over a :class:`facemark.data.cache.CropCache`.

Items are read from the cache's memmap (no image decoding per step) and augmented with an
optional :class:`facemark.data.augment.Augment`. Each item's random numbers come from
``numpy.random.default_rng((seed, epoch, index))``: the same run gives the same batches
whatever the number of DataLoader workers, every item and epoch differs, and
:meth:`LandmarkDataset.set_epoch` reaches persistent workers too (the epoch lives in a
shared-memory tensor).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from facemark.data.augment import Augment
from facemark.data.cache import CropCache
from facemark.data.crops import normalise_points, transform_points
from facemark.errors import ConfigError


class LandmarkDataset(Dataset):
    """Crops and landmarks of a cache, as tensors.

    Args:
        cache: an opened CropCache (or a subset of one).
        augment: an Augment for training, or None (the crop as cached).
        seed: base seed of the per-item random numbers.
        landmarks: optional float (M, N, 2) crop-pixel landmarks replacing the cache's, e.g.
            pseudo-labels for self-training (NaN where not labelled).

    Item (a dict):
        image: float32 tensor (3, S, S), RGB in [0, 1]; S = ``augment.size`` or the cache's
            ``crop_size``. From a cache built with context, the model crop is cut out of the
            stored crop (the augmentation moves the box within it).
        landmarks: float32 tensor (N, 2), normalised crop coordinates ``(x + 0.5) / S``
            (0 where not annotated).
        mask: bool tensor (N,), False where the landmark is not annotated. A point that
            augmentation moved outside the crop stays annotated (coordinates outside [0, 1]);
            target encoders clamp it to the border cell, as the PIPNet code does.
        visible: bool tensor (N,), False where occluded or not annotated.
        index: int, the item's position in this dataset.
    """

    def __init__(self, cache: CropCache, augment: Augment | None = None, seed: int = 0,
                 landmarks: np.ndarray | None = None):
        self.cache = cache
        self.augment = augment
        self.seed = int(seed)
        if augment is not None and augment.scheme.name != cache.scheme:
            raise ConfigError(f"augment scheme {augment.scheme.name!r} does not match the cache's "
                              f"{cache.scheme!r}")
        if landmarks is not None:
            landmarks = np.asarray(landmarks, dtype=np.float32)
            if landmarks.shape != cache.landmarks.shape:
                raise ConfigError(f"landmarks: expected shape {cache.landmarks.shape} (the cache's), "
                                  f"got {landmarks.shape}")
        self.landmarks = cache.landmarks if landmarks is None else landmarks
        self.region = cache.crop_region()    # the model crop inside the stored crop
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (call before each epoch; workers see it too)."""
        self._epoch[0] = int(epoch)

    @property
    def size(self) -> int:
        """Side of the returned images."""
        return self.augment.size if self.augment is not None else self.cache.crop_size

    def __len__(self) -> int:
        return len(self.cache)

    def rng(self, index: int) -> np.random.Generator:
        """The generator item ``index`` uses in the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def _row(self, index: int) -> int:
        return index

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} crops")
        index = int(index) % len(self)
        row = self._row(index)
        image = self.cache.image(row)
        points = self.landmarks[row]
        visible = self.cache.visible[row]
        if self.augment is not None:
            image, points, perm = self.augment(image, points, self.rng(index), self.region)
            visible = visible[perm]
        elif self.cache.context != 1.0:
            image = self.cache.model_crop(row)
            points = transform_points(points, self.cache.model_crop_matrix()).astype(np.float32)
        mask = np.isfinite(points).all(axis=1)
        norm = normalise_points(points, self.size).astype(np.float32)
        norm[~mask] = 0.0
        chw = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
        tensor = torch.from_numpy(chw).to(torch.float32).mul_(1.0 / 255.0)
        return dict(image=tensor, landmarks=torch.from_numpy(norm),
                    mask=torch.from_numpy(mask), visible=torch.from_numpy(visible & mask),
                    index=index)


class UnlabelledDataset(LandmarkDataset):
    """The crops of a cache that have no annotated landmark (inputs for self-training).

    Items are as in :class:`LandmarkDataset` (landmarks 0, mask all False) plus ``row``: the
    crop's index in the cache, to attach pseudo-labels to (``LandmarkDataset(cache,
    landmarks=...)``).
    """

    def __init__(self, cache: CropCache, augment: Augment | None = None, seed: int = 0):
        super().__init__(cache, augment, seed)
        self.rows = np.flatnonzero(~cache.labelled)

    def __len__(self) -> int:
        return len(self.rows)

    def _row(self, index: int) -> int:
        return int(self.rows[index])

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["row"] = self._row(item["index"])
        return item

"""The PIPNet paper's analyses, on trained models.

* :func:`grid_accuracy` (paper Fig. 7): how often the heatmap's peak cell is the cell that
  holds the true landmark, for heads with a score map (PIPNet) or heatmap (MapNet, G-RMI).
  Coarser grids (larger net stride) make this classification easier.
* :func:`compare_heads` (paper Fig. 12): NME and Point-Var of several models on one or
  more test sets.
* :func:`implicit_prior` (paper Fig. 9, Sec. 3.4): what a model predicts on images with no
  face at all (plain black, grey, noise, or any non-face pictures): a model that has learnt
  where landmarks usually are returns something close to the training mean face. The
  distance to the mean face, in units of its own inter-ocular distance (or the scheme's
  normaliser), measures that prior.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from facemark.data.crops import transform_points
from facemark.data.images import list_images, read_image
from facemark.data.schemes import get_scheme
from facemark.evaluation.metrics import nme, point_var, summarize
from facemark.evaluation.plots import _save
from facemark.io import markdown_table
from facemark.models.crop_predict import iter_crops, predict_samples
from facemark.models.heads.base import argmax_cells


def _score_map(outputs: dict) -> torch.Tensor | None:
    for key in ("score", "heatmap"):
        if key in outputs:
            return outputs[key]
    return None


def grid_accuracy(model, samples: Sequence, *, crop_rule: str, input_size: int,
                  batch_size: int = 32, on_error=None) -> float:
    """Fraction of annotated landmarks whose peak cell is the ground-truth cell.

    The ground-truth cell of a landmark at normalised crop position x is ``floor(x * W)``
    clamped to the grid (the PIP encoding); a landmark outside the crop counts in its
    border cell. Raises ValueError for a head without a score map (CoordNet).
    """
    hits, total = 0, 0
    for idx, crops, mats in iter_crops(samples, crop_rule=crop_rule, input_size=input_size,
                                       batch_size=batch_size, on_error=on_error):
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            maps = _score_map(model(x))
        if maps is None:
            raise ValueError("grid accuracy needs a head with a score map or heatmap "
                             "(PIPNet, MapNet, G-RMI), not a coordinate regressor")
        _, row, col, _ = argmax_cells(maps)
        h, w = maps.shape[2:]
        for j, i in enumerate(idx):
            gt = transform_points(samples[i].landmarks, mats[j])        # crop pixels
            norm = (gt + 0.5) / input_size
            ok = np.isfinite(norm).all(axis=1)
            gx = np.clip(np.floor(norm[ok, 0] * w), 0, w - 1)
            gy = np.clip(np.floor(norm[ok, 1] * h), 0, h - 1)
            hits += int(((col[j].numpy()[ok] == gx) & (row[j].numpy()[ok] == gy)).sum())
            total += int(ok.sum())
    if total == 0:
        raise ValueError("no annotated landmarks to score")
    return hits / total


@dataclass
class HeadComparison:
    """NME, FR@0.1 and Point-Var of each model on each test set (fractions; multiply NME and
    FR by 100 for %, Point-Var by 1000 for the paper's units). ``nme[d][m]`` is model
    ``names[m]`` on test set ``datasets[d]``; likewise ``fr`` and ``point_var``."""

    names: list[str]
    datasets: list[str] = field(default_factory=list)
    nme: list[list[float]] = field(default_factory=list)
    fr: list[list[float]] = field(default_factory=list)
    point_var: list[list[float]] = field(default_factory=list)

    def to_markdown(self) -> str:
        one = len(self.datasets) == 1
        head = ["model"]
        for d in self.datasets:
            tag = "" if one else f" ({d})"
            head += [f"NME %{tag}", f"FR@0.1 %{tag}", f"Point-Var (e-3){tag}"]
        rows = []
        for m, name in enumerate(self.names):
            row = [name]
            for d in range(len(self.datasets)):
                row += [f"{100 * self.nme[d][m]:.2f}", f"{100 * self.fr[d][m]:.2f}",
                        f"{1000 * self.point_var[d][m]:.3f}"]
            rows.append(row)
        return markdown_table(head, rows)

    def plot(self, path) -> None:
        """Two panels as the paper's Fig. 12: NME and Point-Var, one group of bars per test
        set, one bar per model."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n_sets, n_models = len(self.datasets), len(self.names)
        width = 0.8 / n_models
        fig, axes = plt.subplots(1, 2, figsize=(3 + n_sets * (0.6 + 0.45 * n_models), 3.8))
        colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, n_models))
        for ax, values, title in ((axes[0], 100 * np.array(self.nme), "NME (%)"),
                                  (axes[1], 1000 * np.array(self.point_var), "Point-Var (x1e-3)")):
            for m, name in enumerate(self.names):
                x = np.arange(n_sets) + (m - (n_models - 1) / 2) * width
                bars = ax.bar(x, values[:, m], width, color=colours[m], label=name)
                ax.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
            ax.set_xticks(range(n_sets), self.datasets)
            ax.set_title(title)
            ax.margins(y=0.15)
        axes[0].legend(fontsize=7, ncol=2 if n_models > 4 else 1)
        fig.tight_layout()
        _save(fig, path)


def compare_heads(models: dict, samples: Sequence | dict, *, batch_size: int = 32,
                  on_error=None) -> HeadComparison:
    """Evaluate several loaded models ``{name: (model, ModelInfo)}`` on the same faces.

    Args:
        models: name -> (LandmarkModel, ModelInfo).
        samples: the labelled test faces, or several test sets as ``{name: faces}``.
    """
    sets = dict(samples) if isinstance(samples, dict) else {"test": samples}
    out = HeadComparison(list(models))
    for set_name, faces in sets.items():
        gt = np.stack([s.landmarks for s in faces]).astype(np.float64)
        scheme = get_scheme(faces[0].scheme)
        out.datasets.append(set_name)
        row_nme, row_fr, row_var = [], [], []
        for name, (model, info) in models.items():
            points, _, ok = predict_samples(model, faces, crop_rule=info.crop_rule,
                                            input_size=info.input_size, batch_size=batch_size,
                                            on_error=on_error)
            stats = summarize(nme(points[ok], gt[ok], scheme))
            row_nme.append(float(stats["nme"]))
            row_fr.append(float(stats["fr"]))
            row_var.append(float(np.nanmean(point_var(points[ok], gt[ok], scheme))))
        out.nme.append(row_nme)
        out.fr.append(row_fr)
        out.point_var.append(row_var)
    return out


def probe_images(size: int, folder=None, limit: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Face-free test images (RGB uint8, size x size): black, grey, noise, and ``folder``'s
    pictures resized (e.g. any photos without faces)."""
    rng = np.random.default_rng(seed)
    images = {"black": np.zeros((size, size, 3), np.uint8),
              "grey": np.full((size, size, 3), 128, np.uint8),
              "noise": rng.integers(0, 256, (size, size, 3), dtype=np.uint8)}
    if folder is not None:
        import cv2

        for path in list_images(folder)[:limit]:
            images[path.stem] = cv2.resize(read_image(path), (size, size),
                                           interpolation=cv2.INTER_AREA)
    return images


def implicit_prior(model, info, images: dict[str, np.ndarray], mean_face: np.ndarray | None = None):
    """Predictions on face-free images and their distance to the mean face.

    Args:
        model: a loaded LandmarkModel.
        info: its ModelInfo (scheme, input_size).
        images: name -> RGB uint8 (S, S, 3) crops (see :func:`probe_images`).
        mean_face: (N, 2) normalised mean face; by default the model's own (PIPNet keeps it).

    Returns:
        dict name -> (points (N, 2) normalised, distance to the mean face in units of the
        mean face's own normalising distance, or NaN when no mean face is known).
    """
    scheme = get_scheme(info.scheme)
    if mean_face is None:
        mean_face = (info.model_config or {}).get("mean_face")
    mean = None if mean_face is None else np.asarray(mean_face, dtype=np.float64)
    batch = np.stack(list(images.values()))
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    points, _ = model.predict(x)
    points = points.numpy().astype(np.float64)
    out = {}
    for name, p in zip(images, points):
        dist = float("nan") if mean is None else float(nme(p[None], mean[None], scheme)[0])
        out[name] = (p, dist)
    return out


def plot_prior(results: dict, images: dict[str, np.ndarray], path, mean_face=None) -> None:
    """A row of the probe images with the predicted landmarks (and the mean face) drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.8))
    axes = np.atleast_1d(axes)
    for ax, (name, (p, dist)) in zip(axes, results.items()):
        img = images[name]
        s = img.shape[0]
        ax.imshow(img)
        if mean_face is not None:
            m = np.asarray(mean_face) * s - 0.5
            ax.scatter(m[:, 0], m[:, 1], s=6, c="#55a868", label="mean face")
        q = p * s - 0.5
        ax.scatter(q[:, 0], q[:, 1], s=6, c="#c44e52", label="prediction")
        ax.set_title(f"{name}\n{'' if np.isnan(dist) else f'{100 * dist:.1f}% from mean'}",
                     fontsize=9)
        ax.set_axis_off()
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    _save(fig, path)


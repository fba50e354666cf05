"""Figures of a :class:`~facemark.evaluation.report.Report` (matplotlib, Agg backend).

* :func:`plot_ced`: the CED curves of all methods on one plot (exact step functions).
* :func:`plot_per_landmark`: per-landmark NME bars, one panel per method, coloured by face
  region (``scheme.regions``).
* :func:`plot_best_worst`: for each method, its best and worst faces, cropped around the
  face, with predicted points in red and ground truth in green.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facemark.data.crops import crop_box, crop_face, transform_points  # noqa: E402
from facemark.data.images import read_image  # noqa: E402
from facemark.data.schemes import get_scheme  # noqa: E402
from facemark.errors import DataError  # noqa: E402

PRED_COLOR = "#e41a1c"   # red
TRUE_COLOR = "#4daf4a"   # green


def _save(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def ced_steps(nmes: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the exact CED step function on [0, threshold] (for ``plt.step(where='post')``).

    NaN (unscorable) faces are left out; inf (missing) faces never reach the curve.
    """
    e = np.sort(np.asarray(nmes, dtype=np.float64)[~np.isnan(nmes)])
    n = max(len(e), 1)
    inside = e[e <= threshold]
    x = np.concatenate([[0.0], inside, [threshold]])
    y = np.concatenate([[np.mean(e <= 0) if len(e) else 0.0],
                        np.arange(1, len(inside) + 1) / n, [len(inside) / n]])
    return x, y


def plot_ced(report, path: str | Path) -> Path:
    """CED curves (fraction of faces with NME <= x) of every method, x up to the threshold."""
    t = report.threshold
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in report.methods.values():
        x, y = ced_steps(m.nmes, t)
        s = m.summary
        ax.step(100 * x, y, where="post", lw=1.8,
                label=f"{m.name}: NME {100 * s['nme']:.2f}%, AUC {s['auc']:.3f}, "
                      f"FR {100 * s['fr']:.1f}%")
    ax.set_xlim(0, 100 * t)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel(f"NME (%), {report.norm}")
    ax.set_ylabel("fraction of faces")
    ax.set_title(f"CED on {Path(report.dataset).name or report.dataset} ({report.count} faces)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_per_landmark(report, path: str | Path) -> Path:
    """Per-landmark NME (%) bars, one panel per method, coloured by region."""
    scheme = get_scheme(report.scheme)
    regions = list(dict.fromkeys(scheme.region_of))
    cmap = plt.get_cmap("tab10")
    colour = {r: cmap(i % 10) for i, r in enumerate(regions)}
    colours = [colour[r] for r in scheme.region_of]
    n = len(report.methods)
    width = max(6.4, 0.12 * scheme.num_points + 1.5)
    fig, axes = plt.subplots(n, 1, figsize=(width, 2.3 * n + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    idx = np.arange(scheme.num_points)
    for ax, m in zip(axes[:, 0], report.methods.values()):
        vals = 100 * np.nan_to_num(m.per_landmark, nan=0.0)
        ax.bar(idx, vals, color=colours, width=0.85)
        ax.axhline(100 * m.summary["nme"], color="k", ls="--", lw=0.8)
        ax.set_ylabel("NME (%)")
        ax.set_title(f"{m.name} (dashed: mean NME {100 * m.summary['nme']:.2f}%)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("landmark index")
    axes[-1, 0].set_xlim(-1, scheme.num_points)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[r]) for r in regions]
    fig.legend(handles, regions, loc="upper center", ncol=len(regions), fontsize=8,
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


def _tile(ax, sample, points: np.ndarray, title: str, size: int = 192) -> None:
    ax.set_axis_off()
    gt = sample.landmarks.astype(np.float64)
    try:
        image = read_image(sample.image, sample.frame)
    except DataError as e:
        ax.text(0.5, 0.5, f"cannot read image\n{e.message}", ha="center", va="center",
                fontsize=7, wrap=True, transform=ax.transAxes)
        ax.set_title(title, fontsize=7)
        return
    box = crop_box("cross", gt, sample.box)
    crop, matrix = crop_face(image, box, size)
    ax.imshow(crop)
    g = transform_points(gt, matrix)
    ax.scatter(g[:, 0], g[:, 1], s=5, c=TRUE_COLOR, linewidths=0)
    if np.isfinite(points).all():
        p = transform_points(points, matrix)
        ax.scatter(p[:, 0], p[:, 1], s=5, c=PRED_COLOR, linewidths=0)
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_title(title, fontsize=7)


def plot_best_worst(report, path: str | Path, k: int = 5) -> Path:
    """For each method, a row of its ``k`` best and a row of its ``k`` worst faces.

    Faces are cropped around the ground truth (landmark box x1.3); predicted points are
    red, true points green. Worst faces are taken among faces with a prediction; the row
    title says how many had none.
    """
    methods = list(report.methods.values())
    fig, axes = plt.subplots(2 * len(methods), k, figsize=(1.9 * k, 2.4 * 2 * len(methods)),
                             squeeze=False)
    for r, m in enumerate(methods):
        scored = np.flatnonzero(np.isfinite(m.nmes))
        order = scored[np.argsort(m.nmes[scored], kind="stable")]
        rows = (("best", order[:k]), ("worst", order[::-1][:k]))
        for j, (label, chosen) in enumerate(rows):
            row_axes = axes[2 * r + j]
            for c, ax in enumerate(row_axes):
                if c >= len(chosen):
                    ax.set_axis_off()
                    continue
                i = chosen[c]
                s = report.samples[i]
                _tile(ax, s, m.points[i], f"{s.name[:22]}\nNME {100 * m.nmes[i]:.2f}%")
            row_axes[0].text(-0.08, 0.5, f"{m.name}\n{label}", rotation=90, ha="right",
                             va="center", fontsize=8, transform=row_axes[0].transAxes)
    fig.suptitle("best and worst faces: predicted (red) vs true (green) points"
                 + (f"; {sum(m.summary['missing'] for m in methods)} face(s) without a "
                    "prediction not shown" if any(m.summary['missing'] for m in methods) else ""),
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)

"""Does a method's per-landmark confidence rank its errors?

A confidence is useful when the points it trusts least are the ones that are most wrong.
This module measures that on a labelled dataset, from any
:class:`~facemark.data.predictions.PredictionSet` with ``point_scores`` (a model
source of ``facemark evaluate``, or a file written by ``--save-predictions``):

* :func:`confidence_errors`: confidence (B, N) and normalised point error (B, N) of the
  faces the set predicted, aligned with the samples;
* :func:`ranking`: Spearman rank correlations between confidence and error, per point
  (all (face, landmark) pairs pooled), per landmark (within each landmark index, then
  averaged) and per face (mean confidence vs the face's NME). Negative = informative:
  lower confidence, larger error;
* :func:`binned`: mean and median error in confidence bins of equal counts;
* :func:`plot_confidence_ranking`: those bins as a figure (error vs confidence).

    from facemark.inference.sources import resolve_predictions
    pset = resolve_predictions("facemark/weights/default.pt", samples)
    conf, nerr = confidence_errors(pset, samples)
    print(ranking(conf, nerr)["per_point"])
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facemark.data.predictions import assign_predictions
from facemark.data.schemes import get_scheme
from facemark.errors import DataError
from facemark.evaluation import metrics
from facemark.evaluation.plots import _save


def confidence_errors(pset, samples: Sequence, norm: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-point confidence and normalised error of the samples ``pset`` predicted.

    Args:
        pset: a PredictionSet whose faces carry ``point_scores``.
        samples: the annotated samples (one scheme, the set's).
        norm: NME normalisation (``metrics.normalizing_distance``); the scheme's when None.

    Returns:
        (conf (M, N), nerr (M, N)) float64 for the M samples with a prediction; ``nerr`` is
        the point's pixel error divided by the face's normalising distance (a fraction, e.g.
        the outer-eye-corner distance for 300W-68); NaN where a point is not annotated.

    Raises:
        DataError: the set has no point scores, or its scheme is not the samples'.
    """
    scheme = get_scheme(samples[0].scheme)
    if get_scheme(pset.scheme).name != scheme.name:
        raise DataError(pset.path or pset.method, f"predictions are {pset.scheme} points, "
                        f"the dataset is {scheme.name}")
    idx = assign_predictions(pset, samples)
    rows = [(i, j) for i, j in enumerate(idx) if j >= 0]
    if any(pset.faces[j].point_scores is None for _, j in rows):
        raise DataError(pset.path or pset.method, "predictions without point scores: a "
                        "confidence needs a model's per-landmark scores")
    gt = np.stack([samples[i].landmarks for i, _ in rows]).astype(np.float64)
    pred = np.stack([pset.faces[j].points for _, j in rows]).astype(np.float64)
    conf = np.stack([pset.faces[j].point_scores for _, j in rows]).astype(np.float64)
    boxes = np.stack([samples[i].box if samples[i].box is not None else np.full(4, np.nan)
                      for i, _ in rows])
    boxes = boxes if np.isfinite(boxes).all(axis=1).any() else None
    dist = metrics.normalizing_distance(gt, scheme, norm or scheme.nme_norm, boxes)
    nerr = metrics.point_errors(pred, gt) / dist[:, None]
    return conf, nerr


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok])[0])


def ranking(conf: np.ndarray, nerr: np.ndarray) -> dict:
    """Spearman correlations between confidence and error (negative = informative).

    Args:
        conf, nerr: (M, N), as :func:`confidence_errors` returns.

    Returns:
        ``per_point``: over all (face, landmark) pairs; ``per_landmark``: the mean over the
        N landmark indices of the correlation across faces (``per_landmark_each`` (N,));
        ``per_face``: mean confidence vs mean error of each face; ``faces``, ``points``.
    """
    conf, nerr = np.asarray(conf, np.float64), np.asarray(nerr, np.float64)
    each = np.array([_spearman(conf[:, k], nerr[:, k]) for k in range(conf.shape[1])])
    with np.errstate(invalid="ignore"):
        face_err = np.nanmean(nerr, axis=1)
    return {"per_point": _spearman(conf.ravel(), nerr.ravel()),
            "per_landmark": float(np.nanmean(each)) if np.isfinite(each).any() else float("nan"),
            "per_landmark_each": each,
            "per_face": _spearman(conf.mean(axis=1), face_err),
            "faces": int(conf.shape[0]), "points": int(np.isfinite(nerr).sum())}


def binned(conf: np.ndarray, nerr: np.ndarray, bins: int = 10) -> list[dict]:
    """Points grouped into ``bins`` confidence bins of (nearly) equal counts.

    Returns:
        one dict per bin, lowest confidence first: ``lo``, ``hi`` (confidence range),
        ``confidence`` (mean), ``mean_error``, ``median_error`` (normalised), ``count``.
    """
    c, e = np.asarray(conf, np.float64).ravel(), np.asarray(nerr, np.float64).ravel()
    ok = np.isfinite(c) & np.isfinite(e)
    c, e = c[ok], e[ok]
    order = np.argsort(c, kind="stable")
    out = []
    for part in np.array_split(order, max(1, min(bins, len(order)))):
        if len(part) == 0:
            continue
        out.append({"lo": float(c[part].min()), "hi": float(c[part].max()),
                    "confidence": float(c[part].mean()), "mean_error": float(e[part].mean()),
                    "median_error": float(np.median(e[part])), "count": int(len(part))})
    return out


def plot_confidence_ranking(curves: dict[str, list[dict]], path: str | Path,
                            title: str = "") -> Path:
    """Error vs confidence, binned: one line per name in ``curves`` (name -> :func:`binned`).

    Mean (solid) and median (dashed) normalised error, in %, at each bin's mean
    confidence; written atomically as a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, (name, rows) in enumerate(curves.items()):
        x = [r["confidence"] for r in rows]
        colour = f"C{k}"
        ax.plot(x, [100 * r["mean_error"] for r in rows], "o-", color=colour,
                label=f"{name}: mean")
        ax.plot(x, [100 * r["median_error"] for r in rows], "s--", color=colour, alpha=0.7,
                label=f"{name}: median")
    ax.set_xlabel("confidence (bin mean; bins of equal counts)")
    ax.set_ylabel("point error (% of the normalising distance)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)

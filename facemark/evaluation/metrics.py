"""Landmark accuracy metrics: NME, failure rate, AUC, CED, per-landmark NME, Point-Var.

All functions are vectorised numpy and NaN-aware: a ground-truth point that is NaN is not
annotated and is ignored everywhere. Arrays are 0-based pixels, ``(B, N, 2)`` = B faces of
N points of (x, y).

Conventions (see ``docs/prediction-format.md`` for where predictions come from):

* A face whose prediction is missing (its predicted points are NaN or inf while the ground
  truth is annotated) gets a point error of ``inf`` and so an NME of ``inf``: it counts as a
  failure in the failure rate and adds nothing to the AUC. The mean NME of
  :func:`summarize` is taken over the faces that have a prediction, and ``missing`` says
  how many did not, so a method that skips hard faces cannot hide it.
* A face that cannot be scored (no annotated point, or a normalising distance that is NaN
  or not positive, e.g. an eye corner not annotated) gets an NME of ``NaN``; it is left out
  of every statistic and counted as ``excluded``.
* The AUC is exact: the CED curve is a step function, and its area on ``[0, t]`` divided by
  ``t`` equals ``mean(clip(1 - e_i / t, 0, 1))`` over the faces' NMEs ``e_i`` (face i
  contributes the length of ``[e_i, t]``). Grid-based versions (trapezoids on a 0.0001
  grid, as in many papers' code) differ from it by at most about one grid step.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facemark.data.schemes import NME_NORMS, LandmarkScheme, get_scheme

# Subsets a dataset kind defines (``subset_masks``). WFLW's six attribute flags in the
# order of the annotation file, with the spellings readers may use for the key.
WFLW_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "pose": ("pose", "largepose", "large_pose"),
    "expression": ("expression",),
    "illumination": ("illumination",),
    "makeup": ("makeup", "make-up", "make_up"),
    "occlusion": ("occlusion",),
    "blur": ("blur",),
}
# 300-W test protocol: common = LFPW + Helen test sets, challenge = iBUG, full = both.
W300_SETS: dict[str, tuple[str, ...]] = {"common": ("lfpw", "helen"), "challenge": ("ibug",)}
DATASET_KINDS = ("auto", "none", "300w", "wflw", "300vw")


def _points(arr, name: str) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float64)
    if out.ndim != 3 or out.shape[2] != 2:
        raise ValueError(f"{name} must have shape (B, N, 2), got {out.shape}")
    return out


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _points(pred, "pred"), _points(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: pred {pred.shape}, gt {gt.shape}")
    return pred, gt


def _annotated(gt: np.ndarray) -> np.ndarray:
    """(B, N) True where the ground-truth point is annotated (both coordinates finite)."""
    return np.isfinite(gt).all(axis=2)


def landmark_boxes(gt: np.ndarray) -> np.ndarray:
    """Tight boxes ``x1, y1, x2, y2`` (B, 4) around each face's annotated points (NaN if none)."""
    gt = _points(gt, "gt")
    ok = _annotated(gt)[..., None]
    lo = np.where(ok, gt, np.inf).min(axis=1)
    hi = np.where(ok, gt, -np.inf).max(axis=1)
    boxes = np.concatenate([lo, hi], axis=1)
    boxes[~np.isfinite(boxes).all(axis=1)] = np.nan
    return boxes


def _face_boxes(gt: np.ndarray, boxes) -> np.ndarray:
    """The given boxes (B, 4), with rows that are None/NaN replaced by the landmark box."""
    fallback = landmark_boxes(gt)
    if boxes is None:
        return fallback
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (len(gt), 4):
        raise ValueError(f"boxes must have shape ({len(gt)}, 4), got {boxes.shape}")
    missing = ~np.isfinite(boxes).all(axis=1)
    return np.where(missing[:, None], fallback, boxes)


def normalizing_distance(gt, scheme: str | LandmarkScheme, norm: str | None = None,
                         boxes=None) -> np.ndarray:
    """The per-face distance an NME is divided by.

    Args:
        gt: (B, N, 2) ground-truth points in pixels (NaN = not annotated).
        scheme: the landmark scheme (name or object); gives the eye points.
        norm: one of ``inter_ocular`` (distance between ``scheme.outer_eye_corners``),
            ``inter_pupil`` (distance between the centroids of the annotated points of
            ``scheme.eye_contours``), ``box`` (``sqrt(w * h)`` of the face box),
            ``box_diag`` (diagonal of the face box); None = ``scheme.nme_norm``.
        boxes: (B, 4) face boxes ``x1, y1, x2, y2`` in pixels for the box norms. When None,
            or for rows that are NaN, the tight box around the ground-truth landmarks is
            used instead (say which in reports: :func:`describe_norm`).

    Returns:
        float64 (B,) distances in pixels; NaN where the distance cannot be computed or is
        not positive.
    """
    gt = _points(gt, "gt")
    scheme = get_scheme(scheme)
    norm = norm or scheme.nme_norm
    if norm not in NME_NORMS:
        raise ValueError(f"unknown NME normalisation {norm!r}; choose one of {', '.join(NME_NORMS)}")
    if norm == "inter_ocular":
        if scheme.outer_eye_corners is None:
            raise ValueError(f"scheme {scheme.name!r} declares no outer_eye_corners; "
                             "use norm='box' or 'box_diag'")
        a, b = scheme.indices(scheme.outer_eye_corners)
        dist = np.linalg.norm(gt[:, a] - gt[:, b], axis=1)
    elif norm == "inter_pupil":
        if scheme.eye_contours is None:
            raise ValueError(f"scheme {scheme.name!r} declares no eye_contours; "
                             "use norm='box' or 'box_diag'")
        centres = []
        for contour in scheme.eye_contours:
            pts = gt[:, scheme.indices(contour)]                   # (B, K, 2)
            ok = _annotated(pts)[..., None]
            with np.errstate(invalid="ignore", divide="ignore"):
                centres.append(np.where(ok, pts, 0.0).sum(1) / ok.sum(1))
        dist = np.linalg.norm(centres[0] - centres[1], axis=1)
    else:
        fb = _face_boxes(gt, boxes)
        w, h = fb[:, 2] - fb[:, 0], fb[:, 3] - fb[:, 1]
        with np.errstate(invalid="ignore"):
            dist = np.sqrt(w * h) if norm == "box" else np.hypot(w, h)
    dist = np.asarray(dist, dtype=np.float64)
    dist[~(np.isfinite(dist) & (dist > 0))] = np.nan
    return dist


def describe_norm(scheme: str | LandmarkScheme, norm: str | None = None, boxes=None) -> str:
    """One line saying how the NME was normalised, for reports.

    For the box norms it says how many faces used the dataset's box and how many fell back
    to the ground-truth landmark box.
    """
    scheme = get_scheme(scheme)
    norm = norm or scheme.nme_norm
    if norm == "inter_ocular":
        a, b = scheme.outer_eye_corners
        return f"inter_ocular: distance between {a} and {b} (outer eye corners)"
    if norm == "inter_pupil":
        return "inter_pupil: distance between the centroids of the two eye contours"
    what = "sqrt(w * h)" if norm == "box" else "diagonal"
    if boxes is None:
        return f"{norm}: {what} of the ground-truth landmark box (the dataset has no face boxes)"
    boxes = np.asarray(boxes, dtype=np.float64)
    given = int(np.isfinite(boxes).all(axis=1).sum())
    fallback = len(boxes) - given
    if fallback == 0:
        return f"{norm}: {what} of the dataset's face box"
    return (f"{norm}: {what} of the dataset's face box ({given} faces) or, where it has "
            f"none, of the ground-truth landmark box ({fallback} faces)")


def point_errors(pred, gt) -> np.ndarray:
    """Euclidean error of every point in pixels.

    Args:
        pred: (B, N, 2) predicted points; NaN/inf = no prediction.
        gt: (B, N, 2) ground truth; NaN = not annotated.

    Returns:
        float64 (B, N): the distance; NaN where the ground truth is not annotated; inf
        where it is annotated but the prediction is missing (not finite).
    """
    pred, gt = _pair(pred, gt)
    with np.errstate(invalid="ignore"):
        err = np.linalg.norm(pred - gt, axis=2)
    annotated = _annotated(gt)
    err[annotated & ~np.isfinite(pred).all(axis=2)] = np.inf
    err[~annotated] = np.nan
    return err


def _normalised_errors(pred, gt, scheme, norm, boxes) -> tuple[np.ndarray, np.ndarray]:
    """(point errors / distance (B, N), distance (B,))."""
    err = point_errors(pred, gt)
    dist = normalizing_distance(gt, scheme, norm, boxes)
    return err / dist[:, None], dist


def nme(pred, gt, scheme: str | LandmarkScheme, norm: str | None = None,
        boxes=None) -> np.ndarray:
    """Per-face normalised mean error: mean point error over annotated points / distance.

    Returns:
        float64 (B,), a fraction (multiply by 100 for %); inf for a face whose prediction
        is missing, NaN for a face that cannot be scored (see the module docstring).
    """
    nerr, dist = _normalised_errors(pred, gt, scheme, norm, boxes)
    ok = _annotated(_points(gt, "gt"))
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, nerr, 0.0).sum(axis=1) / count
    # no annotated point, or an annotated face without a distance: unscorable, not perfect
    out[(count == 0) | np.isnan(dist)] = np.nan
    return out


def per_landmark_nme(pred, gt, scheme: str | LandmarkScheme, norm: str | None = None,
                     boxes=None) -> np.ndarray:
    """Mean normalised error of each landmark over the faces where it is annotated.

    Faces without a prediction (inf) and unscorable faces are left out.

    Returns:
        float64 (N,); NaN for a landmark that no scored face annotates.
    """
    nerr, _ = _normalised_errors(pred, gt, scheme, norm, boxes)
    ok = np.isfinite(nerr)
    count = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, nerr, 0.0).sum(axis=0) / count
    out[count == 0] = np.nan
    return out


def point_var(pred, gt, scheme: str | LandmarkScheme, norm: str | None = None,
              boxes=None) -> np.ndarray:
    """Point-Var of the PIPNet paper (Sec. 4.2.3), per face.

    The paper computes "the variance of the difference between the ground-truth and the
    predictions for each test image, then average[s] them over a test set"; it reflects
    how consistent the errors of one face are (a prediction shifted as a whole has
    Point-Var 0). Here: with ``d_i = (pred_i - gt_i) / distance`` the normalised error
    vector of annotated point i, Point-Var = ``mean_i ||d_i - mean_j d_j||^2`` (the
    population variance of x plus that of y), so it is in squared NME units. Average the
    result with ``np.nanmean`` for the paper's test-set number.

    Returns:
        float64 (B,); NaN for faces without a prediction or that cannot be scored.
    """
    pred, gt = _pair(pred, gt)
    dist = normalizing_distance(gt, scheme, norm, boxes)
    ok = _annotated(gt) & np.isfinite(pred).all(axis=2)
    missing = (_annotated(gt) & ~np.isfinite(pred).all(axis=2)).any(axis=1)
    d = np.where(ok[..., None], (pred - gt) / dist[:, None, None], 0.0)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = d.sum(axis=1) / count[:, None]
        sq = np.where(ok, ((d - mean[:, None]) ** 2).sum(axis=2), 0.0)
        out = sq.sum(axis=1) / count
    out[(count == 0) | missing | np.isnan(dist)] = np.nan
    return out


def _scored(nmes) -> np.ndarray:
    arr = np.asarray(nmes, dtype=np.float64).reshape(-1)
    return arr[~np.isnan(arr)]


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return t


def failure_rate(nmes, threshold: float = 0.1) -> float:
    """Fraction of scored faces whose NME is above ``threshold`` (missing faces count).

    NaN entries (unscorable faces) are left out; NaN when no face is scored.
    """
    t = _check_threshold(threshold)
    e = _scored(nmes)
    return float(np.mean(e > t)) if len(e) else float("nan")


def auc(nmes, threshold: float = 0.1) -> float:
    """Exact area under the CED curve on ``[0, threshold]``, divided by ``threshold``.

    CED(x) = fraction of faces with NME <= x is a step function, so the area is
    ``sum_i max(0, t - e_i) / B`` and the AUC is ``mean(clip(1 - e_i / t, 0, 1))``.
    1.0 means every face is perfect, 0.0 that none is below the threshold.
    """
    t = _check_threshold(threshold)
    e = _scored(nmes)
    if not len(e):
        return float("nan")
    return float(np.mean(np.clip(1.0 - e / t, 0.0, 1.0)))


def ced_curve(nmes, threshold: float = 0.1, num: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution sampled on ``num`` points of ``[0, threshold]``.

    Returns:
        (x (num,), y (num,)): y[k] = fraction of scored faces with NME <= x[k].
        For plotting; :func:`auc` integrates the exact step function instead.
    """
    t = _check_threshold(threshold)
    if int(num) < 2:
        raise ValueError(f"ced_curve needs num >= 2, got {num!r}")
    e = np.sort(_scored(nmes))
    x = np.linspace(0.0, t, int(num))
    if not len(e):
        return x, np.full_like(x, np.nan)
    y = np.searchsorted(e, x, side="right") / len(e)
    return x, y


def summarize(nmes, threshold: float = 0.1) -> dict:
    """The usual summary of per-face NMEs.

    Returns:
        dict with ``nme`` (mean over faces with a prediction, a fraction), ``fr`` (failure
        rate at ``threshold``), ``auc`` (exact AUC at ``threshold``), ``count`` (scored
        faces, missing ones included), ``missing`` (faces without a prediction, NME inf)
        and ``excluded`` (unscorable faces, NME NaN, left out of everything).
    """
    arr = np.asarray(nmes, dtype=np.float64).reshape(-1)
    e = _scored(arr)
    finite = e[np.isfinite(e)]
    return {
        "nme": float(finite.mean()) if len(finite) else float("nan"),
        "fr": failure_rate(e, threshold),
        "auc": auc(e, threshold),
        "count": int(len(e)),
        "missing": int(np.isinf(e).sum()),
        "excluded": int(np.isnan(arr).sum()),
    }


def paired_difference(nmes, reference, level: float = 0.95, resamples: int = 10000,
                      seed: int = 0) -> dict:
    """How much a method's NME differs from a reference's on the same faces, with a paired
    bootstrap confidence interval (faces resampled with replacement, both methods together).

    Only faces both methods predicted and that can be scored take part.

    Args:
        nmes, reference: float (B,) per-face NMEs of the method and the reference on the
            same B faces (inf = no prediction, NaN = not scored).
        level: confidence level of the interval.
        resamples: bootstrap resamples.
        seed: seed of the resampling (the interval is reproducible).

    Returns:
        dict with ``diff`` (mean NME of the method minus the reference's, a fraction;
        negative = the method is better), ``low`` and ``high`` (the interval's ends),
        ``better`` (fraction of the faces where the method's NME is lower) and ``count``
        (faces compared). NaN numbers when no face is shared.
    """
    a = np.asarray(nmes, dtype=np.float64).reshape(-1)
    b = np.asarray(reference, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs NMEs of the same faces, got {a.shape} "
                         f"and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    both = np.isfinite(a) & np.isfinite(b)
    d = a[both] - b[both]
    n = len(d)
    if n == 0:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan"),
                "better": float("nan"), "count": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(int(resamples))
    for start in range(0, len(means), 1000):     # bounded memory for large test sets
        stop = min(start + 1000, len(means))
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"diff": float(d.mean()), "low": float(low), "high": float(high),
            "better": float(np.mean(d < 0)), "count": int(n)}


# ---------------------------------------------------------------------------------------
# Subsets
# ---------------------------------------------------------------------------------------
def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no")
    return bool(value)


def _wflw_flag(attrs: dict, spellings: tuple[str, ...]) -> bool:
    """A WFLW attribute flag, or membership of the per-attribute test list it came from."""
    for key in spellings:
        if key in attrs:
            return _truthy(attrs[key])
    return str(attrs.get("subset", "")).lower() in spellings


_WFLW_SPELLINGS = {k for sp in WFLW_ATTRIBUTES.values() for k in sp}
_W300_NAMES = {n for names in W300_SETS.values() for n in names} | {"afw"}


def detect_dataset_kind(samples: Sequence) -> str:
    """Guess which subset convention samples follow from their attributes ("none" if no guess).

    ``300vw`` when a category 1-3 is present; ``wflw`` when at least four of the six
    attribute flags are present or the faces come from WFLW's per-attribute lists;
    ``300w`` when the set is one of afw, lfpw, helen, ibug (or the subset common or
    challenge).
    """
    keys: set[str] = set()
    sets: set[str] = set()
    subsets: set[str] = set()
    cats: set[str] = set()
    for s in samples:
        a = s.attributes
        keys.update(a)
        sets.add(str(a.get("set", "")).lower())
        subsets.add(str(a.get("subset", "")).lower())
        cats.add(str(a.get("category", "")))
    if cats & {"1", "2", "3"}:
        return "300vw"
    if sum(any(k in keys for k in sp) for sp in WFLW_ATTRIBUTES.values()) >= 4 \
            or subsets & _WFLW_SPELLINGS:
        return "wflw"
    if sets & _W300_NAMES or subsets & set(W300_SETS):
        return "300w"
    return "none"


def subset_masks(samples: Sequence, dataset_kind: str = "auto") -> dict[str, np.ndarray]:
    """Boolean masks (B,) of the standard test subsets, from ``Sample.attributes``.

    Args:
        samples: the evaluated samples, in order.
        dataset_kind: ``"300w"``: ``common`` (sets lfpw + helen), ``challenge`` (ibug),
            ``full`` (both), from ``attributes["subset"]`` when a reader gives it, else
            from ``attributes["set"]`` (images under a ``trainset`` folder are left out);
            plus ``set=<name>`` for every set present.
            ``"wflw"``: the six attribute flags (pose, expression, illumination, makeup,
            occlusion, blur), from the flags or, for faces read from WFLW's per-attribute
            test lists, from ``attributes["subset"]``. ``"300vw"``: ``category1..3`` from
            ``attributes["category"]``.
            ``"auto"``: guessed with :func:`detect_dataset_kind`. ``"none"``: no subsets.

    Returns:
        subset name -> bool array (B,), in a fixed order; empty subsets are included
        (reports list their count, 0, in ``subset_counts`` and leave them out of tables).
    """
    if dataset_kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {dataset_kind!r}; choose one of "
                         f"{', '.join(DATASET_KINDS)}")
    kind = detect_dataset_kind(samples) if dataset_kind == "auto" else dataset_kind
    masks: dict[str, np.ndarray] = {}
    if kind == "300w":
        sets = [str(s.attributes.get("set", "")).lower() for s in samples]
        subsets = [str(s.attributes.get("subset", "")).lower() for s in samples]
        # the 300-W release keeps training images of LFPW and Helen under */trainset/
        train = ["trainset" in Path(s.image).parts for s in samples]
        for name, members in W300_SETS.items():
            masks[name] = np.array([sub == name or (not sub and st in members and not tr)
                                    for sub, st, tr in zip(subsets, sets, train)], dtype=bool)
        masks["full"] = masks["common"] | masks["challenge"]
        for st in sorted(set(sets) - {""}):
            masks[f"set={st}"] = np.array([x == st for x in sets], dtype=bool)
    elif kind == "wflw":
        for name, spellings in WFLW_ATTRIBUTES.items():
            masks[name] = np.array([_wflw_flag(s.attributes, spellings) for s in samples],
                                   dtype=bool)
    elif kind == "300vw":
        cats = [str(s.attributes.get("category", "")) for s in samples]
        for k in ("1", "2", "3"):
            masks[f"category{k}"] = np.array([c == k for c in cats], dtype=bool)
    return masks

"""Evaluate several methods on one dataset: summary, per-subset tables, per-landmark NME.

:func:`evaluate` matches each method's predictions to the ground truth
(:func:`~facemark.data.predictions.match_predictions`) and computes the metrics of
:mod:`facemark.evaluation.metrics`. The :class:`Report` prints as an aligned table, and
writes Markdown and JSON; :mod:`facemark.evaluation.plots` draws its figures.

Numbers in tables: NME and FR in percent, AUC as a fraction in [0, 1], Point-Var in
squared NME units (x 1e-3 in the tables).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from facemark.data.predictions import PredictionSet, assign_predictions
from facemark.data.schemes import get_scheme
from facemark.errors import DataError
from facemark.evaluation import metrics
from facemark.io import atomic_write_text, markdown_table


@dataclass(repr=False)
class MethodResult:
    """The evaluation of one method.

    Attributes:
        name: method name.
        summary: ``metrics.summarize`` of all faces plus ``point_var`` (mean Point-Var) and
            ``unused`` (predicted faces that matched no ground-truth face).
        subsets: subset name -> summary of the faces in it.
        per_landmark: float64 (N,) mean normalised error of each landmark.
        nmes: float64 (B,) per-face NME (inf = no prediction, NaN = not scored).
        points: float64 (B, N, 2) matched predicted pixels (NaN rows where missing).
        found: bool (B,) whether the face has a prediction.
        source: where the predictions came from (file path or description).
    """

    name: str
    summary: dict
    subsets: dict[str, dict]
    per_landmark: np.ndarray
    nmes: np.ndarray
    points: np.ndarray
    found: np.ndarray
    source: str = ""

    def __repr__(self) -> str:
        s = self.summary
        return f"MethodResult({self.name!r}, NME {100 * s['nme']:.2f}%, {s['count']} faces)"


@dataclass(repr=False)
class Report:
    """Results of several methods on one dataset (see :func:`evaluate`)."""

    dataset: str
    scheme: str
    norm: str
    norm_description: str
    threshold: float
    count: int
    methods: dict[str, MethodResult]
    subset_counts: dict[str, int]
    samples: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Report({self.dataset!r}, {self.count} faces, methods={list(self.methods)})"

    # -- tables --------------------------------------------------------------------------
    def summary_rows(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of the per-method summary table, numbers formatted."""
        t = _pct(self.threshold)
        header = ["method", "NME %", f"FR@{t} %", f"AUC@{t}", "Point-Var e-3", "faces",
                  "missing", "excluded"]
        rows = []
        for m in self.methods.values():
            s = m.summary
            rows.append([m.name, _f(100 * s["nme"]), _f(100 * s["fr"]), _f(s["auc"], 4),
                         _f(1e3 * s["point_var"], 3), str(s["count"]), str(s["missing"]),
                         str(s["excluded"])])
        return header, rows

    def subset_rows(self, method: str) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of one method's per-subset table."""
        t = _pct(self.threshold)
        header = ["subset", "faces", "NME %", f"FR@{t} %", f"AUC@{t}", "missing"]
        rows = []
        for name, s in self.methods[method].subsets.items():
            if self.subset_counts.get(name, s["count"]) == 0:
                continue  # an empty subset (listed in subset_counts / report.json)
            rows.append([name, str(s["count"]), _f(100 * s["nme"]), _f(100 * s["fr"]),
                         _f(s["auc"], 4), str(s["missing"])])
        return header, rows

    @cached_property
    def paired(self) -> dict[str, dict]:
        """Each method after the first against the first (the reference), on the faces
        both predicted: ``metrics.paired_difference`` (mean NME difference with a 95%
        paired bootstrap interval, fraction of faces better)."""
        methods = list(self.methods.values())
        ref = methods[0]
        return {m.name: metrics.paired_difference(m.nmes, ref.nmes) for m in methods[1:]}

    def paired_rows(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of :meth:`paired`, NME in percentage points."""
        ref = next(iter(self.methods))
        header = ["method", "vs", "faces", "NME diff", "95% interval", "better on %"]
        rows = []
        for name, p in self.paired.items():
            rows.append([name, ref, str(p["count"]), _signed(100 * p["diff"]),
                         f"[{_signed(100 * p['low'])}, {_signed(100 * p['high'])}]",
                         _f(100 * p["better"], 1)])
        return header, rows

    def region_rows(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows): mean per-landmark NME (%) of each face region, per method."""
        scheme = get_scheme(self.scheme)
        regions = list(dict.fromkeys(scheme.region_of))
        region_of = np.array(scheme.region_of)
        header = ["region", "points"] + list(self.methods)
        rows = []
        for r in regions:
            mask = region_of == r
            row = [r, str(int(mask.sum()))]
            for m in self.methods.values():
                vals = m.per_landmark[mask]
                row.append(_f(100 * np.nanmean(vals)) if np.isfinite(vals).any() else "-")
            rows.append(row)
        return header, rows

    def header_lines(self) -> list[str]:
        return [f"dataset: {self.dataset} ({self.count} faces, scheme {self.scheme})",
                f"normalisation: {self.norm_description}",
                f"threshold for FR and AUC: {self.threshold:g}"] + self.notes

    def print(self, file=None) -> None:
        """Print the summary and per-subset tables as plain aligned text."""
        out = [*self.header_lines(), "", _aligned(*self.summary_rows())]
        if len(self.methods) > 1:
            out += ["", "paired with the first method (NME difference in points, negative = "
                        "lower; paired bootstrap over faces):", _aligned(*self.paired_rows())]
        for name in self.methods:
            header, rows = self.subset_rows(name)
            if len(rows) > 1:  # more than the "all" row
                out += ["", f"subsets ({name}):", _aligned(header, rows)]
        print("\n".join(out), file=file)

    def to_markdown(self) -> str:
        """The whole report as Markdown (summary, subsets, regions, every landmark)."""
        lines = ["# Evaluation report", ""]
        lines += [f"- {line}" for line in self.header_lines()]
        lines += ["", "## Summary", "", markdown_table(*self.summary_rows()), ""]
        lines += ["NME and FR in percent; AUC is the exact area under the CED curve on "
                  "[0, threshold] divided by the threshold; faces without a prediction count "
                  "as failures and are left out of the mean NME (see `missing`).", ""]
        if len(self.methods) > 1:
            lines += ["## Paired differences", "",
                      "Each method against the first on the faces both predicted: the mean "
                      "of the per-face NME differences in percentage points (negative = lower "
                      "error), its 95% interval from a paired bootstrap over faces (10,000 "
                      "resamples), and the share of faces with the lower NME. An interval "
                      "that contains 0 means the test set cannot tell the two apart.", "",
                      markdown_table(*self.paired_rows(), "ll" + "r" * 4), ""]
        for name in self.methods:
            header, rows = self.subset_rows(name)
            if len(rows) > 1:
                lines += [f"## Subsets: {name}", "", markdown_table(header, rows), ""]
        lines += ["## Per-region NME (%)", "", markdown_table(*self.region_rows()), ""]
        scheme = get_scheme(self.scheme)
        header = ["#", "point", "region"] + list(self.methods)
        rows = [[str(i), scheme.names[i], scheme.region_of[i]]
                + [_f(100 * m.per_landmark[i]) for m in self.methods.values()]
                for i in range(scheme.num_points)]
        align = "lll" + "r" * len(self.methods)   # number, name and region are text
        lines += ["## Per-landmark NME (%)", "", markdown_table(header, rows, align), ""]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready content: non-finite numbers become null (``missing`` says why)."""
        methods = {}
        for m in self.methods.values():
            methods[m.name] = {
                "source": m.source,
                "summary": _clean(m.summary),
                "subsets": {k: _clean(v) for k, v in m.subsets.items()},
                "per_landmark_nme": _clean(m.per_landmark.tolist()),
            }
        faces = []
        for i, s in enumerate(self.samples):
            faces.append({"image": s.image, "frame": s.frame,
                          "nme": {m.name: _clean(float(m.nmes[i])) for m in self.methods.values()},
                          "found": {m.name: bool(m.found[i]) for m in self.methods.values()}})
        return {"dataset": self.dataset, "scheme": self.scheme, "norm": self.norm,
                "norm_description": self.norm_description, "threshold": self.threshold,
                "count": self.count, "subset_counts": self.subset_counts, "notes": self.notes,
                "methods": methods, "paired": {k: _clean(v) for k, v in self.paired.items()},
                "faces": faces}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (temporary file + os.replace)."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    def write_markdown(self, path: str | Path) -> Path:
        return atomic_write_text(Path(path), self.to_markdown())


def evaluate(sets: Mapping[str, PredictionSet], samples: Sequence, scheme=None,
             norm: str | None = None, threshold: float = 0.1,
             subsets: str | Mapping[str, np.ndarray] | None = "auto",
             dataset: str = "", notes: Sequence[str] = ()) -> Report:
    """Evaluate prediction sets against annotated samples.

    Args:
        sets: method name -> PredictionSet.
        samples: the ground-truth samples (all of one scheme, all annotated).
        scheme: scheme name (checked against the samples); the samples' when None.
        norm: NME normalisation (``metrics.normalizing_distance``); the scheme's when None.
        threshold: for FR, AUC and CED.
        subsets: a dataset kind for ``metrics.subset_masks`` (``"auto"``, ``"300w"``,
            ``"wflw"``, ``"300vw"``, ``"none"``/None), or name -> bool mask (B,).
        dataset: a description of the dataset for the report (e.g. the path).
        notes: lines to put first in the report's notes (e.g. how the ground truth was
            converted or cropped).

    Returns:
        a Report; every subset table starts with ``all``.

    Raises:
        DataError: a set has predicted faces but none of them is of an image of the
            dataset (wrong file or image names; a set without faces is all failures).
    """
    if not sets:
        raise ValueError("evaluate needs at least one prediction set")
    samples = list(samples)
    if not samples:
        raise ValueError("evaluate needs at least one ground-truth sample")
    scheme = get_scheme(scheme or samples[0].scheme)
    for s in samples:
        if get_scheme(s.scheme).name != scheme.name:
            raise DataError(s.source or s.image, f"dataset mixes schemes: {scheme.name} and {s.scheme}")
        if s.landmarks is None:
            raise DataError(s.source or s.image, "face has no ground-truth landmarks to evaluate against")
    gt = np.stack([s.landmarks for s in samples]).astype(np.float64)
    boxes = np.stack([s.box if s.box is not None else np.full(4, np.nan) for s in samples])
    has_boxes = bool(np.isfinite(boxes).all(axis=1).any())
    boxes_arg = boxes if has_boxes else None
    norm = norm or scheme.nme_norm
    if subsets is None:
        subsets = "none"
    masks = metrics.subset_masks(samples, subsets) if isinstance(subsets, str) else dict(subsets)
    masks = {"all": np.ones(len(samples), dtype=bool), **masks}
    for name, mask in masks.items():
        if np.shape(mask) != (len(samples),):
            raise ValueError(f"subset {name!r}: mask must have shape ({len(samples)},), "
                             f"got {np.shape(mask)}")

    results = {}
    notes = list(notes)
    for name, pset in sets.items():
        idx = assign_predictions(pset, samples)
        found = idx >= 0
        if len(pset.faces) and not found.any():  # wrong names or dataset: not a 100% failure
            raise DataError(pset.path or name,
                            f"none of its {len(pset.faces)} predicted faces is of an image of "
                            f"the dataset (it names e.g. {pset.faces[0].image!r}, the dataset "
                            f"has e.g. {str(samples[0].image)!r}); image paths must name the "
                            "dataset's images (relative to its folder, or set 'root')")
        pred = np.full_like(gt, np.nan)
        for i, j in enumerate(idx):
            if j >= 0:
                pred[i] = pset.faces[j].points
        nmes = metrics.nme(pred, gt, scheme, norm, boxes_arg)
        summary = metrics.summarize(nmes, threshold)
        pv = metrics.point_var(pred, gt, scheme, norm, boxes_arg)
        summary["point_var"] = float(np.nanmean(pv)) if np.isfinite(pv).any() else float("nan")
        summary["unused"] = int(len(pset.faces) - len(set(idx[found].tolist())))
        per_subset = {k: metrics.summarize(nmes[np.asarray(m, bool)], threshold)
                      for k, m in masks.items()}
        results[name] = MethodResult(
            name=name, summary=summary, subsets=per_subset,
            per_landmark=metrics.per_landmark_nme(pred, gt, scheme, norm, boxes_arg),
            nmes=nmes, points=pred, found=found, source=pset.path or pset.method)
        crops = (getattr(pset, "info", None) or {}).get("crops")
        if crops:
            notes.append(f"{name}: crops from {crops}")
        if summary["missing"]:
            notes.append(f"{name}: {summary['missing']} of {len(samples)} faces have no "
                         "prediction (counted as failures, left out of the mean NME)")
        if summary["unused"]:
            notes.append(f"{name}: {summary['unused']} predicted faces matched no "
                         "ground-truth face and were not used")
    excluded = int(np.isnan(metrics.normalizing_distance(gt, scheme, norm, boxes_arg)).sum())
    if excluded:
        notes.append(f"{excluded} faces cannot be scored (normalising distance undefined) "
                     "and are excluded")
    return Report(dataset=dataset, scheme=scheme.name, norm=norm,
                  norm_description=metrics.describe_norm(scheme, norm, boxes_arg),
                  threshold=float(threshold), count=len(samples), methods=results,
                  subset_counts={k: int(np.sum(m)) for k, m in masks.items()},
                  samples=samples, notes=notes)


# ---------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------
def _pct(t: float) -> str:
    return f"{t:g}"


def _f(v: float, digits: int = 2) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _signed(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:+.2f}"


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _aligned(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])

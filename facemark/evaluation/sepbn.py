"""The SepBN paper's analyses of separate BatchNorms, on trained models.

* :func:`parameter_similarity` (paper Eq. 2, Fig. 4): for every layer that keeps K
  separate BatchNorm parameter sets (brute-force SepBN ``DomainBN``, ``MixBN``; grouped
  ``SepBN`` has K mapping sets but one shared set of statistics), the mean pairwise cosine
  similarity ``S = mean_{i<j} cos(p_i, p_j)`` of the K branches' running mean, running
  variance, scale (``weight``) and shift (``bias``), with the feature-map resolution the
  layer acts on. The paper finds the tracking parameters (statistics) nearly identical
  across branches and the mapping parameters different.
* :func:`best_of_k` (paper Sec. III-A, Table II): a brute-force SepBN model tested the
  paper's way, each face run through every branch and the lowest-error result kept. Picking
  by the ground truth makes this an **oracle**, not a usable test protocol: the report says
  so, and also gives each branch's own NME (what a model that has to guess would get).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import torch
from torch import nn

from facemark.data.crops import normalise_points, transform_points
from facemark.data.schemes import get_scheme
from facemark.evaluation.metrics import nme, summarize
from facemark.evaluation.plots import _save
from facemark.io import markdown_table
from facemark.models.crop_predict import iter_crops
from facemark.models.norm import DomainBN, MixBN, SepBN, domain_context, num_domains

#: the four parameter kinds of Fig. 4, as (state-dict leaf, label)
PARAMETER_KINDS = (("running_mean", "running mean"), ("running_var", "running var"),
                   ("weight", "scale"), ("bias", "shift"))


def _branch_sets(layer: nn.Module) -> dict[str, torch.Tensor] | None:
    """{kind: (K, C)} for a layer with K parameter sets; None for any other layer."""
    if isinstance(layer, (DomainBN, MixBN)):
        return {kind: torch.stack([getattr(b, kind).detach().float() for b in layer.branches])
                for kind, _ in PARAMETER_KINDS}
    if isinstance(layer, SepBN):                      # statistics shared: mapping only
        return {"weight": layer.weight.detach().float(), "bias": layer.bias.detach().float()}
    return None


def mean_pairwise_cosine(sets: torch.Tensor) -> float:
    """Eq. 2: mean of ``cos(p_i, p_j)`` over the K(K-1)/2 pairs of rows of ``sets`` (K, C).

    Returns NaN for K < 2. Two equal vectors have similarity 1 (also when both are zero,
    as the shifts of a fresh layer are); a zero vector has similarity 0 with any other.
    """
    k = sets.shape[0]
    if k < 2:
        return float("nan")
    sims = [1.0 if torch.equal(sets[i], sets[j]) else
            float(torch.nn.functional.cosine_similarity(sets[i], sets[j], dim=0))
            for i, j in combinations(range(k), 2)]
    return float(np.mean(sims))


@dataclass
class SimilarityResult:
    """Per layer: name, channels, input resolution (H, W) and S per parameter kind (NaN
    where the layer has no separate sets of that kind)."""

    layers: list[str] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    resolution: list[tuple[int, int]] = field(default_factory=list)
    similarity: dict[str, list[float]] = field(default_factory=dict)
    kind: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        headers = ["layer", "type", "channels", "resolution"] + [
            label for _, label in PARAMETER_KINDS]
        rows = []
        for i, name in enumerate(self.layers):
            h, w = self.resolution[i]
            cells = []
            for kind, _ in PARAMETER_KINDS:
                v = self.similarity[kind][i]
                cells.append("shared" if np.isnan(v) else f"{v:.3f}")
            rows.append([name, self.kind[i], self.channels[i], f"{h}x{w}", *cells])
        lines = [markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2))]
        means = []
        for kind, label in PARAMETER_KINDS:
            vals = [v for v in self.similarity[kind] if not np.isnan(v)]
            means.append(f"{label} {np.mean(vals):.3f}" if vals else f"{label} n/a")
        lines.append("")
        lines.append("Mean cosine similarity of the K branches (Eq. 2), averaged over layers: "
                     + ", ".join(means) + ".")
        return "\n".join(lines)

    def plot(self, path) -> None:
        """Fig. 4: S of each parameter kind against the layers (labelled by resolution)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4.5, 0.45 * len(self.layers) + 2), 3.4))
        x = np.arange(len(self.layers))
        for (kind, label), marker, style in zip(PARAMETER_KINDS, "osD^", ("-", "--", "-", "--")):
            y = np.asarray(self.similarity[kind], dtype=float)
            if np.isfinite(y).any():
                ax.plot(x, y, marker=marker, linestyle=style, markerfacecolor="none"
                        if marker == "s" else None, label=label)
        ax.set_xticks(x, [f"{h}x{w}" for h, w in self.resolution],
                      rotation=90 if len(x) > 12 else 0, fontsize=7)
        ax.set_xlabel("feature-map resolution the layer acts on")
        ax.set_ylabel("mean cosine similarity S (Eq. 2)")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        _save(fig, path)


def parameter_similarity(model: nn.Module, input_size: int) -> SimilarityResult:
    """Eq. 2 for every layer of ``model`` with separate BN parameter sets (module docstring).

    The resolution each layer acts on is measured with one forward pass of a zero image
    (1, 3, S, S), S = ``input_size``, in eval mode (brute-force layers routed to branch 0).

    Raises:
        ValueError: the model has no such layer (a plain BatchNorm model).
    """
    found = [(name, m, sets) for name, m in model.named_modules()
             if (sets := _branch_sets(m)) is not None]
    if not found:
        raise ValueError("the model has no layer with separate BatchNorm parameter sets "
                         "(norm_layer sepbn_brute, mixbn or sepbn)")
    sizes: dict[str, tuple[int, int]] = {}

    def recorder(name: str):
        def hook(module, inputs, output) -> None:   # returns None: the output is kept
            sizes.setdefault(name, tuple(int(v) for v in inputs[0].shape[-2:]))
        return hook

    hooks = [m.register_forward_hook(recorder(name)) for name, m, _ in found]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), domain_context(model, 0):
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = SimilarityResult(similarity={kind: [] for kind, _ in PARAMETER_KINDS})
    for name, m, sets in found:
        out.layers.append(name)
        out.kind.append(type(m).__name__)
        out.channels.append(int(next(iter(sets.values())).shape[1]))
        out.resolution.append(sizes.get(name, (0, 0)))
        for kind, _ in PARAMETER_KINDS:
            out.similarity[kind].append(mean_pairwise_cosine(sets[kind]) if kind in sets
                                        else float("nan"))
    return out


@dataclass
class OracleResult:
    """Best-of-K test of a brute-force SepBN model.

    Attributes:
        errors: (F, K) NME (fractions) of each face through each branch.
        names: the K branch labels.
    """

    errors: np.ndarray
    names: list[str]

    @property
    def best(self) -> np.ndarray:
        """(F,) per-face NME of the best branch: the oracle (it looks at the ground truth)."""
        return np.nanmin(self.errors, axis=1)

    @property
    def chosen(self) -> np.ndarray:
        """(F,) index of the branch the oracle picks for each face."""
        return np.nanargmin(self.errors, axis=1)

    def to_markdown(self) -> str:
        best = summarize(self.best)
        rows = [[f"best of {len(self.names)} branches (ORACLE: picked with the ground truth)",
                 f"{100 * best['nme']:.2f}", f"{100 * best['fr']:.2f}", len(self.best)]]
        picked = np.bincount(self.chosen, minlength=len(self.names))
        for k, name in enumerate(self.names):
            s = summarize(self.errors[:, k])
            rows.append([f"every face through {name}", f"{100 * s['nme']:.2f}",
                         f"{100 * s['fr']:.2f}", picked[k]])
        lines = [markdown_table(["protocol", "NME %", "FR@0.1 %", "faces picked"], rows)]
        lines += ["", "The best-of-K row is the SepBN paper's test protocol for brute-force "
                      "SepBN (Table II); it chooses each face's branch by its error against "
                      "the annotation, so it is an oracle, not a result a deployed model "
                      "can reach. The per-branch rows need no ground truth."]
        return "\n".join(lines)

    def plot(self, path) -> None:
        """Cumulative error curves of the oracle and of each branch."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        for label, e in [("best of K (oracle)", self.best)] + [
                (n, self.errors[:, k]) for k, n in enumerate(self.names)]:
            e = np.sort(e[np.isfinite(e)])
            if len(e):
                ax.plot(100 * e, np.arange(1, len(e) + 1) / len(e), label=label)
        ax.set_xlabel("NME (%)")
        ax.set_ylabel("fraction of faces")
        ax.set_xlim(0, 10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        _save(fig, path)


def best_of_k_points(model: nn.Module, images: torch.Tensor, landmarks: np.ndarray,
                     scheme) -> tuple[np.ndarray, np.ndarray]:
    """Each face through each of the K branches of a brute-force SepBN model.

    Args:
        model: a LandmarkModel with DomainBN layers (eval mode is the caller's choice).
        images: (B, 3, S, S) in [0, 1].
        landmarks: (B, N, 2) ground truth in the coordinates ``model.predict`` returns
            (NaN for unannotated points).
        scheme: scheme (name) for the NME normaliser.

    Returns:
        points (B, N, 2) of each face's best branch (the oracle's prediction) and
        errors (B, K): NME of each face through each branch.
    """
    k = num_domains(model)
    if k == 0:
        raise ValueError("best-of-K testing needs a brute-force SepBN model (norm_layer "
                         "sepbn_brute); this model has no domain branches")
    preds, errors = [], []
    with torch.no_grad():
        for d in range(k):
            with domain_context(model, d):
                points, _ = model.predict(images)
            p = points.float().cpu().numpy()
            preds.append(p)
            errors.append(nme(p, landmarks, scheme))
    errors = np.stack(errors, axis=1)
    safe = np.where(np.isnan(errors), np.inf, errors)
    pick = safe.argmin(axis=1)
    return np.stack(preds, axis=1)[np.arange(len(pick)), pick], errors


def best_of_k(model: nn.Module, samples: Sequence, *, crop_rule: str, input_size: int,
              scheme=None, batch_size: int = 32, on_error=None) -> OracleResult:
    """The paper's best-of-K test (oracle) of a brute-force SepBN model on labelled samples.

    Faces are cropped by ``crop_rule`` from their annotation, as in training; the NME is
    computed in crop coordinates (it is scale invariant).
    """
    scheme = get_scheme(scheme or samples[0].scheme)
    other = {s.scheme for s in samples} - {scheme.name}
    if other:
        raise ValueError(f"the model predicts scheme {scheme.name} but the data has "
                         f"{', '.join(sorted(other))}")
    k = num_domains(model)
    rows: list[np.ndarray] = []
    model.eval()
    for idx, crops, mats in iter_crops(samples, crop_rule=crop_rule, input_size=input_size,
                                       batch_size=batch_size, on_error=on_error):
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
        gt = np.stack([normalise_points(transform_points(samples[i].landmarks, mats[j]),
                                        input_size) for j, i in enumerate(idx)])
        _, errors = best_of_k_points(model, x, gt, scheme)
        rows.append(errors)
    errors = np.concatenate(rows) if rows else np.zeros((0, k))
    return OracleResult(errors=errors, names=[f"branch {d}" for d in range(k)])


__all__ = ["OracleResult", "PARAMETER_KINDS", "SimilarityResult", "best_of_k",
           "best_of_k_points", "mean_pairwise_cosine", "parameter_similarity"]

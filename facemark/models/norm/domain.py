"""Brute-force SepBN (SepBN paper, Sec. III-A, Fig. 2, Table II): one whole BatchNorm per domain.

A :class:`DomainBN` layer holds K ``nn.BatchNorm2d`` branches (``branches.0`` ...
``branches.K-1``, each with its own running statistics and affine parameters). Every sample
goes through the branch of its domain label, so each branch tracks and maps its own
domain only (the paper splits AFLW into frontal / left / right profile faces; facemark
uses the index of the training dataset a face comes from, ``data.train[d]`` -> domain d).

The label reaches the layers per batch: ``set_domain(model, labels)`` sets the
``domain`` attribute of every DomainBN inside ``model`` (a (B,) integer tensor, one int
for the whole batch, or None), and ``domain_context(model, labels)`` does so for a
``with`` block. Training (``facemark.training.module.LandmarkModule``) sets it from each
batch's ``domain``.

At test time the domain of a face is unknown. The paper processes each test face with
every branch and keeps the best result: an oracle, since choosing "best" needs the ground
truth (``facemark.evaluation.sepbn.best_of_k``; reports say so). A layer without a
label raises :class:`DomainLabelError`, so no model silently runs on an arbitrary branch.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from facemark.errors import ConfigError, FacemarkError


class DomainLabelError(FacemarkError):
    """A brute-force SepBN layer ran without a (valid) domain label."""


class DomainBN(nn.Module):
    """K BatchNorm2d branches, each sample routed by its domain label.

    Args:
        num_features: channels C.
        num_domains: K branches (paper: 3).
        eps, momentum: of each BatchNorm2d.

    Shapes:
        (B, C, H, W) -> (B, C, H, W); ``domain``: int in [0, K) or (B,) integers.

    Attributes:
        branches: the K ``nn.BatchNorm2d``.
        domain: the current label(s), set by :func:`set_domain` (not saved).
    """

    def __init__(self, num_features: int, *, num_domains: int = 3, eps: float = 1e-5,
                 momentum: float | None = 0.1):
        super().__init__()
        for name, value in (("num_features", num_features), ("num_domains", num_domains)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DomainBN: {name} must be a positive integer, got {value!r}")
        self.num_features = int(num_features)
        self.num_domains = int(num_domains)
        self.branches = nn.ModuleList(nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
                                      for _ in range(num_domains))
        self.domain: int | Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"DomainBN: expected input (B, {self.num_features}, H, W), "
                             f"got {tuple(x.shape)}")
        d = self.domain
        if d is None:
            raise DomainLabelError(
                "brute-force SepBN needs each face's domain label: training sets it from the "
                "dataset index; to test, use the best-of-K oracle ('facemark analyze oracle')")
        if isinstance(d, int):
            check_labels(torch.tensor([d]), self.num_domains)
            return self.branches[d](x)
        d = d.to(x.device).long().reshape(-1)
        if d.numel() != x.shape[0]:
            raise DomainLabelError(f"brute-force SepBN: {d.numel()} domain labels for a batch "
                                   f"of {x.shape[0]}")
        check_labels(d, self.num_domains)
        order = torch.argsort(d, stable=True)
        pieces, labels = [], d[order]
        xs = x[order]
        for k in torch.unique(labels).tolist():
            pieces.append(self.branches[k](xs[labels == k]))
        return torch.cat(pieces)[torch.argsort(order)]

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_domains={self.num_domains}"


def check_labels(labels: Tensor, k: int) -> None:
    """Raise DomainLabelError unless every label is in [0, k)."""
    bad = labels[(labels < 0) | (labels >= k)]
    if bad.numel():
        raise DomainLabelError(f"brute-force SepBN has {k} branches (domains 0..{k - 1}), "
                               f"got domain label {int(bad[0])}")


def domain_layers(module: nn.Module) -> list[DomainBN]:
    """Every DomainBN inside ``module``."""
    return [m for m in module.modules() if isinstance(m, DomainBN)]


def num_domains(module: nn.Module) -> int:
    """K of the DomainBN layers inside ``module`` (0 when it has none)."""
    return max((m.num_domains for m in domain_layers(module)), default=0)


def set_domain(module: nn.Module, labels: int | Tensor | None) -> None:
    """Route the next forward passes of ``module``: ``labels`` is one int, (B,) ints or None."""
    if isinstance(labels, Tensor) and labels.dim() == 0:
        labels = int(labels)
    for m in domain_layers(module):
        m.domain = labels


@contextlib.contextmanager
def domain_context(module: nn.Module, labels: int | Tensor | None) -> Iterator[None]:
    """``with domain_context(model, labels): model(x)``; the labels are cleared afterwards."""
    set_domain(module, labels)
    try:
        yield
    finally:
        set_domain(module, None)


__all__ = ["DomainBN", "DomainLabelError", "check_labels", "domain_context", "domain_layers",
           "num_domains", "set_domain"]

"""Domain-adversarial training parts (DANN): gradient reversal and a domain classifier.

Ganin and Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015 (and
Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016). The PIPNet
paper (papers/pipnet.txt, Sec. 4.5, Table 7) runs DANN as the UDA/GSSL baseline next to
self-training and STC; :mod:`facemark.training.dann` trains with these parts.

The domain classifier sees the backbone's features through a gradient reversal layer:
forward it is the identity, backward it multiplies the gradient by ``-coeff``. The
classifier learns to tell source (labelled) from target (unlabelled) faces, and the
backbone learns features that fool it. The coefficient ramps from 0 to 1 over training,
``2 / (1 + exp(-gamma * p)) - 1`` with ``p`` the training progress in [0, 1] and
``gamma = 10`` (:func:`grl_coefficient`), so the noisy early classifier does not disturb
the features.

Neither part belongs to the landmark model: a trained model is saved without them.

    grl = GradientReversal()
    classifier = DomainClassifier(backbone.out_channels)
    grl.coeff = grl_coefficient(step / total_steps)
    logits = classifier(grl(features))          # (B, C, h, w) -> (B,)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from facemark.errors import ConfigError


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the incoming gradient times ``-coeff`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, coeff: float) -> Tensor:
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.coeff, None


def reverse_gradient(x: Tensor, coeff: float = 1.0) -> Tensor:
    """``x`` unchanged; in the backward pass its gradient is multiplied by ``-coeff``.

    Args:
        x: any tensor.
        coeff: lambda >= 0 (0 stops the gradient, 1 flips it).
    """
    return _ReverseGradient.apply(x, coeff)


class GradientReversal(nn.Module):
    """The gradient reversal layer (GRL) as a module, with a settable coefficient.

    Args:
        coeff: initial lambda (>= 0); the trainer sets ``coeff`` every step.

    Shapes:
        any -> the same (identity forward; gradient times ``-coeff`` backward).
    """

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = coeff

    def forward(self, x: Tensor) -> Tensor:
        return reverse_gradient(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff:g}"


def grl_coefficient(progress: float, gamma: float = 10.0, max_coeff: float = 1.0) -> float:
    """Ganin and Lempitsky's schedule: ``max_coeff * (2 / (1 + exp(-gamma * p)) - 1)``.

    Args:
        progress: p, the share of training done, clipped to [0, 1].
        gamma: steepness (the paper: 10).
        max_coeff: the value approached at p = 1 (the paper: 1).

    Returns:
        0 at p = 0, rising to ``max_coeff * tanh(gamma / 2)`` (0.9866 for gamma 10) at p = 1.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return float(max_coeff) * (2.0 / (1.0 + math.exp(-float(gamma) * p)) - 1.0)


class DomainClassifier(nn.Module):
    """Source-vs-target classifier on globally average-pooled features.

    Ganin et al.'s domain classifier for deep features is a small MLP (two hidden layers of
    1024 with ReLU and dropout, then the domain output); here one logit, ``> 0`` meaning
    "target" (train it with ``binary_cross_entropy_with_logits``).

    Args:
        in_channels: C, the channels of the feature map (``backbone.out_channels``).
        hidden: widths of the hidden layers (empty: a linear classifier).
        dropout: dropout after each hidden layer.

    Shapes:
        features (B, C, h, w) or already pooled (B, C) -> logits (B,).
    """

    def __init__(self, in_channels: int, hidden: Sequence[int] = (1024, 1024),
                 dropout: float = 0.5):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"DomainClassifier: in_channels must be a positive integer, got "
                              f"{in_channels!r}")
        widths = list(hidden)
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ConfigError(f"DomainClassifier: hidden widths must be positive integers, got "
                              f"{hidden!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"DomainClassifier: dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        width = in_channels
        for w in widths:
            layers += [nn.Linear(width, w), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = w
        layers.append(nn.Linear(width, 1))
        self.in_channels = in_channels
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() not in (2, 4) or features.shape[1] != self.in_channels:
            raise ValueError(f"DomainClassifier: expected features (B, {self.in_channels}, h, w) "
                             f"or (B, {self.in_channels}), got {tuple(features.shape)}")
        pooled = features.mean(dim=(2, 3)) if features.dim() == 4 else features
        return self.mlp(pooled).squeeze(1)


__all__ = ["DomainClassifier", "GradientReversal", "grl_coefficient", "reverse_gradient"]

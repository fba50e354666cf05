"""MixBN: whole BatchNorm branches mixed by softmax attention (the SepBN authors' public code).

The SepBN paper (papers/sepbn.txt) describes the grouped module in ``sepbn.py``; the code its
authors published instead mixes K = 3 complete BatchNorm layers (each with its own running
statistics and affine parameters) with one attention weight per sample (see
../shared/REFERENCE.md, "SepBN as its authors' code runs it"):

    pi = softmax(fc2(relu(fc1(global_avg_pool(x)))) / tau)          (B, K)
    y  = sum_k pi[:, k] * bn_k(x)

with fc1: C -> round(0.1 * C), fc2: -> K, and the same temperature schedule (30 -> 1). It
is a useful baseline: it costs K times BatchNorm's statistics and, as the paper's Fig. 4
observes, the branches' running statistics end up nearly identical, since every branch
sees the whole batch.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.norm.sepbn import mix_weights


class MixBN(nn.Module):
    """K BatchNorm2d branches mixed per sample by temperature-softmax attention.

    Args:
        num_features: channels C.
        num_branches: K (authors' code: 3).
        reduction: hidden width of the attention as a fraction of C (authors' code: 0.1;
            at least 1).
        temperature: initial tau (the training callback anneals it).
        eps, momentum: of each BatchNorm2d branch.

    Shapes:
        (B, C, H, W) -> (B, C, H, W); ``attention(x)`` gives the weights (B, K).

    Attributes:
        branches: the K ``nn.BatchNorm2d`` (affine), named ``branches.0`` ... ``branches.K-1``.
        temperature: tau (a float property over the ``tau`` buffer).
    """

    def __init__(self, num_features: int, *, num_branches: int = 3, reduction: float = 0.1,
                 temperature: float = 1.0, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        for name, value in (("num_features", num_features), ("num_branches", num_branches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MixBN: {name} must be a positive integer, got {value!r}")
        if not reduction > 0:
            raise ConfigError(f"MixBN: reduction must be > 0, got {reduction!r}")
        if not temperature > 0:
            raise ConfigError(f"MixBN: temperature must be > 0, got {temperature!r}")
        self.num_features = int(num_features)
        self.num_branches = int(num_branches)
        hidden = max(1, int(round(reduction * num_features)))
        self.branches = nn.ModuleList(nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
                                      for _ in range(num_branches))
        self.fc1 = nn.Linear(num_features, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, num_branches)
        self.register_buffer("tau", torch.tensor(float(temperature)))

    @property
    def temperature(self) -> float:
        return float(self.tau)

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"MixBN: temperature must be > 0, got {value!r}")
        self.tau.fill_(float(value))

    def attention(self, x: Tensor) -> Tensor:
        """Mixing weights (B, K): non-negative, summing to 1."""
        logits = self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3)))))
        return mix_weights(logits, self.tau, "soft")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"MixBN: expected input (B, {self.num_features}, H, W), "
                             f"got {tuple(x.shape)}")
        pi = self.attention(x)
        out = pi[:, 0, None, None, None] * self.branches[0](x)
        for k in range(1, self.num_branches):
            out = out + pi[:, k, None, None, None] * self.branches[k](x)
        return out

    def extra_repr(self) -> str:
        return (f"{self.num_features}, num_branches={self.num_branches}, "
                f"temperature={self.temperature:g}")


__all__ = ["MixBN"]

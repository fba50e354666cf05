"""Separable Batch Normalization (SepBN) with attention.

Separable Batch Normalization for Robust Facial Landmark Localization with Cross-protocol
Network Training (Jin, Feng, Yang, Kittler; papers/sepbn.txt, Sec. III-B, Fig. 1, Eq. 5-7).

A SepBN layer normalises like BatchNorm (one set of batch statistics, no affine of its own)
and keeps K sets of mapping parameters ``weight`` (K, C) and ``bias`` (K, C). An attention
block looks at the layer's input and gives each sample n and channel group g a weight
vector ``pi[n, g]`` over the K sets (softmax with temperature tau); group g of sample n is
then scaled and shifted by ``sum_k pi[n, g, k] * weight[k]`` and ``... * bias[k]``.

Attention (``attention="grouped"``, the paper's): adaptive max pooling of X to T x T ->
1x1 convolution C -> G -> flatten (G * T * T) -> MLP -> G * K logits -> softmax over K of
``logits / tau``. The paper's settings are K = 3, G = 2, T = 3, tau annealed 30 -> 1 over
the first 30 epochs (``facemark.training.temperature``).

Variants evaluated in the paper, as constructor arguments:

- ``aggregation="hard"``: the argmax set only (Table III; gives no gradient to the
  attention, which is why the paper finds it worse than BN);
- ``num_routes`` K (Table IV), ``num_groups`` G (Table V), ``pool_size`` T (Table V);
- ``pool="avg"``: average instead of max pooling (the paper keeps max pooling so that
  T > 1 retains more; ``pool="avg", pool_size=1`` is global average pooling);
- ``attention="se"``: the "simple SepBN" of Eq. 3: global average pooling -> Linear(C,
  C / r) -> ReLU -> Linear(C / r, K) -> sigmoid -> softmax with temperature, one weight
  vector per sample for all channels (G is then 1);
- ``num_routes=1`` is plain BatchNorm (a softmax over one set is 1): the no-attention
  baseline.

Not specified by the paper, our choices: the MLP is Linear(G*T*T, H) -> ReLU -> Linear(H,
G*K) with H = ``hidden`` (default max(16, G*T*T)); when G does not divide C, channel c
belongs to group ``floor(c * G / C)``; all K sets start at weight 1, bias 0, so a fresh
layer computes exactly what a fresh BatchNorm does (the randomly initialised attention
breaks the symmetry as soon as the sets are trained).

Everything exports to ONNX (opset 13+): adaptive pooling is written as slices and
reductions (``torch.onnx`` cannot export adaptive pooling whose input size is not a
multiple of T), and tau is a buffer, saved in checkpoints.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemark.errors import ConfigError

ATTENTIONS = ("grouped", "se")
AGGREGATIONS = ("soft", "hard")
POOLS = ("max", "avg")


def adaptive_pool2d(x: Tensor, size: int, mode: str = "max") -> Tensor:
    """``F.adaptive_max_pool2d`` / ``F.adaptive_avg_pool2d`` written with slices.

    Bin i of an axis of length L spans ``[floor(i * L / size), ceil((i + 1) * L / size))``,
    as in PyTorch; a rectangle's max (mean) is the max (mean) over rows of the per-row max
    (mean), so pooling the two axes one after the other is exact. Exports to ONNX for any
    input size (the sizes are fixed at export time, the batch stays dynamic).

    Args:
        x: (B, C, H, W).
        size: output side T.
        mode: ``"max"`` or ``"avg"``.

    Returns:
        (B, C, T, T).
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % size == 0 and w % size == 0:  # equal bins: one pooling op
        kernel = (h // size, w // size)
        return F.max_pool2d(x, kernel) if mode == "max" else F.avg_pool2d(x, kernel)
    reduce = (lambda t, d: t.amax(dim=d, keepdim=True)) if mode == "max" else \
        (lambda t, d: t.mean(dim=d, keepdim=True))

    def bins(length: int) -> list[tuple[int, int]]:
        return [((i * length) // size, -(-((i + 1) * length) // size)) for i in range(size)]

    x = torch.cat([reduce(x[:, :, a:b, :], 2) for a, b in bins(h)], dim=2)
    return torch.cat([reduce(x[:, :, :, a:b], 3) for a, b in bins(w)], dim=3)


def mix_weights(logits: Tensor, temperature: Tensor, aggregation: str) -> Tensor:
    """Attention weights over the last axis: softmax(logits / tau), or its argmax as one-hot.

    Hard weights split ties evenly (so they always sum to 1) and carry no gradient.
    """
    if aggregation == "hard":
        top = (logits == logits.amax(dim=-1, keepdim=True)).to(logits.dtype)
        return (top / top.sum(dim=-1, keepdim=True)).detach()
    return torch.softmax(logits / temperature, dim=-1)


class SepBN(nn.Module):
    """Separable BatchNorm: shared normalisation, K attention-mixed affine sets per channel group.

    Args:
        num_features: channels C.
        num_routes: K sets of mapping parameters (paper: 3).
        num_groups: G channel groups, each with its own attention weights (paper: 2);
            must be in [1, C]. Ignored (1) for ``attention="se"``.
        pool_size: T, side of the adaptive pooling (paper: 3).
        pool: ``"max"`` (paper) or ``"avg"``.
        attention: ``"grouped"`` (paper, Fig. 1) or ``"se"`` (Eq. 3, one weight per sample).
        aggregation: ``"soft"`` (weighted sum, paper) or ``"hard"`` (argmax set, Table III).
        hidden: MLP hidden width for ``"grouped"`` (None: max(16, G * T * T)).
        reduction: r of the ``"se"`` attention (hidden width max(1, C // r)).
        temperature: initial tau of the softmax (the training callback anneals it).
        eps, momentum: as ``nn.BatchNorm2d``.

    Shapes:
        (B, C, H, W) -> (B, C, H, W). ``attention(x)`` gives the weights (B, G, K).

    Attributes:
        weight, bias: (K, C) mapping parameters.
        running_mean, running_var, num_batches_tracked: the shared statistics, as in
            ``nn.BatchNorm2d``.
        temperature: tau (a float property over the ``tau`` buffer).
    """

    def __init__(self, num_features: int, *, num_routes: int = 3, num_groups: int = 2,
                 pool_size: int = 3, pool: str = "max", attention: str = "grouped",
                 aggregation: str = "soft", hidden: int | None = None, reduction: int = 16,
                 temperature: float = 1.0, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        _check_positive("num_features", num_features)
        _check_positive("num_routes", num_routes)
        _check_positive("pool_size", pool_size)
        _check_positive("reduction", reduction)
        _check_choice("attention", attention, ATTENTIONS)
        _check_choice("aggregation", aggregation, AGGREGATIONS)
        _check_choice("pool", pool, POOLS)
        if attention == "se":
            num_groups = 1
        _check_positive("num_groups", num_groups)
        if num_groups > num_features:
            raise ConfigError(f"SepBN: num_groups must be at most num_features "
                              f"({num_features}), got {num_groups}")
        if not temperature > 0:
            raise ConfigError(f"SepBN: temperature must be > 0, got {temperature!r}")
        self.num_features = int(num_features)
        self.num_routes = int(num_routes)
        self.num_groups = int(num_groups)
        self.pool_size = int(pool_size)
        self.pool = pool
        self.attention_kind = attention
        self.aggregation = aggregation

        self.eps = float(eps)
        self.momentum = momentum
        # BatchNorm's statistics under BatchNorm's names (not an nn.BatchNorm2d child: the
        # backbones' init loops set the weight of every BatchNorm2d, and this has none).
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.weight = nn.Parameter(torch.ones(num_routes, num_features))
        self.bias = nn.Parameter(torch.zeros(num_routes, num_features))
        self.register_buffer("tau", torch.tensor(float(temperature)))
        group = torch.arange(num_features) * num_groups // num_features
        self.register_buffer("channel_group", group, persistent=False)
        if attention == "grouped":
            width = num_groups * pool_size * pool_size
            hidden = max(16, width) if hidden is None else hidden
            _check_positive("hidden", hidden)
            self.squeeze = nn.Conv2d(num_features, num_groups, kernel_size=1)
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, num_groups * num_routes))
        else:
            hidden = max(1, num_features // reduction)
            self.mlp = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, num_routes), nn.Sigmoid())

    @property
    def temperature(self) -> float:
        return float(self.tau)

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"SepBN: temperature must be > 0, got {value!r}")
        self.tau.fill_(float(value))

    def normalise(self, x: Tensor) -> Tensor:
        """BatchNorm without affine: batch statistics in training (updating the running ones
        with ``momentum``; None = cumulative average), running statistics in eval mode."""
        momentum = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None \
                else self.momentum
        return F.batch_norm(x, self.running_mean, self.running_var, None, None,
                            self.training, momentum, self.eps)

    def attention_logits(self, x: Tensor) -> Tensor:
        """Attention logits (B, G, K) before the temperature softmax."""
        if self.attention_kind == "grouped":
            pooled = adaptive_pool2d(x, self.pool_size, self.pool)        # (B, C, T, T)
            logits = self.mlp(self.squeeze(pooled).flatten(1))           # (B, G * K)
        else:
            logits = self.mlp(x.mean(dim=(2, 3)))                        # (B, K)
        return logits.reshape(x.shape[0], self.num_groups, self.num_routes)

    def attention(self, x: Tensor) -> Tensor:
        """Mixing weights (B, G, K): non-negative, summing to 1 over K."""
        return mix_weights(self.attention_logits(x), self.tau, self.aggregation)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"SepBN: expected input (B, {self.num_features}, H, W), "
                             f"got {tuple(x.shape)}")
        x_hat = self.normalise(x)
        pi = self.attention(x)[:, self.channel_group]                    # (B, C, K)
        gamma = (pi * self.weight.t()).sum(-1)                           # (B, C)
        beta = (pi * self.bias.t()).sum(-1)
        return x_hat * gamma[:, :, None, None] + beta[:, :, None, None]

    def extra_repr(self) -> str:
        return (f"{self.num_features}, num_routes={self.num_routes}, "
                f"num_groups={self.num_groups}, pool_size={self.pool_size}, pool={self.pool!r}, "
                f"attention={self.attention_kind!r}, aggregation={self.aggregation!r}, "
                f"temperature={self.temperature:g}")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"SepBN: {name} must be a positive integer, got {value!r}")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"SepBN: {name} must be one of {', '.join(choices)}; got {value!r}")


__all__ = ["AGGREGATIONS", "ATTENTIONS", "POOLS", "SepBN", "adaptive_pool2d", "mix_weights"]

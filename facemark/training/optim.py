"""The optimiser and learning-rate schedule of every trainer, from the ``optim`` config section.

One home for what supervised training (:class:`facemark.training.module.LandmarkModule`),
cross-protocol training (both stages) and self-training build in ``configure_optimizers``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch


def make_optimizer(params_or_groups: Iterable, optim: dict[str, Any]) -> torch.optim.Optimizer:
    """``optim["optimizer"]`` (``adam``, ``adamw``, else SGD with ``momentum``) at ``optim["lr"]``
    and ``optim["weight_decay"]``; parameter groups keep their own ``lr``."""
    o = optim
    if o["optimizer"] == "adam":
        return torch.optim.Adam(params_or_groups, lr=o["lr"], weight_decay=o["weight_decay"])
    if o["optimizer"] == "adamw":
        return torch.optim.AdamW(params_or_groups, lr=o["lr"], weight_decay=o["weight_decay"])
    return torch.optim.SGD(params_or_groups, lr=o["lr"], momentum=o["momentum"],
                           weight_decay=o["weight_decay"])


def lr_factor(optim: dict[str, Any]) -> Callable[[int], float]:
    """The schedule as a factor of every group's own learning rate, epoch -> factor.

    Cosine goes from 1 to ``min_lr / lr`` over ``epochs`` (the paper: 1e-3 -> 5e-6),
    multistep multiplies by ``gamma`` at each milestone, constant stays 1. ``warmup_epochs``
    W > 0 (the SepBN paper: 120 of 500) first raises the factor linearly, (e + 1) / (W + 1) in
    epoch e < W, then runs the schedule over the remaining ``epochs - W`` epochs (milestones
    counted from W).
    """
    o = optim
    warmup = int(o.get("warmup_epochs") or 0)
    if o["schedule"] == "constant":
        def factor(epoch: int) -> float:
            return 1.0
    elif o["schedule"] == "cosine":
        ratio, span = float(o["min_lr"]) / float(o["lr"]), max(int(o["epochs"]) - warmup, 1)

        def factor(epoch: int) -> float:
            return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(epoch, span) / span))
    else:
        milestones, gamma = sorted(int(m) for m in o["milestones"]), float(o["gamma"])

        def factor(epoch: int) -> float:
            return gamma ** sum(epoch >= m for m in milestones)

    def warmed(epoch: int) -> float:
        return (epoch + 1) / (warmup + 1) if epoch < warmup else factor(epoch - warmup)
    return warmed


def build_optimizer(params_or_groups: Iterable, optim: dict[str, Any], *,
                    torch_schedulers: bool = False):
    """Optimiser and epoch-wise schedule, as ``configure_optimizers`` returns them.

    Args:
        params_or_groups: parameters, or torch parameter groups each with its own ``lr``.
        optim: ``optimizer``, ``lr``, ``min_lr``, ``momentum``, ``weight_decay``,
            ``schedule``, ``milestones``, ``gamma``, ``epochs``, ``warmup_epochs``.
        torch_schedulers: without a warm-up, use torch's own ``CosineAnnealingLR``
            (``eta_min=min_lr``) and ``MultiStepLR``, as supervised training always has:
            its checkpoints hold those schedulers' state, and resuming needs the same
            scheduler class. Otherwise (and always with a warm-up) one ``LambdaLR`` scales
            every group by :func:`lr_factor`. Both give the same rates for one group at
            ``lr``; with several groups only the factor keeps their ratio (an absolute
            ``eta_min`` would raise a group whose rate is below it, such as cross-protocol
            fine-tuning's backbone).

    Returns:
        The optimiser alone for a constant schedule without warm-up, else Lightning's
        ``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., "interval": "epoch"}}``.
    """
    o = optim
    opt = make_optimizer(params_or_groups, o)
    warmup = int(o.get("warmup_epochs") or 0)
    if o["schedule"] == "constant" and not warmup:
        return opt
    if torch_schedulers and not warmup and o["schedule"] == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o["milestones"]),
                                                     gamma=o["gamma"])
    elif torch_schedulers and not warmup and o["schedule"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o["epochs"],
                                                           eta_min=o["min_lr"])
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(o))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


__all__ = ["build_optimizer", "lr_factor", "make_optimizer"]

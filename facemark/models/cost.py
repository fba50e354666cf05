"""Parameters, FLOPs and CPU latency of a model, and a Markdown table like PIPNet's Table 9.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of a
single image (convolutions, transposed convolutions and matrix products; a multiply-add
counts as 2 FLOPs). The PIPNet paper's "GFLOPs" column matches multiply-adds (ResNet-18 at
256 px: 2.4), so the table shows both GFLOPs and GMACs (= GFLOPs / 2).

Latency is the median wall time of ``predict`` (forward + decode) on one image, in eval
mode, with ``torch.set_num_threads(threads)``, after a few warm-up runs. It depends on the
machine and its load: quote it with the machine.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facemark.io import markdown_table
from facemark.models.registry import create_model, model_arguments


def count_flops(model: nn.Module, input_size: int) -> int:
    """FLOPs of one forward pass on a (1, 3, S, S) input."""
    x = torch.rand(1, 3, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def model_cost(model: nn.Module, input_size: int, threads: int = 2, runs: int = 50,
               warmup: int = 5) -> dict[str, float]:
    """Size, compute and CPU latency of ``model`` at batch size 1.

    Args:
        model: a ``LandmarkModel`` (timed through ``predict``) or any module taking images.
        input_size: S; the input is (1, 3, S, S).
        threads: intra-op threads for the timing (restored afterwards).
        runs: timed runs; the median is reported.
        warmup: untimed runs first.

    Returns:
        ``params`` (count), ``gflops``, ``gmacs``, ``latency_ms_median``, ``threads``.
    """
    if runs < 1:
        raise ValueError(f"model_cost: runs must be >= 1, got {runs}")
    was_training = model.training
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, input_size)
    run = getattr(model, "predict", model)
    x = torch.rand(1, 3, input_size, input_size)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        with torch.no_grad():
            for i in range(warmup + runs):
                t0 = time.perf_counter()
                run(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return {"params": params, "gflops": flops / 1e9, "gmacs": flops / 2e9,
            "latency_ms_median": statistics.median(times), "threads": threads}


def stand_in_mean_face(num_points: int) -> np.ndarray:
    """A regular grid of ``num_points`` points in [0.1, 0.9]^2.

    Cost does not depend on where the mean face's points are, only on how many neighbours
    each has, so ``cost_table`` uses this when no mean face is given.
    """
    side = int(np.ceil(np.sqrt(num_points)))
    g = (np.arange(side) + 0.5) / side * 0.8 + 0.1
    xs, ys = np.meshgrid(g, g)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)[:num_points]


#: the columns every cost table starts with (``cost_cells`` fills them)
COST_COLUMNS = ("Model", "Backbone", "Params (M)", "GFLOPs", "GMACs")


def cost_kwargs(name: str, kwargs: dict[str, Any] | None, num_points: int,
                mean_face: Any = None) -> dict[str, Any]:
    """The keyword arguments one table row builds ``name`` with: ``kwargs`` plus, for a model
    with neighbours that needs a mean face and has none, ``mean_face`` or else
    :func:`stand_in_mean_face` (the cost is the same)."""
    kwargs = dict(kwargs or {})
    if "mean_face" in model_arguments(name) and "mean_face" not in kwargs \
            and kwargs.get("num_nb", 1) != 0:
        kwargs["mean_face"] = mean_face if mean_face is not None else stand_in_mean_face(num_points)
    return kwargs


def cost_cells(name: str, kwargs: dict[str, Any], model: nn.Module,
               cost: dict[str, float]) -> list[str]:
    """The :data:`COST_COLUMNS` cells of one row: the name with the arguments it was given
    (mean face and backbone left out), the backbone, and ``model_cost``'s size and compute."""
    extras = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("mean_face", "backbone"))
    label = f"{name} ({extras})" if extras else name
    backbone = (getattr(model, "config", None) or {}).get("backbone", "")
    return [label, backbone, f"{cost['params'] / 1e6:.1f}", f"{cost['gflops']:.2f}",
            f"{cost['gmacs']:.2f}"]


def cost_table(models: Iterable[str | tuple[str, dict[str, Any]]], *, num_points: int = 68,
               input_size: int = 256, threads: int = 2, runs: int = 50,
               mean_face: Any = None) -> str:
    """Markdown table of parameters, GFLOPs, GMACs and CPU latency, one row per model.

    Args:
        models: registry names, or (name, kwargs) pairs such as
            ``("mapnet", {"net_stride": 2})``.
        num_points: N (the paper's Table 9 counts match N = 68).
        input_size: S (256 in the paper).
        threads, runs: passed to ``model_cost``.
        mean_face: (N, 2) for PIPNet models with neighbours; None uses
            ``stand_in_mean_face`` (the cost is the same).

    ``facemark bench cost`` (:func:`facemark.inference.bench.cost_report`) makes the same
    rows, timed against onnxruntime.
    """
    headers = [*COST_COLUMNS, f"Latency ms (median, {threads} thread{'s' if threads != 1 else ''})",
               "FPS"]
    rows = []
    for entry in models:
        name, kwargs = (entry, {}) if isinstance(entry, str) else (entry[0], entry[1])
        kwargs = cost_kwargs(name, kwargs, num_points, mean_face)
        model = create_model(name, num_points=num_points, input_size=input_size, **kwargs)
        cost = model_cost(model, input_size, threads=threads, runs=runs)
        ms = cost["latency_ms_median"]
        rows.append(cost_cells(name, kwargs, model, cost) + [f"{ms:.1f}", f"{1000.0 / ms:.1f}"])
    return markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2))

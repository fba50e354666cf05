"""Timing primitives and report helpers for speed measurements.

Everything here measures wall time with ``time.perf_counter`` and reports medians: on a
shared machine the mean is dominated by the moments another process takes the cores. When
several engines are compared, their runs are interleaved (engine A, engine B, A, B, ...), so
load that comes and goes during the measurement hits each of them alike and the speed-up
between them stays meaningful even when the absolute times are noisy.

    from facemark.evaluation.bench import compare_latency
    timings = compare_latency({"torch": torch_fn, "onnx": onnx_fn}, runs=100)
    timings["onnx"].median_ms

Also here: dlib's 68-point shape predictor (a baseline to time and evaluate against) and
the machine line. Markdown tables and atomic writes: :mod:`facemark.io`. What ``facemark bench`` measures with the inference
engines and detectors (model alone, detection + landmarks, throughput, cost table) is
:mod:`facemark.inference.bench`.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Wall times of repeated calls, in milliseconds.

    Attributes:
        times_ms: every timed run, in order.
        per: how many items (faces, images) one run handles; ``per_item_ms`` divides by it.
    """

    times_ms: tuple[float, ...]
    per: int = 1

    @property
    def runs(self) -> int:
        return len(self.times_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    def quantile_ms(self, q: float) -> float:
        return float(np.quantile(self.times_ms, q))

    @property
    def per_item_ms(self) -> float:
        return self.median_ms / self.per


def compare_latency(fns: dict[str, Callable[[], Any]], runs: int = 100, warmup: int = 10,
                    per: int = 1, block: int = 10) -> dict[str, Timing]:
    """Time several no-argument callables, interleaving them in blocks.

    The callables take turns in blocks of ``block`` timed runs, each block preceded by one
    untimed run: slow drifts in machine load hit every callable alike, and the first call
    after a switch (which pays for the other library's worker threads still spinning, or
    for cold caches) is not counted.

    Args:
        fns: name -> callable (one "run", e.g. one ``predict`` on a fixed batch).
        runs: timed runs of each callable.
        warmup: untimed runs of each first (onnxruntime and torch allocate on the first calls).
        per: items per run (the batch size), recorded in each Timing.
        block: timed runs per turn.
    """
    if runs < 1 or warmup < 0 or block < 1:
        raise ValueError(f"compare_latency: runs and block must be >= 1 and warmup >= 0, "
                         f"got runs={runs}, block={block}, warmup={warmup}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    while len(next(iter(times.values()))) < runs:
        for name, fn in fns.items():
            fn()                                     # untimed: the switch between callables
            for _ in range(min(block, runs - len(times[name]))):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: Timing(tuple(t), per) for name, t in times.items()}


# ---------------------------------------------------------------------------------------
# dlib's 68-point shape predictor (optional)
# ---------------------------------------------------------------------------------------
def find_dlib_predictor(path: str | Path | None = None) -> tuple[Any, str]:
    """(dlib.shape_predictor or None, a line saying what was found).

    Looks at ``path``, then at ``face_recognition_models``' bundled 68-point file.
    """
    try:
        import dlib
    except ImportError:
        return None, "not installed (pip install dlib-bin)"
    candidates = [Path(path)] if path else []
    if not path:
        # found without importing it: its __init__ needs pkg_resources, gone from new setuptools
        import importlib.util

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / "models"
                              / "shape_predictor_68_face_landmarks.dat")
    for candidate in candidates:
        if candidate.is_file():
            try:
                return dlib.shape_predictor(str(candidate)), f"dlib {dlib.__version__}, {candidate.name}"
            except RuntimeError as e:
                return None, f"dlib cannot read {candidate} ({e})"
    if path:
        return None, f"predictor file {path} not found"
    return None, (f"dlib {dlib.__version__} is installed but no 68-point predictor file was "
                  "found (give --dlib-predictor shape_predictor_68_face_landmarks.dat or "
                  "install face_recognition_models)")


def dlib_landmarks(predictor, image: np.ndarray, boxes: Sequence[np.ndarray]) -> np.ndarray:
    """dlib's shape predictor on each box: (F, P, 2) image pixels."""
    import dlib

    out = []
    for x1, y1, x2, y2 in boxes:
        rect = dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
        shape = predictor(image, rect)
        out.append([(p.x, p.y) for p in shape.parts()])
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------
def machine_line(threads: int) -> str:
    """CPU model, core count, thread setting, load average and library versions, one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = "load average unknown"
    versions = []
    for mod in ("torch", "onnxruntime", "cv2"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return (f"{cpu}, {os.cpu_count()} cores, {threads} thread(s), {load}; "
            f"{', '.join(versions)}")

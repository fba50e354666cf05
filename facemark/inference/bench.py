"""What ``facemark bench`` measures: the landmark model alone, detection + landmarks on
photos, folder throughput, and the cost table of registry models.

These run the inference engines (eager PyTorch, onnxruntime), face detectors and the
:class:`~facemark.inference.landmarker.Landmarker`; the timing primitives they stand on
(:func:`~facemark.evaluation.bench.compare_latency`, medians, interleaved runs) and the
report helpers live in :mod:`facemark.evaluation.bench`.

    from facemark.inference.bench import speed_report
    print(speed_report("model.pt", photos="photos/", threads=[1, 2]))
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facemark.data.crops import crop_box, crop_faces, denormalise_points, map_back
from facemark.data.images import list_images, read_image
from facemark.data.schemes import scheme_for_count
from facemark.errors import DataError
from facemark.evaluation.bench import (compare_latency, dlib_landmarks, find_dlib_predictor,
                                       machine_line)
from facemark.inference.export import export_onnx, ort_session
from facemark.inference.onnx_engine import OnnxLandmarkEngine, TorchLandmarkEngine, engine_kind
from facemark.io import markdown_table
from facemark.models.cost import COST_COLUMNS, cost_cells, cost_kwargs, model_cost
from facemark.models.crop_predict import crops_to_images
from facemark.models.registry import create_model


# ---------------------------------------------------------------------------------------
# Detection + landmarks on photos
# ---------------------------------------------------------------------------------------
def landmarks_for_boxes(engine, image: np.ndarray, boxes: Sequence[np.ndarray],
                        crop_rule: str = "detector") -> np.ndarray:
    """Image-pixel landmarks (F, N, 2) of the face boxes (F, 4) ``boxes``, cropped by
    ``crop_rule``, in one batch through ``engine`` (no flip test, points scaled in float64)."""
    size = engine.input_size
    crops, inverses = crop_faces([image] * len(boxes),
                                 [crop_box(crop_rule, box=box) for box in boxes], size)
    if not len(crops):
        return np.zeros((0, engine.num_points, 2))
    points, _ = engine.predict(crops_to_images(crops))
    return map_back(denormalise_points(points, size), inverses)


def _landmark_fn(engine, crop_rule: str, landmarker=None, box_style: str | None = None,
                 first_engine=None):
    """``(image, boxes) -> faces`` for one engine, for timing: ``landmarker.detect`` with
    ``engine`` in its place (its calibration for ``box_style`` and its refine passes, as in
    ``facemark detect``; a list of Face) and ``first_engine`` for its first pass (None:
    ``engine`` at its own size), or :func:`landmarks_for_boxes` with ``crop_rule`` without
    a landmarker (an array of points)."""
    if landmarker is None:
        return lambda image, boxes: landmarks_for_boxes(engine, image, boxes, crop_rule)
    import copy

    lm = copy.copy(landmarker)
    lm.engine_, lm.first_engine_ = engine, first_engine
    return lambda image, boxes: lm.detect(image, boxes=boxes, box_style=box_style)


@dataclass
class PipelineTiming:
    """Detection + landmarks over a set of photos, per engine.

    Attributes:
        images, faces: how many photos and detected faces the figures cover.
        detect_ms: median detection time per photo, summed over the photos.
        landmarks_ms: median crop + landmark time per photo, summed over the photos, by engine.
        dlib_ms: the same for dlib's shape predictor on the same boxes (None: not run).
    """

    images: int
    faces: int
    detect_ms: float
    landmarks_ms: dict[str, float] = field(default_factory=dict)
    dlib_ms: float | None = None

    def per_face_ms(self, engine: str) -> float:
        """Landmark time per face (crop included, detection excluded)."""
        return self.landmarks_ms[engine] / max(self.faces, 1)

    def total_per_face_ms(self, engine: str) -> float:
        """Detection + landmarks, per face."""
        return (self.detect_ms + self.landmarks_ms[engine]) / max(self.faces, 1)


def pipeline_latency(detector, engines: dict[str, Any], images: Sequence[np.ndarray],
                     repeats: int = 5, crop_rule: str = "detector",
                     dlib_predictor=None, landmarker=None,
                     first_engines: dict[str, Any] | None = None) -> PipelineTiming:
    """Median detection and landmark times on decoded photos (image decoding not counted).

    Each photo is detected ``repeats`` times and its faces are run through every engine
    ``repeats`` times, interleaved; per photo the medians are taken, then summed. With a
    loaded ``landmarker`` each engine runs in its place (crops and refine passes as
    ``facemark detect`` makes them; ``first_engines``: by engine name, the engine of the
    first pass where it runs at a smaller size), else faces are cut with ``crop_rule``.
    """
    box_style = getattr(detector, "box_style", None)
    firsts = first_engines or {}
    landmark_fns = {name: _landmark_fn(e, crop_rule, landmarker, box_style, firsts.get(name))
                    for name, e in engines.items()}
    detect_total, faces_total = 0.0, 0
    lm_total = {name: 0.0 for name in engines}
    dlib_total = 0.0 if dlib_predictor is not None else None
    for image in images:
        det_times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            faces = detector.detect(image)
            det_times.append((time.perf_counter() - t0) * 1000.0)
        detect_total += statistics.median(det_times)
        boxes = [f.box for f in faces]
        faces_total += len(boxes)
        if not boxes:
            continue
        fns = {name: (lambda f=f: f(image, boxes)) for name, f in landmark_fns.items()}
        if dlib_predictor is not None:
            fns["dlib"] = lambda: dlib_landmarks(dlib_predictor, image, boxes)
        timings = compare_latency(fns, runs=repeats, warmup=0, block=repeats)
        for name in engines:
            lm_total[name] += timings[name].median_ms
        if dlib_predictor is not None:
            dlib_total += timings["dlib"].median_ms
    return PipelineTiming(len(images), faces_total, detect_total, lm_total, dlib_total)


@dataclass
class Throughput:
    """One pass over a folder: read, detect and landmark every photo."""

    images: int
    faces: int
    seconds: float
    unreadable: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else float("nan")


def folder_throughput(detector, engine, paths: Sequence[str | Path],
                      crop_rule: str = "detector", landmarker=None,
                      first_engine=None) -> Throughput:
    """Wall time of a full pass (decode + detect + crop + landmarks) over ``paths``.

    A file that cannot be read is listed in ``unreadable`` and skipped (its time counts).
    ``crop_rule``, ``landmarker`` and ``first_engine``: as :func:`pipeline_latency`.
    """
    landmarks = _landmark_fn(engine, crop_rule, landmarker, getattr(detector, "box_style", None),
                             first_engine)
    faces, done, bad = 0, 0, []
    t0 = time.perf_counter()
    for path in paths:
        try:
            image = read_image(path)
        except DataError as e:
            bad.append(str(e))
            continue
        boxes = [f.box for f in detector.detect(image)]
        landmarks(image, boxes)
        faces += len(boxes)
        done += 1
    return Throughput(done, faces, time.perf_counter() - t0, bad)


# ---------------------------------------------------------------------------------------
# Reports for ``facemark bench``
# ---------------------------------------------------------------------------------------
def _say(progress: bool, text: str) -> None:
    if progress:
        import sys

        print(text, file=sys.stderr, flush=True)


def _torch_threads(threads: int):
    """Context manager: torch intra-op threads set to ``threads``, restored afterwards."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def ctx():
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)
    return ctx()


def cost_report(specs: Sequence[tuple[str, dict]], *, num_points: int = 68,
                input_size: int = 256, threads: int = 2, runs: int = 50, onnx: bool = False,
                progress: bool = False) -> str:
    """Markdown cost table (the PIPNet paper's Table 9 columns) for registry models.

    Args:
        specs: (registry name, keyword arguments) pairs, e.g. ``("mapnet", {"net_stride": 2})``.
        num_points, input_size: N and S of every model.
        threads: CPU threads for torch and onnxruntime.
        runs: timed batch-1 runs per model (median reported).
        onnx: also export each model to ONNX and time it with onnxruntime (same threads,
            runs interleaved with PyTorch's).

    Parameters and FLOPs come from :func:`facemark.models.cost.model_cost` (FLOPs counted by
    torch's FlopCounterMode; the paper's "GFLOPs" are multiply-adds, our GMACs).
    """
    import tempfile

    import torch

    headers = [*COST_COLUMNS, f"PyTorch ms (batch 1, {threads} thr)", "PyTorch FPS"]
    if onnx:
        headers += [f"ONNX Runtime ms ({threads} thr)", "ONNX speed-up"]
    rows = []
    scheme = scheme_for_count(num_points)
    for name, kwargs in specs:
        kwargs = cost_kwargs(name, kwargs, num_points)
        _say(progress, f"cost: {name} {kwargs if len(kwargs) > 1 else ''}".rstrip())
        torch.manual_seed(0)
        model = create_model(name, num_points=num_points, input_size=input_size, **kwargs).eval()
        cost = model_cost(model, input_size, threads=threads, runs=1, warmup=0)
        x = torch.rand(1, 3, input_size, input_size)
        fns = {"torch": lambda: model.predict(x)}
        with tempfile.TemporaryDirectory(prefix="facemark-bench-") as tmp:
            note = ""
            if onnx and scheme is None:
                note = f"n/a (no scheme has {num_points} points)"
            elif onnx:
                path = export_onnx(model, Path(tmp) / "model.onnx", scheme=scheme.name)
                session = ort_session(path, threads=threads)
                xn = x.numpy()
                fns["onnx"] = lambda: session.run(None, {"images": xn})
            with torch.no_grad(), _torch_threads(threads):
                timing = compare_latency(fns, runs=runs, warmup=3)
        ms = timing["torch"].median_ms
        row = cost_cells(name, kwargs, model, cost) + [f"{ms:.1f}", f"{1000.0 / ms:.1f}"]
        if onnx:
            if "onnx" in timing:
                o = timing["onnx"].median_ms
                row += [f"{o:.1f}", f"{ms / o:.2f}x"]
            else:
                row += [note, ""]
        rows.append(row)
    title = (f"Cost at {input_size}x{input_size} px, N = {num_points} landmarks; latency = "
             f"median of {runs} runs of one image (forward + decode)")
    return "\n".join([title, "", markdown_table(headers, rows), "",
                      f"Machine: {machine_line(threads)}"])


def _open_engines(model_path: str | Path, thread_counts: Sequence[int],
                  also: Sequence[str | Path], tmp: Path,
                  progress: bool) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """For each thread count: engines by display name (eager PyTorch first); report notes.

    The model is loaded and exported once; each thread count gets its own onnxruntime
    sessions (their thread pools are fixed when they are created).
    """
    notes: list[str] = []
    torch_engine, onnx_path = None, Path(model_path)
    if engine_kind(model_path) == "torch":
        torch_engine = TorchLandmarkEngine(model_path).load()
        _say(progress, "exporting to ONNX for the comparison (parity checked to 1e-4)")
        onnx_path = export_onnx(torch_engine.model_, tmp / "model.onnx", info=torch_engine.info,
                                dynamic_size=True)
    else:
        notes.append("eager PyTorch not timed: give the .pt/.ckpt the ONNX file came from")
    by_threads: dict[int, dict[str, Any]] = {}
    for threads in thread_counts:
        engines: dict[str, Any] = {}
        if torch_engine is not None:
            engines["PyTorch (eager)"] = TorchLandmarkEngine.from_model(
                torch_engine.model_, torch_engine.info, threads=threads)
        engines["ONNX Runtime"] = OnnxLandmarkEngine(onnx_path, threads=threads).load()
        ref = engines["ONNX Runtime"]
        for extra in also:
            engine = OnnxLandmarkEngine(extra, threads=threads).load()
            if (engine.input_size, engine.num_points) != (ref.input_size, ref.num_points):
                raise DataError(extra, f"takes {engine.input_size} px crops and gives "
                                       f"{engine.num_points} points; MODEL: {ref.input_size} "
                                       f"px, {ref.num_points} points")
            label = "int8" if engine.quantization else "float"
            engines[f"ONNX Runtime {label} ({Path(extra).name})"] = engine
        by_threads[threads] = engines
    return by_threads, notes


def _first_pass_engines(landmarker, engines: dict[str, Any]) -> dict[str, Any]:
    """By engine name, the engine at the landmarker's first-pass size (``first_pass_size_``,
    ``engine.at_size``: the same model or session) where the landmarker runs its first pass
    at another size and the engine takes it: PyTorch engines and ONNX graphs of every side
    (``export_onnx(dynamic_size=True)``, as ``facemark export`` makes them); ``--also``
    files made for one side run the first pass at that side (left out)."""
    if landmarker.first_engine_ is None:
        return {}
    size = landmarker.first_pass_size_
    return {name: engine.at_size(size) for name, engine in engines.items()
            if isinstance(engine, TorchLandmarkEngine) or size in engine.input_sizes_}


def _set_threads(threads: int) -> None:
    """torch and OpenCV use ``threads`` from now on (onnxruntime: per session)."""
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


def _speedup(base: float | None, value: float) -> str:
    return f"{base / value:.2f}x" if base else ""


def speed_report(model_path: str | Path, *, photos: str | Path | None = None,
                 max_photos: int = 20, detector: str = "auto",
                 threads: int | Sequence[int] = 2, runs: int = 200, repeats: int = 5,
                 batch: int = 8, also: Sequence[str | Path] = (),
                 dlib_predictor: str | Path | None = None, progress: bool = False) -> str:
    """Markdown report: model-alone latency, detection + landmarks, folder throughput.

    Args:
        model_path: ``.pt``/``.ckpt`` (timed in eager PyTorch and, exported, in onnxruntime)
            or ``.onnx`` (onnxruntime only).
        photos: a folder of photos for the detector sections (None: skipped).
        max_photos: photos used for the per-face pipeline latency.
        detector: face detector name (``facemark.inference.detectors``).
        threads: CPU threads for every engine and the detector; several values time the
            model alone at each (the photo sections use the first).
        runs: timed batch-1 runs of the model alone (batch ``batch``: ``runs // batch``,
            at least 20).
        repeats: timed repeats per photo in the pipeline section.
        also: more ``.onnx`` files (same crop size and points) to time alongside.
        dlib_predictor: dlib's 68-point predictor file (optional).
    """
    import torch

    old = torch.get_num_threads()
    try:
        import cv2

        old_cv = cv2.getNumThreads()
    except ImportError:  # pragma: no cover - opencv is a dependency
        old_cv = None
    try:
        return _speed_report(model_path, photos=photos, max_photos=max_photos,
                             detector=detector, threads=threads, runs=runs, repeats=repeats,
                             batch=batch, also=also, dlib_predictor=dlib_predictor,
                             progress=progress)
    finally:                          # the thread settings are process-wide: put them back
        torch.set_num_threads(old)
        if old_cv is not None:
            cv2.setNumThreads(old_cv)


def _speed_report(model_path: str | Path, *, photos: str | Path | None = None,
                 max_photos: int = 20, detector: str = "auto",
                 threads: int | Sequence[int] = 2, runs: int = 200, repeats: int = 5,
                 batch: int = 8, also: Sequence[str | Path] = (),
                 dlib_predictor: str | Path | None = None, progress: bool = False) -> str:
    import tempfile

    import torch

    thread_counts = [threads] if isinstance(threads, int) else list(dict.fromkeys(threads))
    if not thread_counts or any(isinstance(t, bool) or not isinstance(t, int) or t < 1
                                for t in thread_counts):
        raise ValueError(f"speed_report: threads must be positive integers, got {threads!r}")
    lines = [f"## facemark bench speed: {Path(model_path).name}", ""]
    with tempfile.TemporaryDirectory(prefix="facemark-bench-") as tmpdir, torch.no_grad():
        by_threads, notes = _open_engines(model_path, thread_counts, also, Path(tmpdir),
                                          progress)
        ref = by_threads[thread_counts[0]]["ONNX Runtime"]
        size = ref.input_size
        lines.append(f"Model: {ref.num_points} points ({ref.scheme}), {size} px crops. "
                     f"Machine: {machine_line(thread_counts[0])}")
        lines.append("")

        # -- the landmark model alone ---------------------------------------------------
        dlib, dlib_note = find_dlib_predictor(dlib_predictor)
        rng = np.random.default_rng(0)
        rows = []
        for t in thread_counts:
            engines = by_threads[t]
            _set_threads(t)
            for b in sorted({1, batch}):
                crops = rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8)
                x = crops_to_images(crops)
                fns = {name: (lambda e=e, x=x: e.predict(x)) for name, e in engines.items()}
                if dlib is not None and b == 1:
                    box = np.array([0.1, 0.1, 0.9, 0.9]) * size
                    image = np.ascontiguousarray(crops[0])
                    fns["dlib 68-point predictor"] = lambda: dlib_landmarks(dlib, image, [box])
                n = runs if b == 1 else max(runs // b, 20)
                _say(progress, f"model alone, {t} thread(s), batch {b}: {n} runs of "
                               f"{len(fns)} engine(s)")
                timings = compare_latency(fns, runs=n, warmup=5, per=b)
                base = timings.get("PyTorch (eager)")
                for name, tm in timings.items():
                    rows.append([name, t, b, f"{tm.median_ms:.2f}", f"{tm.per_item_ms:.2f}",
                                 f"{tm.quantile_ms(0.9) / b:.2f}",
                                 f"{1000.0 / tm.per_item_ms:.0f}",
                                 _speedup(base.per_item_ms if base else None, tm.per_item_ms)])
        lines += ["### Landmark model alone (crop in, points out)", "",
                  markdown_table(["engine", "threads", "batch", "ms per run (median)",
                                  "ms per face", "p90 ms per face", "faces/s",
                                  "speed-up vs PyTorch"], rows),
                  ""]
        if dlib is None:
            lines.append(f"dlib 68-point predictor: {dlib_note}.")
        else:
            lines.append(f"dlib: {dlib_note}; one {size} px image with one box per run.")
        lines.append("")
        engines = by_threads[thread_counts[0]]
        _set_threads(thread_counts[0])

        # -- detection + landmarks --------------------------------------------------------
        if photos is None:
            lines.append("Detection + landmarks and throughput: skipped (give --photos DIR).")
        else:
            try:
                from facemark.inference.detectors import create_detector
            except ImportError as e:
                lines.append(f"Detection + landmarks: skipped (no face detectors in this "
                             f"facemark: {e}).")
            else:
                from facemark.inference.landmarker import Landmarker

                det = create_detector(detector).load()
                # crops and passes as `facemark detect` makes them with this model
                lm = Landmarker(model_path, detector=det).load()
                cal = det.box_style in lm.calibrations_
                crop_note = (f"with the model's calibration for {det.box_style} boxes"
                             if cal else "with the 'detector' crop rule (the model has no "
                                         f"calibration for {det.box_style} boxes)")
                if lm.refine_:
                    crop_note += (f", then {lm.refine_} refine pass(es) on crops from the "
                                  "landmarks, as `facemark detect` does by default")
                firsts = _first_pass_engines(lm, engines)
                if firsts:
                    crop_note += (f"; the first pass on {lm.first_pass_size_} px crops "
                                  f"({', '.join(firsts)}; other engines at their own size)")
                paths = list_images(photos)
                if not paths:
                    raise DataError(photos, "no images in the --photos folder")
                images, unreadable = [], []
                for p in paths:
                    if len(images) >= max_photos:
                        break
                    try:
                        images.append(read_image(p))
                    except DataError as e:
                        unreadable.append(str(e))
                if not images:
                    raise DataError(photos, "none of the photos could be read")
                _say(progress, f"detection + landmarks on {len(images)} photos, "
                               f"{repeats} repeats each")
                pt = pipeline_latency(det, engines, images, repeats=repeats, dlib_predictor=dlib,
                                      landmarker=lm, first_engines=firsts)
                base = pt.landmarks_ms.get("PyTorch (eager)")
                rows = []
                for name in engines:
                    rows.append([name, pt.images, pt.faces, f"{pt.detect_ms / pt.images:.1f}",
                                 f"{pt.per_face_ms(name):.2f}", f"{pt.total_per_face_ms(name):.1f}",
                                 _speedup(base, pt.landmarks_ms[name])])
                if pt.dlib_ms is not None:
                    faces = max(pt.faces, 1)
                    rows.append(["dlib 68-point predictor", pt.images, pt.faces,
                                 f"{pt.detect_ms / pt.images:.1f}", f"{pt.dlib_ms / faces:.2f}",
                                 f"{(pt.detect_ms + pt.dlib_ms) / faces:.1f}",
                                 _speedup(base, pt.dlib_ms)])
                lines += [f"### Detection ({det.name}) + landmarks on {pt.images} photos of "
                          f"{photos}", "",
                          markdown_table(["engine", "photos", "faces", "detection ms/photo",
                                          "landmarks ms/face (crop incl.)",
                                          "detection + landmarks ms/face",
                                          "landmark speed-up vs PyTorch"], rows), "",
                          "Images are decoded once beforehand (not timed); medians of "
                          f"{repeats} repeats per photo, summed over photos. Faces are cut "
                          f"{crop_note}; dlib's predictor gets the detector's box.", ""]
                _say(progress, f"throughput: one pass over {len(paths)} photos per engine")
                rows = []
                for name, engine in engines.items():
                    tp = folder_throughput(det, engine, paths, landmarker=lm,
                                           first_engine=firsts.get(name))
                    rows.append([name, tp.images, tp.faces, f"{tp.seconds:.2f}",
                                 f"{tp.images_per_s:.2f}", f"{tp.faces_per_s:.2f}"])
                    unreadable = sorted(set(unreadable) | set(tp.unreadable))
                lines += [f"### Throughput: one pass over {photos} (decode + detect + "
                          "landmarks)", "",
                          markdown_table(["engine", "photos", "faces", "seconds", "photos/s",
                                          "faces/s"], rows), ""]
                if unreadable:
                    lines.append(f"Unreadable, skipped: {'; '.join(unreadable)}")
                    lines.append("")
    lines += [f"Note: {n}." for n in notes]
    return "\n".join(lines).rstrip() + "\n"

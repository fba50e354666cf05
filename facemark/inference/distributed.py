"""``facemark detect`` over a large collection of images on a Ray cluster (``pip install
facemark[ray]``).

>>> from facemark.inference.distributed import detect_files_on_ray
>>> summary = detect_files_on_ray(["/data/photos/"], "out", workers=8)

The driver lists the images and the output folder as :func:`facemark.detect_files` does;
every image whose result an earlier run (of either engine, with the same model and options)
left in ``OUT/.parts`` is skipped, so an interrupted run resumes where it stopped. The
others go through a Ray Data pipeline: ``from_items`` of (name, path) rows, then
``map_batches`` with an actor pool of :class:`LandmarkerActor`, one
:class:`~facemark.inference.landmarker.Landmarker` (model, detector) loaded once per actor,
each reading its images from their paths (so the workers need the same file system). As
results stream back, the driver writes each image's part at once, and at the end the
standard prediction files (``OUT/predictions.json`` / ``.csv``,
``docs/prediction-format.md``) with the same writers as ``facemark detect``: a Ray run and
a local run of the same inputs give the same files.

Ray is used where it is already running (``ray.init(address=...)`` before the call, or
``address="auto"``); otherwise a local Ray is started for the call and stopped after it.
Videos and webcams are not sent to Ray (they are tracked frame by frame): they are listed
as skipped with a note to run ``facemark detect`` on them. Overlays and chips are not made.
"""
from __future__ import annotations

import json
import time

from facemark.data.images import read_image
from facemark.data.predictions import PredictedFace
from facemark.errors import ConfigError, DataError
from facemark.inference.batch import BatchDetector, DetectSummary
from facemark.inference.landmarker import Landmarker
from facemark.inference.outputs import Part, _face_record

#: images per ``map_batches`` batch (one ``Landmarker.detect_batch`` call)
RAY_BATCH = 8


def ray_available() -> str | None:
    """None when Ray Data can be imported, else why not (with the install command)."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        return f"Ray is not installed ({e}); pip install 'facemark[ray]'"
    return None


class LandmarkerActor:
    """A Ray Data actor: one Landmarker per worker process, loaded in ``__init__``.

    ``__call__`` takes a batch ``{"name": [...], "path": [...]}`` and returns
    ``{"name": [...], "result": [...]}``, each result a JSON text: ``{"faces": [part face
    records], "width": W, "height": H}``, or ``{"error": "<path>: <why>"}`` for an image
    that cannot be read (a DataError, reported by the driver and skipped).
    """

    def __init__(self, landmarker: dict, threads: int | None, pose: bool, exif: bool):
        self.landmarker = Landmarker(threads=threads, **landmarker).load()
        self.pose = pose
        self.exif = exif

    def __call__(self, batch: dict) -> dict:
        names = [str(n) for n in batch["name"]]
        results: list[str | None] = [None] * len(names)
        images, where = [], []
        for i, path in enumerate(batch["path"]):
            try:
                images.append(read_image(str(path), exif=self.exif))
                where.append(i)
            except DataError as e:
                results[i] = json.dumps({"error": str(e)})
        if images:
            for i, image, faces in zip(where, images, self.landmarker.detect_batch(images)):
                records = [_face_record(f.to_prediction(names[i], pose=self.pose)) for f in faces]
                results[i] = json.dumps({"faces": records, "width": int(image.shape[1]),
                                         "height": int(image.shape[0])})
        return {"name": names, "result": results}


def _face_from_record(r: dict, image: str):
    """A part face record (what the actor sends back) as a PredictedFace, as
    ``outputs.read_part`` reads it."""
    import numpy as np

    return PredictedFace(image=image, points=np.array(r["points"], dtype=np.float64),
                         frame=r.get("frame"), box=r.get("box"), score=r.get("score"),
                         point_scores=None if r.get("point_scores") is None else
                         np.array([np.nan if v is None else v for v in r["point_scores"]]),
                         pose=r.get("pose"))


class RayBatchDetector(BatchDetector):
    """:class:`BatchDetector` whose images go through Ray Data (see the module docstring);
    the same set-up, cache of parts, resume and output files."""

    def __init__(self, out=None, *, workers: int | None = None, threads: int | None = 1,
                 address: str | None = None, ray_batch: int = RAY_BATCH, **options):
        for name in ("overlay", "chips"):
            if options.get(name):
                raise ConfigError(f"{name} is not made on Ray; run facemark detect for it")
        if options.get("shard") is not None:
            raise ConfigError("shard: Ray spreads the work itself; give the whole collection")
        reason = ray_available()
        if reason:
            raise ConfigError(reason)
        if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
            raise ConfigError(f"workers: expected a positive integer, got {workers!r}")
        super().__init__(out, **options)
        self.workers, self.threads, self.address, self.ray_batch = workers, threads, address, ray_batch

    def detect(self, paths) -> DetectSummary:
        import ray

        started = False
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            started = True
        try:
            return super().detect(paths)
        finally:
            if started:
                ray.shutdown()

    def _process(self, inputs) -> None:
        pending = []
        for inp in inputs:
            if self._take_cached(inp):
                continue
            if inp.kind == "image":
                pending.append(inp)
            else:
                self._skip(DataError(inp.path or inp.name, "videos and webcams are not run on "
                                                           "Ray; run facemark detect on them"))
        if pending:
            self._run_on_ray(pending)

    def _run_on_ray(self, pending) -> None:
        import ray
        import ray.data

        opts = self.options
        lm = self.landmarker
        # the options as given (model None: the actor resolves the default as the driver did)
        landmarker = {"model": opts.model, "device": opts.device,
                      "detector": opts.detector, "engine": opts.engine,
                      "flip_test": opts.flip_test, "batch_size": opts.batch_size,
                      "refine": opts.refine, "first_pass_size": opts.first_pass_size,
                      "test_crops": opts.test_crops}
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = self.threads or 1
        workers = self.workers or max(1, min(len(pending), cpus // threads))
        by_name = {inp.name: inp for inp in pending}
        # blocks of about one actor batch, so every actor gets work from the start
        blocks = max(1, min(len(pending), -(-len(pending) // self.ray_batch), 1000))
        ds = ray.data.from_items([{"name": inp.name, "path": str(inp.path)} for inp in pending],
                                 override_num_blocks=max(blocks, min(workers, len(pending))))
        ds = ds.map_batches(LandmarkerActor, batch_size=self.ray_batch, batch_format="numpy",
                            fn_constructor_kwargs={"landmarker": landmarker, "threads": threads,
                                                   "pose": opts.pose,
                                                   "exif": not opts.keep_exif_orientation},
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=threads)
        for row in ds.iter_rows():   # parts are written as results arrive (resumable)
            inp = by_name[str(row["name"])]
            result = json.loads(row["result"])
            if "error" in result:
                self.skipped.append(result["error"])
                self.say(f"skipped {result['error']}")
                continue
            faces = [_face_from_record(rec, inp.name) for rec in result["faces"]]
            part = Part(input=inp.name, kind="image", faces=faces, scheme=lm.scheme,
                        settings=self.cache.settings, output=inp.output,
                        info={"width": result["width"], "height": result["height"]})
            self.cache.put(part, inp)
            self.image_parts[inp.name] = part
            self.counts["images"] += 1
            self.counts["faces"] += len(faces)
            self.counts["new_faces"] += len(faces)
            self.say(f"{inp.name}: {len(faces)} face{'s' * (len(faces) != 1)}")


def detect_files_on_ray(paths, out=None, *, workers: int | None = None,
                        threads: int | None = 1, address: str | None = None,
                        **options) -> DetectSummary:
    """:func:`facemark.detect_files` on Ray (see the module docstring).

    Args:
        paths: images and folders (videos are listed as skipped).
        out: the output folder (default ``facemark_out``).
        workers: actors, one Landmarker each (default: the cluster's CPUs / ``threads``).
        threads: intra-op threads per actor (one CPU each is reserved for it).
        address: the Ray cluster to join when none is initialised (``"auto"``: the local
            cluster that ``ray start`` made); None starts a local Ray for this call.
        **options: :func:`facemark.detect_files`'s (``model``, ``detector``, ``formats``,
            ``refine``, ``pose``, ``overwrite``, ``recursive``, ``quiet``, ...), except
            ``overlay``, ``chips`` and ``shard``.

    Returns:
        a :class:`DetectSummary`, as :func:`facemark.detect_files`.
    """
    start = time.perf_counter()
    summary = RayBatchDetector(out, workers=workers, threads=threads, address=address,
                               **options).detect(paths)
    summary.seconds = max(summary.seconds, 0.0) or time.perf_counter() - start
    return summary

"""The batch detection engine behind ``facemark detect``: many images, folders, videos and
webcams, in batches, with a cache of finished inputs (``OUT/.parts``), shards and merging.

>>> import facemark
>>> summary = facemark.detect_files(["photos/"], "out")   # OUT/predictions.json, ...
>>> print(summary.report())

What it writes, how it resumes, how videos are tracked and how shards split and merge the
work: ``facemark detect --help`` (the docstring of :mod:`facemark.cli.detect`).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from facemark.errors import DataError, FacemarkError
from facemark.io import output_folder

DEFAULT_OUT = "facemark_out"
IMAGES_PER_BATCH = 8  # images decoded and sent through the detector+model together


@dataclass
class DetectSummary:
    """What a :func:`detect_files` run did; :meth:`report` is the summary that ``facemark
    detect`` prints."""

    inputs: int          # inputs of this run (this shard's) and paths that could not be read
    images: int          # images processed in this run
    videos: int          # videos (and webcams) processed in this run
    frames: int          # their frames
    cached: int          # inputs whose result an earlier run had (from OUT/.parts)
    faces: int           # faces of all inputs, cached ones included
    new_faces: int       # faces found in this run
    skipped: list = field(default_factory=list)   # the errors of inputs that were skipped
    outputs: list = field(default_factory=list)   # prediction files written (str paths)
    seconds: float = 0.0
    other_files: int = 0  # files in the folders that were neither images nor videos

    @property
    def faces_per_second(self) -> float:
        return self.new_faces / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """0, or 1 when every input failed (the exit status of ``facemark detect``)."""
        done = self.images + self.videos + self.cached
        return 1 if done == 0 and self.skipped else 0

    def report(self) -> str:
        kinds = f"{self.images} image{'s' * (self.images != 1)}"
        if self.videos:
            kinds += f", {self.videos} video{'s' * (self.videos != 1)} ({self.frames} frames)"
        rows = [("inputs", f"{self.inputs}"),
                ("processed", kinds),
                ("from cache", f"{self.cached} (done in an earlier run)"),
                ("skipped", f"{len(self.skipped)}"),
                ("faces", f"{self.faces} ({self.new_faces} found in this run)"),
                ("time", f"{self.seconds:.2f} s"),
                ("faces/s", f"{self.faces_per_second:.1f}")]
        if self.other_files:
            rows.append(("not media", f"{self.other_files} file(s) in the folders were neither "
                                      "images nor videos"))
        for path in self.outputs:
            rows.append(("output", path))
        lines = ["summary", *(f"  {key:<11} {value}" for key, value in rows)]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} input(s):")
            lines += [f"  {e}" for e in self.skipped]
        return "\n".join(lines)


def detect_files(paths, out=None, **options) -> DetectSummary:
    """Landmarks of every face in images, folders, videos and webcams, written to ``out``
    as ``facemark detect`` writes them (prediction files, parts cache, overlays, chips).

    >>> summary = facemark.detect_files(["photos/", "clip.mp4"], "out", overlay=True)
    >>> summary.faces, summary.outputs

    Args:
        paths: images, folders (searched recursively unless ``recursive=False``), video
            files, or webcam indices (``"0"``).
        out: the output folder (default ``facemark_out``).
        **options: :class:`BatchDetector`'s: ``model``, ``detector``, ``device``,
            ``engine``, ``batch_size``, ``flip_test``, ``refine`` (extra passes; None for the
            model's default), ``first_pass_size`` (None for the model's default),
            ``test_crops`` (crops averaged in the last pass, default 1), ``smooth``,
            ``formats`` ("json", "csv", "both"),
            ``overlay``, ``keep_exif_orientation``, ``shard`` ((i, n)), ``recursive``,
            ``max_frames``, ``detect_every``, ``overwrite``, ``pose``, ``chips`` (a folder),
            ``chip_template``, ``chip_size``, ``chip_padding``, ``quiet`` (default True: no
            per-file lines and no progress bar).

    Returns:
        a :class:`DetectSummary` (``print(summary.report())`` prints the CLI's summary).
    """
    return BatchDetector(out, **options).detect(paths)


class BatchDetector:
    """The engine of ``facemark detect`` (see the module docstring): the keyword arguments
    of :func:`detect_files`; :meth:`detect` runs it over some inputs."""

    def __init__(self, out=None, *, model=None, detector="auto", device: str = "cpu",
                 engine: str = "auto", batch_size: int = 32, flip_test: bool = False,
                 refine: int | None = None, first_pass_size: int | None = None,
                 test_crops: int = 1, smooth: bool = True, formats: str = "json",
                 overlay: bool = False, keep_exif_orientation: bool = False,
                 shard: tuple[int, int] | None = None, recursive: bool = True,
                 max_frames: int | None = None, detect_every: int = 10,
                 overwrite: bool = False, pose: bool = False, chips=None,
                 chip_template: str = "arcface", chip_size: int | None = None,
                 chip_padding: float | None = None, quiet: bool = True):
        from types import SimpleNamespace

        self.options = SimpleNamespace(
            out=out, model=model, detector=detector, device=device, engine=engine,
            batch_size=batch_size, flip_test=flip_test, refine=refine,
            first_pass_size=first_pass_size, test_crops=test_crops, smooth=smooth,
            format=formats, overlay=overlay, keep_exif_orientation=keep_exif_orientation,
            shard=shard, recursive=recursive, max_frames=max_frames, detect_every=detect_every,
            overwrite=overwrite, pose=pose, chips=chips, chip_template=chip_template,
            chip_size=chip_size, chip_padding=chip_padding, quiet=quiet)

    # -- set-up --------------------------------------------------------------------------
    def detect(self, paths) -> DetectSummary:
        """Run over ``paths`` (images, folders, videos, webcam indices); returns the summary.

        Raises:
            FacemarkError (and its ConfigError, DataError): no inputs, an output folder
                that cannot be written, earlier results it would replace, a bad model or
                option; a file that cannot be read is skipped and listed in the summary.
        """
        import time

        from facemark.inference.landmarker import Landmarker
        from facemark.inference.outputs import PartCache, collect_inputs, file_digest, shard

        args = self.options
        paths = [str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        collected = collect_inputs(paths, recursive=args.recursive)
        inputs = collected.inputs
        if args.shard is not None:
            inputs = shard(inputs, *args.shard)
        self.skipped = list(collected.problems)
        if not inputs and not self.skipped:
            where = ", ".join(paths)
            raise FacemarkError(f"no images or videos found in {where}"
                                + (f" (shard {args.shard[0]}/{args.shard[1]} is empty)"
                                   if collected.inputs else ""))
        self.out = output_folder(args.out or DEFAULT_OUT)   # a bad -o stops before any work
        self._keep_earlier_results(inputs)
        self.landmarker = Landmarker(args.model, device=args.device, detector=args.detector,
                                     engine=args.engine, flip_test=args.flip_test,
                                     smoothing=None if args.smooth else False,
                                     batch_size=args.batch_size, refine=args.refine,
                                     first_pass_size=args.first_pass_size,
                                     test_crops=args.test_crops).load()
        lm = self.landmarker
        settings = {"model": lm.model_path_.name, "model_sha1": file_digest(lm.model_path_),
                    "engine": lm.engine_.kind, "detector": repr(lm.detector_),
                    "flip_test": lm.flip_test, "crop_rule": repr(lm.box_rule_),
                    "refine": lm.refine_}
        if lm.refine_ and lm.first_pass_size_ != lm.info_.input_size:   # (as exif below)
            settings["first_pass_size"] = lm.first_pass_size_
        if lm.test_crops > 1:   # (absent for one crop: earlier runs' parts stay valid)
            settings["test_crops"] = lm.test_crops
        if args.keep_exif_orientation:  # (absent by default: earlier runs' parts stay valid)
            settings["exif_orientation"] = "ignored"
        if args.pose:
            from facemark.data.pose import face_model_for

            face_model_for(lm.scheme)            # a scheme without pose points stops here
            settings["pose"] = True
        if args.chips is not None:
            from facemark.inference.align import chip_settings

            self.chip_args = chip_settings(args.chip_template, args.chip_size,
                                           args.chip_padding, scheme=lm.scheme)
        video_settings = {"smoothing": lm.smoothing_params_, "max_frames": args.max_frames,
                          "detect_every": args.detect_every}
        self.method = f"facemark {lm.model_path_.stem} + {lm.detector_.name}"
        self.cache = PartCache(self.out, settings, video_settings)

        self.image_parts: dict[str, object] = {}   # input name -> Part, in input order
        self.counts = {"images": 0, "videos": 0, "cached": 0, "faces": 0, "new_faces": 0,
                       "frames": 0}
        self.outputs: list[str] = []
        from tqdm import tqdm

        self.bar = tqdm(total=len(inputs), unit="file", desc="detect", disable=args.quiet or None,
                        file=sys.stderr)
        start = time.perf_counter()
        try:
            self._process(inputs)
        finally:
            self.bar.close()
        self.elapsed = time.perf_counter() - start
        self._write_image_predictions(inputs)
        c = self.counts
        return DetectSummary(
            inputs=len(inputs) + len(collected.problems), images=c["images"],
            videos=c["videos"], frames=c["frames"], cached=c["cached"], faces=c["faces"],
            new_faces=c["new_faces"], skipped=list(self.skipped), outputs=list(self.outputs),
            seconds=self.elapsed, other_files=collected.other_files)

    def _stem(self) -> str:
        """Name (no suffix) of the run's prediction files for images."""
        if self.options.shard is not None:
            return f"predictions.shard-{self.options.shard[0]}-of-{self.options.shard[1]}"
        return "predictions"

    def _keep_earlier_results(self, inputs) -> None:
        """FacemarkError before any work if this run would replace prediction files that
        hold faces of other images (an earlier run into the same OUT), unless --overwrite."""
        from facemark.data.predictions import read_predictions
        from facemark.inference.outputs import prediction_files

        names = {inp.name for inp in inputs if inp.kind == "image"}
        if self.options.overwrite or not names:
            return
        advice = (f"give another -o, or --overwrite to replace it (the earlier results stay "
                  f"in {self.out / '.parts'}; 'facemark detect --merge {self.out}' joins the "
                  "parts of runs made with the same options)")
        for path in prediction_files(self.out, self._stem(), self.options.format):
            if not path.is_file():
                continue
            try:
                earlier = {f.image for f in read_predictions(path).faces}
            except DataError as e:
                raise FacemarkError(f"{path} exists and is not a prediction file this run can "
                                    f"update ({e.message}); {advice}") from None
            other = sorted(earlier - names)
            if other:
                raise FacemarkError(f"{path} holds faces of {len(other)} image(s) this run was "
                                    f"not given (e.g. {other[0]}): it would be replaced; "
                                    f"{advice}")

    def say(self, text: str) -> None:
        if not self.options.quiet:
            self.bar.write(text, file=sys.stdout)

    # -- the loop ------------------------------------------------------------------------
    def _process(self, inputs) -> None:
        pending = []
        for inp in inputs:
            if self._take_cached(inp):
                self.bar.update(1)
                continue
            if inp.kind == "image":
                pending.append(inp)
                if len(pending) >= IMAGES_PER_BATCH:
                    self._images(pending)
                    pending = []
            else:
                self._images(pending)
                pending = []
                self._video(inp)
        self._images(pending)

    def _take_cached(self, inp) -> bool:
        """Use the input's result from an earlier run when it is complete; True if so."""
        part = self._cached(inp)
        if part is None:
            return False
        self.counts["cached"] += 1
        self.counts["faces"] += len(part.faces)
        if inp.kind == "image":
            self.image_parts[inp.name] = part
        return True

    def _cached(self, inp):
        from facemark.inference.outputs import chip_paths, overlay_path

        part = self.cache.get(inp)
        if part is None:
            return None
        if self.options.overlay and not overlay_path(self.out, inp.output, inp.kind).is_file():
            return None
        if self.options.chips is not None and inp.kind == "image" and not all(
                p.is_file() for p in chip_paths(self.options.chips, inp.output, len(part.faces))):
            return None
        return part

    def _skip(self, error) -> None:
        self.skipped.append(error)
        self.say(f"skipped {error}")

    def _images(self, batch) -> None:
        from facemark.data.images import read_image
        from facemark.inference.outputs import Part, overlay_path, write_chips, write_overlay_image

        if not batch:
            return
        ready, images = [], []
        for inp in batch:
            try:
                images.append(read_image(inp.path, exif=not self.options.keep_exif_orientation))
                ready.append(inp)
            except DataError as e:
                self._skip(e)
                self.bar.update(1)
        if not ready:
            return
        results = self.landmarker.detect_batch(images)
        for inp, image, faces in zip(ready, images, results):
            part = Part(input=inp.name, kind="image",
                        faces=[f.to_prediction(inp.name, pose=self.options.pose) for f in faces],
                        scheme=self.landmarker.scheme, settings=self.cache.settings,
                        output=inp.output, info={"width": image.shape[1], "height": image.shape[0]})
            if self.options.overlay:
                write_overlay_image(overlay_path(self.out, inp.output, "image"), image, faces,
                                    pose=self.options.pose)
            if self.options.chips is not None:
                tpl, size, padding = self.chip_args
                write_chips(self.options.chips, inp.output, image, faces, size=size,
                            padding=padding, template=tpl.name)
            self.cache.put(part, inp)
            self.image_parts[inp.name] = part
            self.counts["images"] += 1
            self.counts["faces"] += len(faces)
            self.counts["new_faces"] += len(faces)
            scores = ", ".join(f"{f.confidence:.2f}" for f in faces[:6])
            more = ", ..." if len(faces) > 6 else ""
            self.say(f"{inp.name}: {len(faces)} face{'s' * (len(faces) != 1)}"
                     + (f" (confidence {scores}{more})" if faces else ""))
            self.bar.update(1)

    def _video(self, inp) -> None:
        from facemark.inference.draw import draw_faces
        from facemark.inference.outputs import (Part, overlay_path, video_output_path,
                                                write_prediction_files)
        from facemark.inference.video import JitterMeter, VideoSource, VideoWriter, track_video

        source = VideoSource(inp.camera if inp.kind == "webcam" else inp.path,
                             max_frames=self.options.max_frames)
        writer = VideoWriter(overlay_path(self.out, inp.output, inp.kind), 0) \
            if self.options.overlay else None
        faces, frames, stopped, finished, detections = [], 0, False, False, 0
        meter = JitterMeter()
        from tqdm import tqdm

        try:
            source.open()
            if writer is not None:
                writer.fps = source.fps_ or 25.0
            total = source.frame_count_ or None
            if total and self.options.max_frames:
                total = min(total, self.options.max_frames)
            fbar = tqdm(total=total, unit="frame", desc=inp.name[-30:], leave=False,
                        disable=self.options.quiet or None, file=sys.stderr)
            try:
                for frame in track_video(self.landmarker, source,
                                         detect_every=self.options.detect_every):
                    frames += 1
                    detections += frame.detected
                    meter.add(frame)
                    faces += [f.to_prediction(inp.name, frame.index, pose=self.options.pose)
                              for f in frame.faces]
                    if writer is not None:
                        writer.write(draw_faces(frame.image, frame.faces, pose=self.options.pose))
                    fbar.update(1)
            except KeyboardInterrupt:
                if inp.kind != "webcam":
                    raise
                stopped = True  # Ctrl+C ends a webcam run; what was seen is kept
            finally:
                fbar.close()
            finished = True
        except DataError as e:
            self._skip(e)
            self.bar.update(1)
            return
        finally:
            source.close()
            if writer is not None:
                writer.close() if finished else writer.abort()
        jit = meter.result()
        info = {"frames": frames, "fps": source.fps_ if hasattr(source, "fps_") else 0.0,
                "width": getattr(source, "size_", (0, 0))[0],
                "height": getattr(source, "size_", (0, 0))[1],
                "detector_frames": detections, "jitter_raw": jit["raw"],
                "jitter_smoothed": jit["smoothed"]}
        part = Part(input=inp.name, kind="video", faces=faces, scheme=self.landmarker.scheme,
                    settings=self.cache.settings, output=inp.output, info=info)
        stem = str(video_output_path(self.out, inp.output).relative_to(self.out))[:-len(".json")]
        written = write_prediction_files(self.out, stem, faces, scheme=self.landmarker.scheme,
                                         method=self.method, formats=self.options.format)
        self.outputs += [str(p) for p in written]
        if inp.kind != "webcam":
            self.cache.put(part, inp)
        self.counts["videos"] += 1
        self.counts["frames"] += frames
        self.counts["faces"] += len(faces)
        self.counts["new_faces"] += len(faces)
        motion = ""
        if jit["raw"] is not None:
            motion = (f", landmark motion {100 * jit['raw']:.2f}% of the face size per frame"
                      + (f" ({100 * jit['smoothed']:.2f}% smoothed)"
                         if self.landmarker.smoothing_params_ is not None else ""))
        self.say(f"{inp.name}: {frames} frames, {len(faces)} faces, detector on "
                 f"{detections} frames{motion}" + (" (stopped with Ctrl+C)" if stopped else ""))
        self.bar.update(1)

    # -- results -------------------------------------------------------------------------
    def _write_image_predictions(self, inputs) -> None:
        from facemark.inference.outputs import write_prediction_files

        if not any(inp.kind == "image" for inp in inputs):
            return
        faces = [f for inp in inputs if inp.name in self.image_parts
                 for f in self.image_parts[inp.name].faces]
        written = write_prediction_files(self.out, self._stem(), faces, scheme=self.landmarker.scheme,
                                         method=self.method, formats=self.options.format)
        self.outputs = [str(p) for p in written] + self.outputs


# ---------------------------------------------------------------------------------------
def merge_parts(out, formats: str = "json", quiet: bool = False) -> int:
    """Join ``OUT/.parts`` (of shards, see the module docstring) into ``OUT/predictions.*``
    and ``OUT/videos/*``, printing what it wrote; returns 0, or 1 when some parts were
    unreadable (they are listed and left out).

    Raises:
        FacemarkError: no parts, or parts of different models, options or schemes.
    """
    import json
    from pathlib import Path

    from facemark.inference.outputs import (PARTS_FOLDER, read_parts, video_output_path,
                                            write_prediction_files)

    out = Path(out)
    parts, bad = read_parts(out)
    if not parts:
        raise FacemarkError(f"{out / PARTS_FOLDER}: no result parts to merge"
                            + (f" ({len(bad)} unreadable)" if bad else ""))
    by_settings: dict[str, list] = {}
    for part in parts:
        by_settings.setdefault(json.dumps(part.settings, sort_keys=True), []).append(part)
    if len(by_settings) > 1:
        lines = [f"  {len(ps)} part(s): model {ps[0].settings.get('model')} "
                 f"(sha1 {ps[0].settings.get('model_sha1')}), detector "
                 f"{ps[0].settings.get('detector')}, flip_test {ps[0].settings.get('flip_test')}"
                 for ps in by_settings.values()]
        raise FacemarkError(f"{out / PARTS_FOLDER}: parts were made with different models or "
                            "options; merge runs of one setting (move the others away):\n"
                            + "\n".join(lines))
    schemes = {p.scheme for p in parts}
    scheme = parts[0].scheme
    if len(schemes) > 1:
        raise FacemarkError(f"{out / PARTS_FOLDER}: parts of several schemes {sorted(schemes)}")
    # the same input twice (a file changed between runs): keep the newest part, say so
    seen: dict[tuple, object] = {}
    for part in parts:
        seen[(part.input, part.kind)] = part
    duplicates = len(parts) - len(seen)
    parts = list(seen.values())
    settings = parts[0].settings
    model_stem = Path(settings.get("model", "model")).stem
    method = f"facemark {model_stem} + {settings.get('detector', '')}"
    images = [p for p in parts if p.kind == "image"]
    written = []
    if images:
        faces = [f for p in images for f in p.faces]
        written += write_prediction_files(out, "predictions", faces, scheme=scheme,
                                          method=method, formats=formats)
    videos = [p for p in parts if p.kind == "video"]
    for p in videos:
        stem = str(video_output_path(out, p.output).relative_to(out))[:-len(".json")]
        written += write_prediction_files(out, stem, p.faces, scheme=scheme, method=method,
                                          formats=formats)
    faces = sum(len(p.faces) for p in parts)
    print("merged")
    print(f"  {'parts':<11} {len(parts)} ({len(images)} images, {len(videos)} videos)")
    print(f"  {'faces':<11} {faces}")
    if duplicates:
        print(f"  {'duplicates':<11} {duplicates} input(s) had several parts; one kept each")
    for path in written[:1] if quiet else written:
        print(f"  {'output':<11} {path}")
    if bad:
        print(f"unreadable parts ({len(bad)}), not merged:")
        for e in bad:
            print(f"  {e}")
        return 1
    return 0

"""``facemark detect``: landmarks of every face in images, folders, videos and webcams.

    facemark detect PATH [PATH ...] [--sample] [-o OUT] [--format json|csv|both] [--overlay]
        [--model PATH] [--detector NAME] [--device cpu] [--engine auto|torch|onnx]
        [--batch-size 32] [--flip-test] [--refine [--refine-passes N] | --no-refine]
        [--no-smooth] [--keep-exif-orientation] [--shard i/n] [--no-recursive]
        [--max-frames N] [--detect-every K] [--overwrite] [--pose]
        [--chips DIR [--chip-template arcface|dlib] [--chip-size N] [--chip-padding P]]
        [--quiet]
    facemark detect --merge OUT [--format json|csv|both]

A PATH is an image, a folder (searched recursively unless ``--no-recursive``), a video
file, or a webcam index (a whole number such as ``0``). Each image gets a line with its
number of faces; a file that cannot be read is reported, skipped and listed in the summary,
and the run goes on. The summary gives files, faces, skipped files, time and faces/s. The
exit status is 0, or 1 when every input failed (2 for a bad option or model).

Outputs, under OUT (default ``facemark_out``):

* ``predictions.json`` (``--format csv``: ``.csv``; ``both``: both): every face of every
  image, in the prediction file format of ``docs/prediction-format.md`` (points in pixels
  of the original image, per-landmark scores, the detector's box and score), written
  atomically. Image paths are written as given on the command line. A photo with an EXIF
  orientation tag (phones store portrait photos sideways) is turned upright first, as
  viewers show it, and its points are in that upright image; ``--keep-exif-orientation``
  takes the pixels as stored instead. A run refuses to replace prediction files that
  hold faces of images it was not given (an earlier run's, with other inputs), unless
  ``--overwrite``; a re-run with the same inputs simply updates them. ``-o`` must be a
  writable folder (checked before any work).
* ``videos/<video>.json``: one prediction file per video (and webcam), a face record per
  face and frame (``frame`` is the 0-based frame index).
* with ``--pose``: each face's head pose (yaw, pitch, roll in degrees, rotation and
  translation; camera guessed from the image size) in the prediction files, and drawn as
  axes on the overlays.
* with ``--chips DIR``: an aligned chip of every face in every image,
  ``DIR/<image>_<k>.png`` (k = the face's place in the prediction file of that image, from
  0): the ArcFace 112 x 112 layout, or ``--chip-template dlib`` for dlib's
  ``get_face_chip`` layout (150 px, padding 0.25); ``--chip-size``, ``--chip-padding``
  change the size and border. Videos get no chips.
* with ``--overlay``: ``overlays/<image>`` (PNG/JPEG, points coloured by face region,
  boxes) and ``overlays/<video>.mp4``.
* ``.parts/<hash>.json``: the result of each finished input, written atomically. A re-run
  with the same model, detector and options skips every input whose part exists (and
  whose overlay exists, with ``--overlay``), so an interrupted run resumes where it stopped.
  Changing an input file or an option computes that input again. A video is cached whole.

Videos: the face detector runs on the first frame, every ``--detect-every`` frames (to catch
new faces), and whenever a face's landmark confidence drops or no face is tracked; in
between, each face's box comes from its landmarks of the previous frame
(``facemark.inference.tracking``). Landmarks are smoothed over time with a One Euro filter
(``--no-smooth`` turns it off); photos are never smoothed. Each video's line gives the mean
frame-to-frame landmark motion per face size, raw and smoothed (it includes real motion:
compare the two numbers of one video). A webcam runs until ``--max-frames`` or Ctrl+C, and
is never cached.

Large collections on several processes or machines: ``--shard i/n`` processes every n-th
input starting at the i-th (0-based, in the order the inputs are listed: PATHs in the order
given, folder contents sorted), so shards ``0/n`` .. ``n-1/n`` of the same PATHs split the
work with nothing done twice or left out. Each shard writes its parts to ``OUT/.parts`` and
its own ``predictions.shard-i-of-n.json``.

1. On each machine (or process, or GPU with ``--device cuda:K``), run the same command
   with its own shard, e.g. on machine 2 of 4::

       facemark detect /data/faces -o OUT --shard 1/4

   Use the same PATH spelling everywhere (it is what the prediction files record). A
   shared filesystem for OUT needs no copying.
2. Otherwise copy every machine's ``OUT/.parts/*.json`` into one ``OUT/.parts`` folder
   (``rsync -a machineK:OUT/.parts/ OUT/.parts/``; the file names never collide).
3. Join them: ``facemark detect --merge OUT`` writes ``OUT/predictions.json`` (every image)
   and ``OUT/videos/*.json``. It refuses parts made with different models or options; an
   unreadable part is listed and left out, and the exit status is then 1.

A shard that was stopped is simply run again (it resumes from its parts).
"""
from __future__ import annotations

import argparse
import sys

from facemark.cli.arguments import nonnegative_float, positive_int, refine_of

DEFAULT_OUT = "facemark_out"
IMAGES_PER_BATCH = 8  # images decoded and sent through the detector+model together


def _shard(text: str) -> tuple[int, int]:
    from facemark.inference.outputs import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect", help="landmarks of every face in images, folders, videos or a webcam",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image, folder, video file, or webcam index (e.g. 0)")
    p.add_argument("--sample", action="store_true",
                   help="also run on a sample photo (the Grace Hopper portrait that ships with "
                        "matplotlib), to try facemark without an image of your own")
    p.add_argument("-o", "--out", default=None, metavar="OUT",
                   help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--format", choices=("json", "csv", "both"), default="json",
                   help="prediction file encoding (default json)")
    p.add_argument("--overlay", action="store_true",
                   help="also write images/MP4 videos with the landmarks drawn")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="model file (.pt, .ckpt, .onnx) or bundled model name (default: the "
                        "bundled default model)")
    p.add_argument("--detector", default="auto", metavar="NAME",
                   help="face detector (default auto: dlib_hog, else opencv_haar; see "
                        "--list-detectors), e.g. opencv, dlib:1, "
                        "mediapipe, yunet:/path/face_detection_yunet.onnx")
    p.add_argument("--list-detectors", action="store_true",
                   help="list the face detectors and whether each can run here, then exit")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1")
    p.add_argument("--engine", choices=("auto", "torch", "onnx"), default="auto",
                   help="model runtime (default auto: by the model file's suffix)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="face crops per model call (default 32)")
    p.add_argument("--flip-test", action="store_true",
                   help="average with the prediction on the mirrored crop (2x model time)")
    p.add_argument("--refine", action="store_true",
                   help="predict again on a crop from the first landmarks (one more model "
                        "call per face; more accurate when detector boxes are off). The "
                        "default for models trained on landmark crops, as the bundled one")
    p.add_argument("--refine-passes", type=positive_int, default=None, metavar="N",
                   help="with --refine: how many extra passes, each on a crop from the "
                        "previous landmarks (default 1)")
    p.add_argument("--no-refine", action="store_true",
                   help="one pass per face only, on the detector's (calibrated) box")
    p.add_argument("--keep-exif-orientation", action="store_true",
                   help="take photos' pixels as stored, ignoring their EXIF orientation tag "
                        "(default: turn them upright as viewers show them; points are in "
                        "the upright image)")
    p.add_argument("--no-smooth", action="store_true",
                   help="no temporal smoothing of video landmarks")
    p.add_argument("--shard", type=_shard, default=None, metavar="i/n",
                   help="process every n-th input starting at i (0-based); see below")
    p.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True,
                   help="search folders recursively (default: yes)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N",
                   help="stop each video or webcam after N frames")
    p.add_argument("--detect-every", type=positive_int, default=10, metavar="K",
                   help="videos: run the face detector at least every K frames (default 10; "
                        "1 = every frame)")
    p.add_argument("--merge", default=None, metavar="OUT",
                   help="join the result parts in OUT/.parts (from shards) into "
                        "OUT/predictions.json")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT's prediction files even when they hold faces of images "
                        "this run was not given (an earlier run's)")
    p.add_argument("--pose", action="store_true",
                   help="also write each face's head pose (yaw, pitch, roll in degrees) and "
                        "draw it on overlays")
    p.add_argument("--chips", default=None, metavar="DIR",
                   help="write an aligned face chip of every face in every image to DIR")
    p.add_argument("--chip-template", default="arcface", metavar="NAME",
                   help="chip layout: arcface (default, 112 px, 5 points) or dlib "
                        "(dlib.get_face_chip's, 150 px, padding 0.25)")
    p.add_argument("--chip-size", type=positive_int, default=None, metavar="N",
                   help="chip side in pixels (default: the template's)")
    p.add_argument("--chip-padding", type=nonnegative_float, default=None, metavar="P",
                   help="border around the layout, a fraction of it per side (default: the "
                        "template's)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no per-file lines and no progress bar (the summary is printed)")
    p.set_defaults(handler=run)


# ---------------------------------------------------------------------------------------
def run(args) -> int:
    from facemark.errors import ConfigError

    if args.list_detectors:
        from facemark.inference.detectors import describe_detectors

        print(describe_detectors())
        return 0
    if args.merge is not None:
        if args.paths:
            raise ConfigError("--merge OUT takes no PATH arguments (it joins OUT/.parts)")
        return merge(args.merge, args.format, quiet=args.quiet)
    if args.sample:
        from facemark.data.images import sample_image

        args.paths = [*args.paths, str(sample_image())]
    if not args.paths:
        raise ConfigError("give at least one PATH (image, folder, video or webcam index), "
                          "--sample, or --merge OUT")
    return DetectRun(args).run()


class DetectRun:
    """One ``facemark detect`` run over the inputs of ``args`` (see the module docstring)."""

    def __init__(self, args):
        self.args = args

    # -- set-up --------------------------------------------------------------------------
    def run(self) -> int:
        import time

        from facemark.api import load
        from facemark.errors import FacemarkError
        from facemark.inference.outputs import PartCache, collect_inputs, file_digest, shard
        from facemark.io import output_folder

        args = self.args
        collected = collect_inputs(args.paths, recursive=args.recursive)
        inputs = collected.inputs
        if args.shard is not None:
            inputs = shard(inputs, *args.shard)
        self.skipped = list(collected.problems)
        if not inputs and not self.skipped:
            where = ", ".join(args.paths)
            raise FacemarkError(f"no images or videos found in {where}"
                                + (f" (shard {args.shard[0]}/{args.shard[1]} is empty)"
                                   if collected.inputs else ""))
        self.out = output_folder(args.out or DEFAULT_OUT)   # a bad -o stops before any work
        self._keep_earlier_results(inputs)
        self.landmarker = load(args.model, device=args.device, detector=args.detector,
                               engine=args.engine, flip_test=args.flip_test,
                               smoothing=False if args.no_smooth else None,
                               batch_size=args.batch_size, refine=refine_of(args))
        lm = self.landmarker
        settings = {"model": lm.model_path_.name, "model_sha1": file_digest(lm.model_path_),
                    "engine": lm.engine_.kind, "detector": repr(lm.detector_),
                    "flip_test": lm.flip_test, "crop_rule": repr(lm.box_rule_),
                    "refine": lm.refine_}
        if args.keep_exif_orientation:  # (absent by default: earlier runs' parts stay valid)
            settings["exif_orientation"] = "ignored"
        if args.pose:
            from facemark.inference.pose import face_model_for

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
        self._summary(len(inputs) + len(collected.problems), collected.other_files)
        done = self.counts["images"] + self.counts["videos"] + self.counts["cached"]
        return 1 if done == 0 and self.skipped else 0

    def _stem(self) -> str:
        """Name (no suffix) of the run's prediction files for images."""
        if self.args.shard is not None:
            return f"predictions.shard-{self.args.shard[0]}-of-{self.args.shard[1]}"
        return "predictions"

    def _keep_earlier_results(self, inputs) -> None:
        """FacemarkError before any work if this run would replace prediction files that
        hold faces of other images (an earlier run into the same OUT), unless --overwrite."""
        from facemark.errors import DataError, FacemarkError
        from facemark.evaluation.predictions import read_predictions
        from facemark.inference.outputs import prediction_files

        names = {inp.name for inp in inputs if inp.kind == "image"}
        if self.args.overwrite or not names:
            return
        advice = (f"give another -o, or --overwrite to replace it (the earlier results stay "
                  f"in {self.out / '.parts'}; 'facemark detect --merge {self.out}' joins the "
                  "parts of runs made with the same options)")
        for path in prediction_files(self.out, self._stem(), self.args.format):
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
        if not self.args.quiet:
            self.bar.write(text, file=sys.stdout)

    # -- the loop ------------------------------------------------------------------------
    def _process(self, inputs) -> None:
        pending = []
        for inp in inputs:
            part = self._cached(inp)
            if part is not None:
                self.counts["cached"] += 1
                self.counts["faces"] += len(part.faces)
                if inp.kind == "image":
                    self.image_parts[inp.name] = part
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

    def _cached(self, inp):
        from facemark.inference.outputs import chip_paths, overlay_path

        part = self.cache.get(inp)
        if part is None:
            return None
        if self.args.overlay and not overlay_path(self.out, inp.output, inp.kind).is_file():
            return None
        if self.args.chips is not None and inp.kind == "image" and not all(
                p.is_file() for p in chip_paths(self.args.chips, inp.output, len(part.faces))):
            return None
        return part

    def _skip(self, error) -> None:
        self.skipped.append(error)
        self.say(f"skipped {error}")

    def _images(self, batch) -> None:
        from facemark.data.images import read_image
        from facemark.errors import DataError
        from facemark.inference.outputs import Part, overlay_path, write_chips, write_overlay_image

        if not batch:
            return
        ready, images = [], []
        for inp in batch:
            try:
                images.append(read_image(inp.path, exif=not self.args.keep_exif_orientation))
                ready.append(inp)
            except DataError as e:
                self._skip(e)
                self.bar.update(1)
        if not ready:
            return
        results = self.landmarker.detect_batch(images)
        for inp, image, faces in zip(ready, images, results):
            part = Part(input=inp.name, kind="image",
                        faces=[f.to_prediction(inp.name, pose=self.args.pose) for f in faces],
                        scheme=self.landmarker.scheme, settings=self.cache.settings,
                        output=inp.output, info={"width": image.shape[1], "height": image.shape[0]})
            if self.args.overlay:
                write_overlay_image(overlay_path(self.out, inp.output, "image"), image, faces,
                                    pose=self.args.pose)
            if self.args.chips is not None:
                tpl, size, padding = self.chip_args
                write_chips(self.args.chips, inp.output, image, faces, size=size,
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
        from facemark.errors import DataError
        from facemark.inference.draw import draw_faces
        from facemark.inference.outputs import (Part, overlay_path, video_output_path,
                                                write_prediction_files)
        from facemark.inference.video import JitterMeter, VideoSource, VideoWriter, track_video

        source = VideoSource(inp.camera if inp.kind == "webcam" else inp.path,
                             max_frames=self.args.max_frames)
        writer = VideoWriter(overlay_path(self.out, inp.output, inp.kind), 0) \
            if self.args.overlay else None
        faces, frames, stopped, finished, detections = [], 0, False, False, 0
        meter = JitterMeter()
        from tqdm import tqdm

        try:
            source.open()
            if writer is not None:
                writer.fps = source.fps_ or 25.0
            total = source.frame_count_ or None
            if total and self.args.max_frames:
                total = min(total, self.args.max_frames)
            fbar = tqdm(total=total, unit="frame", desc=inp.name[-30:], leave=False,
                        disable=self.args.quiet or None, file=sys.stderr)
            try:
                for frame in track_video(self.landmarker, source,
                                         detect_every=self.args.detect_every):
                    frames += 1
                    detections += frame.detected
                    meter.add(frame)
                    faces += [f.to_prediction(inp.name, frame.index, pose=self.args.pose)
                              for f in frame.faces]
                    if writer is not None:
                        writer.write(draw_faces(frame.image, frame.faces, pose=self.args.pose))
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
                                         method=self.method, formats=self.args.format)
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
                                         method=self.method, formats=self.args.format)
        self.outputs = [str(p) for p in written] + self.outputs

    def _summary(self, total: int, other_files: int) -> None:
        c = self.counts
        rate = c["new_faces"] / self.elapsed if self.elapsed > 0 else 0.0
        kinds = f"{c['images']} image{'s' * (c['images'] != 1)}"
        if c["videos"]:
            kinds += f", {c['videos']} video{'s' * (c['videos'] != 1)} ({c['frames']} frames)"
        rows = [("inputs", f"{total}"),
                ("processed", kinds),
                ("from cache", f"{c['cached']} (done in an earlier run)"),
                ("skipped", f"{len(self.skipped)}"),
                ("faces", f"{c['faces']} ({c['new_faces']} found in this run)"),
                ("time", f"{self.elapsed:.2f} s"),
                ("faces/s", f"{rate:.1f}")]
        if other_files:
            rows.append(("not media", f"{other_files} file(s) in the folders were neither "
                                      "images nor videos"))
        for path in self.outputs:
            rows.append(("output", path))
        print("summary")
        for key, value in rows:
            print(f"  {key:<11} {value}")
        if self.skipped:
            print(f"skipped {len(self.skipped)} input(s):")
            for e in self.skipped:
                print(f"  {e}")


# ---------------------------------------------------------------------------------------
def merge(out, formats: str = "json", quiet: bool = False) -> int:
    """Join ``OUT/.parts`` into ``OUT/predictions.*`` and ``OUT/videos/*`` (see the docstring)."""
    import json
    from pathlib import Path

    from facemark.errors import FacemarkError
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

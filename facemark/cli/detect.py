"""``facemark detect``: landmarks of every face in images, folders, videos and webcams.

    facemark detect PATH [PATH ...] [--sample] [-o OUT] [--format json|csv|both] [--overlay]
        [--model PATH] [--detector NAME] [--device cpu] [--engine auto|torch|onnx]
        [--batch-size 32] [--flip-test] [--refine [--refine-passes N] | --no-refine]
        [--first-pass-size PX] [--test-crops K]
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

from facemark.cli.arguments import nonnegative_float, nonnegative_int, positive_int, refine_of
from facemark.errors import ConfigError
from facemark.inference.batch import DEFAULT_OUT, merge_parts
from facemark.inference.model_path import describe_models


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
    p.add_argument("--list-models", action="store_true",
                   help="list the bundled models (names for --model), then exit")
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
    p.add_argument("--first-pass-size", type=nonnegative_int, default=None, metavar="PX",
                   help="crop side of the first pass when a refine pass follows (it only "
                        "places the next crop; smaller is faster): a multiple of 32 up to "
                        "the model's crop size, 0 for the model's size (default: the "
                        "model's own setting)")
    p.add_argument("--test-crops", type=positive_int, default=1, metavar="K",
                   help="average the last pass over K crops: the face's and copies moved "
                        "around it by 4%% of its side (K times that pass's model time; "
                        "1, or 3 to 16; default 1)")
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
    p.add_argument("--ray", action="store_true",
                   help="run the images on Ray (pip install facemark[ray]): Ray Data with "
                        "one Landmarker per actor; same outputs and resume (no overlays, "
                        "chips, shards or videos)")
    p.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                   help="--ray: actors (default: the cluster's CPUs / --ray-threads)")
    p.add_argument("--ray-threads", type=positive_int, default=1, metavar="T",
                   help="--ray: threads (and CPUs reserved) per actor (default 1)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--ray: the cluster to join ('auto': the one 'ray start' made); "
                        "default: a local Ray started for this run")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no per-file lines and no progress bar (the summary is printed)")
    p.set_defaults(handler=run)


# ---------------------------------------------------------------------------------------
def run(args) -> int:
    if args.list_detectors:
        from facemark.inference.detectors import describe_detectors

        print(describe_detectors())
        return 0
    if args.list_models:
        print(describe_models())
        return 0
    if args.merge is not None:
        if args.paths:
            raise ConfigError("--merge OUT takes no PATH arguments (it joins OUT/.parts)")
        return merge_parts(args.merge, args.format, quiet=args.quiet)
    if args.sample:
        from facemark.data.images import sample_image

        args.paths = [*args.paths, str(sample_image())]
    if not args.paths:
        raise ConfigError("give at least one PATH (image, folder, video or webcam index), "
                          "--sample, or --merge OUT")
    from facemark.inference.batch import detect_files

    if args.ray:
        from functools import partial

        from facemark.inference.distributed import detect_files_on_ray

        detect_files = partial(detect_files_on_ray, workers=args.ray_workers,  # noqa: F811
                               threads=args.ray_threads, address=args.ray_address)
    summary = detect_files(
        args.paths, args.out, model=args.model, detector=args.detector, device=args.device,
        engine=args.engine, batch_size=args.batch_size, flip_test=args.flip_test,
        refine=refine_of(args), first_pass_size=args.first_pass_size,
        test_crops=args.test_crops, smooth=not args.no_smooth, formats=args.format,
        overlay=args.overlay, keep_exif_orientation=args.keep_exif_orientation,
        shard=args.shard, recursive=args.recursive, max_frames=args.max_frames,
        detect_every=args.detect_every, overwrite=args.overwrite, pose=args.pose,
        chips=args.chips, chip_template=args.chip_template, chip_size=args.chip_size,
        chip_padding=args.chip_padding, quiet=args.quiet)
    print(summary.report())
    return summary.exit_status

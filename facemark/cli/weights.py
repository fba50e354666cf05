"""``facemark weights``: prepare pretrained backbone weights.

    facemark weights import-tflite SRC.tflite -o mobilenet_v2_imagenet.pth \\
        [--calibration PHOTOS [--calibration-size 64]]

``import-tflite`` converts a MobileNetV2 (width 1.0) ImageNet classifier in TensorFlow Lite
format (8-bit weights, batch norm folded) into a torchvision-style state dict for
``model.backbone_weights`` (needs ``pip install 'facemark[imagenet]'``). With
``--calibration`` (a folder of ordinary photos) each layer's output statistics are measured
on them so that BatchNorm gives nearly the same result with batch statistics (training) as
with its running ones; without it the result is exact in eval mode only. See
``facemark.models.backbones.tflite_import`` for what the conversion does and cannot undo.
"""
from __future__ import annotations

import argparse

from facemark.cli.arguments import positive_int
from facemark.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="prepare pretrained backbone weights",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=lambda args: p.print_help() or 0)
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")

    s = sub.add_parser("import-tflite",
                       help="MobileNetV2 ImageNet weights from a .tflite classifier -> .pth")
    s.add_argument("source", metavar="SRC", help="the .tflite file")
    s.add_argument("-o", "--out", required=True, metavar="OUT", help=".pth file to write")
    s.add_argument("--calibration", default=None, metavar="DIR",
                   help="folder of photos to calibrate BatchNorm statistics on (recommended)")
    s.add_argument("--calibration-size", type=positive_int, default=None, metavar="N",
                   help="use at most N photos (the first by name; default all)")
    s.set_defaults(handler=cmd_import_tflite)


def cmd_import_tflite(args) -> int:
    from pathlib import Path

    from facemark.models.backbones.tflite_import import import_tflite_weights

    if Path(args.source).resolve() == Path(args.out).resolve():
        raise ConfigError(f"-o {args.out}: the output would overwrite SRC")
    if args.calibration_size is not None and args.calibration is None:
        raise ConfigError("--calibration-size needs --calibration DIR")
    summary = import_tflite_weights(args.source, args.out, calibration=args.calibration,
                                    calibration_limit=args.calibration_size)
    classes = f"{summary.classes} classes" + (" (background class dropped)"
                                              if summary.dropped_background else "")
    calibration = (f"BatchNorm calibrated on {summary.calibration_images} photos "
                   f"({summary.floored_channels} near-constant channels floored)"
                   if summary.calibration_images else
                   "BatchNorm not calibrated (exact in eval mode only; see --calibration)")
    print(f"wrote {summary.out}: MobileNetV2, {summary.layers} feature layers, {classes}; "
          f"{calibration}; {summary.seconds:.1f} s")
    return 0

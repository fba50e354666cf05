"""``facemark calibrate``: fit a model's box-to-crop calibration for face detectors.

    facemark calibrate MODEL --data DATASET [--detector NAME ...] [--limit 1000]
        [--test DATASET] [-o OUT.pt] [--skip-bad]

Runs each detector on the labelled faces of ``--data`` (best: the model's own training
set), fits where the model's training crop sits relative to that detector's boxes
(``facemark.inference.calibration``) and writes a copy of the model carrying the
calibrations (``-o``; a ``.pt`` model file). ``facemark.load`` and ``facemark detect`` then
crop every detected face the way the model was trained.

With ``--test`` it reports, per detector, the share of test faces found and the NME on
them with three crops: from the ground-truth landmarks (the best a detector could do),
from the detector box with the generic ``detector`` rule, and with the fitted calibration.
"""
from __future__ import annotations

import argparse

from facemark.cli.arguments import positive_int
from facemark.errors import ConfigError, SkipLog
from facemark.io import atomic_write_text


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="fit how each face detector's boxes map to a model's training crops",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a .pt or .ckpt landmark model")
    p.add_argument("--data", required=True, metavar="DATASET",
                   help="labelled faces to fit on (a path or FORMAT:PATH); several with commas",
                   )
    p.add_argument("--detector", nargs="+", default=None, metavar="NAME",
                   help="detectors to calibrate (default: every one that can run here without "
                        "a model path: dlib_hog, opencv_haar, ...)")
    p.add_argument("--limit", type=positive_int, default=1000, metavar="N",
                   help="fit on at most N faces, a seeded random choice (default 1000)")
    p.add_argument("--test", default=None, metavar="DATASET",
                   help="labelled faces to report NME with ground-truth vs detector crops on")
    p.add_argument("-o", "--output", default=None, metavar="OUT.pt",
                   help="write the model with its calibrations here (.pt)")
    p.add_argument("--report", default=None, metavar="FILE.md",
                   help="also write the table as Markdown")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images and bad records (listed at the end)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from facemark.inference.calibration import calibrate

    if args.output and Path(args.output).suffix.lower() not in (".pt", ".pth"):
        raise ConfigError(f"-o: expected a .pt file, got {args.output!r}")
    log = SkipLog(args.skip_bad)
    result = calibrate(args.model, args.data, detectors=args.detector, limit=args.limit,
                       test=args.test, skip_bad=log)
    table = result.table()
    print(table)
    if result.test_faces:
        print(f"NME: {result.scheme} normalisation, on the test faces the detector found "
              f"({result.test_faces} faces in --test)")
    if args.report:
        atomic_write_text(args.report, table + "\n")
    if args.output:
        result.save_model(args.output)
        print(f"wrote {args.output} with calibrations for "
              f"{', '.join(sorted(result.calibrations))}")
    if log.skipped:
        print(log.summary())
    return 0

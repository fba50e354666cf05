"""``facemark evaluate``: compare methods' landmarks with a dataset's ground truth.

    facemark evaluate SOURCE [SOURCE ...] --data DATASET [--format F] [--norm N]
        [--convert-to SCHEME] [--threshold 0.1] [--train DATASET]
        [--crop-rule 300w|gsl|...] [--detector NAME]
        [--refine [--refine-passes N] [--first-pass-size PX]] [--test-crops K] [--flip-test]
        [--subsets KIND]
        [--out DIR] [--save-predictions] [--skip-bad]

A SOURCE is a prediction file (``.json`` / ``.csv``, see docs/prediction-format.md), a
model (``.ckpt`` / ``.pt``; cropped from the ground truth, or from ``--detector NAME`` boxes),
``dlib`` (dlib's 68-point predictor on its HOG boxes, when installed), the word
``meanface`` (the mean-face baseline, fitted on ``--train``), or any kind registered
in ``facemark.evaluation.sources``; ``name=SOURCE`` names it in the report. The table is
printed; with ``--out`` the report (report.json, report.md) and the figures (ced.png,
per_landmark.png, best_worst.png) are written there.

Cross-domain (PIPNet's GSL setting): ``--convert-to 300w68`` converts the dataset's ground
truth first (WFLW's 98 points by PIPNet's conversion; COFW-68 is 68 points already), and
``--crop-rule gsl`` crops each dataset in the paper's cross-domain style (300W landmark box
x1.3, COFW-68 box x1.3, WFLW-68 box x1.2 less 20% at the top)::

    facemark evaluate model.pt --data wflw:WFLW --convert-to 300w68 --crop-rule gsl
"""
from __future__ import annotations

import argparse

from facemark.cli.arguments import nonnegative_int, positive_float, positive_int, refine_of
from facemark.data.schemes import NME_NORMS
from facemark.errors import ConfigError, DataError, SkipLog
from facemark.io import output_folder


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="NME, failure rate, AUC and plots of predictions against a dataset",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="prediction file (.json/.csv), 'meanface', or NAME=SOURCE")
    p.add_argument("--data", required=True, metavar="DATASET",
                   help="ground-truth dataset: a path or FORMAT:PATH")
    p.add_argument("--format", default=None, help="format of --data (sniffed when omitted)")
    p.add_argument("--scheme", default=None, metavar="SCHEME",
                   help="landmark scheme of --data: a name or a scheme file (.yaml/.json); "
                        "default: the format's, or the one with the file's number of points")
    p.add_argument("--norm", choices=NME_NORMS, default=None,
                   help="NME normalisation (default: the scheme's, e.g. inter_ocular for 68 points)")
    p.add_argument("--convert-to", default=None, metavar="SCHEME",
                   help="convert the dataset's ground truth to this landmark scheme first "
                        "(e.g. 300w68 for WFLW: evaluate a 68-point model on WFLW-68)")
    p.add_argument("--threshold", type=positive_float, default=0.1,
                   help="NME threshold for failure rate, AUC and CED (default 0.1)")
    p.add_argument("--train", default=None, metavar="DATASET",
                   help="training dataset for the meanface source")
    p.add_argument("--train-format", default=None, help="format of --train")
    p.add_argument("--crop-rule", default=None,
                   help="crop rule (facemark.data.crops.CROP_RULES), or gsl: the dataset's "
                        "cross-domain crop (300W x1.3, COFW-68 x1.3, WFLW-68 x1.2 top cut); "
                        "default: a model's own rule, 300w for meanface")
    p.add_argument("--flip-test", action="store_true",
                   help="for model sources: average with the prediction on the mirrored crop")
    p.add_argument("--detector", default=None, metavar="NAME",
                   help="for model sources: crop from this face detector's box (with the "
                        "model's calibration for it) instead of the ground truth; faces it "
                        "misses count as failures")
    p.add_argument("--refine", action="store_true",
                   help="with --detector: predict again on a crop from the first landmarks")
    p.add_argument("--refine-passes", type=positive_int, default=None, metavar="N",
                   help="with --refine: how many extra passes, each on a crop from the "
                        "previous landmarks (default 1)")
    p.add_argument("--first-pass-size", type=nonnegative_int, default=None, metavar="PX",
                   help="with --refine: crop side of the first pass (a multiple of 32 up to "
                        "the model's crop size; 0: the model's size; default: the model's "
                        "own setting, as facemark detect)")
    p.add_argument("--test-crops", type=positive_int, default=1, metavar="K",
                   help="for model sources: average the last pass over K crops, the face's "
                        "and copies moved around it by 4%% of its side (1, or 3 to 16; "
                        "default 1)")
    p.add_argument("--subsets", default="auto",
                   choices=("auto", "none", "300w", "wflw", "300vw"),
                   help="which subset tables to report (default: guessed from the dataset)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write report.json, report.md, ced.png, per_landmark.png, best_worst.png")
    p.add_argument("--save-predictions", action="store_true",
                   help="also write each source's predictions to DIR/predictions/NAME.json")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad records (listed at the end) instead of stopping at the first")
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from facemark.data.formats import open_dataset
    from facemark.evaluation import plots
    from facemark.evaluation.cross_domain import convert_dataset, resolve_crop_rule
    from facemark.data.predictions import write_predictions
    from facemark.evaluation.report import evaluate
    from facemark.inference.sources import resolve_predictions

    resolve_crop_rule(args.crop_rule, args.data, args.format, None)   # a bad rule stops first
    refine = refine_of(args)
    if refine and not args.detector:
        raise ConfigError("--refine needs --detector NAME (ground-truth crops need no refining)")
    if args.first_pass_size is not None and not refine:
        raise ConfigError("--first-pass-size needs --refine (it sizes the first of two passes)")
    if args.save_predictions and not args.out:
        raise ConfigError("--save-predictions needs --out DIR")
    if args.out:
        output_folder(args.out, "--out")   # a bad --out stops before any work
    log = SkipLog(args.skip_bad)
    samples = open_dataset(args.data, format=args.format, scheme=args.scheme, skip_bad=log)
    unlabelled = [s for s in samples if s.landmarks is None]
    if unlabelled:
        for s in unlabelled:
            log(DataError(s.source or s.image, "face has no ground-truth landmarks to evaluate"))
        samples = [s for s in samples if s.landmarks is not None]
    if not samples:
        raise ConfigError(f"--data {args.data}: no annotated faces to evaluate")
    crop_rule, notes = resolve_crop_rule(args.crop_rule, args.data, args.format,
                                         samples[0].scheme)
    samples, converted = convert_dataset(samples, args.convert_to)
    notes = converted + notes

    sets = {}
    for arg in args.sources:
        pset = resolve_predictions(arg, samples, train=args.train, train_format=args.train_format,
                                   crop_rule=crop_rule, skip_bad=log,
                                   scheme=samples[0].scheme, flip_test=args.flip_test,
                                   detector=args.detector, refine=refine,
                                   first_pass_size=args.first_pass_size,
                                   test_crops=args.test_crops)
        name = pset.method or arg
        base, k = name, 2
        while name in sets:  # two sources with one name: keep both, numbered
            name, k = f"{base}-{k}", k + 1
        pset.method = name
        sets[name] = pset

    report = evaluate(sets, samples, norm=args.norm, threshold=args.threshold,
                      subsets=args.subsets, dataset=args.data, notes=notes)
    report.print()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "report.json")
        report.write_markdown(out / "report.md")
        plots.plot_ced(report, out / "ced.png")
        plots.plot_per_landmark(report, out / "per_landmark.png")
        plots.plot_best_worst(report, out / "best_worst.png")
        if args.save_predictions:
            from facemark.data.formats import split_spec
            data_path = Path(split_spec(args.data)[1])
            root = data_path if data_path.is_dir() else data_path.parent
            for name, pset in sets.items():
                safe = "".join(c if c.isalnum() or c in "_.+-" else "_" for c in name)
                write_predictions(out / "predictions" / f"{safe}.json", pset, root=root)
        print(f"\nwrote report.json, report.md, ced.png, per_landmark.png, best_worst.png to {out}")
    if log.skipped:
        print(log.summary(), file=sys.stderr)
    return 0

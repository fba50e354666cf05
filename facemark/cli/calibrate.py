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


def _default_detectors() -> list[str]:
    from facemark.inference.detectors import available_detectors

    return [name for name, reason in available_detectors().items()
            if reason is None and name != "yunet"]


def _open(spec: str, skip_bad, scheme: str):
    from facemark.data.formats import open_dataset

    samples = []
    for part in [s for s in spec.split(",") if s]:
        samples += open_dataset(part, scheme=scheme, skip_bad=skip_bad)
    return [s for s in samples if s.landmarks is not None]


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from facemark.data.crops import crop_box
    from facemark.errors import ConfigError, SkipLog
    from facemark.evaluation.metrics import failure_rate, nme
    from facemark.inference.calibration import (INFO_KEY, calibrations_of, detect_samples,
                                                fit_calibration, to_crop_boxes)
    from facemark.inference.crop_predict import predict_samples
    from facemark.inference.detectors import create_detector
    from facemark.models.model_file import load_model, save_model

    if args.output and Path(args.output).suffix.lower() not in (".pt", ".pth"):
        raise ConfigError(f"-o: expected a .pt file, got {args.output!r}")
    model, info = load_model(args.model)
    log = SkipLog(args.skip_bad)
    train = _open(args.data, log, info.scheme)
    rng = np.random.default_rng(0)
    if len(train) > args.limit:
        train = [train[i] for i in sorted(rng.choice(len(train), args.limit, replace=False))]
    test = _open(args.test, log, info.scheme) if args.test else []
    names = args.detector or _default_detectors()
    calibrations = dict(calibrations_of(info.info))
    rows = []
    if test:
        truth = np.stack([s.landmarks for s in test])
        gt, _, ok = predict_samples(model, test, crop_rule=info.crop_rule,
                                    input_size=info.input_size, on_error=log)
        gt_nme = np.full(len(test), np.nan)
        gt_nme[ok] = nme(gt[ok], truth[ok], info.scheme)
    for name in names:
        detector = create_detector(name).load()
        cal, found = fit_calibration(train, detector, info.crop_rule, on_error=log,
                                     progress=True)
        calibrations[detector.box_style] = cal
        row = {"detector": detector.name, "box style": detector.box_style,
               "fit faces": f"{cal.faces}/{len(train)}",
               "dx": f"{cal.dx:+.3f}", "dy": f"{cal.dy:+.3f}", "scale": f"{cal.scale:.3f}"}
        if test:
            det = detect_samples(test, detector, on_error=log, progress=True)
            hit = det.found & ok
            # both crops of a face in one pass: each image is decoded once for the two
            generic_rule = lambda b: crop_box("detector", box=b)  # noqa: E731
            boxes = np.concatenate([to_crop_boxes(det.boxes, generic_rule),
                                    to_crop_boxes(det.boxes, cal.crop_box)])
            both, _, _ = predict_samples(model, test + test, crop_rule=info.crop_rule,
                                         input_size=info.input_size, on_error=log,
                                         crop_boxes=boxes)
            generic, fitted = both[:len(test)], both[len(test):]
            n_gen = nme(generic[hit], truth[hit], info.scheme)
            n_fit = nme(fitted[hit], truth[hit], info.scheme)
            # a missed face counts as a failure in the detector columns' FR
            fit_all = np.full(len(test), np.inf)
            fit_all[hit] = n_fit
            row.update({"found": f"{100 * det.recall:.1f}%",
                        "NME gt crop": f"{100 * gt_nme[hit].mean():.2f}%",
                        "NME box, generic": f"{100 * n_gen.mean():.2f}%",
                        "NME box, calibrated": f"{100 * n_fit.mean():.2f}%",
                        "FR calibrated (misses fail)": f"{100 * failure_rate(fit_all):.1f}%",
                        "ms/img": f"{1000 * det.seconds / max(len(test), 1):.1f}"})
        rows.append(row)
    keys = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if test:
        print(f"NME: {info.scheme} normalisation, on the test faces the detector found "
              f"({len(test)} faces in --test)")
    if args.report:
        from facemark.io import atomic_write_text

        atomic_write_text(args.report, table + "\n")
    if args.output:
        extra = {INFO_KEY: {k: c.to_dict() for k, c in sorted(calibrations.items())}}
        save_model(model, info, args.output, extra=extra)
        print(f"wrote {args.output} with calibrations for {', '.join(sorted(calibrations))}")
    if log.skipped:
        print(log.summary())
    return 0

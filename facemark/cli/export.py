"""``facemark export``: turn a trained model into a file for inference.

    facemark export MODEL -o OUT [--format onnx|pt] [--half] [--opset 17] [--static-batch]
        [--static-size]
        [--int8 --calibration DATASET [--calibration-size 256] [--eval DATASET]]

MODEL is a ``.ckpt`` (``facemark train``) or ``.pt`` model file; for ``--int8`` it may also
be a float ``.onnx`` export. ``--format`` defaults to OUT's suffix (``.onnx`` or ``.pt``).

* ``onnx``: the predictor (backbone, head and decode) as ONNX with a dynamic batch and the
  scheme, crop size and crop rule in its metadata; checked with ``onnx.checker`` and against
  PyTorch (within 1e-4) before it is written. Run it with ``facemark.inference.onnx_engine``.
  A model that also runs on smaller crops (PIPNet: multiples of its grid cell) gets one
  graph for every such side (checked at each), so ``facemark.load(OUT)`` runs its smaller
  first pass (``--first-pass-size`` of the .pt) in the same session; ``--static-size``
  fixes the graph to the model's own side.
* ``pt``: a facemark model file (weights + what inference needs, no optimiser state).
* ``--int8``: static int8 quantisation (QDQ, per-channel weights) calibrated on face crops
  from ``--calibration`` (a dataset, a crop cache folder, or a folder of face crops). When
  labelled faces are at hand (``--eval``, or the calibration dataset's faces not used for
  calibration) the NME of the float and the int8 model is printed.
"""
from __future__ import annotations

import argparse

from facemark.cli.arguments import nonnegative_int, positive_int
from facemark.errors import ConfigError, DataError, SkipLog

FORMATS = ("onnx", "pt")
_SUFFIX_FORMAT = {".onnx": "onnx", ".pt": "pt", ".pth": "pt"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained model to ONNX (optionally int8) or a .pt model file",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a .ckpt or .pt model (.onnx with --int8)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="file to write")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="onnx or pt (default: from OUT's suffix)")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--static-batch", action="store_true",
                   help="fix the ONNX batch size to 1 (default: any batch size)")
    p.add_argument("--static-size", action="store_true",
                   help="onnx: a graph for the model's own crop side only (default: every "
                        "side it runs on, for a smaller first pass)")
    p.add_argument("--half", action="store_true",
                   help="pt: store the weights as float16 (half the file; loaded as float32)")
    p.add_argument("--refine-passes", type=int, default=None, metavar="N",
                   help="pt: the extra passes facemark detect and facemark.load() make by "
                        "default with this model (0: one pass; default: keep the model's)")
    p.add_argument("--first-pass-size", type=nonnegative_int, default=None, metavar="PX",
                   help="pt: crop side of the first pass when a refine pass follows, by "
                        "default with this model (a multiple of 32 up to its crop size; 0: "
                        "its crop size; default: keep the model's)")
    p.add_argument("--int8", action="store_true",
                   help="quantise to int8 (onnx only; needs --calibration)")
    p.add_argument("--calibration", default=None, metavar="DATASET",
                   help="face crops to calibrate on: a dataset (PATH or FORMAT:PATH), a crop "
                        "cache folder, or a folder of face crops")
    p.add_argument("--calibration-format", default=None, metavar="FORMAT",
                   help="dataset format of --calibration (sniffed when omitted)")
    p.add_argument("--calibration-size", type=positive_int, default=256, metavar="N",
                   help="calibrate on at most N faces, drawn at random (default 256)")
    p.add_argument("--eval", default=None, metavar="DATASET",
                   help="labelled faces for the NME before/after quantisation (default: the "
                        "calibration dataset's faces left over after calibration)")
    p.add_argument("--eval-size", type=positive_int, default=500, metavar="N",
                   help="measure on at most N faces (default 500)")
    p.add_argument("--activations", choices=("uint8", "int8"), default="uint8",
                   help="int8 activation type (default uint8, onnxruntime's choice for CPU)")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights, for x86 CPUs without VNNI")
    p.set_defaults(handler=run)


def _format(args) -> str:
    from pathlib import Path

    suffix = Path(args.out).suffix.lower()
    fmt = args.format.lower() if args.format else _SUFFIX_FORMAT.get(suffix)
    if fmt is None:
        raise ConfigError(f"-o {args.out}: cannot tell the format from the suffix "
                          f"{suffix or '(none)'!r}; give --format onnx or --format pt")
    if fmt not in FORMATS:
        raise ConfigError(f"--format {args.format!r} is not supported; choose one of "
                          f"{', '.join(FORMATS)}")
    if args.int8 and fmt != "onnx":
        raise ConfigError("--int8 needs --format onnx (int8 quantisation runs on ONNX models)")
    if args.int8 and not args.calibration:
        raise ConfigError("--int8 needs --calibration DATASET (face crops to calibrate on)")
    if not args.int8 and (args.calibration or args.eval):
        raise ConfigError("--calibration and --eval are only used with --int8")
    return fmt


def _size(path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB"


def run(args) -> int:
    import tempfile
    from pathlib import Path

    fmt = _format(args)
    src, out = Path(args.model), Path(args.out)
    if not src.is_file():
        raise DataError(src, "model file not found")
    if src.resolve() == out.resolve():
        raise ConfigError(f"-o {out}: the output would overwrite MODEL")
    is_onnx = src.suffix.lower() == ".onnx"
    if is_onnx and not args.int8:
        raise ConfigError(f"{src}: already an ONNX file; to quantise it give --int8 "
                          "--calibration DATASET, to export again give the .pt/.ckpt")

    if args.refine_passes is not None and fmt != "pt":
        raise ConfigError("--refine-passes is for --format pt (an ONNX export carries the "
                          "value of the .pt it is made from)")
    if args.first_pass_size is not None and fmt != "pt":
        raise ConfigError("--first-pass-size is for --format pt (an ONNX export carries the "
                          "value of the .pt it is made from)")
    if args.static_size and fmt != "onnx":
        raise ConfigError("--static-size is for --format onnx (a .pt model runs at any side "
                          "its head takes)")
    if args.half and fmt != "pt":
        raise ConfigError("--half is for --format pt (ONNX exports stay float32)")
    if fmt == "pt":
        from facemark.models.model_file import load_model, save_model

        model, info = load_model(src)
        extra = {"exported_from": str(src)}
        if args.refine_passes is not None:
            from facemark.inference.landmarker import MAX_REFINE

            if not 0 <= args.refine_passes <= MAX_REFINE:
                raise ConfigError(f"--refine-passes: expected 0 to {MAX_REFINE}, got "
                                  f"{args.refine_passes}")
            extra["refine_passes"] = args.refine_passes
        if args.first_pass_size is not None:   # 0: the model's own size
            extra["first_pass_size"] = (model.check_other_input_size(args.first_pass_size)
                                        if args.first_pass_size else 0)
        save_model(model, info, out, extra=extra, half=args.half)
        print(f"wrote {out} ({_size(out)}): {info.model_config.get('name', 'model')}, scheme "
              f"{info.scheme}, {info.input_size} px, crop rule {info.crop_rule}")
        return 0

    from facemark.inference.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="facemark-export-") as tmpdir:
        if is_onnx:
            float_path = src
        else:
            from facemark.models.model_file import load_model

            model, info = load_model(src)
            float_path = out if not args.int8 else Path(tmpdir) / "float.onnx"
            export_onnx(model, float_path, info=info, opset=args.opset,
                        dynamic_batch=not args.static_batch,
                        dynamic_size=not args.static_size,
                        metadata={"exported_from": src.name})
            if not args.int8:
                sides = model.input_sizes() if not args.static_size else [info.input_size]
                print(f"wrote {out} ({_size(out)}): scheme {info.scheme}, {info.input_size} px "
                      f"(takes {', '.join(map(str, sides))}), crop rule {info.crop_rule}, "
                      f"opset {args.opset}, "
                      f"{'batch 1' if args.static_batch else 'any batch size'}; "
                      "onnxruntime matches PyTorch within 1e-4")
                return 0
        _quantise(args, float_path, out)
    return 0


def _quantise(args, float_path, out) -> None:
    import sys

    from facemark.inference.onnx_engine import OnnxLandmarkEngine
    from facemark.inference.quantize import (load_calibration_crops, quantization_report,
                                             quantize_onnx)

    engine = OnnxLandmarkEngine(float_path).load()
    log = SkipLog(skip_bad=True)
    n_cal = args.calibration_size
    # Draw calibration and (when no --eval) held-out faces from one shuffled pass.
    extra = 0 if args.eval else args.eval_size
    data = load_calibration_crops(args.calibration, engine.input_size, engine.crop_rule,
                                  scheme=engine.scheme, limit=n_cal + extra,
                                  format=args.calibration_format, skip_bad=log)
    calib, held_out = data.split(n_cal)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"calibrating on {len(calib)} face crop(s) from {args.calibration} ({data.kind})")
    quantize_onnx(float_path, out, calib.crops, activation_type=args.activations,
                  reduce_range=args.reduce_range)
    size_float = float_path.stat().st_size / 2**20
    print(f"wrote {out} ({_size(out)}; float {size_float:.1f} MB)")

    if args.eval:
        test = load_calibration_crops(args.eval, engine.input_size, engine.crop_rule,
                                      scheme=engine.scheme, limit=args.eval_size, skip_bad=log)
        where = args.eval
    elif held_out.landmarks is not None and len(held_out):
        test, where = held_out, f"{len(held_out)} faces of {args.calibration} not used for calibration"
    else:
        test, where = calib, f"the {len(calib)} calibration faces"
    if log.skipped:
        print(log.summary(), file=sys.stderr)
    if test.landmarks is None:
        print("accuracy change: not measured (no labelled faces; give --eval DATASET)")
        return
    int8 = OnnxLandmarkEngine(out).load()
    r = quantization_report(engine, int8, test.crops, test.landmarks, engine.scheme)
    print(f"accuracy change on {where}:")
    print("| model | NME % | faces |")
    print("|---|---:|---:|")
    print(f"| float | {100 * r['nme_float']:.2f} | {r['scored']} |")
    print(f"| int8 | {100 * r['nme_int8']:.2f} | {r['scored']} |")
    print(f"int8 - float: {100 * (r['nme_int8'] - r['nme_float']):+.2f} NME points; int8 points "
          f"move {r['shift_px_mean']:.2f} px on average (max {r['shift_px_max']:.1f} px) "
          f"in {engine.input_size} px crops")

"""``facemark bench``: what a model costs and how fast it runs on this machine.

    facemark bench cost [--models NAME[:KEY=VALUE,...] ...] [--input-size 256]
        [--threads 2] [--runs 50] [--onnx] [--out FILE]
    facemark bench speed MODEL [--photos DIR] [--threads N ...] [--runs 200] [--batch 8]
        [--detector opencv] [--max-photos 20] [--also FILE.onnx ...]
        [--dlib-predictor FILE] [--out FILE]

``cost`` prints a table like the PIPNet paper's Table 9: parameters, GFLOPs (multiply-adds,
the paper's unit, are GMACs) and the median CPU latency of one image (batch 1) in eager
PyTorch, with ``--onnx`` also through onnxruntime. Models are registry names, with
arguments after a colon: ``mapnet:net_stride=2``. The default list covers every head on
ResNet-18 and PIPNet on every backbone.

``speed`` times one trained model (``.pt``/``.ckpt``; it is exported to ONNX for the
comparison, or give a ``.onnx`` alone) in the same run: the landmark model alone per face
(onnxruntime vs eager PyTorch, batch 1 and ``--batch``), detection + landmarks on the
photos in ``--photos``, and a throughput pass over that folder; dlib's 68-point predictor
joins when dlib and a predictor file are available. Runs of the engines are interleaved so
that load from other processes affects them alike; absolute times on a busy machine are
still noisy, so the machine line gives the load average.
"""
from __future__ import annotations

import argparse

from facemark.cli.arguments import positive_int
from facemark.errors import ConfigError
from facemark.io import atomic_write_text

DEFAULT_COST_MODELS = ("pipnet_r18", "pipnet_nonrm", "coordnet", "mapnet:net_stride=2",
                       "mapnet", "grmi", "pipnet_mbv2", "pipnet_mbv3", "pipnet_r50",
                       "pipnet_rx50", "pipnet_r101")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="model cost table (params, GFLOPs, latency) and speed benchmarks",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench_command", metavar="{cost,speed}")
    p.set_defaults(handler=lambda args: p.print_help())

    c = sub.add_parser("cost", help="Table-9-like cost table of registered models",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help="registry names, optionally NAME:KEY=VALUE,... (default: every head "
                        "on ResNet-18 and PIPNet on every backbone)")
    c.add_argument("--input-size", type=positive_int, default=256, help="crop side (256)")
    c.add_argument("--num-points", type=positive_int, default=68, help="landmarks N (68)")
    c.add_argument("--threads", type=positive_int, default=2, help="CPU threads (2)")
    c.add_argument("--runs", type=positive_int, default=50,
                   help="timed runs per model; the median is reported (50)")
    c.add_argument("--onnx", action="store_true",
                   help="also export each model and time it with onnxruntime")
    c.add_argument("--out", default=None, metavar="FILE", help="also write the table here")
    c.set_defaults(handler=run_cost)

    s = sub.add_parser("speed", help="latency and throughput of one model, onnx vs torch",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", metavar="MODEL", help="a .pt/.ckpt model (or a .onnx export)")
    s.add_argument("--photos", default=None, metavar="DIR",
                   help="folder of photos for detection + landmarks and throughput")
    s.add_argument("--max-photos", type=positive_int, default=20,
                   help="photos used for the per-face pipeline latency (20)")
    s.add_argument("--detector", default="auto", help="face detector name (auto: dlib_hog, else opencv_haar)")
    s.add_argument("--threads", type=positive_int, nargs="+", default=[2],
                   help="CPU threads (2); several values time the model alone at each, the "
                        "photo sections use the first")
    s.add_argument("--runs", type=positive_int, default=200,
                   help="timed runs for the model-alone latency (200)")
    s.add_argument("--repeats", type=positive_int, default=5,
                   help="timed repeats per photo in the pipeline latency (5)")
    s.add_argument("--batch", type=positive_int, default=8,
                   help="the larger batch size timed besides batch 1 (8)")
    s.add_argument("--also", nargs="+", default=[], metavar="FILE",
                   help="more .onnx files (e.g. an int8 export) to time alongside")
    s.add_argument("--dlib-predictor", default=None, metavar="FILE",
                   help="dlib's shape_predictor_68_face_landmarks.dat")
    s.add_argument("--out", default=None, metavar="FILE", help="also write the report here")
    s.set_defaults(handler=run_speed)


# ---------------------------------------------------------------------------------------
# cost
# ---------------------------------------------------------------------------------------
def parse_model_spec(text: str) -> tuple[str, dict]:
    """``"mapnet:net_stride=2,num_nb=5"`` -> ("mapnet", {"net_stride": 2, "num_nb": 5})."""
    import ast

    name, _, rest = text.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--models {text!r}: expected NAME:KEY=VALUE,..., got {item!r}")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return name.strip(), kwargs


def run_cost(args) -> int:
    from facemark.inference.bench import cost_report

    specs = [parse_model_spec(m) for m in (args.models or DEFAULT_COST_MODELS)]
    text = cost_report(specs, num_points=args.num_points, input_size=args.input_size,
                       threads=args.threads, runs=args.runs, onnx=args.onnx, progress=True)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
        print(f"\nwrote {args.out}")
    return 0


# ---------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------
def run_speed(args) -> int:
    from facemark.inference.bench import speed_report

    text = speed_report(args.model, photos=args.photos, max_photos=args.max_photos,
                        detector=args.detector, threads=args.threads, runs=args.runs,
                        repeats=args.repeats, batch=args.batch, also=args.also,
                        dlib_predictor=args.dlib_predictor, progress=True)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
        print(f"\nwrote {args.out}")
    return 0

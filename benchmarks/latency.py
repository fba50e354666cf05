"""Latency of a landmark model per face: eager PyTorch vs its ONNX export vs int8 ONNX.

Builds the model with random weights (latency does not depend on the weights), saves it as a
facemark ``.pt``, makes an int8 ONNX copy calibrated on real face crops, and runs the
``facemark bench speed`` report on it for each crop size:

    PYTHONPATH=. python benchmarks/latency.py --sizes 128 256 --threads 1 2 \\
        --calibration ../shared/data/300w/afw --out-dir /tmp/fmx

Pin it to the cores you mean (``taskset -c 0,1``) and quote the load average the report
prints: on a shared machine absolute times move a lot, the speed-ups much less.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pipnet_r18", help="registry name (pipnet_r18)")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="crop sizes")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    p.add_argument("--runs", type=int, default=200, help="batch-1 runs (200)")
    p.add_argument("--batch", type=int, default=8, help="the larger batch (8)")
    p.add_argument("--calibration", default=None,
                   help="face dataset for the int8 calibration (none: no int8 row)")
    p.add_argument("--calibration-size", type=int, default=128)
    p.add_argument("--photos", default=None, help="folder of photos for the detector sections")
    p.add_argument("--out-dir", default="bench-out", help="where the files go (bench-out)")
    args = p.parse_args(argv)

    import torch

    from facemark.data.schemes import get_scheme
    from facemark.io import atomic_write_text
    from facemark.inference.bench import speed_report
    from facemark.inference.export import export_onnx
    from facemark.models.model_file import ModelInfo, save_model
    from facemark.inference.quantize import load_calibration_crops, quantize_onnx
    from facemark.models import create_model, model_arguments
    from facemark.models.cost import stand_in_mean_face

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scheme = get_scheme("300w68")
    for size in args.sizes:
        kwargs = {}
        if "mean_face" in model_arguments(args.model):
            kwargs["mean_face"] = stand_in_mean_face(scheme.num_points)
        torch.manual_seed(0)
        model = create_model(args.model, num_points=scheme.num_points, input_size=size, **kwargs)
        info = ModelInfo(scheme.name, size, "300w", {})
        pt = save_model(model.eval(), info, out / f"{args.model}_{size}.pt")
        also = []
        if args.calibration:
            float_path = export_onnx(model, out / f"{args.model}_{size}.onnx", info=info)
            crops = load_calibration_crops(args.calibration, size, "300w", scheme=scheme.name,
                                           limit=args.calibration_size).crops
            also.append(quantize_onnx(float_path, out / f"{args.model}_{size}.int8.onnx", crops))
        text = speed_report(pt, photos=args.photos, threads=args.threads, runs=args.runs,
                            batch=args.batch, also=also, progress=True)
        print(text)
        atomic_write_text(out / f"speed_{args.model}_{size}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Can the first pass run at a smaller input size? (issue #9, item 6: the second pass.)

The default path predicts each face twice: once on the crop from the detector's box, once
on the crop the first pass's landmarks give. The first pass only places the second crop,
so it might run on a smaller crop of the same region, with the same weights (the models
are fully convolutional; a stride-32 PIPNet head reads its grid size off the feature map).
For each first-pass size this prints the NME after the second pass at the model's own
size, paired against a first pass at full size, on labelled faces from the face
detector's boxes (choose on validation faces, never on a test set):

    python benchmarks/validation_list.py \\
        experiments/default/finetune/pipnet_mbv2_128_noflip_cont.yaml --out /tmp/val --sets 300w
    python benchmarks/first_pass_size.py --data /tmp/val/300w.txt [--model M.pt] [--sizes 96,128]

It also times onnxruntime on each size (one export of the model that takes every side, as
``facemark.load()`` runs it; batch 6, one thread, sizes timed in turn; ms per face), so a
row's accuracy and cost sit side by side.
Each face is matched to the detection whose box best overlaps its landmark box
(``calibration.match_face``: IoU >= 0.25; unmatched faces are left out and counted).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def onnx_ms_per_face(model, info, sizes: list[int], runs: int = 40, batch: int = 6) -> dict:
    """Median onnxruntime ms per face of ``model`` at each size (one graph of every side,
    one session, one thread), the sizes timed in turn (``compare_latency``)."""
    from facemark.evaluation.bench import compare_latency
    from facemark.inference.export import export_onnx, ort_session

    rng = np.random.default_rng(0)
    calls = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", info=info, dynamic_size=True)
        session = ort_session(path, threads=1)
        for s in sizes:
            feed = {session.get_inputs()[0].name: rng.random((batch, 3, s, s), dtype=np.float32)}
            calls[s] = lambda feed=feed: session.run(None, feed)
        timings = compare_latency(calls, runs=runs, warmup=2, per=batch)
    return {s: t.per_item_ms for s, t in timings.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="labelled dataset (e.g. a validation list)")
    p.add_argument("--model", default=None, help="model file (default: the bundled one)")
    p.add_argument("--sizes", default="32,64,96",
                   help="first-pass sizes besides the model's own (comma-separated; "
                        "multiples of the model's grid cell, 32)")
    p.add_argument("--no-timing", action="store_true", help="accuracy only")
    args = p.parse_args(argv)

    from tqdm import tqdm

    import facemark
    from facemark.data.formats import open_dataset
    from facemark.data.images import read_image
    from facemark.evaluation.metrics import nme
    from facemark.inference.calibration import match_face
    from facemark.inference.landmarker import refined_crop_box
    from facemark.models.crop_predict import predict_boxes

    lm = facemark.load(args.model, refine=0, threads=1, engine="torch")
    model, full = lm.engine_.model_, lm.info_.input_size
    sizes = [full] + sorted({int(s) for s in args.sizes.split(",")} - {full}, reverse=True)
    data = open_dataset(args.data, scheme=lm.scheme_.name)
    errors = {s: [] for s in sizes}
    missed = 0
    for k in tqdm(range(len(data)), desc="faces", unit="face"):
        rec = data[k]
        image = read_image(rec.image)
        gt = np.asarray(rec.landmarks, dtype=np.float64)
        dets = [np.asarray(d.box, dtype=np.float64) for d in lm.detect_faces(image)]
        j = match_face(dets, gt)
        if j is None:
            missed += 1
            continue
        first = lm.crop_box(dets[j], lm.detector_.box_style)
        for s in sizes:
            pts, _ = predict_boxes(model, [image], [first], s, False, lm.scheme_)
            second = refined_crop_box(lm.info_.crop_rule, pts[0], first)
            pts, _ = predict_boxes(model, [image], [second], full, False, lm.scheme_)
            errors[s].append(float(nme(pts[0][None], gt[None], lm.scheme_)[0]))
    ms = {} if args.no_timing else onnx_ms_per_face(model, lm.info_, sizes)
    base = np.asarray(errors[full])
    n = len(base)
    print(f"{n} faces ({missed} not found by the detector); second pass at {full} px")
    print(f"| first pass px | NME % | diff vs {full} px [95%] | FR@0.1 % | onnx ms/face, "
          "that size | both passes, ms/face |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        e = np.asarray(errors[s])
        d = 100 * (e - base)
        half = 1.96 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        cost = (f"{ms[s]:.2f} | {ms[s] + ms[full]:.2f}" if ms else "- | -")
        print(f"| {s} | {100 * e.mean():.2f} | {d.mean():+.3f} [{d.mean() - half:+.3f}, "
              f"{d.mean() + half:+.3f}] | {100 * (e > 0.1).mean():.2f} | {cost} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

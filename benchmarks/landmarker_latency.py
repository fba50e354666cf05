"""Per-face time of ``Landmarker.detect`` on given boxes: crops, model calls, refine passes.

Detects the faces of one photo once, then times ``lm.detect(image, boxes=those boxes,
box_style=the detector's)`` (what ``facemark detect`` does after detection), reporting the
median per face over ``--runs`` calls (``compare_latency``: blocks of 20, each after an
untimed call):

    PYTHONPATH=. python benchmarks/landmarker_latency.py ../shared/data/photos/group_t1.jpg \\
        --threads 2 --runs 80 [--model accurate] [--first-pass-size 96] [--refine 0] \\
        [--test-crops 3] [--dlib]

One setting per process, on purpose: several landmarkers in one process taking turns time
each other's idle onnxruntime threads spinning for work (with two threads on two cores that
doubled the detect path's time); run the command once per setting, a few times each.
``--dlib`` also times dlib's 68-point predictor on the same boxes, in the same process,
in blocks of 20 calls taking turns with the landmarker's (call by call, each evicted the
other's weights from the caches and both ran 1.3-1.7x slower), and prints the ratio:
issue #9's speed goal is the default path at most 2.5x dlib's predictor per face.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo", help="a photo with faces")
    p.add_argument("--model", default=None, help="model file or bundled name (default: default)")
    p.add_argument("--threads", type=int, default=2, help="engine threads (2)")
    p.add_argument("--runs", type=int, default=80, help="timed calls (80)")
    p.add_argument("--first-pass-size", type=int, default=None, metavar="PX",
                   help="first-pass crop side (0: the model's own; default: the model file's)")
    p.add_argument("--refine", type=int, default=None, metavar="N",
                   help="refine passes (default: the model file's)")
    p.add_argument("--test-crops", type=int, default=1, metavar="K",
                   help="crops averaged in the last pass (default 1)")
    p.add_argument("--dlib", action="store_true",
                   help="also time dlib's 68-point predictor on the same boxes, in turn")
    args = p.parse_args(argv)

    import facemark
    from facemark.data.images import read_image
    from facemark.errors import FacemarkError
    from facemark.evaluation.bench import compare_latency, dlib_landmarks, find_dlib_predictor

    try:
        image = read_image(args.photo)
        lm = facemark.load(args.model, threads=args.threads, refine=args.refine,
                           first_pass_size=args.first_pass_size, test_crops=args.test_crops)
    except FacemarkError as e:
        print(f"landmarker_latency: error: {e}", file=sys.stderr)
        return 2
    boxes = [f.box for f in lm.detect_faces(image)]
    if not boxes:
        print(f"landmarker_latency: error: {args.photo}: no face found", file=sys.stderr)
        return 2
    style = lm.detector_.box_style
    calls = {f"{lm.model_path_.name}, engine {lm.engine_.kind}, {args.threads} thread(s), "
             f"{lm.refine_} refine pass(es), first pass {lm.first_pass_size_} px, "
             f"{lm.test_crops} test crop(s)":
             lambda: lm.detect(image, boxes=boxes, box_style=style)}
    if args.dlib:
        predictor, what = find_dlib_predictor()
        if predictor is None:
            print(f"landmarker_latency: error: {what}", file=sys.stderr)
            return 2
        calls[what] = lambda: dlib_landmarks(predictor, image, boxes)
    # blocks of 20 timed calls in turn, one untimed call after each switch
    timings = compare_latency(calls, runs=args.runs, warmup=5, block=20)
    per_face = {name: t.median_ms / len(boxes) for name, t in timings.items()}
    for name, ms in per_face.items():
        print(f"{args.photo}: {len(boxes)} faces, {name}: {ms:.2f} ms per face "
              f"(median of {args.runs} calls)")
    if args.dlib:
        ours, theirs = per_face.values()
        print(f"ratio to dlib's predictor: {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-face time of ``Landmarker.detect`` on given boxes: crops, model calls, refine passes.

Detects the faces of one photo once, then times ``lm.detect(image, boxes=those boxes,
box_style=the detector's)`` (what ``facemark detect`` does after detection), reporting the
median per face over ``--runs`` calls after 3 warm-up calls:

    PYTHONPATH=. python benchmarks/landmarker_latency.py ../shared/data/photos/group_t1.jpg \\
        --threads 2 --runs 30

``--first-pass-sizes 0 96`` times one landmarker per first-pass size (0: the model's own
size) and ``--one-pass`` adds one without the refine pass; their calls alternate, so a
busy machine slows each alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo", help="a photo with faces")
    p.add_argument("--model", default=None, help="model file (default: the bundled one)")
    p.add_argument("--threads", type=int, default=2, help="engine threads (2)")
    p.add_argument("--runs", type=int, default=30, help="timed calls (30)")
    p.add_argument("--first-pass-sizes", type=int, nargs="*", default=None, metavar="PX",
                   help="one landmarker per first-pass size (0: the model's own; default: "
                        "the model file's setting only)")
    p.add_argument("--one-pass", action="store_true", help="also time one pass (no refine)")
    args = p.parse_args(argv)

    import facemark
    from facemark.data.images import read_image
    from facemark.errors import FacemarkError

    sizes = [None] if args.first_pass_sizes is None else args.first_pass_sizes
    try:
        image = read_image(args.photo)
        lms = {f"first pass {'model setting' if s is None else s or 'model size'}":
               facemark.load(args.model, threads=args.threads, first_pass_size=s) for s in sizes}
        if args.one_pass:
            lms["one pass"] = facemark.load(args.model, threads=args.threads, refine=0)
    except FacemarkError as e:
        print(f"landmarker_latency: error: {e}", file=sys.stderr)
        return 2
    first = next(iter(lms.values()))
    boxes = [f.box for f in first.detect_faces(image)]
    if not boxes:
        print(f"landmarker_latency: error: {args.photo}: no face found", file=sys.stderr)
        return 2
    style = first.detector_.box_style
    for lm in lms.values():
        for _ in range(3):
            lm.detect(image, boxes=boxes, box_style=style)
    times = {name: [] for name in lms}
    for _ in range(args.runs):
        for name, lm in lms.items():
            start = time.perf_counter()
            lm.detect(image, boxes=boxes, box_style=style)
            times[name].append(time.perf_counter() - start)
    for name, lm in lms.items():
        per_face = statistics.median(times[name]) / len(boxes) * 1000
        print(f"{args.photo}: {len(boxes)} faces, engine {lm.engine_.kind}, {lm.refine_} refine "
              f"pass(es), {name} ({lm.first_pass_size_} px): {per_face:.2f} ms per face "
              f"(median of {args.runs} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-face time of ``Landmarker.detect`` on given boxes: crops, model calls, refine passes.

Detects the faces of one photo once, then times ``lm.detect(image, boxes=those boxes,
box_style=the detector's)`` (what ``facemark detect`` does after detection), reporting the
median per face over ``--runs`` calls after 3 warm-up calls:

    PYTHONPATH=. python benchmarks/landmarker_latency.py ../shared/data/photos/group_t1.jpg \\
        --threads 2 --runs 30
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
    args = p.parse_args(argv)

    import facemark
    from facemark.data.images import read_image
    from facemark.errors import FacemarkError

    try:
        image = read_image(args.photo)
        lm = facemark.load(args.model, threads=args.threads)
    except FacemarkError as e:
        print(f"landmarker_latency: error: {e}", file=sys.stderr)
        return 2
    boxes = [f.box for f in lm.detect_faces(image)]
    if not boxes:
        print(f"landmarker_latency: error: {args.photo}: no face found", file=sys.stderr)
        return 2
    style = lm.detector_.box_style
    for _ in range(3):
        lm.detect(image, boxes=boxes, box_style=style)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        lm.detect(image, boxes=boxes, box_style=style)
        times.append(time.perf_counter() - start)
    per_face = statistics.median(times) / len(boxes) * 1000
    print(f"{args.photo}: {len(boxes)} faces, engine {lm.engine_.kind}, {lm.refine_} refine "
          f"pass(es): {per_face:.2f} ms per face (median of {args.runs} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

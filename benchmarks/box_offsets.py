"""How far a face detector's calibrated crop lies from the ground-truth crop.

Runs a detector on labelled faces, fits its box-to-crop calibration
(:func:`facemark.inference.calibration.fit_calibration`, the medians) and reports the spread
that a single calibration cannot remove: per face, the calibrated crop's centre minus the
ground-truth crop's centre (x and y) and its side divided by the ground-truth side, all in
ground-truth crop sides. This is the crop error a landmark model sees from detector boxes,
and what its training augmentation has to cover (experiments/default/
pipnet_mbv2_128_context.yaml).

    PYTHONPATH=. python benchmarks/box_offsets.py \\
        csv:../shared/data/ytf68/training_frames_keypoints.csv --limit 800 --detector dlib_hog
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def offsets(samples, detector: str, crop_rule: str = "300w") -> tuple[np.ndarray, object, float]:
    """(K, 3) dx, dy, side ratio of the K found faces, the calibration, and the recall."""
    from facemark.data.crops import crop_box
    from facemark.inference.calibration import fit_calibration
    from facemark.inference.detectors import create_detector

    cal, found = fit_calibration(samples, create_detector(detector), crop_rule, progress=True)
    rows = []
    for i, s in enumerate(samples):
        if not found.found[i]:
            continue
        truth = crop_box(crop_rule, landmarks=s.landmarks, box=s.box)
        got = cal.crop_box(found.boxes[i])
        side = truth[2] - truth[0]
        centre = ((got[:2] + got[2:]) - (truth[:2] + truth[2:])) / 2 / side
        rows.append([centre[0], centre[1], (got[2] - got[0]) / side])
    return np.array(rows), cal, found.recall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="labelled faces, e.g. csv:../shared/data/ytf68/test_frames_keypoints.csv")
    p.add_argument("--detector", default="dlib_hog", help="face detector name (default dlib_hog)")
    p.add_argument("--crop-rule", default="300w", help="the model's training crop rule (300w)")
    p.add_argument("--limit", type=int, default=0, help="use the first N faces (0: all)")
    args = p.parse_args(argv)

    from facemark.data.formats import open_dataset
    from facemark.errors import FacemarkError

    try:
        samples = [s for s in open_dataset(args.data) if s.landmarks is not None]
        if args.limit:
            samples = samples[:args.limit]
        rows, cal, recall = offsets(samples, args.detector, args.crop_rule)
    except FacemarkError as e:
        print(f"box_offsets: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.detector}: found {recall:.1%} of {len(samples)} faces; calibration dx "
          f"{cal.dx:+.3f} dy {cal.dy:+.3f} scale {cal.scale:.3f} (box units)\n")
    print("| in ground-truth crop sides | std | 5th pct | median | 95th pct |")
    print("|---|---:|---:|---:|---:|")
    for k, name in enumerate(("centre x offset", "centre y offset", "side ratio")):
        v = rows[:, k]
        lo, mid, hi = np.percentile(v, [5, 50, 95])
        print(f"| {name} | {v.std():.3f} | {lo:+.3f} | {mid:+.3f} | {hi:+.3f} |"
              if k < 2 else f"| {name} | {v.std():.3f} | {lo:.3f} | {mid:.3f} | {hi:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

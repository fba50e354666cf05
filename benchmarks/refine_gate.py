"""Does every face need the refine pass? NME of one pass, of always refining, and of refining
only faces whose first-pass landmark crop moved by more than a threshold from the detector's
crop, on labelled faces from the face detector's boxes (issue #9, item 6: the second pass).

The gap between the two crops is ``max(|dcx|, |dcy|, |dside|) / side`` of the first crop
(centre and side of the crop box from the first pass's landmarks against the crop box the
detector's box gave). Choose on the validation faces of a training run
(``benchmarks/validation_list.py``), never on a test set:

    python benchmarks/refine_gate.py --data /tmp/val/300w.txt [--model M.pt]

Each face is matched to the detection whose box best overlaps its landmark box (IoU >= 0.25;
unmatched faces are left out and counted).
"""
from __future__ import annotations

import argparse

import numpy as np


def crop_gap(first: np.ndarray, second: np.ndarray) -> float:
    """max(|centre shift x|, |centre shift y|, |side change|) / first side, both (4,) boxes."""
    side = first[2] - first[0]
    c1, c2 = (first[:2] + first[2:]) / 2, (second[:2] + second[2:]) / 2
    return float(max(abs(c2[0] - c1[0]), abs(c2[1] - c1[1]),
                     abs((second[2] - second[0]) - side)) / side)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="labelled dataset (e.g. a validation list)")
    p.add_argument("--model", default=None, help="model file (default: the bundled one)")
    p.add_argument("--thresholds", default="0,0.02,0.04,0.06,0.08,0.1,0.15,1")
    args = p.parse_args(argv)

    import facemark
    from facemark.data.formats import open_dataset
    from facemark.data.predictions import MATCH_IOU
    from facemark.data.images import read_image
    from facemark.evaluation.metrics import nme
    from facemark.inference.detectors.base import box_iou
    from facemark.inference.landmarker import refined_crop_box

    lm = facemark.load(args.model, refine=0, threads=1)
    data = open_dataset(args.data, scheme=lm.scheme_.name)
    rows, missed = [], 0
    for k in range(len(data)):
        rec = data[k]
        image = read_image(rec.image)
        gt = np.asarray(rec.landmarks, dtype=np.float64)
        gbox = np.asarray(rec.landmark_box(), dtype=np.float64)
        dets = [np.asarray(d.box, dtype=np.float64) for d in lm.detect_faces(image)]
        overlap = box_iou(np.asarray(dets).reshape(-1, 4), gbox)[:, 0] if dets else np.zeros(0)
        best = dets[int(overlap.argmax())] if dets and overlap.max() >= MATCH_IOU else None
        if best is None:
            missed += 1
            continue
        first_crop = lm.crop_box(best, lm.detector_.box_style)
        pts1, _ = lm._predict([image], [(0, first_crop)])
        second_crop = refined_crop_box(lm.info_.crop_rule, pts1[0], first_crop)
        pts2, _ = lm._predict([image], [(0, second_crop)])
        e1 = float(nme(pts1[0][None], gt[None], lm.scheme_)[0])
        e2 = float(nme(pts2[0][None], gt[None], lm.scheme_)[0])
        rows.append((crop_gap(first_crop, second_crop), e1, e2))
    gap, e1, e2 = map(np.asarray, zip(*rows))
    print(f"{len(rows)} faces ({missed} not found by the detector)")
    print("| refine when gap > | faces refined % | NME % | FR@0.1 % |")
    print("|---:|---:|---:|---:|")
    for t in (float(x) for x in args.thresholds.split(",")):
        e = np.where(gap > t, e2, e1)
        print(f"| {t:g} | {100 * (gap > t).mean():.0f} | {100 * e.mean():.2f} | "
              f"{100 * (e > 0.1).mean():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

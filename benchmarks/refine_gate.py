"""Does every face need the refine pass? NME of one pass, of always refining, and of refining
only faces whose first-pass landmark crop moved by more than a threshold from the detector's
crop, on labelled faces from the face detector's boxes (issue #9, item 6: the second pass).

The gap between the two crops is ``max(|dcx|, |dcy|, |dside|) / side`` of the first crop
(centre and side of the crop box from the first pass's landmarks against the crop box the
detector's box gave). Choose on the validation faces of a training run
(``benchmarks/validation_list.py``), never on a test set:

    python benchmarks/refine_gate.py --data /tmp/val/300w.txt [--model M.pt]

Each face is matched to the detection whose box best overlaps its landmark box
(``calibration.match_face``: IoU >= 0.25; unmatched faces are left out and counted).

It also prints one pass on the ground-truth crop (the crop rule on the true landmarks) and on
that crop moved by the detector crop's own offset turned in a random direction (same centre
distance, scale change of the same size and a random sign; seeded): if the random move costs
what the detector's move costs, one pass loses accuracy to any offset of that size, not to
something particular to the detector's boxes.
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


def moved_like(crop: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``reference`` (4,) moved as far as ``crop`` is from it, in a random direction: same
    centre distance, scale factor s or 1/s (random), as an (x1, y1, x2, y2) box."""
    side = reference[2] - reference[0]
    centre = (reference[:2] + reference[2:]) / 2
    shift = np.linalg.norm((crop[:2] + crop[2:]) / 2 - centre)
    scale = (crop[2] - crop[0]) / side
    angle = rng.uniform(0.0, 2 * np.pi)
    c = centre + shift * np.array([np.cos(angle), np.sin(angle)])
    half = side * (scale if rng.random() < 0.5 else 1.0 / scale) / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="labelled dataset (e.g. a validation list)")
    p.add_argument("--model", default=None, help="model file (default: the bundled one)")
    p.add_argument("--thresholds", default="0,0.02,0.04,0.06,0.08,0.1,0.15,1")
    args = p.parse_args(argv)

    import facemark
    from facemark.data.formats import open_dataset
    from facemark.data.images import read_image
    from facemark.evaluation.metrics import nme
    from facemark.inference.calibration import match_face
    from facemark.inference.landmarker import refined_crop_box

    lm = facemark.load(args.model, refine=0, threads=1)
    rng = np.random.default_rng(0)
    data = open_dataset(args.data, scheme=lm.scheme_.name)
    rows, missed = [], 0
    for k in range(len(data)):
        rec = data[k]
        image = read_image(rec.image)
        gt = np.asarray(rec.landmarks, dtype=np.float64)
        dets = [np.asarray(d.box, dtype=np.float64) for d in lm.detect_faces(image)]
        j = match_face(dets, gt)
        if j is None:
            missed += 1
            continue
        best = dets[j]
        first_crop = lm.crop_box(best, lm.detector_.box_style)
        pts1, _ = lm._predict([image], [(0, first_crop)], lm.engine_, lm.info_.input_size)
        second_crop = refined_crop_box(lm.info_.crop_rule, pts1[0], first_crop)
        pts2, _ = lm._predict([image], [(0, second_crop)], lm.engine_, lm.info_.input_size)
        true_crop = refined_crop_box(lm.info_.crop_rule, gt, first_crop)
        pts0, _ = lm._predict([image], [(0, true_crop)], lm.engine_, lm.info_.input_size)
        pts3, _ = lm._predict([image], [(0, moved_like(first_crop, true_crop, rng))],
                              lm.engine_, lm.info_.input_size)
        e1, e2, e0, e3 = (float(nme(p[0][None], gt[None], lm.scheme_)[0])
                          for p in (pts1, pts2, pts0, pts3))
        rows.append((crop_gap(first_crop, second_crop), e1, e2, e0, e3,
                     crop_gap(true_crop, first_crop)))
    gap, e1, e2, e0, e3, offset = map(np.asarray, zip(*rows))
    print(f"{len(rows)} faces ({missed} not found by the detector)")
    print("| refine when gap > | faces refined % | NME % | FR@0.1 % |")
    print("|---:|---:|---:|---:|")
    for t in (float(x) for x in args.thresholds.split(",")):
        e = np.where(gap > t, e2, e1)
        print(f"| {t:g} | {100 * (gap > t).mean():.0f} | {100 * e.mean():.2f} | "
              f"{100 * (e > 0.1).mean():.2f} |")
    print(f"\none pass, NME % (detector crop {np.median(offset):.3f} of the side from the "
          "ground-truth crop, median):")
    print("| crop | NME % |")
    print("|---|---:|")
    for name, e in (("ground-truth crop", e0), ("detector crop", e1),
                    ("ground-truth crop moved as far, random direction", e3),
                    ("refine crop (second pass)", e2)):
        print(f"| {name} | {100 * e.mean():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

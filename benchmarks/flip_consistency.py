"""Is a model's prediction on a mirrored crop the mirror of its prediction on the crop?

On ground-truth crops of labelled faces, prints the mean signed error in x and y (crop
pixels) of the plain prediction and of the mirrored crop's prediction mapped back (the two
halves ``--flip-test`` averages). A model that learned left and right alike has both near
the same value; a gap between them is what flip test averages in.

    PYTHONPATH=. python benchmarks/flip_consistency.py facemark/weights/default.pt \\
        pts:../shared/data/300w/helen csv:../shared/data/ytf68/training_frames_keypoints.csv
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="model file (.pt / .ckpt)")
    p.add_argument("data", nargs="+", help="labelled datasets")
    p.add_argument("--limit", type=int, default=200, help="faces per dataset (200)")
    args = p.parse_args(argv)

    import torch

    from facemark.data.crops import transform_points
    from facemark.data.formats import open_dataset
    from facemark.errors import FacemarkError
    from facemark.models.crop_predict import iter_crops, predict_crops
    from facemark.models.model_file import load_model

    try:
        model, info = load_model(args.model)
        model.eval()
        print("| dataset | faces | plain bias x | plain bias y | mirrored bias x | mirrored bias y |")
        print("|---|---:|---:|---:|---:|---:|")
        for spec in args.data:
            samples = [s for s in open_dataset(spec) if s.landmarks is not None][:args.limit]
            plain, mirrored = [], []
            for idx, crops, mats in iter_crops(samples, crop_rule=info.crop_rule,
                                               input_size=info.input_size):
                with torch.no_grad():
                    a, _ = predict_crops(model, crops)
                    both, _ = predict_crops(model, crops, flip_test=True, scheme=info.scheme)
                b = 2 * both - a           # the mirrored half of the flip-test average
                for j, i in enumerate(idx):
                    truth = transform_points(samples[i].landmarks, mats[j])
                    plain.append(np.nanmean(a[j] - truth, axis=0))
                    mirrored.append(np.nanmean(b[j] - truth, axis=0))
            px, py = np.mean(plain, axis=0)
            mx, my = np.mean(mirrored, axis=0)
            print(f"| {spec} | {len(plain)} | {px:+.2f} | {py:+.2f} | {mx:+.2f} | {my:+.2f} |")
    except FacemarkError as e:
        print(f"flip_consistency: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

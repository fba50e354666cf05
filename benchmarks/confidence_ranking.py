"""Does the per-landmark confidence rank the errors? (issue 10, section 4)

Predicts every face of a labelled dataset with a model, cropped from the ground truth by
the model's crop rule (as ``facemark evaluate MODEL --data DATASET`` does), and prints the
Spearman correlation between each point's confidence and its normalised error (NME of
the point): per point (all face/landmark pairs pooled), per landmark (within each
landmark index, averaged) and per face (mean confidence vs the face's NME). Negative
means informative: the less confident points are the worse ones. The confidence the
model returns (PIPNet: from the spread of the neighbour votes, ``models/heads/pip.py``)
is compared with the peak score (the authors' confidence). Writes ``confidence.png``
(mean and median error in ten confidence bins of equal counts) and ``confidence.json``.

    PYTHONPATH=. python benchmarks/confidence_ranking.py --out-dir /tmp/confidence
    PYTHONPATH=. python benchmarks/confidence_ranking.py --predictions out/predictions/default.json

``--predictions`` scores a file written by ``facemark evaluate MODEL --data DATASET --out
DIR --save-predictions`` instead of running the model (no peak-score comparison then).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
LFPW_TEST = ROOT / ".." / "shared" / "data" / "300w" / "lfpw" / "testset"
DEFAULT_MODEL = ROOT / "facemark" / "weights" / "default.pt"


class PeakScore(torch.nn.Module):
    """A model whose confidence is the clamped peak of each score map (the authors')."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def num_points(self) -> int:
        return self.model.num_points

    @torch.no_grad()
    def predict(self, images):
        out = self.model(images)
        points, _ = self.model.decode(out)
        return points, out["score"].flatten(2).max(dim=2).values.clamp(0.0, 1.0)


def measure(samples, model_path: Path | None, predictions: Path | None, flip_test: bool):
    """name -> (conf, nerr) for the model's confidence and, when run here, the peak score."""
    from facemark.evaluation.confidence import confidence_errors
    from facemark.data.predictions import PredictionSet, read_predictions
    from facemark.inference.sources import resolve_predictions

    if predictions is not None:
        pset = read_predictions(predictions, scheme=samples[0].scheme)
        return {"confidence": confidence_errors(pset, samples)}
    out = {"confidence": confidence_errors(
        resolve_predictions(str(model_path), samples, flip_test=flip_test), samples)}
    from facemark.models.crop_predict import predict_samples
    from facemark.models.model_file import load_model

    model, meta = load_model(model_path)
    if "score" in model.eval()(torch.zeros(1, 3, meta.input_size, meta.input_size)):
        points, conf, ok = predict_samples(PeakScore(model), samples, crop_rule=meta.crop_rule,
                                           input_size=meta.input_size, flip_test=flip_test)
        kept = [s for s, good in zip(samples, ok) if good]
        pset = PredictionSet.from_samples(kept, points[ok], method="peak",
                                          scheme=meta.scheme, scores=conf[ok])
        out["peak score"] = confidence_errors(pset, samples)
    return out


def main(argv=None) -> int:
    from facemark.data.formats import open_dataset
    from facemark.evaluation.confidence import binned, plot_confidence_ranking, ranking

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(LFPW_TEST), help="labelled dataset (default LFPW test)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model file (.pt / .ckpt)")
    p.add_argument("--predictions", default=None, type=Path,
                   help="a saved prediction file to score instead of running --model")
    p.add_argument("--flip-test", action="store_true")
    p.add_argument("--out-dir", default="confidence-ranking", type=Path)
    args = p.parse_args(argv)

    samples = [s for s in open_dataset(args.data) if s.landmarks is not None]
    model = Path(args.model)
    results = measure(samples, model, args.predictions, args.flip_test)
    if args.predictions is None:
        sha1 = hashlib.sha1(model.read_bytes()).hexdigest()
        print(f"model {model} (sha1 {sha1}), {len(samples)} faces of {args.data}, "
              f"ground-truth crops{', flip test' if args.flip_test else ''}")
    else:
        sha1 = None
        print(f"predictions {args.predictions}, {len(samples)} faces of {args.data}")
    print("\nSpearman correlation of confidence with point error (negative = informative)")
    print(f"{'confidence':<12} {'per point':>10} {'per landmark':>13} {'per face':>9} "
          f"{'NME %':>7} {'points':>7}")
    report, curves = {"data": str(args.data), "model": str(model), "sha1": sha1}, {}
    for name, (conf, nerr) in results.items():
        r = ranking(conf, nerr)
        curves[name] = binned(conf, nerr, bins=10)
        print(f"{name:<12} {r['per_point']:>+10.3f} {r['per_landmark']:>+13.3f} "
              f"{r['per_face']:>+9.3f} {100 * np.nanmean(nerr):>7.2f} {r['points']:>7d}")
        report[name] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                        for k, v in r.items()} | {"bins": curves[name]}
    print("\nmean point error (%) by confidence decile, lowest confidence first")
    for name, rows in curves.items():
        print(f"{name:<12} " + " ".join(f"{100 * r['mean_error']:5.2f}" for r in rows))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_confidence_ranking(
        curves, args.out_dir / "confidence.png",
        title=f"{Path(args.data).name}: point error vs confidence"
              + (f" (model sha1 {sha1[:12]})" if sha1 else ""))
    (args.out_dir / "confidence.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {png} and {args.out_dir / 'confidence.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

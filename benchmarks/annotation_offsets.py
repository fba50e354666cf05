"""Mean signed error of a model on a run's validation faces, per training set: does one
model average two annotation conventions?

    python benchmarks/annotation_offsets.py \
        experiments/default/finetune/pipnet_mbv2_128_lightaug.yaml \
        m=facemark/weights/default.pt [other=RUN/checkpoints/best.ckpt ...]

For each model and each ``data.train`` set with faces in the config's seeded validation
split (the faces ``val/nme`` scores, ground-truth crops as the run saw them), it prints the
NME, the mean offset of the predicted points from the labels (x right, y down; in pixels of
the model crop and in % of the scheme's normalising distance), the points' mean scale error
about their centre, and the NME with that set's mean offset removed afterwards: a bound on
what learning the set's offset could give, fitted on the same faces. Needs the crop caches
the training run built.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from facemark.data.schemes import get_scheme
from facemark.errors import DataError
from facemark.evaluation.metrics import nme, normalizing_distance
from facemark.models.model_file import load_model
from facemark.training.config import load_config
from facemark.training.datamodule import LandmarkDataModule


def predict(model, data: LandmarkDataModule):
    """Predicted and true points (F, N, 2) in normalised crop coordinates, and each face's
    training-set index (F,)."""
    pred, true, domain = [], [], []
    with torch.no_grad():
        for batch in data.val_dataloader():
            points, _ = model.predict(batch["image"])
            t = batch["landmarks"].clone()
            t[~batch["mask"]] = float("nan")
            pred.append(points.float().numpy())
            true.append(t.numpy())
            domain.append(batch["domain"].numpy())
    return np.concatenate(pred), np.concatenate(true), np.concatenate(domain)


def offsets(pred: np.ndarray, true: np.ndarray, scheme, size: int) -> dict:
    """NME, mean offset and scale error of one set's faces, and its NME without the offset."""
    dist = normalizing_distance(true, scheme)[:, None]                     # (F, 1)
    err = pred - true                                                      # (F, N, 2)
    shift = np.nanmean(err, axis=(0, 1))                                   # (2,)
    centred = true - np.nanmean(true, axis=1, keepdims=True)
    spread = err - np.nanmean(err, axis=1, keepdims=True)
    scale = np.nansum(spread * centred, axis=(1, 2)) / np.nansum(centred ** 2, axis=(1, 2))

    def mean_nme(points):
        return 100 * float(np.nanmean(nme(points, true, scheme)))

    return {"faces": len(pred), "nme": mean_nme(pred), "shift_px": shift * size,
            "shift_pct": 100 * shift / float(np.mean(dist)),
            "scale_pct": 100 * float(np.mean(scale)), "nme_without": mean_nme(pred - shift)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="the training config whose validation split to use")
    p.add_argument("models", nargs="+", metavar="NAME=MODEL", help=".pt or .ckpt files")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    data = LandmarkDataModule(cfg.data, batch_size=32, seed=cfg.seed)
    data.setup("fit")
    scheme = get_scheme(cfg.data.scheme)
    print(f"| model | set | faces | NME % | mean offset x, y (crop px) | (% of "
          f"{scheme.nme_norm}) | scale error % | NME % without the offset |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for item in args.models:
        name, _, path = item.rpartition("=")
        try:
            model, info = load_model(path)
        except DataError as e:
            raise SystemExit(str(e)) from None
        if int(info.input_size) != cfg.data.input_size:
            raise SystemExit(f"{path}: a {info.input_size} px model; this config's crops are "
                             f"{cfg.data.input_size} px (give a config of its size)")
        pred, true, domain = predict(model, data)
        for d in np.unique(domain):
            m = domain == d
            r = offsets(pred[m], true[m], scheme, cfg.data.input_size)
            print(f"| {name or path} | {'/'.join(cfg.data.train[d].split('/')[-2:])} | {r['faces']} | "
                  f"{r['nme']:.2f} | {r['shift_px'][0]:+.2f}, {r['shift_px'][1]:+.2f} | "
                  f"{r['shift_pct'][0]:+.2f}, {r['shift_pct'][1]:+.2f} | "
                  f"{r['scale_pct']:+.2f} | {r['nme_without']:.2f} |")


if __name__ == "__main__":
    main()

"""Write the validation faces of a training config as a dataset list, so that choices made
after training (refine passes, flip test, checkpoint) are measured on faces the run held
out for validation and never on a test set.

    python benchmarks/validation_list.py experiments/default/pipnet_mbv2_128_300w_imagenet.yaml \
        --out /tmp/val --sets 300w
    facemark evaluate m=MODEL.pt --data /tmp/val/300w.txt --detector dlib_hog

For each training dataset of the config (``pts:`` sets are written as ``.pts`` list files;
with ``--sets 300w`` only those), it rebuilds the config's seeded validation split (the
same indices ``LandmarkDataModule`` draws) and writes one line per validation face. Needs
the crop caches the training run built.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facemark.training.config import load_config
from facemark.training.datamodule import LandmarkDataModule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--sets", choices=("300w", "all"), default="300w",
                   help="300w: only the .pts datasets (default)")
    p.add_argument("--trained-by-seed", type=int, nargs="*", default=[], metavar="S",
                   help="also print how many of these faces a split drawn with seed S trains "
                        "on (self-training rounds drew seed + round before that was fixed)")
    args = p.parse_args()
    cfg = load_config(args.config)
    data = LandmarkDataModule(cfg.data, batch_size=cfg.optim.batch_size, seed=cfg.seed)
    data.setup("fit")
    val_idx = np.asarray(data.val_set.indices)
    ends = np.cumsum([len(c) for c in data.train_caches])
    lines = []
    for spec, cache, start, end in zip(cfg.data.train, data.train_caches,
                                       np.r_[0, ends[:-1]], ends):
        if args.sets == "300w" and not spec.startswith("pts:"):
            continue
        for i in val_idx[(val_idx >= start) & (val_idx < end)] - start:
            lines.append(str(Path(cache.records[int(i)]["image"]).resolve()))
    keep = np.concatenate([np.arange(a, b) for spec, a, b in
                           zip(cfg.data.train, np.r_[0, ends[:-1]], ends)
                           if args.sets == "all" or spec.startswith("pts:")])
    mine = set(val_idx.tolist()) & set(keep.tolist())
    for seed in args.trained_by_seed:
        other = LandmarkDataModule(cfg.data, batch_size=cfg.optim.batch_size, seed=seed)
        other.setup("fit")
        trained = mine - set(other.val_set.indices)
        print(f"a split with seed {seed} trains on {len(trained)} of these {len(mine)} faces")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("300w.txt" if args.sets == "300w" else "all.txt")
    path.write_text("\n".join(lines) + "\n")
    print(f"{path}: {len(lines)} validation faces")


if __name__ == "__main__":
    main()

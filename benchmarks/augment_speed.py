"""Augmented 256 px crops per second on one CPU core, through LandmarkDataset.__getitem__.

Builds a crop cache from ``../shared/data/300w`` (or reuses ``--cache``), then times the
PIPNet augmentation recipe plus the tensor conversion in a single process with one thread
for torch and OpenCV. The goal is at least 1000 crops/s per core.

    python benchmarks/augment_speed.py [--items 3000] [--repeats 3] [--preset pipnet]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "300w"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="300-W folder (default ../shared/data/300w)")
    parser.add_argument("--cache", help="existing crop cache to use instead of building one")
    parser.add_argument("--items", type=int, default=3000, help="items per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (the best is reported)")
    parser.add_argument("--preset", default="pipnet", choices=("pipnet", "sepbn", "none"))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)

    import cv2
    import torch

    from facemark.data.augment import Augment
    from facemark.data.cache import CropCache, build_cache
    from facemark.data.dataset import LandmarkDataset
    from facemark.data.formats import open_dataset

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.cache:
            cache = CropCache.open(args.cache)
        else:
            if not Path(args.data).is_dir():
                print(f"shared data not found at {args.data}; pass --data or --cache", file=sys.stderr)
                return 2
            t0 = time.perf_counter()
            cache = build_cache(open_dataset(args.data), Path(tmp) / "cache", size=args.size,
                                rule="300w", progress=False)
            print(f"built a cache of {len(cache)} crops in {time.perf_counter() - t0:.1f} s")
        aug = None if args.preset == "none" else getattr(Augment, args.preset)(cache.scheme, args.size)
        ds = LandmarkDataset(cache, aug, seed=0)
        n = len(ds)
        for i in range(min(n, 200)):                 # warm up: page cache, allocator
            ds[i]
        rates = []
        for r in range(args.repeats):
            ds.set_epoch(r)
            t0 = time.perf_counter()
            for i in range(args.items):
                ds[i % n]
            rates.append(args.items / (time.perf_counter() - t0))
        print(f"preset {args.preset}, {args.size} px, 1 thread: "
              + ", ".join(f"{v:.0f}" for v in rates) + " items/s per pass")
        print(f"augmented crops per second per core: {max(rates):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

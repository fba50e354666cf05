"""Training sets of the SepBN cross-protocol comparison (experiments/sepbn_shared/README.md).

Two training datasets with different landmark schemes, as in the SepBN paper:

- ``d300w`` (300w68): 300-W AFW + Helen train + LFPW train, the 68 points as released;
- ``ytf24`` (ytf24.yaml): the ytf68 training frames relabelled to 24 points by
  ``facemark.data.convert`` (300w68 -> ytf24, each point copied by name).

Each dataset is split into three pose domains by a yaw proxy from its 68 ground-truth
points (nose tip 30 minus the mid-point of the outer eye corners 36/45, over their
distance): the lower third ``left``, the middle ``frontal``, the upper ``right``. These
are the domains of the brute-force SepBN arm (the paper splits AFLW into frontal / left /
right profile faces); every arm trains on the same three lists per dataset.

``--keep`` (default 0.25) keeps that fraction of each list (seeded): the CPU budget of the
comparison (README.md) allows two passes over about 1,370 faces at 128 px.

Writes under OUT (default ../../../fm-cache/sepbn_shared, beside the checkout)::

    d300w/{left,frontal,right}.txt          lists of 300-W .pts files (absolute)
    ytf24/{left,frontal,right}.csv          name, x0, y0, ..., x23, y23 (0-based pixels)
    ytf24/{left,frontal,right} -> ytf68/training   image folders (symlinks)
    d300w/all.txt, ytf68sub/all.csv (+ all -> ytf68/training)   the same faces in one
        list each (ytf in its 68 points): the training faces of the mean-face reference

Run from the repository root: python experiments/sepbn_shared/make_data.py
"""
from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from facemark.data.convert import convert_landmarks
from facemark.data.formats import pts as pts_format
from facemark.data.schemes import get_scheme

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"
DOMAINS = ("left", "frontal", "right")


def yaw_proxy(points: np.ndarray) -> np.ndarray:
    """(B, 68, 2) -> (B,): nose tip offset from the eyes' mid-point, in eye distances."""
    r, l, nose = points[:, 36], points[:, 45], points[:, 30]
    mid = (r + l) / 2
    axis = l - r
    dist = np.linalg.norm(axis, axis=1)
    return ((nose - mid) * axis).sum(axis=1) / dist ** 2


def domains(points: np.ndarray) -> np.ndarray:
    """Domain index 0/1/2 (left/frontal/right) by the terciles of :func:`yaw_proxy`."""
    yaw = yaw_proxy(points)
    lo, hi = np.quantile(yaw, [1 / 3, 2 / 3])
    return np.where(yaw < lo, 0, np.where(yaw < hi, 1, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE.parents[2] / "fm-cache" / "sepbn_shared"))
    ap.add_argument("--keep", type=float, default=0.25, help="fraction of each list kept")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)

    def subset(indices: np.ndarray) -> np.ndarray:
        n = int(round(len(indices) * args.keep))
        return np.sort(rng.choice(indices, n, replace=False))

    # 300-W, 68 points, as released
    files = []
    for sub in ("afw", "helen/trainset", "lfpw/trainset"):
        files += sorted((DATA / "300w" / sub).rglob("*.pts"))
    pts = np.stack([pts_format.read(f)[0].landmarks for f in files])
    dom = domains(pts)
    (out / "d300w").mkdir(parents=True, exist_ok=True)
    every = []
    for k, name in enumerate(DOMAINS):
        lines = [str(files[i]) for i in subset(np.flatnonzero(dom == k))]
        (out / "d300w" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        every += lines
        print(f"d300w/{name}: {len(lines)} faces")
    (out / "d300w" / "all.txt").write_text("\n".join(every) + "\n")

    # ytf68 training frames -> ytf24
    table = DATA / "ytf68" / "training_frames_keypoints.csv"
    with open(table, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    names = [r[0] for r in rows]
    pts = np.array([[float(v) for v in r[1:]] for r in rows]).reshape(len(rows), 68, 2)
    pts24 = convert_landmarks(pts, "300w68", get_scheme(HERE / "ytf24.yaml"))
    dom = domains(pts)
    (out / "ytf24").mkdir(parents=True, exist_ok=True)
    (out / "ytf68sub").mkdir(parents=True, exist_ok=True)
    every = []
    for k, name in enumerate(DOMAINS):
        keep = subset(np.flatnonzero(dom == k))
        every += keep.tolist()
        with open(out / "ytf24" / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            for i in keep:
                w.writerow([names[i], *(f"{v:.3f}" for v in pts24[i].reshape(-1))])
        link = out / "ytf24" / name
        if not link.exists():
            os.symlink(DATA / "ytf68" / "training", link)
        print(f"ytf24/{name}: {len(keep)} faces")
    with open(out / "ytf68sub" / "all.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        for i in every:
            w.writerow([names[i], *(f"{v:.3f}" for v in pts[i].reshape(-1))])
    if not (out / "ytf68sub" / "all").exists():
        os.symlink(DATA / "ytf68" / "training", out / "ytf68sub" / "all")


if __name__ == "__main__":
    main()

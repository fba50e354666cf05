"""Build the 3D mean face of ``facemark/data/templates.py`` from 2D 300-W annotations.

Head pose needs a 3D face. Rather than copy a model from elsewhere, this recovers one from
the 68-point training annotations by rigid structure from motion (Tomasi & Kanade 1992,
with the metric upgrade for a scaled orthographic camera): every face is one "view" of an
average face under its own rotation and scale, so the centred, scale-normalised 2D points
of F faces form a (2F, P) matrix of rank 3 up to noise and differences between people.

1. Points 17-67 of every fully annotated face (brows, nose, eyes, mouth; the jaw line is
   left out: it is the face's silhouette, not a fixed point on it), centred and scaled to
   unit norm per face.
2. Rank-3 SVD ``W = M S``; a symmetric Q Q^T is solved so that each face's two rows of
   ``M Q`` are orthogonal and of equal length (a scaled rotation); ``S <- Q^-1 S``.
3. The frame: x from the subject's right to their left (mean of the mirror pairs), y from
   the eyes down to the mouth, z = x cross y (away from the camera for a frontal face);
   the sign of depth is fixed so that the nose tip is nearest the camera (orthographic
   views leave it open).
4. Mirror symmetry by the scheme's mirror pairs; origin at the nose tip (``nose_bridge_03``);
   millimetres by setting the outer eye corners 90 mm apart (a typical adult value; only
   the translation of a pose depends on it).

    PYTHONPATH=. python benchmarks/make_mean_face_3d.py            # print the table
    PYTHONPATH=. python benchmarks/make_mean_face_3d.py --check    # compare with the package

Split halves of the data give points within about 1 mm of each other.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "300w"
SETS = ("afw", "helen/trainset", "lfpw/trainset")
FIRST = 17          # points before this (the jaw line) are not part of the model
EYE_SPAN_MM = 90.0


def load_points(root: Path = DATA) -> np.ndarray:
    """(F, 68, 2) ground-truth points of the 300-W training sets (fully annotated faces)."""
    from facemark.data.formats import open_dataset

    faces = [s.landmarks for name in SETS for s in open_dataset(root / name)]
    pts = np.stack(faces).astype(np.float64)
    return pts[np.isfinite(pts).all(axis=(1, 2))]


def _pair_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients of the 6 unknowns of a symmetric L in ``a @ L @ b``."""
    return np.array([a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0],
                     a[1] * b[1], a[1] * b[2] + a[2] * b[1], a[2] * b[2]])


def factorise(points: np.ndarray) -> np.ndarray:
    """(P, 3) metric shape (arbitrary rotation and unit scale) from (F, P, 2) views."""
    c = points - points.mean(axis=1, keepdims=True)
    c /= np.sqrt((c ** 2).sum(axis=(1, 2)))[:, None, None]
    w = np.transpose(c, (0, 2, 1)).reshape(-1, c.shape[1])          # (2F, P)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    m = u[:, :3] * np.sqrt(s[:3])
    shape = np.sqrt(s[:3])[:, None] * vt[:3]
    rows, norm = [], np.zeros(6)
    for f in range(len(c)):
        m1, m2 = m[2 * f], m[2 * f + 1]
        rows += [_pair_row(m1, m1) - _pair_row(m2, m2), _pair_row(m1, m2)]
        norm += _pair_row(m1, m1) / len(c)
    a = np.vstack([np.array(rows), 1e3 * norm])
    b = np.r_[np.zeros(len(rows)), 1e3]
    l6 = np.linalg.lstsq(a, b, rcond=None)[0]
    lmat = np.array([[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]])
    vals, vecs = np.linalg.eigh(lmat)
    if vals.min() <= 0:
        raise RuntimeError(f"metric upgrade failed: Q Q^T is not positive definite {vals}")
    q = vecs * np.sqrt(vals)
    return (np.linalg.inv(q) @ shape).T


def to_model_frame(shape: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Rotate, mirror-symmetrise, centre on the nose tip and scale to mm (step 3-4)."""
    from facemark.data.schemes import get_scheme

    scheme = get_scheme("300w68")
    idx = {n: i for i, n in enumerate(names)}
    pairs = []                                  # (subject's right, subject's left)
    for a, b in scheme.mirror:
        if a in idx and b in idx:
            side = scheme.sides[scheme.index(a)]
            right_first = side == "right" or (side == "" and a < b)  # lip pairs: 00 = right
            pairs.append((a, b) if right_first else (b, a))
    ex = np.mean([shape[idx[lf]] - shape[idx[rt]] for rt, lf in pairs], axis=0)
    ex /= np.linalg.norm(ex)
    eyes = np.mean([shape[idx[n]] for n in names if n.startswith("eye_")], axis=0)
    mouth = np.mean([shape[idx[n]] for n in names if n.startswith("lip_")], axis=0)
    ey = mouth - eyes
    ey -= ex * (ey @ ex)
    ey /= np.linalg.norm(ey)
    ez = np.cross(ex, ey)
    pts = shape @ np.stack([ex, ey, ez]).T
    tip = pts[idx["nose_bridge_03"]]
    eye_z = np.mean([pts[idx[n]][2] for n in ("eye_r_00", "eye_l_03")])
    if tip[2] > eye_z:                          # depth reversal: put the nose in front
        pts[:, 2] *= -1
    mirrored = pts * [-1.0, 1.0, 1.0]
    sym = pts.copy()
    for rt, lf in pairs:
        sym[idx[rt]] = (pts[idx[rt]] + mirrored[idx[lf]]) / 2
        sym[idx[lf]] = (pts[idx[lf]] + mirrored[idx[rt]]) / 2
    paired = {n for p in pairs for n in p}
    for n in names:
        if n not in paired:
            sym[idx[n], 0] = 0.0
    sym -= sym[idx["nose_bridge_03"]]
    sym *= EYE_SPAN_MM / np.linalg.norm(sym[idx["eye_r_00"]] - sym[idx["eye_l_03"]])
    return {n: sym[i] for n, i in idx.items()}


def build() -> dict[str, np.ndarray]:
    from facemark.data.schemes import get_scheme

    names = get_scheme("300w68").names[FIRST:]
    points = load_points()
    return to_model_frame(factorise(points[:, FIRST:]), names)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true",
                   help="compare with facemark.data.templates.MEAN_FACE_3D instead of printing")
    args = p.parse_args(argv)
    if not (DATA / "afw").is_dir():
        print(f"skipped: {DATA} is absent (needs ../shared/data)")
        return 0
    model = build()
    if args.check:
        from facemark.data.templates import MEAN_FACE_3D

        diff = max(np.abs(np.asarray(MEAN_FACE_3D.points[n]) - v).max() for n, v in model.items())
        print(f"largest difference from the package's table: {diff:.2f} mm")
        return 0 if diff < 0.051 else 1
    for n, v in model.items():
        print(f'    "{n}": ({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}),')
    return 0


if __name__ == "__main__":
    sys.exit(main())

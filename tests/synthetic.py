"""Synthetic annotated faces for tests that must run without ../shared/data.

The "faces" are drawn from the 68-point template with random similarity transforms and
jitter: dark dots on a light face-coloured ellipse, so a model can actually learn them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def template68() -> np.ndarray:
    """A plausible 68-point frontal face in a unit box (x, y in [0, 1])."""
    t = np.linspace(-np.pi * 0.95, -np.pi * 0.05, 17)
    jaw = np.stack([0.5 - 0.42 * np.cos(t), 0.45 - 0.5 * np.sin(t)], 1)
    brow_r = np.stack([np.linspace(0.15, 0.42, 5), [0.33, 0.29, 0.28, 0.29, 0.31]], 1)
    brow_l = brow_r[::-1] * [-1, 1] + [1, 0]
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.58, 4)], 1)
    base = np.stack([np.linspace(0.42, 0.58, 5), [0.63, 0.645, 0.65, 0.645, 0.63]], 1)

    def eye(cx):
        a = np.array([0, 1, 2, 3, 4, 5]) * np.pi / 3
        return np.stack([cx - 0.07 * np.cos(a), 0.42 - 0.025 * np.sin(a)], 1)

    eye_r, eye_l = eye(0.32), eye(0.68)[[3, 2, 1, 0, 5, 4]]
    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    lip_out = np.stack([0.5 - 0.13 * np.cos(a), 0.78 - 0.06 * np.sin(a)], 1)
    b = np.linspace(0, 2 * np.pi, 9)[:-1]
    lip_in = np.stack([0.5 - 0.09 * np.cos(b), 0.78 - 0.025 * np.sin(b)], 1)
    return np.concatenate([jaw, brow_r, brow_l, bridge, base, eye_r, eye_l, lip_out, lip_in])


def make_face(rng: np.random.Generator, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image (size, size, 3) uint8 and its 68 points (0-based pixels)."""
    pts = template68()
    scale = rng.uniform(0.5, 0.7) * size
    angle = rng.uniform(-0.3, 0.3)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    pts = (pts - 0.5) @ rot.T * scale + centre + rng.normal(0, 0.5, pts.shape)
    img = np.full((size, size, 3), rng.integers(40, 90), np.uint8)
    cx, cy = pts[:, 0].mean(), pts[:, 1].mean()
    cv2.ellipse(img, (int(cx), int(cy)), (int(scale * 0.5), int(scale * 0.6)),
                np.degrees(angle), 0, 360, (200, 170, 150), -1)
    for x, y in pts:
        cv2.circle(img, (int(round(x)), int(round(y))), 1, (30, 20, 20), -1)
    return img, pts.astype(np.float32)


def write_pts(path: Path, pts: np.ndarray) -> None:
    """Write 0-based points as a 1-based 300-W ``.pts`` file."""
    lines = ["version: 1", f"n_points:  {len(pts)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n")


def make_pts_dataset(folder: Path, n: int = 24, seed: int = 0, size: int = 160) -> Path:
    """A folder of ``face_XXX.png`` + ``.pts`` pairs; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, pts = make_face(rng, size)
        cv2.imwrite(str(folder / f"face_{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        write_pts(folder / f"face_{i:03d}.pts", pts)
    return folder

"""The README's pictures: a grid of aligned chips and photos with head pose axes.

    PYTHONPATH=. python benchmarks/face_pictures.py --out docs/img

writes ``chips.png`` (top row: each face as found, with its landmarks; middle: the ArcFace
112 px chip; bottom: the dlib-style chip, ``dlib.get_face_chip``'s layout) and
``pose.png`` (faces with their head pose axes: red to the subject's left, green up, blue
where the face looks; labelled yaw, pitch, roll in degrees). Both are palette PNGs under 200 KB.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"
CHIP_FACES = (("img10.jpg", 0), ("img58.jpg", 0), ("img59.jpg", 0), ("selfie-many-people.jpg", 0),
              ("selfie-many-people.jpg", 1), ("group_t1.jpg", 0))
POSE_FACES = (("img10.jpg", 0), ("img58.jpg", 0), ("img59.jpg", 0), ("selfie-many-people.jpg", 0),
              ("selfie-many-people.jpg", 2), ("couple.jpg", 1))
CELL = 104


def _save_png(path: Path, rgb: np.ndarray, colours: int = 256) -> Path:
    """An adaptive-palette PNG (small for photos), written atomically."""
    import io

    from PIL import Image

    from facemark.io import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(colours, method=Image.Quantize.MEDIANCUT).save(
        buf, format="PNG", optimize=True)
    return atomic_write_bytes(path, buf.getvalue())


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    out = cell.copy()
    for colour, width in (((255, 255, 255), 3), ((20, 20, 20), 1)):
        cv2.putText(out, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, width, cv2.LINE_AA)
    return out


def chips_grid(lm) -> np.ndarray:
    from facemark.data.images import read_image
    from facemark.inference.align import align
    from facemark.inference.draw import draw_faces

    columns = []
    for name, k in CHIP_FACES:
        image = read_image(PHOTOS / name)
        face = sorted(lm.detect(image), key=lambda f: f.box[0])[k]
        x1, y1, x2, y2 = face.box
        c, half = ((x1 + x2) / 2, (y1 + y2) / 2), 0.75 * max(x2 - x1, y2 - y1)
        m = np.array([[CELL / (2 * half), 0, CELL / 2 - c[0] * CELL / (2 * half)],
                      [0, CELL / (2 * half), CELL / 2 - c[1] * CELL / (2 * half)]])
        drawn = draw_faces(image, [face], label=False, radius=max(1, round(half / 60)))
        found = cv2.warpAffine(drawn, m, (CELL, CELL), flags=cv2.INTER_AREA)
        arc = cv2.resize(align(image, face), (CELL, CELL), interpolation=cv2.INTER_AREA)
        dl = cv2.resize(align(image, face, template="dlib"), (CELL, CELL),
                        interpolation=cv2.INTER_AREA)
        columns.append(np.concatenate([found, arc, dl], axis=0))
    grid = np.concatenate(columns, axis=1)
    for row, text in enumerate(("found", "arcface 112", "dlib 150")):
        grid[row * CELL:(row + 1) * CELL, :CELL] = _label(grid[row * CELL:(row + 1) * CELL, :CELL], text)
    return grid


def pose_picture(lm, cell: int = 150) -> np.ndarray:
    """Face crops with their pose axes and angles (yaw / pitch / roll, degrees)."""
    from facemark.data.images import read_image
    from facemark.inference.draw import draw_faces

    panels = []
    for name, k in POSE_FACES:
        image = read_image(PHOTOS / name)
        face = sorted(lm.detect(image), key=lambda f: f.box[0])[k]
        drawn = draw_faces(image, [face], pose=True, label=False, skeleton=False, radius=1)
        x1, y1, x2, y2 = face.box
        c, half = ((x1 + x2) / 2, (y1 + y2) / 2), 0.8 * max(x2 - x1, y2 - y1)
        m = np.array([[cell / (2 * half), 0, cell / 2 - c[0] * cell / (2 * half)],
                      [0, cell / (2 * half), cell / 2 - c[1] * cell / (2 * half)]])
        crop = cv2.warpAffine(drawn, m, (cell, cell), flags=cv2.INTER_AREA)
        p = face.pose
        crop = _label(crop, f"y {p.yaw:+.0f}  p {p.pitch:+.0f}  r {p.roll:+.0f}")
        panels.append(crop)
    return np.concatenate(panels, axis=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/img", help="output folder")
    args = p.parse_args(argv)
    if not PHOTOS.is_dir():
        print(f"skipped: {PHOTOS} is absent (needs ../shared/data)")
        return 0
    import facemark

    lm = facemark.load()
    out = Path(args.out)
    for name, picture in (("chips.png", chips_grid(lm)), ("pose.png", pose_picture(lm))):
        path = _save_png(out / name, picture)
        print(f"{path}: {picture.shape[1]} x {picture.shape[0]}, {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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


# ---------------------------------------------------------------------------------------
# Tiny datasets in the benchmarks' native layouts (the paths the bundled configs read)
# ---------------------------------------------------------------------------------------
def make_unlabelled_crops(folder: Path, n: int, seed: int = 7, size: int = 96) -> Path:
    """``n`` ready-cut face crops (``size`` px PNGs, 300-W crop rule) without annotations, as
    ``ytf68/unlabeled``: the unlabelled input of self-training and DANN tests."""
    from facemark.data.crops import crop_box, crop_face

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, pts = make_face(rng, 160)
        crop, _ = crop_face(img, crop_box("300w", landmarks=pts), size)
        cv2.imwrite(str(folder / f"u{i}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return folder


def scheme_points(pts68: np.ndarray, num_points: int) -> np.ndarray:
    """``num_points`` distinct points on a synthetic face from its 68 template points: a
    spread-out subset for smaller schemes, the 68 plus midpoints for larger ones. They are
    not the scheme's anatomy, only plausible positions inside the face."""
    if num_points <= len(pts68):
        return pts68[np.linspace(0, len(pts68) - 1, num_points).round().astype(int)]
    extra = num_points - len(pts68)
    mids = (pts68[:extra] + pts68[1:extra + 1]) / 2
    return np.concatenate([pts68, mids]).astype(np.float32)


def _faces(n: int, num_points: int, seed: int, size: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        img, pts = make_face(rng, size)
        yield img, scheme_points(pts, num_points)


def _write_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)), path


def _cell_column(items) -> np.ndarray:
    """A MATLAB N x 1 cell array for scipy.io.savemat."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _xywh(pts: np.ndarray) -> list[float]:
    (x1, y1), (x2, y2) = pts.min(0), pts.max(0)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def make_300vw_dataset(root: Path, videos: dict[str, int], seed: int = 0,
                       size: int = 96) -> Path:
    """300VW: ``<root>/<video>/annot/NNNNNN.pts`` (1-based) with frames in ``imgs/``."""
    root = Path(root)
    for v, (name, n) in enumerate(videos.items()):
        for k, (img, pts) in enumerate(_faces(n, 68, seed + v, size), start=1):
            _write_rgb(root / name / "imgs" / f"{k:06d}.png", img)
            (root / name / "annot").mkdir(parents=True, exist_ok=True)
            write_pts(root / name / "annot" / f"{k:06d}.pts", pts)
    return root


def make_aflw_dataset(root: Path, n_images: int = 4, n_test: int = 4, seed: int = 0,
                      size: int = 96, num_train: int = 20000) -> Path:
    """AFLW-19: ``<root>/AFLWinfo_release.mat`` + ``<root>/aflw/data/flickr/`` images.

    The protocol's training split is the first ``num_train`` faces of ``ra`` (20000; a test
    may lower ``facemark.data.formats.aflw.NUM_TRAIN`` and pass the same number), so the
    rows repeat ``n_images`` faces; ``n_test`` more rows make the test split. Returns the
    .mat path."""
    import scipy.io

    root = Path(root)
    faces = list(_faces(n_images, 19, seed, size))
    names = [f"0/image{i:05d}.jpg" for i in range(n_images)]
    for (img, _), name in zip(faces, names):
        _write_rgb(root / "aflw" / "data" / "flickr" / name, img)
    n = num_train + n_test
    which = np.arange(n) % n_images
    pts = np.stack([faces[i][1] for i in range(n_images)])[which]          # (n, 19, 2)
    data = np.concatenate([pts[:, :, 0], pts[:, :, 1]], axis=1).astype(np.float64)
    lo, hi = pts.min(1), pts.max(1)
    bbox = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=1).astype(np.float64)
    mat = root / "AFLWinfo_release.mat"
    scipy.io.savemat(mat, {"data": data, "bbox": bbox,
                           "nameList": _cell_column([np.array([names[i]]) for i in which]),
                           "mask_new": np.ones((n, 19)),
                           "ra": np.arange(1, n + 1, dtype=np.float64)[None, :]})
    return mat


def make_cofw_mat(path: Path, split: str, faces) -> Path:
    """A COFW ``.mat`` (MATLAB v7) of ``faces`` [(RGB image, 29 points)], 1-based."""
    import scipy.io

    suffix = "Tr" if split == "train" else "T"
    phis = [np.concatenate([p[:, 0] + 1, p[:, 1] + 1, np.zeros(len(p))]) for _, p in faces]
    boxes = [np.array(_xywh(p)) + [1, 1, 0, 0] for _, p in faces]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {f"Is{suffix}": _cell_column([img for img, _ in faces]),
                            f"phis{suffix}": np.array(phis), f"bboxes{suffix}": np.array(boxes)})
    return Path(path)


def make_cofw_dataset(root: Path, n_train: int = 3, n_test: int = 3, seed: int = 0,
                      size: int = 96) -> tuple[Path, Path]:
    """COFW: ``<root>/COFW_train_color.mat`` and ``COFW_test_color.mat`` (29 points)."""
    root = Path(root)
    train = make_cofw_mat(root / "COFW_train_color.mat", "train",
                          list(_faces(n_train, 29, seed, size)))
    rng = np.random.default_rng(seed + 1)
    tests = [make_face(rng, size) for _ in range(n_test)]
    test = make_cofw_mat(root / "COFW_test_color.mat", "test",
                         [(img, scheme_points(p, 29)) for img, p in tests])
    return train, test


def make_cofw68_dataset(root: Path, cofw_root: Path, n: int = 3, seed: int = 0,
                        size: int = 96) -> Path:
    """COFW-68: ``<root>/COFW68_Data/test_annotations/N_points.mat`` + boxes, for the
    faces of ``<cofw_root>/COFW_test_color.mat`` (written here too, with the same faces)."""
    import scipy.io

    rng = np.random.default_rng(seed + 1)
    tests = [make_face(rng, size) for _ in range(n)]
    make_cofw_mat(Path(cofw_root) / "COFW_test_color.mat", "test",
                  [(img, scheme_points(p, 29)) for img, p in tests])
    ann = Path(root) / "COFW68_Data" / "test_annotations"
    ann.mkdir(parents=True, exist_ok=True)
    for k, (_, p) in enumerate(tests, start=1):
        scipy.io.savemat(ann / f"{k}_points.mat", {"Points": p.astype(np.float64) + 1,
                                                   "Occ": np.zeros((1, 68))})
    boxes = np.array([np.array(_xywh(p)) + [1, 1, 0, 0] for _, p in tests])
    scipy.io.savemat(ann.parent / "cofw68_test_bboxes.mat", {"bboxes": boxes})
    return ann


def make_wflw_dataset(root: Path, n_train: int = 3, n_test: int = 3, seed: int = 0,
                      size: int = 96) -> Path:
    """WFLW: ``<root>/WFLW_images/`` and the ``list_98pt_rect_attr_{train,test}.txt``."""
    root = Path(root)
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        lines = []
        for i, (img, pts) in enumerate(_faces(n, 98, s, size)):
            rel = f"0--Parade/{split}_{i:03d}.jpg"
            _write_rgb(root / "WFLW_images" / rel, img)
            (x1, y1), (x2, y2) = pts.min(0), pts.max(0)
            nums = " ".join(f"{v:.3f}" for v in pts.ravel())
            lines.append(f"{nums} {int(x1)} {int(y1)} {int(x2)} {int(y2)} 0 0 0 0 0 0 {rel}")
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_csv_dataset(csv_path: Path, n: int = 3, seed: int = 0, size: int = 96) -> Path:
    """A ytf68-style table ``name, x0, y0, ...`` with its images in ``<stem before _>/``."""
    csv_path = Path(csv_path)
    folder = csv_path.parent / csv_path.stem.split("_")[0]
    rows = [",".join([""] + [str(i) for i in range(136)])]
    for i, (img, pts) in enumerate(_faces(n, 68, seed, size)):
        _write_rgb(folder / f"face_{i:03d}.jpg", img)
        rows.append(",".join([f"face_{i:03d}.jpg"] + [f"{v:.3f}" for v in pts.ravel()]))
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path


def make_image_folder(folder: Path, n: int = 3, seed: int = 0, size: int = 96) -> Path:
    """A folder of unlabelled face images."""
    for i, (img, _) in enumerate(_faces(n, 68, seed, size)):
        _write_rgb(Path(folder) / f"img_{i:03d}.jpg", img)
    return Path(folder)

"""Reading images and video frames with errors that name the file."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from facemark.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read an image (or one frame of a video) as an RGB uint8 array (H, W, 3).

    Grey and 16-bit images are converted; an alpha channel is dropped.

    Raises:
        DataError: the file is missing, unreadable or not an image, naming the path.
    """
    path = str(path)
    if frame is not None:
        return read_video_frame(path, frame)
    if not os.path.isfile(path):
        raise DataError(path, "image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise DataError(path, "image file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(path, "cannot decode image (corrupt or not an image file)")
    return _to_rgb8(img, path)


def read_video_frame(path: str | Path, frame: int) -> np.ndarray:
    """Frame ``frame`` (0-based) of a video file, RGB uint8 (H, W, 3)."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(path, "video file not found")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DataError(path, "cannot open video file")
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, img = cap.read()
        if not ok or img is None:
            raise DataError(path, f"cannot read frame {frame}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def _to_rgb8(img: np.ndarray, path: str) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise DataError(path, f"unsupported number of channels {img.shape[2]}")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, decoding it (raises DataError like read_image)."""
    img = read_image(path)
    return img.shape[1], img.shape[0]


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under a folder, sorted; raises DataError if the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern)
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def sample_image() -> Path:
    """Path of a sample face photo for demos: the Grace Hopper portrait (a public-domain US
    Navy photograph) that matplotlib installs as sample data.

    Raises:
        DataError: this matplotlib installation has no sample data.
    """
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise DataError(path, "matplotlib's sample photo is missing from this installation; "
                              "pass an image path instead")
    return path

"""Reading images and video frames with errors that name the file.

Photos are turned upright by their EXIF orientation tag, as image viewers show them (a
phone's portrait photo is often stored sideways with orientation 6); every landmark and
box facemark reports for an image file is in pixels of that upright image. ``exif=False``
(``--keep-exif-orientation`` on the command line) keeps the stored pixels instead.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

from facemark.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


#: the EXIF tag that says how the stored pixels must turn to be upright (values 1-8)
EXIF_ORIENTATION_TAG = 0x0112


def read_image(path: str | Path, frame: int | None = None, exif: bool = True) -> np.ndarray:
    """Read an image (or one frame of a video) as an RGB uint8 array (H, W, 3).

    Grey and 16-bit images are converted; an alpha channel is dropped.

    Args:
        path: an image or video file.
        frame: 0-based frame of a video; None for an image.
        exif: turn a photo upright by its EXIF orientation (the default, so points are in
            the image a viewer shows); False keeps the pixels as stored (H and W may then be
            swapped with respect to the upright photo).

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
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # (this flag ignores EXIF orientation)
    except cv2.error as e:   # e.g. a header claiming more pixels than OpenCV's limit
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else "OpenCV error"
        limit = " (the header claims more than OpenCV's CV_IO_MAX_IMAGE_PIXELS)" \
            if "MAX_IMAGE_PIXELS" in detail else ""
        raise DataError(path, f"cannot decode image{limit}: {detail[:160]}") from None
    if img is None:
        raise DataError(path, "cannot decode image (corrupt or not an image file)")
    img = _to_rgb8(img, path)
    return upright(img, exif_orientation(data)) if exif else img


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1-8) of an encoded image file's bytes; 1 when it has none."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a format PIL cannot parse, or broken EXIF: take the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (H, W, ...) -> the upright image for EXIF ``orientation`` (1-8).

    As ``PIL.ImageOps.exif_transpose``: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
    6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise; 1 (or any other
    value) unchanged. 5-8 swap height and width.
    """
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = np.swapaxes(img, 0, 1)
    elif orientation == 6:
        img = np.rot90(img, -1)
    elif orientation == 7:
        img = np.swapaxes(img[::-1, ::-1], 0, 1)
    elif orientation == 8:
        img = np.rot90(img, 1)
    else:
        return img
    return np.ascontiguousarray(img)


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


def image_size(path: str | Path, exif: bool = True) -> tuple[int, int]:
    """(width, height) of an image (upright, as :func:`read_image`), decoding it (raises
    DataError like read_image)."""
    img = read_image(path, exif=exif)
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

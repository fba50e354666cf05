"""Landmarks in videos and webcam streams, frame by frame.

>>> from facemark.inference.video import VideoSource, track_video
>>> for frame in track_video(landmarker, VideoSource("clip.mp4")):
...     frame.index, frame.image.shape, len(frame.faces)

Frames are read with OpenCV (``cv2.VideoCapture``) and turned into RGB.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemark.errors import DataError


class VideoSource:
    """Frames of a video file or a webcam, as RGB uint8 arrays.

    Args:
        source: a video file path, or a webcam index (int).
        max_frames: stop after this many frames (None: until the stream ends).

    Attributes (after :meth:`open`): ``fps_`` (frames per second; 0 when unknown),
    ``size_`` (width, height), ``frame_count_`` (frames the file says it has; 0 for a
    webcam or when unknown).
    """

    def __init__(self, source: str | Path | int, max_frames: int | None = None):
        self.source = source
        self.max_frames = max_frames

    @property
    def name(self) -> str:
        return f"webcam:{self.source}" if isinstance(self.source, int) else str(self.source)

    def open(self) -> "VideoSource":
        """Open the stream and read its properties; DataError when it cannot be opened."""
        limit = self.max_frames
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise ValueError(f"max_frames: expected a positive integer or None, got {limit!r}")
        if isinstance(self.source, int):
            cap = cv2.VideoCapture(self.source)
            if not cap.isOpened():
                cap.release()
                raise DataError(self.name, "cannot open the camera (no such device, or it is busy)")
        else:
            path = Path(self.source)
            if not path.is_file():
                raise DataError(path, "video file not found")
            cap = cv2.VideoCapture(str(path))
            if not cap.isOpened():
                cap.release()
                raise DataError(path, "cannot open video file (corrupt, or a codec OpenCV lacks)")
        self.cap_ = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps_ = float(fps) if np.isfinite(fps) and fps > 0 else 0.0
        self.size_ = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                      int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count_ = int(count) if np.isfinite(count) and count > 0 else 0
        return self

    def close(self) -> None:
        cap = getattr(self, "cap_", None)
        if cap is not None:
            cap.release()
            del self.cap_

    def __enter__(self) -> "VideoSource":
        return self if hasattr(self, "cap_") else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index from 0, RGB uint8 (H, W, 3)) until the end or ``max_frames``."""
        if not hasattr(self, "cap_"):
            self.open()
        index = 0
        while self.max_frames is None or index < self.max_frames:
            ok, bgr = self.cap_.read()
            if not ok or bgr is None:
                break
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1


@dataclass
class VideoFrame:
    """One processed frame: its index, the RGB image and the faces (a list, maybe empty)."""

    index: int
    image: np.ndarray
    faces: list


def track_video(landmarker, source: VideoSource) -> Iterator[VideoFrame]:
    """Landmarks of every frame of ``source`` with a loaded Landmarker.

    The face detector runs on every frame.
    """
    with source:
        for index, image in source:
            yield VideoFrame(index=index, image=image, faces=landmarker.detect(image))


class VideoWriter:
    """An MP4 (``mp4v``) writer for RGB frames, opened on the first frame (its size).

    Written to a temporary name and renamed on :meth:`close`, so a half-written video is
    never left under the final name.
    """

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0

    def write(self, rgb: np.ndarray) -> None:
        if not hasattr(self, "writer_"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp_ = self.path.with_name(f".tmp-{self.path.name}")
            h, w = rgb.shape[:2]
            self.writer_ = cv2.VideoWriter(str(self.tmp_), cv2.VideoWriter_fourcc(*"mp4v"),
                                           float(self.fps), (w, h))
            if not self.writer_.isOpened():
                raise DataError(self.path, "cv2.VideoWriter cannot write an mp4v MP4 here")
        self.writer_.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> Path | None:
        """Finish the file; returns its path (None when no frame was written)."""
        writer = getattr(self, "writer_", None)
        if writer is None:
            return None
        writer.release()
        del self.writer_
        self.tmp_.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the unfinished file."""
        writer = getattr(self, "writer_", None)
        if writer is not None:
            writer.release()
            del self.writer_
            self.tmp_.unlink(missing_ok=True)

"""Landmarks in videos and webcam streams, frame by frame.

>>> from facemark.inference.video import VideoSource, track_video
>>> for frame in track_video(landmarker, VideoSource("clip.mp4")):
...     frame.index, frame.image.shape, [f.track_id for f in frame.faces]

Frames are read with OpenCV (``cv2.VideoCapture``) and turned into RGB. Faces are tracked
by their landmarks (``facemark.inference.tracking``) and smoothed over time with a One Euro
filter (``facemark.inference.smoothing``); :class:`JitterMeter` measures how much the
landmarks move from frame to frame with and without the smoothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemark.data.face import Face
from facemark.errors import DataError
from facemark.inference.smoothing import jitter


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
    """One processed frame.

    Attributes:
        index: 0-based frame index.
        image: the frame, RGB uint8 (H, W, 3).
        faces: list of Face (maybe empty), each with its ``track_id``; ``points`` smoothed
            when smoothing is on.
        raw_points: the model's points of each face before smoothing, (N, 2) each.
        detected: whether the face detector ran on this frame.
    """

    index: int
    image: np.ndarray
    faces: list
    raw_points: list
    detected: bool


def track_video(landmarker, source: VideoSource, *, detect_every: int = 10,
                min_confidence: float = 0.5) -> Iterator[VideoFrame]:
    """Landmarks of every frame of ``source``, tracked and smoothed, with a loaded Landmarker.

    Each frame, :class:`facemark.inference.tracking.FaceTracker` proposes the face boxes:
    from the previous frame's landmarks (in the detector's box style), or from the face
    detector on the first frame, every ``detect_every`` frames, when a face's mean landmark
    confidence falls below ``min_confidence`` and when no face is tracked. The landmarker
    crops those boxes as it crops detector boxes. Each track's points go through a One Euro
    filter when ``landmarker.smoothing`` allows (on by default for video).

    Args:
        landmarker: a loaded Landmarker (its detector, crop rule and smoothing are used).
        source: the frames (opened here if needed, closed at the end).
        detect_every: run the detector at least this often (1 = every frame).
        min_confidence: mean landmark confidence below which a face counts as lost.
    """
    import time

    from facemark.inference.tracking import FaceTracker

    params = landmarker.smoothing_params_
    with source:
        tracker = FaceTracker(landmarker.detector_, detect_every=detect_every,
                              min_confidence=min_confidence, smoothing=params is not None,
                              filter_args=params or None, fps=source.fps_ or 30.0)
        live = isinstance(source.source, int)
        start = time.monotonic()
        for index, image in source:
            detected = tracker.needs_detection()
            boxes = tracker.boxes_for(image)
            faces = landmarker.detect(image, boxes=[b.box for b in boxes],
                                      box_style=landmarker.detector_.box_style)
            stamp = time.monotonic() - start if live else None   # webcams: the real clock
            tracked = tracker.update(index, [(f.points, f.confidence) for f in faces],
                                     timestamp=stamp)
            out = [Face(box=b.box, score=b.score if b.from_detector else None, points=t.points,
                        point_scores=f.point_scores, scheme=f.scheme, track_id=t.track_id,
                        image_size=f.image_size)
                   for b, f, t in zip(boxes, faces, tracked)]
            yield VideoFrame(index=index, image=image, faces=out,
                             raw_points=[t.raw_points for t in tracked], detected=detected)


class JitterMeter:
    """Frame-to-frame landmark motion of a video, raw and smoothed, per face size.

    Feed every :class:`VideoFrame`; :meth:`result` gives ``{"raw": ..., "smoothed": ...,
    "frames": ...}`` where each value is ``facemark.inference.smoothing.jitter`` over the
    runs of consecutive frames of each track, weighted by their length (0.01 = 1% of the
    face size per frame). It includes the true motion of the face, so compare the two
    numbers of one video, not numbers of different videos.
    """

    def __init__(self):
        self.tracks_: dict[int, list[tuple[int, np.ndarray, np.ndarray, float]]] = {}

    def add(self, frame: VideoFrame) -> None:
        for face, raw in zip(frame.faces, frame.raw_points):
            w, h = face.box[2] - face.box[0], face.box[3] - face.box[1]
            size = float(np.sqrt(max(w, 1e-6) * max(h, 1e-6)))
            self.tracks_.setdefault(face.track_id, []).append((frame.index, raw, face.points, size))

    def result(self) -> dict[str, float | int | None]:
        sums = {"raw": 0.0, "smoothed": 0.0}
        steps = 0
        for rows in self.tracks_.values():
            run: list = []
            for row in rows + [None]:
                if row is not None and run and row[0] == run[-1][0] + 1:
                    run.append(row)
                    continue
                if len(run) >= 2:
                    sizes = np.array([r[3] for r in run])
                    for key, col in (("raw", 1), ("smoothed", 2)):
                        value = jitter(np.stack([r[col] for r in run]), sizes)
                        sums[key] += value * (len(run) - 1) if np.isfinite(value) else 0.0
                    steps += len(run) - 1
                run = [row] if row is not None else []
        if steps == 0:
            return {"raw": None, "smoothed": None, "frames": 0}
        return {"raw": sums["raw"] / steps, "smoothed": sums["smoothed"] / steps, "frames": steps}


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

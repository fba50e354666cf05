"""One face and its landmarks: :class:`Face`, what ``Landmarker.detect`` returns per face.

>>> face = facemark.load().detect("photo.jpg")[0]
>>> face.points.shape, face.point_scores.shape         # (N, 2) pixels, (N,) in [0, 1]
>>> face.pose.yaw, face.eye_aspect_ratio()              # degrees; (right, left)

A plain dataclass over numpy arrays: its head pose (:mod:`facemark.data.pose`), eye and
mouth measures (:mod:`facemark.data.measures`) and its record in the prediction file
(:mod:`facemark.data.predictions`) all live in this layer, so every layer above may build or
read one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemark.data.measures import eye_aspect_ratio, mouth_aspect_ratio
from facemark.data.pose import estimate_pose
from facemark.errors import FacemarkError


@dataclass(eq=False)
class Face:
    """One face and its landmarks.

    Attributes:
        box: float64 (4,) ``x1, y1, x2, y2``: the face box the landmarks were cropped from
            (the detector's, yours, or in a video the box the tracker proposed from the
            previous frame's landmarks), in pixels of the input image.
        score: the detector's confidence for the face (its scale depends on the detector),
            or None for boxes you gave and video faces whose box came from the tracker.
        points: float64 (N, 2) landmarks in 0-based pixels of the input image ((0, 0) is
            the centre of the top-left pixel), in the order of ``scheme`` (in videos,
            smoothed over time unless smoothing is off).
        point_scores: float64 (N,) per-landmark confidence in [0, 1].
        scheme: the landmark scheme name (``facemark.data.schemes.get_scheme``).
        track_id: in videos, the id of the face's track (stable across frames); None for
            photos.
        image_size: (width, height) in pixels of the image the face was found in (the
            guessed camera of :attr:`pose` needs it); None when unknown.
    """

    box: np.ndarray
    score: float | None
    points: np.ndarray
    point_scores: np.ndarray
    scheme: str
    track_id: int | None = None
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        self.point_scores = np.asarray(self.point_scores, dtype=np.float64).reshape(-1)
        if self.score is not None:
            self.score = float(self.score)
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    @property
    def confidence(self) -> float:
        """Mean per-landmark confidence of the face, in [0, 1]."""
        return float(self.point_scores.mean()) if self.point_scores.size else 0.0

    @property
    def pose(self):
        """Head pose (:class:`facemark.data.pose.HeadPose`: yaw, pitch, roll in degrees,
        rvec, tvec) with the camera guessed from :attr:`image_size`; computed once.
        :meth:`estimate_pose` takes your camera's intrinsics instead.

        Raises:
            FacemarkError: no image size is known (a Face you built yourself: pass
                ``image_size``), or the scheme has no points for the 3D face.
        """
        key = (self.points.tobytes(), self.image_size, self.scheme)
        cached = self.__dict__.get("_pose")
        if cached is None or cached[0] != key:
            if self.image_size is None:
                raise FacemarkError("face.pose needs the image size for its guessed camera: "
                                    "build the Face with image_size=(width, height), or call "
                                    "face.estimate_pose(camera_matrix=K)")
            cached = (key, self.estimate_pose())
            self.__dict__["_pose"] = cached
        return cached[1]

    def estimate_pose(self, camera_matrix: np.ndarray | None = None,
                      dist_coeffs: np.ndarray | None = None):
        """Head pose with your camera: ``camera_matrix`` (3, 3) intrinsics in pixels and
        optional ``dist_coeffs`` (OpenCV's order); None guesses the camera from
        :attr:`image_size` (``facemark.data.pose.estimate_pose``)."""
        return estimate_pose(self.points, self.scheme, image_size=self.image_size,
                             camera_matrix=camera_matrix, dist_coeffs=dist_coeffs)

    def eye_aspect_ratio(self) -> tuple[float, float]:
        """(right, left) eye aspect ratio of the subject's eyes (about 0.25-0.35 open, near
        0 closed); FacemarkError for a scheme without eye lids
        (``facemark.data.measures``)."""
        return eye_aspect_ratio(self.points, self.scheme)

    def mouth_aspect_ratio(self) -> float:
        """Inner-lip opening over mouth width (0 closed); FacemarkError for a scheme
        without inner lips (``facemark.data.measures``)."""
        return mouth_aspect_ratio(self.points, self.scheme)

    def to_prediction(self, image: str, frame: int | None = None, pose: bool = False):
        """This face as a ``PredictedFace`` of the prediction file format; ``pose=True``
        adds its head pose fields (:attr:`pose`)."""
        # deferred: the prediction file module imports scipy (about 0.5 s), off the detect path
        from facemark.data.predictions import PredictedFace

        return PredictedFace(image=str(image), points=self.points, frame=frame, box=self.box,
                             score=self.score, point_scores=self.point_scores,
                             pose=self.pose.to_record() if pose else None)

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        score = "None" if self.score is None else f"{self.score:.3f}"
        track = "" if self.track_id is None else f", track_id={self.track_id}"
        return (f"Face(box=[{box}], score={score}, {len(self.points)} points {self.scheme}, "
                f"confidence={self.confidence:.3f}{track})")

"""dlib's HOG + linear SVM face detector (Dalal & Triggs 2005), ``get_frontal_face_detector``.

Needs the optional extra ``pip install facemark[dlib]`` (the prebuilt ``dlib-bin`` wheel:
no compiler, no torch). The detector model is compiled into dlib, so nothing is downloaded.
It finds frontal and slightly turned faces from about 80 pixels (40 with ``upsample=1``;
small images are scaled up to ``upscale_to`` first) and is fast on CPU: all 6 faces of
``group_t1.jpg`` (1280 x 886) in about 80 ms, 97% of the ytf68 test faces.

Score: dlib's SVM margin; 0 is dlib's own decision threshold, faces usually score 0 to 3.
A negative ``score_threshold`` asks dlib for weaker candidates too.

Box style ``dlib_hog``: a square from the eyebrows to the chin (the box dlib's 68-point
shape predictor is trained on). Measured on ytf68/test against the box of the 68
landmarks: centre 0.11 landmark-box heights higher, 1.03 x as wide and 1.06 x as tall.
"""
from __future__ import annotations

import cv2
import numpy as np

from facemark.errors import ConfigError
from facemark.inference.detectors.base import (DetectedFace, FaceDetector, _check_number,
                                               unscale)


class DlibHogDetector(FaceDetector):
    """dlib's frontal face detector (HOG features, five sliding-window SVMs).

    Args:
        min_size: smallest face side to report, in input-image pixels.
        score_threshold: SVM margin a face needs (dlib's default decision is 0).
        upsample: times dlib doubles the image before searching (0 finds faces from about
            80 px, 1 from about 40 px at four times the cost). ``dlib_hog:1`` sets it.
        max_side: scale the image down first until its longer side is at most this (None
            or 0: never); speeds up large photos at the cost of small faces.
        upscale_to: images whose longer side is below this are scaled up to it first (None
            or 0: never), so that the face in a small frame is above dlib's 80-pixel minimum.
    """

    name = "dlib_hog"
    spec_arg = "upsample"
    summary = "dlib HOG detector (pip install facemark[dlib])"

    def __init__(self, min_size: int = 20, score_threshold: float = 0.0, upsample: int = 0,
                 max_side: int | None = None, upscale_to: int | None = 320):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.upsample = upsample
        self.max_side = max_side
        self.upscale_to = upscale_to

    @classmethod
    def parse_spec(cls, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"detector 'dlib_hog:{value}': the value after ':' is the "
                              f"upsample count, a whole number such as 0 or 1") from None

    @classmethod
    def check_available(cls) -> str | None:
        try:
            import dlib
        except ImportError as e:
            return f"dlib is not installed ({e.msg}); pip install 'facemark[dlib]'"
        if not hasattr(dlib, "get_frontal_face_detector"):
            return "this dlib build has no get_frontal_face_detector"
        return None

    def _load(self) -> None:
        _check_number(self, "upsample", self.upsample, low=0, high=4, integer=True)
        for key in ("max_side", "upscale_to"):
            if getattr(self, key):
                _check_number(self, key, getattr(self, key), low=32)
        import dlib

        self.detector_ = dlib.get_frontal_face_detector()

    def _detect(self, image: np.ndarray) -> list[DetectedFace]:
        scale = 1.0
        longest = max(image.shape[:2])
        if self.max_side and longest > self.max_side:
            scale = self.max_side / longest
        elif self.upscale_to and longest < self.upscale_to:
            scale = self.upscale_to / longest
        if scale != 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        rects, scores, _ = self.detector_.run(image, int(self.upsample),
                                              float(self.score_threshold))
        faces = []
        for rect, score in zip(rects, scores):
            # dlib rectangles are inclusive pixel ranges; the box runs over pixel edges.
            box = unscale([rect.left() - 0.5, rect.top() - 0.5,
                           rect.right() + 0.5, rect.bottom() + 0.5], scale)
            faces.append(DetectedFace(box, float(score)))
        return faces

"""OpenCV's YuNet face detector (Wu et al. 2023, "YuNet: A Tiny Millisecond-level Face
Detector") through ``cv2.FaceDetectorYN``, from an ONNX file the user gives.

facemark does not ship the model: pass the path of ``face_detection_yunet_2023mar.onnx``
(from the OpenCV model zoo) as ``yunet:/path/to/model.onnx`` or ``model_path=``. OpenCV's
DNN module runs it, so no extra package is needed.

Score: YuNet's ``sqrt(class score * objectness)`` in [0, 1]; the model zoo demo keeps faces
above 0.9, this detector defaults to 0.6 for recall.

Points: YuNet gives five points (right eye, left eye, nose tip, right and left mouth
corners, "right" being the subject's right = the image's left), the ``face5`` order.

Box style ``yunet``. Its relation to the landmarks is not measured here (no model file is
available to this project); calibrate it before relying on YuNet boxes for landmark crops.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facemark.errors import ConfigError
from facemark.inference.detectors.base import (DetectedFace, FaceDetector, _check_number,
                                               unscale)


class YuNetDetector(FaceDetector):
    """YuNet via ``cv2.FaceDetectorYN``.

    Args:
        model_path: the YuNet ``.onnx`` file (required); ``yunet:PATH`` sets it.
        min_size: smallest face side to report, in input-image pixels.
        score_threshold: faces scoring below this are dropped (YuNet scores are in [0, 1]).
        nms_iou: IoU above which YuNet's non-maximum suppression merges two boxes.
        max_side: the image is scaled down until its longer side is at most this before the
            network runs (None: never); YuNet's cost grows with the pixel count.
        top_k: at most this many candidates enter the non-maximum suppression.
    """

    name = "yunet"
    spec_arg = "model_path"
    summary = "OpenCV YuNet from an ONNX file you give (yunet:/path/face_detection_yunet.onnx)"

    def __init__(self, model_path: str | Path | None = None, min_size: int = 10,
                 score_threshold: float = 0.6, nms_iou: float = 0.3,
                 max_side: int | None = 640, top_k: int = 5000):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.model_path = model_path
        self.nms_iou = nms_iou
        self.max_side = max_side
        self.top_k = top_k

    @classmethod
    def check_available(cls) -> str | None:
        if not hasattr(cv2, "FaceDetectorYN"):
            return f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs OpenCV >= 4.5.4)"
        return None

    def _load(self) -> None:
        _check_number(self, "score_threshold", self.score_threshold, low=0.0, high=1.0)
        _check_number(self, "nms_iou", self.nms_iou, low=0.0, high=1.0)
        _check_number(self, "top_k", self.top_k, low=1, integer=True)
        if self.max_side is not None:
            _check_number(self, "max_side", self.max_side, low=32)
        if self.model_path is None or not str(self.model_path).strip():
            raise ConfigError("yunet.model_path: YuNet needs its ONNX model file, e.g. "
                              "--detector yunet:/path/to/face_detection_yunet_2023mar.onnx "
                              "(from the OpenCV model zoo; facemark does not ship it)")
        path = Path(str(self.model_path)).expanduser()
        if not path.is_file():
            raise ConfigError(f"yunet.model_path: file not found: {path}")
        if path.suffix.lower() != ".onnx":
            raise ConfigError(f"yunet.model_path: expected an .onnx file, got {path.name}")
        try:
            self.net_ = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), float(self.score_threshold), float(self.nms_iou),
                int(self.top_k))
        except cv2.error as e:
            message = str(e).strip().splitlines()[-1] if str(e).strip() else "OpenCV error"
            raise ConfigError(f"yunet.model_path: OpenCV cannot load {path} as a YuNet "
                              f"model ({message})") from None

    def _detect(self, image: np.ndarray) -> list[DetectedFace]:
        scale = 1.0
        longest = max(image.shape[:2])
        if self.max_side is not None and longest > self.max_side:
            scale = self.max_side / longest
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        self.net_.setInputSize((bgr.shape[1], bgr.shape[0]))
        try:
            _, rows = self.net_.detect(bgr)
        except cv2.error as e:
            raise ConfigError(f"yunet.model_path: {self.model_path} does not run as a YuNet "
                              f"model ({str(e).strip().splitlines()[-1]})") from None
        if rows is None:
            return []
        faces = []
        for row in np.asarray(rows, dtype=np.float64).reshape(-1, 15):
            x, y, w, h = row[:4]
            box = unscale([x, y, x + w, y + h], scale)
            points = unscale(row[4:14].reshape(5, 2), scale)
            faces.append(DetectedFace(box, float(row[14]), points))
        return faces

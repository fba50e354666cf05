"""MediaPipe's BlazeFace detector (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural
Face Detection on Mobile GPUs"), short- and full-range models.

Needs the optional extra ``pip install facemark[mediapipe]``, which pins mediapipe 0.10.21:
its wheel ships both ``.tflite`` models (later versions ship none and download them at run
time, which fails offline). mediapipe 0.10.21 needs ``protobuf<5`` and ``numpy<2``; onnx
1.23 and later need protobuf 6, so in the same environment pip resolves onnx to 1.22 (which
facemark supports). Install it in an environment of its own if that is a problem.

The full-range model sees the image at 192 x 192 and the short-range one at 128 x 128, so
faces smaller than about a tenth of the image are missed on a whole group photo (3 of 6 on
``group_t1.jpg``). This detector therefore also runs the model on overlapping square tiles
(``tile_fraction`` of the shorter image side, ``tile_overlap`` apart) and merges the results
by non-maximum suppression: 6 of 6 on ``group_t1.jpg`` in about 40 ms (full-range) or
15 ms (short-range, which with tiling also finds all 6), and 97% (full) or 100% (short) of
the ytf68 test faces. Short-range gives more false alarms on portraits (extra boxes on
8 of 63 photos, against 2 for full-range), so full-range is the default.

Score: BlazeFace's sigmoid score in [0, 1].

Points: BlazeFace gives six key points (right eye, left eye, nose tip, mouth centre, right
and left ear tragion; "right" = the subject's right = the image's left). ``points5`` holds
the eyes and the nose tip in the ``face5`` order; the two mouth-corner rows are NaN.

Box style ``mediapipe_full`` / ``mediapipe_short``, measured on ytf68/test against the box
of the 68 landmarks: full-range centre 0.11 landmark-box heights higher, 1.08 x as wide,
1.13 x as tall; short-range 0.06 higher, 1.02 x, 1.06 x.
"""
from __future__ import annotations

import numpy as np

from facemark.errors import ConfigError
from facemark.inference.detectors.base import (DetectedFace, FaceDetector, _check_number,
                                               nms)

MODELS = {"short": 0, "full": 1}
#: side of the square each model sees; tiles smaller than this add nothing but time.
MODEL_INPUT = {"short": 128, "full": 192}
MEDIAPIPE_VERSION = "0.10.21"


def _import_face_detection():
    """mediapipe's face_detection solution module (raises ImportError or mediapipe's own)."""
    import mediapipe as mp  # noqa: F401  (fails here when protobuf is too new)
    from mediapipe.python.solutions import face_detection

    return face_detection


class MediaPipeBlazeDetector(FaceDetector):
    """BlazeFace through mediapipe's ``solutions.face_detection``, with optional tiling.

    Args:
        model: ``"full"`` (full-range, faces up to about 5 m; default) or ``"short"``
            (selfie distance, within about 2 m); ``mediapipe:short`` sets it.
        min_size: smallest face side to report, in input-image pixels.
        score_threshold: faces scoring below this are dropped (scores are in [0, 1]).
        tile_fraction: side of the square tiles as a fraction of the shorter image side
            (0.7 by default); None or 0 runs the model on the whole image only. Images whose
            tiles would be smaller than the model's input (192 px full-range, 128 px
            short-range) are not tiled.
        tile_overlap: overlap of neighbouring tiles as a fraction of the tile side.
        nms_iou: IoU above which two boxes are merged; a box mostly inside a better one
            (intersection over the smaller box above 0.6) is merged too.
    """

    name = "mediapipe"
    spec_arg = "model"
    summary = "MediaPipe 0.10.21 BlazeFace (pip install facemark[mediapipe])"

    def __init__(self, model: str = "full", min_size: int = 10, score_threshold: float = 0.5,
                 tile_fraction: float | None = 0.7, tile_overlap: float = 0.25,
                 nms_iou: float = 0.3):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.model = model
        self.tile_fraction = tile_fraction
        self.tile_overlap = tile_overlap
        self.nms_iou = nms_iou

    @property
    def box_style(self) -> str:
        return f"mediapipe_{self.model}"

    @classmethod
    def check_available(cls) -> str | None:
        try:
            _import_face_detection()
        except ImportError as e:
            return (f"mediapipe is not installed ({e.msg}); pip install 'facemark[mediapipe]' "
                    f"(mediapipe=={MEDIAPIPE_VERSION}, protobuf<5)")
        except Exception as e:  # noqa: BLE001 - mediapipe fails in many ways on a bad protobuf
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return (f"mediapipe does not import ({type(e).__name__}: {first[:120]}); it needs "
                    f"protobuf<5: pip install 'facemark[mediapipe]' in its own environment")
        import mediapipe as mp

        version = getattr(mp, "__version__", "?")
        if version != MEDIAPIPE_VERSION:
            return (f"mediapipe {version} is installed; only {MEDIAPIPE_VERSION} ships the "
                    f"BlazeFace models offline: pip install 'mediapipe=={MEDIAPIPE_VERSION}'")
        return None

    def _load(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"mediapipe.model: expected one of {', '.join(MODELS)}, "
                              f"got {self.model!r}")
        _check_number(self, "score_threshold", self.score_threshold, low=0.0, high=1.0)
        _check_number(self, "tile_overlap", self.tile_overlap, low=0.0, high=0.9)
        _check_number(self, "nms_iou", self.nms_iou, low=0.0, high=1.0)
        if self.tile_fraction:
            _check_number(self, "tile_fraction", self.tile_fraction, low=0.1, high=1.0)
        face_detection = _import_face_detection()
        self.solution_ = face_detection.FaceDetection(
            model_selection=MODELS[self.model],
            min_detection_confidence=float(self.score_threshold))

    def _regions(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The whole image, then overlapping square tiles ``x1, y1, x2, y2`` (pixels)."""
        regions = [(0, 0, width, height)]
        if not self.tile_fraction:
            return regions
        side = int(round(min(height, width) * self.tile_fraction))
        if side >= max(height, width) or side < MODEL_INPUT[self.model]:
            return regions
        step = side * (1.0 - self.tile_overlap)
        for y in _starts(height, side, step):
            for x in _starts(width, side, step):
                regions.append((x, y, min(x + side, width), min(y + side, height)))
        return regions

    def _detect(self, image: np.ndarray) -> list[DetectedFace]:
        height, width = image.shape[:2]
        boxes, scores, points = [], [], []
        for x1, y1, x2, y2 in self._regions(height, width):
            tile = np.ascontiguousarray(image[y1:y2, x1:x2])
            result = self.solution_.process(tile)
            whole = (x1, y1, x2, y2) == (0, 0, width, height)
            for det in result.detections or []:
                box, pts = _to_pixels(det, x1, y1, x2 - x1, y2 - y1)
                if not whole and _touches_inner_edge(box, (x1, y1, x2, y2), width, height):
                    continue  # cut by a tile border: a neighbouring tile sees all of it
                boxes.append(box)
                scores.append(float(det.score[0]))
                points.append(pts)
        if not boxes:
            return []
        keep = nms(np.array(boxes), np.array(scores), self.nms_iou, containment=0.6)
        return [DetectedFace(boxes[i], scores[i], points[i]) for i in keep]


def _starts(length: int, side: int, step: float) -> list[int]:
    """Tile start positions covering [0, length) with tiles of ``side``, about ``step`` apart."""
    if length <= side:
        return [0]
    count = int(np.ceil((length - side) / step)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, count)})


def _to_pixels(det, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A mediapipe detection (relative to its tile) -> box (4,) and face5 points (5, 2)."""
    rel = det.location_data.relative_bounding_box
    # relative coordinates run over the tile's edges: 0 is its left edge (pixel -0.5)
    box = np.array([x0 + rel.xmin * w, y0 + rel.ymin * h,
                    x0 + (rel.xmin + rel.width) * w, y0 + (rel.ymin + rel.height) * h]) - 0.5
    kps = det.location_data.relative_keypoints
    pts = np.full((5, 2), np.nan)
    for row, k in enumerate(kps[:3]):  # right eye, left eye, nose tip
        pts[row] = (x0 + k.x * w - 0.5, y0 + k.y * h - 0.5)
    return box, pts


def _touches_inner_edge(box: np.ndarray, region: tuple[int, int, int, int], width: int,
                        height: int, margin: float = 2.0) -> bool:
    x1, y1, x2, y2 = region
    return bool((x1 > 0 and box[0] < x1 - 0.5 + margin)
                or (y1 > 0 and box[1] < y1 - 0.5 + margin)
                or (x2 < width and box[2] > x2 - 0.5 - margin)
                or (y2 < height and box[3] > y2 - 0.5 - margin))

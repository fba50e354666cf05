"""The one record every dataset reader yields."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facemark.errors import DataError


@dataclass(repr=False)
class Sample:
    """One annotated (or unlabelled) face.

    Coordinates are 0-based pixels: (0, 0) is the centre of the top-left pixel, x to the
    right, y down. Readers of 1-based formats (300-W ``.pts``, MATLAB files) subtract 1.

    Attributes:
        image: path of the image file, or of the video file when ``frame`` is set.
        landmarks: float32 array (N, 2) of (x, y) pixels, N = the scheme's number of
            points; a row of NaN marks a landmark that is not annotated (masked in losses
            and metrics). ``None`` for unlabelled images.
        scheme: name of the landmark scheme (``facemark.data.schemes``), e.g. ``"300w68"``.
        box: float32 array (4,) ``x1, y1, x2, y2`` in pixels (the dataset's face box), or None.
        visible: bool array (N,), False where the annotator marked the point occluded (the
            position is still annotated), or None when the format has no such flag.
        attributes: extra per-face facts, e.g. WFLW's ``{"pose": 0, "occlusion": 1, ...}``,
            300-W's ``{"subset": "challenge"}``.
        frame: frame index inside the video ``image``, or None for still images.
        source: where the record came from, ``"file:line"``, for error messages.
    """

    image: str
    landmarks: np.ndarray | None
    scheme: str
    box: np.ndarray | None = None
    visible: np.ndarray | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    frame: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.image = str(self.image)
        if self.landmarks is not None:
            self.landmarks = self._float32(self.landmarks, "landmark coordinates").reshape(-1, 2)
        if self.box is not None:
            self.box = self._float32(self.box, "box numbers").reshape(4)
        if self.visible is not None:
            self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)

    def _float32(self, values, what: str) -> np.ndarray:
        """float32 values; inf, or a number past float32's range (which would turn into inf
        here, after a reader's finiteness check passed), is a DataError naming the record."""
        with np.errstate(over="ignore"):
            arr = np.asarray(values, dtype=np.float32)
        if np.isinf(arr).any():
            raise DataError(self.source or self.image,
                            f"{what} must be finite numbers within float32 range "
                            "(|value| < 3.4e38; inf or a larger number found)")
        return arr

    @property
    def name(self) -> str:
        """A short identifier: the image file name, plus the frame index for video."""
        stem = Path(self.image).name
        return stem if self.frame is None else f"{stem}#{self.frame}"

    @property
    def num_points(self) -> int:
        return 0 if self.landmarks is None else len(self.landmarks)

    def landmark_box(self) -> np.ndarray:
        """Tight box ``x1, y1, x2, y2`` around the annotated (non-NaN) landmarks."""
        if self.landmarks is None:
            raise ValueError(f"{self.name}: an unlabelled sample has no landmark box")
        pts = self.landmarks[~np.isnan(self.landmarks).any(axis=1)]
        if len(pts) == 0:
            raise ValueError(f"{self.name}: no annotated landmarks")
        return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)

    def __repr__(self) -> str:
        n = "unlabelled" if self.landmarks is None else f"{self.num_points} points"
        extra = "" if self.box is None else f", box={np.round(self.box, 1).tolist()}"
        return f"Sample({self.name!r}, {self.scheme}, {n}{extra})"

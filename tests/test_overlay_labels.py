"""Overlay labels (issue 12): sized to the face, inside the image, not over each other."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from facemark.inference.draw import (LABEL_MAX_PX, LABEL_MIN_PX, draw_faces, label_layout,
                                     label_text)

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"


def _face(box, score=0.93, conf=0.8):
    x1, y1, x2, y2 = box
    t = np.linspace(0, 1, 68)
    pts = np.stack([x1 + (x2 - x1) * t, y1 + (y2 - y1) * t], axis=1)
    return SimpleNamespace(box=np.asarray(box, float), score=score, points=pts,
                           point_scores=np.full(68, conf), scheme="300w68", pose=None)


def _inside(rect, shape):
    x1, y1, x2, y2 = rect
    return 0 <= x1 < x2 <= shape[1] and 0 <= y1 < y2 <= shape[0]


def _overlap(a, b):
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_text_height_scales_with_the_face():
    shape = (2000, 2000, 3)
    heights = [label_layout([_face((500, 500, 500 + s, 500 + s))], shape)[0].text_height
               for s in (20, 60, 120, 240, 1200)]
    assert heights == sorted(heights) and heights[1] < heights[3]
    assert LABEL_MIN_PX - 1 <= heights[0] and heights[-1] <= LABEL_MAX_PX + 1
    # never taller than a small face's box (the old font was)
    assert label_layout([_face((500, 500, 540, 540))], shape)[0].text_height < 40 / 3


def test_label_text_says_score_and_confidence():
    assert label_text(_face((0, 0, 9, 9), score=2.5, conf=0.75)) == "2.50 / 0.75"
    assert label_text(_face((0, 0, 9, 9), score=None, conf=0.75)) == "0.75"


def test_labels_stay_inside_and_apart_at_the_edges_and_in_a_crowd():
    shape = (240, 320, 3)
    faces = [_face((-10, -10, 40, 40)), _face((290, 200, 330, 250)),       # off the corners
             *[_face((60 + 45 * i, 100, 100 + 45 * i, 140)) for i in range(5)]]  # a tight row
    labels = label_layout(faces, shape)
    for lab in labels:
        assert _inside(lab.rect, shape)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not _overlap(a.rect, b.rect)
    out = draw_faces(np.zeros(shape, np.uint8), faces)
    assert out.shape == shape and out.any()


@pytest.mark.shared_data
def test_group_photo_labels_inside_and_not_overlapping():
    photo = PHOTOS / "group_t1.jpg"
    if not photo.is_file():
        pytest.skip("../shared/data/photos is absent")
    import facemark
    from facemark.data.images import read_image
    image = read_image(photo)
    faces = facemark.load().detect(image)
    assert len(faces) == 6
    labels = label_layout(faces, image.shape)
    for face, lab in zip(faces, labels):
        assert _inside(lab.rect, image.shape)
        side = np.sqrt((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
        assert lab.text_height <= max(0.2 * side, LABEL_MIN_PX + 1)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not _overlap(a.rect, b.rect)
        for j, face in enumerate(faces):   # a label covers no other face's box
            if j != i:
                assert not _overlap(a.rect, face.box)

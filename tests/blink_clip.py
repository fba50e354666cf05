"""A blink clip made from a real photo, and a landmark engine that follows eyelids.

:func:`close_eyes` warps a photo's eye regions shut: inside each eye (found by its six
68-point eye landmarks), the skin above the upper lid is stretched down over the opening
to the lower lid, fading out at the eye corners, so the eye closes the way a lid does.
:func:`write_blink_clip` makes an MP4 of a photo blinking at known frames, with sensor
noise and JPEG compression in every frame as a webcam gives them.

:class:`DlibEngine` is a stand-in landmark engine built on dlib's 68-point shape predictor
(``face_recognition_models``' file): it lets the whole video path (tracker, One Euro
smoothing, blink detector) run on landmarks that do follow eyelids.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: (closure per frame) of one blink: closing, shut, opening (at 30 fps, 233 ms).
BLINK = (0.4, 0.8, 1.0, 1.0, 1.0, 0.8, 0.4)


def _lid(uv: np.ndarray, u: np.ndarray) -> np.ndarray:
    order = np.argsort(uv[:, 0])
    return np.interp(u, uv[order, 0], uv[order, 1])


def eye_outlines(points68: np.ndarray) -> list[tuple]:
    """The two eyes of 68 points as (corner, corner, upper lid (2, 2), lower lid (2, 2))."""
    p = np.asarray(points68, dtype=np.float64)
    return [(p[36], p[39], p[[37, 38]], p[[41, 40]]), (p[42], p[45], p[[43, 44]], p[[47, 46]])]


def close_eyes(image: np.ndarray, eyes: list[tuple], closure: float, skin: float = 0.4,
               past: float = 0.08, lift: float = 0.08) -> np.ndarray:
    """``image`` with its eyes closed by ``closure`` (0 open, 1 shut).

    Args:
        image: RGB uint8 (H, W, 3).
        eyes: :func:`eye_outlines` of the face.
        closure: how far the upper lid comes down to the lower one.
        skin: height of the skin above the lid that is stretched, in eye widths.
        past: the shut lid ends this far (eye widths) below the lower-lid landmarks, which
            sit a little inside the eye.
        lift: the lid's skin is taken from this far (eye widths) above the upper-lid
            landmarks, so no iris between the lid points is dragged along.
    """
    h, w = image.shape[:2]
    map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for a, b, upper, lower in eyes:
        ex = (b - a) / np.linalg.norm(b - a)
        ey = np.array([-ex[1], ex[0]])
        ey = -ey if ey[1] < 0 else ey                      # v grows downwards
        width = float(np.linalg.norm(b - a))
        centre = (a + b) / 2
        def to_uv(p):
            return np.stack([(p - centre) @ ex, (p - centre) @ ey], -1)
        up, lo = to_uv(np.vstack([a, upper, b])), to_uv(np.vstack([a, lower, b]))
        half, r = width / 2, int(width * 1.2)
        x0, x1 = int(max(centre[0] - r, 0)), int(min(centre[0] + r, w))
        y0, y1 = int(max(centre[1] - r, 0)), int(min(centre[1] + r, h))
        xs, ys = np.meshgrid(np.arange(x0, x1, dtype=float), np.arange(y0, y1, dtype=float))
        uv = to_uv(np.stack([xs, ys], -1))
        u, v = uv[..., 0], uv[..., 1]
        uc = np.clip(u, -half, half)
        fade = np.clip((half * 1.15 - np.abs(u)) / (half * 0.3), 0, 1)
        c = closure * fade
        vu, vl = _lid(up, uc), _lid(lo, uc) + past * width * c
        shut = vu + c * (vl - vu)                          # where the upper lid is now
        top = vu - skin * width
        src_lid = vu - lift * width * c
        src = v.copy()
        m1 = (v >= top) & (v < shut)
        src[m1] = top[m1] + (v[m1] - top[m1]) * (src_lid[m1] - top[m1]) \
            / np.maximum(shut[m1] - top[m1], 1e-6)
        m2 = (v >= shut) & (v < vl)
        src[m2] = src_lid[m2] + (v[m2] - shut[m2]) * (vl[m2] - src_lid[m2]) \
            / np.maximum(vl[m2] - shut[m2], 1e-6)
        xy = centre + u[..., None] * ex + src[..., None] * ey
        map_x[y0:y1, x0:x1] = xy[..., 0]
        map_y[y0:y1, x0:x1] = xy[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def closure_schedule(frames: int, blink_starts) -> np.ndarray:
    """(frames,) closure per frame: 0, and :data:`BLINK` from each start."""
    out = np.zeros(frames)
    for s in blink_starts:
        out[s:s + len(BLINK)] = BLINK[:max(0, frames - s)]
    return out


def shut_frames(blink_starts) -> list[range]:
    """Frame ranges where each blink's lid is more than half closed."""
    inside = [i for i, c in enumerate(BLINK) if c > 0.5]
    return [range(s + inside[0], s + inside[-1] + 1) for s in blink_starts]


def write_blink_clip(photo: np.ndarray, eyes: list[tuple], path: Path, frames: int,
                     blink_starts, noise: float = 3.0, quality: int = 85,
                     seed: int = 0) -> np.ndarray:
    """Write the clip (MP4, 30 fps); returns the closure of each frame."""
    rng = np.random.default_rng(seed)
    closure = closure_schedule(frames, blink_starts)
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    shut = {}
    for c in closure:
        if c not in shut:
            shut[c] = close_eyes(photo, eyes, c)
        frame = np.clip(shut[c] + rng.normal(0, noise, photo.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        writer.write(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    writer.release()
    return closure


def dlib_predictor():
    """dlib's 68-point shape predictor, or None when its file is not installed."""
    from facemark.evaluation.bench import find_dlib_predictor

    return find_dlib_predictor()[0]


class DlibEngine:
    """A landmark engine (``predict`` on (B, 3, S, S) crops in [0, 1]) that runs dlib's
    68-point shape predictor on the part of each crop where a ``"detector"`` crop rule
    puts the face box (the crop is that box x1.2, moved down by 0.1 of its height)."""

    kind = "dlib"

    def __init__(self, predictor, input_size: int = 192):
        from facemark.models.model_file import ModelInfo

        self.predictor = predictor
        self.info = ModelInfo("300w68", input_size, "300w", {})
        self.num_points = 68

    def predict(self, x: np.ndarray):
        import dlib

        s = x.shape[-1]
        crops = np.ascontiguousarray((np.asarray(x) * 255).round().clip(0, 255)
                                     .astype(np.uint8).transpose(0, 2, 3, 1))
        rect = dlib.rectangle(int(s / 12), 0, int(s * 11 / 12), int(s * 5 / 6))
        pts = np.array([[(p.x, p.y) for p in self.predictor(c, rect).parts()] for c in crops],
                       dtype=np.float32)
        return (pts + 0.5) / s, np.ones(pts.shape[:2], dtype=np.float32)


def dlib_landmarker(predictor, input_size: int = 192):
    """A loaded Landmarker whose landmarks come from :class:`DlibEngine` (no refine pass,
    the plain ``"detector"`` crop rule, default video smoothing)."""
    import facemark

    lm = facemark.load(crop_rule="detector", refine=False)
    lm.engine_ = DlibEngine(predictor, input_size)
    lm.info_ = lm.engine_.info
    return lm

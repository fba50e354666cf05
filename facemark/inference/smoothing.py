"""Temporal smoothing of landmarks in video: the One Euro filter, and a jitter metric.

The One Euro filter (Casiez, Roussel & Vogel, CHI 2012, "1 Euro Filter: A Simple
Speed-based Low-pass Filter for Noisy Input in Interactive Systems") is a first-order
low-pass filter whose cutoff frequency rises with the signal's speed: at rest it smooths
hard (low jitter), in fast motion it follows closely (low lag)::

    alpha(fc, dt) = 1 / (1 + 1 / (2 pi fc dt))
    dx_hat = lowpass(speed of x, alpha(d_cutoff, dt))
    fc     = min_cutoff + beta * |dx_hat|
    x_hat  = lowpass(x, alpha(fc, dt))

Here ``x`` is an (N, 2) landmark array and everything is vectorised over the N points
(each point's cutoff follows its own speed, the two coordinates of a point share it).

Units that do not depend on the image size: the speed that raises the cutoff is divided by
the face size (``sqrt(width * height)`` of the face box, in pixels), so it is in face sizes
per second. ``min_cutoff`` and ``d_cutoff`` are in Hz, ``beta`` in 1 / (face size); the
same settings then behave the same for a 60-pixel face and a 600-pixel face. (Positions
stay in pixels: dividing them by a face size that itself jitters from frame to frame would
add jitter far from the image origin.)
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass filter with ``cutoff`` Hz at step ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over (N, 2) landmark arrays, in face-size units.

    Args:
        min_cutoff: cutoff at rest, Hz. Lower = smoother when still (and more lag in slow
            motion).
        beta: how fast the cutoff rises with speed, per (face sizes per second). Higher =
            less lag in fast motion (and more jitter left when moving).
        d_cutoff: cutoff of the speed estimate, Hz.
        fps: frame rate assumed when ``__call__`` gets no timestamp.

    The defaults (min_cutoff 1.0 Hz, beta 10, d_cutoff 1.0 Hz) remove about 78% of the
    frame-to-frame jitter of a still face with landmark noise of 1% of the face size at
    30 fps, and follow a move of half a face size per second with a lag of about 1% of the
    face size (``tests/test_smoothing.py`` checks both).

    Points that are NaN in a frame come out NaN and leave that point's state unchanged.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 10.0, d_cutoff: float = 1.0,
                 fps: float = 30.0):
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.fps = fps
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next call returns its input unchanged."""
        self.x_: np.ndarray | None = None      # (N, 2) last output, pixels
        self.dx_: np.ndarray | None = None     # (N, 2) filtered velocity, pixels / s
        self.t_: float | None = None           # timestamp of the last call, s

    def _check_params(self) -> None:
        for key in ("min_cutoff", "d_cutoff", "fps"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"OneEuroFilter.{key}: expected a positive number, got {value!r}")
        beta = self.beta
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"OneEuroFilter.beta: expected a number >= 0, got {self.beta!r}")

    def __call__(self, points: np.ndarray, t: float | None = None,
                 face_size: float = 1.0) -> np.ndarray:
        """Filter one frame.

        Args:
            points: (N, 2) landmark pixels of this frame (N fixed between resets).
            t: timestamp in seconds; None = the previous timestamp + 1 / fps.
            face_size: face size in pixels this frame (``sqrt(w * h)`` of the face box);
                1.0 filters in pixel units.

        Returns:
            (N, 2) float64 smoothed points, in pixels.
        """
        self._check_params()
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"OneEuroFilter: expected points of shape (N, 2), got {pts.shape}")
        if not (math.isfinite(face_size) and face_size > 0):
            raise ValueError(f"OneEuroFilter: face_size must be a positive number, "
                             f"got {face_size!r}")
        if t is None:
            t = (self.t_ + 1.0 / self.fps) if self.t_ is not None else 0.0
        x = pts
        if self.x_ is None:
            self.x_ = x.copy()
            self.dx_ = np.zeros_like(x)
            self.t_ = float(t)
            return pts.copy()
        if x.shape != self.x_.shape:
            raise ValueError(f"OneEuroFilter: got {x.shape[0]} points, the filter holds "
                             f"{self.x_.shape[0]}; call reset() for a new face or scheme")
        dt = float(t) - self.t_
        if not dt > 0:
            raise ValueError(f"OneEuroFilter: timestamps must increase, got {t} after {self.t_}")
        valid = np.isfinite(x).all(axis=1)
        # a point that was NaN until now starts from its first valid value
        fresh = valid & ~np.isfinite(self.x_).all(axis=1)
        self.x_[fresh] = x[fresh]
        self.dx_[fresh] = 0.0

        dx = (x - self.x_) / dt                                   # pixels / s
        dx_hat = self.dx_ + _alpha(self.d_cutoff, dt) * (dx - self.dx_)
        speed = np.linalg.norm(dx_hat, axis=1, keepdims=True) / face_size   # face sizes / s
        cutoff = self.min_cutoff + self.beta * speed
        x_hat = self.x_ + _alpha(cutoff, dt) * (x - self.x_)

        self.x_ = np.where(valid[:, None], x_hat, self.x_)
        self.dx_ = np.where(valid[:, None], dx_hat, self.dx_)
        self.t_ = float(t)
        out = x_hat.copy()
        out[~valid] = np.nan
        return out


def smooth_track(track: np.ndarray, face_size: np.ndarray | float = 1.0,
                 times: np.ndarray | None = None, **filter_args: float) -> np.ndarray:
    """Run a fresh OneEuroFilter over a whole track.

    Args:
        track: (T, N, 2) landmark pixels.
        face_size: (T,) face sizes in pixels, or one number for all frames.
        times: (T,) timestamps in seconds, or None for ``1 / fps`` steps.
        **filter_args: OneEuroFilter arguments (min_cutoff, beta, d_cutoff, fps).

    Returns:
        (T, N, 2) smoothed track.
    """
    track = np.asarray(track, dtype=np.float64)
    if track.ndim != 3 or track.shape[2] != 2:
        raise ValueError(f"smooth_track: expected a track of shape (T, N, 2), got {track.shape}")
    sizes = np.broadcast_to(np.asarray(face_size, dtype=np.float64), (len(track),))
    f = OneEuroFilter(**filter_args)
    return np.stack([f(p, None if times is None else float(times[i]), float(sizes[i]))
                     for i, p in enumerate(track)])


def jitter(track: np.ndarray, face_size: np.ndarray | float) -> float:
    """Mean frame-to-frame landmark motion, as a fraction of the face size.

    ``mean over frames t >= 1 and points n of |p[t, n] - p[t-1, n]| / face_size[t]``,
    ignoring NaN points. On a still face it measures jitter directly; on a moving face it
    includes the true motion, so compare tracks of the same video (raw vs smoothed).

    Args:
        track: (T, N, 2) landmark pixels, T >= 2.
        face_size: (T,) face sizes in pixels (``sqrt(w * h)`` of the face box), or one number.

    Returns:
        The mean normalised motion (0.01 = 1% of the face size per frame); NaN when no
        point is valid in two consecutive frames.
    """
    track = np.asarray(track, dtype=np.float64)
    if track.ndim != 3 or track.shape[2] != 2:
        raise ValueError(f"jitter: expected a track of shape (T, N, 2), got {track.shape}")
    if len(track) < 2:
        raise ValueError(f"jitter: needs at least 2 frames, got {len(track)}")
    sizes = np.broadcast_to(np.asarray(face_size, dtype=np.float64), (len(track),))
    if not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise ValueError("jitter: face_size must be positive and finite in every frame")
    motion = np.linalg.norm(np.diff(track, axis=0), axis=2) / sizes[1:, None]
    if not np.isfinite(motion).any():
        return float("nan")
    return float(np.nanmean(motion))

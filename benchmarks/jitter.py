"""Landmark jitter in video, with and without the One Euro smoothing.

Makes short MP4 clips from a real photo: the camera holds still, or pans, zooms and rolls
slowly along a known path, and every frame gets its own sensor noise and JPEG compression
(what makes landmarks shake on a real webcam). Runs ``facemark.inference.video.track_video``
on each clip, maps every frame's landmarks back into the photo through the known camera
motion, and reports the jitter: mean frame-to-frame motion of the landmarks that is not
explained by the camera, as a fraction of the face size (sqrt of the landmark box area).

    PYTHONPATH=. python benchmarks/jitter.py --model facemark/weights/default.pt \\
        --photo ../shared/data/photos/img1.jpg --frames 90 --out-dir /tmp/jitter

Lower is steadier. The smoothed track also lags a real motion a little; the "lag" column
is the mean distance between the smoothed and the raw landmarks on the moving clip, in the
same unit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def camera_path(t: np.ndarray, moving: bool, centre: tuple[float, float]) -> np.ndarray:
    """(T, 2, 3) affine from photo to frame: slow pan (+-20 px), zoom (+-5%), roll (+-3 deg)."""
    mats = []
    for u in t:
        if moving:
            phase = 2 * np.pi * u
            angle, scale = 3.0 * np.sin(phase), 1.0 + 0.05 * np.sin(0.5 * phase)
            shift = np.array([20.0 * np.sin(phase), 10.0 * np.sin(2 * phase)])
        else:
            angle, scale, shift = 0.0, 1.0, np.zeros(2)
        m = cv2.getRotationMatrix2D(centre, angle, scale)
        m[:, 2] += shift
        mats.append(m)
    return np.stack(mats)


def write_clip(photo: np.ndarray, mats: np.ndarray, path: Path, noise: float, quality: int,
               seed: int = 0) -> None:
    """Write the frames (RGB photo warped by each matrix, noise, JPEG) as an MP4."""
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for m in mats:
        frame = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        writer.write(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    writer.release()


def to_photo(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Frame pixels -> photo pixels through the inverse of the camera matrix."""
    inv = cv2.invertAffineTransform(m)
    return points @ inv[:, :2].T + inv[:, 2]


def measure(landmarker, clip: Path, mats: np.ndarray) -> dict[str, float]:
    from facemark.inference.smoothing import jitter
    from facemark.inference.video import VideoSource, track_video

    raw, smooth, lost = [], [], 0
    for frame in track_video(landmarker, VideoSource(clip)):
        m = mats[frame.index]
        if not frame.faces:
            lost += 1
            n = landmarker.num_points
            raw.append(np.full((n, 2), np.nan))
            smooth.append(np.full((n, 2), np.nan))
            continue
        raw.append(to_photo(np.asarray(frame.raw_points[0]), m))
        smooth.append(to_photo(frame.faces[0].points, m))
    raw, smooth = np.stack(raw), np.stack(smooth)
    spans = np.nanmax(raw, axis=1) - np.nanmin(raw, axis=1)          # (T, 2) per-frame box
    size = float(np.nanmedian(np.sqrt(spans[:, 0] * spans[:, 1])))
    lag = np.nanmean(np.linalg.norm(smooth - raw, axis=2)) / size
    return {"raw": jitter(raw, size), "smoothed": jitter(smooth, size), "lag": float(lag),
            "face px": size, "frames without face": lost}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file (default: the bundled one)")
    p.add_argument("--photo", default="../shared/data/photos/img1.jpg",
                   help="a photo with one face")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--noise", type=float, default=4.0, help="sensor noise sigma, grey levels")
    p.add_argument("--quality", type=int, default=70, help="JPEG quality of each frame")
    p.add_argument("--detector", default="auto")
    p.add_argument("--out-dir", default="jitter-out")
    args = p.parse_args(argv)

    import facemark
    from facemark.data.images import read_image
    from facemark.io import atomic_write_text

    photo_path = Path(args.photo)
    if not photo_path.is_file():
        print(f"skipped: {photo_path} is absent (needs ../shared/data)")
        return 0
    photo = read_image(photo_path)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = photo.shape[:2]
    t = np.arange(args.frames) / args.frames
    rows = []
    for moving in (False, True):
        mats = camera_path(t, moving, (w / 2, h / 2))
        clip = out / f"{'moving' if moving else 'still'}.mp4"
        write_clip(photo, mats, clip, args.noise, args.quality)
        lm = facemark.load(args.model, detector=args.detector)
        r = measure(lm, clip, mats)
        rows.append((f"{'pan/zoom/roll' if moving else 'still camera'}", r))
    lines = [f"## Landmark jitter: {photo_path.name}, {args.frames} frames, noise sigma "
             f"{args.noise:g}, JPEG q{args.quality}, detector {args.detector}", "",
             "| clip | face px | jitter raw (% of face/frame) | jitter smoothed | "
             "reduction | lag smoothed-raw (% of face) | frames without face |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['face px']:.0f} | {100 * r['raw']:.3f} | "
                     f"{100 * r['smoothed']:.3f} | {r['raw'] / r['smoothed']:.1f}x | "
                     f"{100 * r['lag']:.3f} | {r['frames without face']} |")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(out / "jitter.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

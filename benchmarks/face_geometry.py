"""Chips, head pose, eye and mouth state: agreement with dlib, stability, speed.

Sections (``--only`` picks some; all by default), each a markdown table:

* ``chips``: facemark's dlib-style chips against ``dlib.get_face_chip`` on the ground-truth
  68 points (rounded to whole pixels, as dlib holds them) of every 300-W LFPW test face:
  where each chip corner lies in the image (dlib's read from chips of coordinate images:
  pixel values that are their own x or y), in image pixels, and the mean difference of the
  chips' pixels. The same layout with a plain pixel-centre grid instead of dlib's rectangle
  convention is listed for comparison.
* ``pose``: head pose stability on the clips of ``benchmarks/jitter.py`` (a still camera,
  and a slow pan/zoom/roll): each frame's landmarks are mapped back into the photo through
  the known camera motion and posed with the photo's camera, so any change from frame to
  frame is jitter; degrees per frame, from the raw and the One-Euro-smoothed landmarks.
* ``mirror``: yaw/pitch/roll of every face of the photos against the mirrored photo's.
* ``ear``: eye and mouth aspect ratios of the default model (faces found by its detector)
  against the ground truth, on LFPW test faces; dlib's 68-point predictor on the same
  boxes for comparison when its file is installed.
* ``blink``: the blink clip of ``tests/blink_clip.py`` (a photo whose eyes are warped shut
  at two known moments): eye aspect ratio open and shut, and blinks found, for the default
  model and for dlib's predictor through the same tracker and smoothing.
* ``speed``: time per face of each feature (median of ``--runs`` calls).

    PYTHONPATH=. python benchmarks/face_geometry.py --out-dir /tmp/face-geometry
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
LFPW_TEST = SHARED / "300w" / "lfpw" / "testset"
PHOTOS = SHARED / "photos"
SECTIONS = ("chips", "pose", "mirror", "ear", "blink", "speed")


def _table(headers, rows) -> list[str]:
    from facemark.io import markdown_table

    return markdown_table(headers, rows).splitlines()


# ---------------------------------------------------------------------------------------
def dlib_corners(points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """(4, 2) image positions dlib.get_face_chip samples at the chip's corner pixels."""
    import dlib

    margin = int(points.max()) + 200
    n = int(points.max()) + 2 * margin
    xs = np.tile(np.arange(n, dtype=np.float64), (n, 1)) - margin
    det = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1),
                                     [dlib.point(int(x) + margin, int(y) + margin)
                                      for x, y in points])
    cx = dlib.get_face_chip(xs, det, size=size, padding=padding)
    cy = dlib.get_face_chip(np.ascontiguousarray(xs.T), det, size=size, padding=padding)
    s = size - 1
    return np.array([[cx[r, c], cy[r, c]] for r, c in ((0, 0), (0, s), (s, s), (s, 0))])


def chips_section(limit: int | None) -> list[str]:
    import dataclasses

    import dlib

    from facemark.data.formats import open_dataset
    from facemark.data.images import read_image
    from facemark.data.templates import DLIB
    from facemark.inference.align import align, chip_corners, chip_matrix

    samples = open_dataset(LFPW_TEST)[:limit]
    pixel_grid = dataclasses.replace(DLIB, name="dlib_pixel_grid", grid="pixel")
    rows = []
    for size, padding in ((150, 0.25), (112, 0.0), (256, 0.5), (64, 0.0)):
        errs = {"dlib": [], "pixel": []}
        grey = []
        for s in samples:
            pts = np.round(s.landmarks)
            theirs = dlib_corners(pts, size, padding)
            for key, tpl in (("dlib", DLIB), ("pixel", pixel_grid)):
                ours = chip_corners(chip_matrix(pts, size, padding, tpl, scheme="300w68"), size)
                errs[key].append(np.linalg.norm(ours - theirs, axis=1).max())
            if size == 150:
                image = read_image(s.image)
                det = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1),
                                                 [dlib.point(int(x), int(y)) for x, y in pts])
                a = dlib.get_face_chip(image, det, size=size, padding=padding).astype(float)
                b = align(image, pts, size, padding, "dlib", scheme="300w68").astype(float)
                grey.append(np.abs(a - b).mean())
        for key, label in (("dlib", "facemark `template=\"dlib\"`"),
                           ("pixel", "same layout, pixel-centre grid")):
            e = np.array(errs[key])
            rows.append([f"{size} px, padding {padding:g}", label, len(e), f"{e.mean():.3f}",
                         f"{np.percentile(e, 95):.3f}", f"{e.max():.3f}",
                         f"{(e <= 1.0).mean() * 100:.0f}%",
                         f"{np.mean(grey):.2f}" if grey and key == "dlib" else ""])
    return [f"Chip corners vs `dlib.get_face_chip` (dlib {dlib.__version__}), 300-W LFPW test "
            "faces, ground-truth 68 points (a 64 px chip is smaller than half these faces, "
            "and dlib then samples a pyramid level):", ""] + _table(
        ["chip", "geometry", "faces", "corner error mean (px)", "95th pct", "max",
         "faces within 1 px", "mean abs pixel difference (0-255)"], rows)


# ---------------------------------------------------------------------------------------
def _poses(points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, list]:
    """(T, 3) yaw/pitch/roll and the T rotation matrices (None where no face)."""
    from facemark.data.pose import estimate_pose

    angles, rotations = [], []
    for p in points:
        if not np.isfinite(p).all():
            angles.append(np.full(3, np.nan))
            rotations.append(None)
            continue
        pose = estimate_pose(p, "300w68", image_size=size)
        angles.append([pose.yaw, pose.pitch, pose.roll])
        rotations.append(pose.rotation)
    return np.array(angles), rotations


def _per_frame(angles: np.ndarray, rotations: list) -> tuple[float, ...]:
    d = np.abs(np.diff(angles, axis=0))
    geo = [np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))
           for a, b in zip(rotations[:-1], rotations[1:]) if a is not None and b is not None]
    return (*np.nanmean(d, axis=0), float(np.mean(geo)))


def pose_section(photo: Path, frames: int, out_dir: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import facemark
    from facemark.data.images import read_image
    from facemark.inference.video import VideoSource, track_video
    from jitter import camera_path, to_photo, write_clip

    image = read_image(photo)
    h, w = image.shape[:2]
    t = np.arange(frames) / frames
    rows = []
    for moving in (False, True):
        mats = camera_path(t, moving, (w / 2, h / 2))
        clip = out_dir / f"pose-{'moving' if moving else 'still'}.mp4"
        write_clip(image, mats, clip, 4.0, 70)
        raw, smooth = [], []
        for frame in track_video(facemark.load(), VideoSource(clip)):
            m = mats[frame.index]
            if not frame.faces:
                raw.append(np.full((68, 2), np.nan))
                smooth.append(np.full((68, 2), np.nan))
                continue
            raw.append(to_photo(np.asarray(frame.raw_points[0]), m))
            smooth.append(to_photo(frame.faces[0].points, m))
        for label, track in (("raw", raw), ("smoothed", smooth)):
            track = np.stack(track)
            angles, rotations = _poses(track, (w, h))
            yaw, pitch, roll, geo = _per_frame(angles, rotations)
            rows.append([("pan/zoom/roll" if moving else "still camera"), label, len(track),
                         f"{yaw:.3f}", f"{pitch:.3f}", f"{roll:.3f}", f"{geo:.3f}",
                         f"{np.nanmean(angles[:, 0]):.1f} / {np.nanmean(angles[:, 1]):.1f} / "
                         f"{np.nanmean(angles[:, 2]):.1f}"])
    return [f"Head pose stability, {photo.name} clips of benchmarks/jitter.py ({frames} frames, "
            "noise sigma 4, JPEG q70, default detector), landmarks mapped back into the photo "
            "(so every change is jitter):", ""] + _table(
        ["clip", "landmarks", "frames", "yaw change (deg/frame)", "pitch change", "roll change",
         "rotation (deg/frame)", "mean yaw / pitch / roll"], rows)


# ---------------------------------------------------------------------------------------
def mirror_section(limit: int | None) -> list[str]:
    import facemark
    from facemark.data.images import list_images, read_image

    lm = facemark.load()
    diffs, names = [], 0
    for path in list_images(PHOTOS)[:limit]:
        image = read_image(path)
        others = lm.detect(np.ascontiguousarray(image[:, ::-1]))
        faces = lm.detect(image)
        names += 1
        for face in faces:
            if not others:
                continue
            centre = face.points.mean(axis=0) * [-1, 1] + [image.shape[1] - 1, 0]
            other = min(others, key=lambda f: np.linalg.norm(f.points.mean(axis=0) - centre))
            if np.linalg.norm(other.points.mean(axis=0) - centre) > 0.2 * (face.box[2] - face.box[0]):
                continue
            a, b = face.pose, other.pose
            diffs.append((a.yaw + b.yaw, a.pitch - b.pitch, a.roll + b.roll, abs(a.yaw)))
    d = np.array(diffs)
    rows = [[label, f"{np.abs(d[:, i]).mean():.2f}", f"{np.percentile(np.abs(d[:, i]), 95):.2f}",
             f"{np.abs(d[:, i]).max():.2f}"]
            for i, label in enumerate(("yaw + mirrored yaw", "pitch - mirrored pitch",
                                       "roll + mirrored roll"))]
    return [f"Head pose of {len(d)} faces in {names} photos ({PHOTOS.name}/) against the mirrored "
            f"photo (0 for a perfectly consistent model; |yaw| up to {d[:, 3].max():.0f} deg):",
            ""] + _table(["check", "mean absolute (deg)", "95th pct", "max"], rows)


# ---------------------------------------------------------------------------------------
def ear_section(limit: int | None) -> list[str]:
    import facemark
    from facemark.data.formats import open_dataset
    from facemark.data.images import read_image
    from facemark.evaluation.bench import dlib_landmarks, find_dlib_predictor
    from facemark.data.measures import eye_aspect_ratio, mouth_aspect_ratio

    lm = facemark.load()
    predictor, _ = find_dlib_predictor()
    gt, ours, theirs = [], [], []
    for s in open_dataset(LFPW_TEST)[:limit]:
        image = read_image(s.image)
        faces = lm.detect(image)
        if not faces:
            continue
        centre = s.landmarks.mean(axis=0)
        face = min(faces, key=lambda f: np.linalg.norm(f.points.mean(axis=0) - centre))
        if np.linalg.norm(face.points.mean(axis=0) - centre) > 0.2 * (face.box[2] - face.box[0]):
            continue
        ear = lambda p: float(np.mean(eye_aspect_ratio(p, "300w68")))  # noqa: E731
        gt.append((ear(s.landmarks), mouth_aspect_ratio(s.landmarks, "300w68")))
        ours.append((ear(face.points), face.mouth_aspect_ratio()))
        if predictor is not None:
            d = dlib_landmarks(predictor, image, [face.box])[0]
            theirs.append((ear(d), mouth_aspect_ratio(d, "300w68")))
    gt, ours = np.array(gt), np.array(ours)
    rows = []
    for name, vals in (("facemark default model", ours),
                       ("dlib 68-point predictor, same boxes", np.array(theirs))):
        if not len(vals):
            continue
        for i, what in enumerate(("eye aspect ratio (mean of both eyes)", "mouth aspect ratio")):
            rows.append([what, name, len(vals), f"{np.corrcoef(gt[:, i], vals[:, i])[0, 1]:.2f}",
                         f"{gt[:, i].std():.3f}", f"{vals[:, i].std():.3f}",
                         f"{np.abs(gt[:, i] - vals[:, i]).mean():.3f}"])
    return ["Eye and mouth aspect ratios against the ground truth, 300-W LFPW test faces found "
            "by the default detector:", ""] + _table(
        ["measure", "landmarks", "faces", "correlation with ground truth", "ground-truth spread (sd)",
         "predicted spread (sd)", "mean absolute error"], rows)


# ---------------------------------------------------------------------------------------
def blink_section(photo: Path, out_dir: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    import facemark
    from blink_clip import (dlib_landmarker, dlib_predictor, eye_outlines, shut_frames,
                            write_blink_clip)
    from facemark.data.images import read_image
    from facemark.data.measures import detect_blinks, ear_series
    from facemark.inference.video import VideoSource, track_video

    image = cv2.resize(read_image(photo), None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    face = facemark.load().detect(image)[0]
    starts = (15, 40)
    clip = out_dir / "blink.mp4"
    closure = write_blink_clip(image, eye_outlines(face.points), clip, 60, starts)
    shut = closure >= 1.0
    truth = ", ".join(f"{r.start}-{r.stop - 1}" for r in shut_frames(starts))
    sources = [("facemark default model", facemark.load)]
    predictor = dlib_predictor()
    if predictor is not None:
        sources.append(("dlib 68-point predictor", lambda: dlib_landmarker(predictor)))
    rows = []
    for name, make in sources:
        frames = list(track_video(make(), VideoSource(clip)))
        for raw in (False, True):
            ear = next(iter(ear_series(frames, raw=raw).values()))[:, 1]
            found = detect_blinks(frames, raw=raw)
            rows.append([name, "raw" if raw else "smoothed", f"{ear[closure == 0].mean():.3f}",
                         f"{ear[shut].mean():.3f}", f"{ear[shut].mean() / ear[closure == 0].mean():.2f}",
                         ", ".join(f"{b.start}-{b.end}" for b in found) or "none"])
    return [f"Blinks in a clip of {photo.name} (60 frames at 30 fps, eyes warped shut at frames "
            f"{truth}; tests/blink_clip.py), BlinkDetector defaults (closed below 0.7 x the "
            "open-eye level for 2+ frames):", ""] + _table(
        ["landmarks", "points", "EAR open", "EAR shut", "shut / open", "blinks found (frames)"],
        rows)


# ---------------------------------------------------------------------------------------
def _median_us(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def speed_section(photo: Path, runs: int) -> list[str]:
    import facemark
    from facemark.data.images import read_image
    from facemark.evaluation.bench import machine_line
    from facemark.inference.align import align
    from facemark.data.measures import BlinkDetector, eye_aspect_ratio, mouth_aspect_ratio
    from facemark.data.pose import estimate_pose

    image = read_image(photo)
    lm = facemark.load(threads=1)
    face = lm.detect(image)[0]
    size = face.image_size
    det = BlinkDetector()
    frame = iter(range(10 ** 9))
    ear = eye_aspect_ratio(face.points, face.scheme)
    landmarks = _median_us(lambda: lm.detect(image, boxes=[face.box],
                                             box_style=lm.detector_.box_style), max(5, runs // 20))
    rows = [
        ["landmarks (model, crop, refine pass), for scale", f"{landmarks:.0f}"],
        ["`facemark.align`, arcface 112 px", f"{_median_us(lambda: align(image, face), runs):.0f}"],
        ["`facemark.align`, dlib 150 px, padding 0.25",
         f"{_median_us(lambda: align(image, face, template='dlib'), runs):.0f}"],
        ["head pose (`estimate_pose`: solvePnP + LM refine)",
         f"{_median_us(lambda: estimate_pose(face.points, face.scheme, image_size=size), runs):.0f}"],
        ["eye aspect ratio (both eyes)",
         f"{_median_us(lambda: eye_aspect_ratio(face.points, face.scheme), runs):.0f}"],
        ["mouth aspect ratio",
         f"{_median_us(lambda: mouth_aspect_ratio(face.points, face.scheme), runs):.0f}"],
        ["blink detector, one face-frame (`update`)",
         f"{_median_us(lambda: det.update(next(frame), float(np.mean(ear))), runs):.0f}"],
    ]
    return [f"Time per face, {photo.name} ({image.shape[1]} x {image.shape[0]}), median of "
            f"{runs} calls; {machine_line(1)}:", ""] + _table(["feature", "microseconds"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections ({', '.join(SECTIONS)})")
    p.add_argument("--limit", type=int, default=None, help="at most this many faces/photos")
    p.add_argument("--photo", default=str(PHOTOS / "img1.jpg"), help="pose clips' photo")
    p.add_argument("--blink-photo", default=str(PHOTOS / "img13.jpg"))
    p.add_argument("--frames", type=int, default=90, help="frames of each pose clip")
    p.add_argument("--runs", type=int, default=300, help="timed calls per feature")
    p.add_argument("--out-dir", default="face-geometry-out")
    args = p.parse_args(argv)
    if not LFPW_TEST.is_dir() or not PHOTOS.is_dir():
        print(f"skipped: {SHARED} is absent (needs ../shared/data)")
        return 0
    from facemark.io import atomic_write_text

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for section in args.only.split(","):
        t0 = time.perf_counter()
        if section == "chips":
            part = chips_section(args.limit)
        elif section == "pose":
            part = pose_section(Path(args.photo), args.frames, out)
        elif section == "mirror":
            part = mirror_section(args.limit)
        elif section == "ear":
            part = ear_section(args.limit)
        elif section == "blink":
            part = blink_section(Path(args.blink_photo), out)
        elif section == "speed":
            part = speed_section(Path(args.photo), args.runs)
        else:
            p.error(f"unknown section {section!r} (known: {', '.join(SECTIONS)})")
        print("\n".join(part) + "\n", flush=True)
        print(f"({section}: {time.perf_counter() - t0:.0f} s)\n", file=sys.stderr)
        lines += part + [""]
    atomic_write_text(out / "face_geometry.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

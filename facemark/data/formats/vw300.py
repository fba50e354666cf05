"""300VW (300 Videos in the Wild): one folder per video, one ``.pts`` per annotated frame.

Layout, as released plus an optional folder of extracted frames::

    300VW/
      001/
        vid.avi                       the video
        annot/000001.pts ...          frame numbers from 1; .pts coordinates 1-based
        imgs/000001.jpg ...           optional: frames extracted to images, named like the
                                      .pts (mmpose's converter writes imgs/%06d.png with
                                      ffmpeg -start_number 1); frames/ is accepted too
      002/ ...

``path`` is the dataset root or one video folder. For each video, ``source="auto"``
(default) uses the frame folder when there is one and the video file otherwise;
``source="frames"`` or ``"video"`` insists on one. Video frames give Samples with
``image`` = the video file and ``frame`` = the 0-based frame index (``000001.pts`` ->
frame 0); the index is checked against the video's frame count (the video is opened, not
decoded). Extracted frames give still-image Samples.

Every sample's ``attributes`` hold ``video`` (the folder name), ``frame_index`` (0-based),
``split`` (``"train"`` or ``"test"``) and ``category`` (1, 2 or 3 for test videos, None for
training videos) from the standard 300VW protocol lists below; videos not in the lists get
None for both. ``split=`` and ``category=`` read only the matching videos.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from facemark.data.formats.pts import find_image, parse_pts
from facemark.data.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from facemark.data.sample import Sample
from facemark.data.schemes import LandmarkScheme, get_scheme, scheme_for_count
from facemark.errors import ConfigError, DataError, raise_error

OPTIONS = ("source", "split", "category")
SOURCES = ("auto", "frames", "video")
FRAME_FOLDERS = ("imgs", "frames")

# The 300VW test protocol (Shen et al., ICCVW 2015; the lists used by mmpose and SBR).
# Category 1: laboratory and naturalistic well-lit conditions.
CATEGORY_1 = ("114", "124", "125", "126", "150", "158", "401", "402", "505", "506", "507",
              "508", "509", "510", "511", "514", "515", "518", "519", "520", "521", "522",
              "524", "525", "537", "538", "540", "541", "546", "547", "548")
# Category 2: real-world human-computer interaction applications.
CATEGORY_2 = ("203", "208", "211", "212", "213", "214", "218", "224", "403", "404", "405",
              "406", "407", "408", "409", "412", "550", "551", "553")
# Category 3: arbitrary conditions.
CATEGORY_3 = ("410", "411", "516", "517", "526", "528", "529", "530", "531", "533", "557",
              "558", "559", "562")
# The 50 training videos.
TRAIN_VIDEOS = ("001", "002", "003", "004", "007", "009", "010", "011", "013", "015", "016",
                "017", "018", "019", "020", "022", "025", "027", "028", "029", "031", "033",
                "034", "035", "037", "039", "041", "043", "044", "046", "047", "048", "049",
                "053", "057", "059", "112", "113", "115", "119", "120", "123", "138", "143",
                "144", "160", "204", "205", "223", "225")

CATEGORIES: dict[str, int] = {v: c for c, vids in ((1, CATEGORY_1), (2, CATEGORY_2),
                                                    (3, CATEGORY_3)) for v in vids}


def video_split(video: str) -> tuple[str | None, int | None]:
    """(split, category) of a 300VW video id: ("train", None), ("test", 1..3) or (None, None)."""
    if video in CATEGORIES:
        return "test", CATEGORIES[video]
    if video in TRAIN_VIDEOS:
        return "train", None
    return None, None


def _is_video_dir(path: Path) -> bool:
    annot = path / "annot"
    return annot.is_dir() and next(annot.glob("*.pts"), None) is not None


def sniff(path: Path) -> bool:
    """A video folder with ``annot/*.pts``, or a folder of such folders."""
    path = Path(path)
    if not path.is_dir():
        return False
    return _is_video_dir(path) or any(c.is_dir() and _is_video_dir(c) for c in path.iterdir())


def read(path, *, scheme: str | LandmarkScheme | None = None, on_error=raise_error,
         source: str = "auto", split: str | None = None, category: int | str | None = None,
         **unknown) -> list[Sample]:
    """Read a 300VW folder (the root or one video).

    Args:
        path: the dataset root or one video folder.
        scheme: landmark scheme name; inferred from each file's point count when None.
        on_error: called with a DataError for each bad annotation (or a video folder with
            neither frames nor video); it is skipped if ``on_error`` returns.
        source: ``"auto"``, ``"frames"`` or ``"video"`` (see the module doc).
        split: ``"train"`` or ``"test"``: read only those videos.
        category: 1, 2 or 3: read only the test videos of that category.

    Returns:
        one Sample per annotated frame, by video then frame number; ``source`` the ``.pts``.
    """
    if unknown:
        raise ConfigError(f"unknown option(s) for format 300vw: {', '.join(sorted(unknown))}; "
                          f"known options: {', '.join(OPTIONS)}")
    if source not in SOURCES:
        raise ConfigError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}")
    if split not in (None, "train", "test"):
        raise ConfigError(f"split: expected 'train' or 'test', got {split!r}")
    if category is not None:
        if str(category).strip() not in ("1", "2", "3"):
            raise ConfigError(f"category: expected 1, 2 or 3, got {category!r}")
        category = int(str(category).strip())
    sch = None
    if scheme is not None:
        try:
            sch = get_scheme(scheme)
        except KeyError as e:
            raise ConfigError(f"scheme: {e.args[0]}") from None
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "dataset path not found" if not path.exists()
                        else "expected a 300VW folder (video folders with annot/*.pts)")
    videos = [path] if _is_video_dir(path) else sorted(
        c for c in path.iterdir() if c.is_dir() and _is_video_dir(c))
    if not videos:
        raise DataError(path, "no 300VW video folders (NNN/annot/*.pts) found")
    samples = []
    for video_dir in videos:
        vid_split, vid_category = video_split(video_dir.name)
        if split is not None and vid_split != split:
            continue
        if category is not None and vid_category != category:
            continue
        try:
            frames = _frame_source(video_dir, source)
        except DataError as e:
            on_error(e)
            continue
        attributes = {"video": video_dir.name, "split": vid_split, "category": vid_category}
        for pts_path in sorted((video_dir / "annot").glob("*.pts")):
            try:
                samples.append(_read_frame(pts_path, frames, sch, attributes))
            except DataError as e:
                on_error(e)
    return samples


@dataclass(frozen=True)
class _Frames:
    """Where one video's frames come from: a folder of images, or the video file and its
    frame count (0 where the container does not say)."""

    folder: Path | None = None
    video: Path | None = None
    count: int = 0


def _frame_source(video_dir: Path, source: str) -> _Frames:
    if source in ("auto", "frames"):
        for name in FRAME_FOLDERS:
            if (video_dir / name).is_dir():
                return _Frames(folder=video_dir / name)
        if source == "frames":
            raise DataError(video_dir, f"no frame folder ({' or '.join(FRAME_FOLDERS)}/)")
    videos = sorted(p for p in video_dir.iterdir()
                    if p.is_file() and p.stem == "vid" and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        also = "" if source == "video" else f" and no frame folder ({' or '.join(FRAME_FOLDERS)}/)"
        raise DataError(video_dir, f"no video file vid.avi{also}")
    cap = cv2.VideoCapture(str(videos[0]))
    try:
        if not cap.isOpened():
            raise DataError(videos[0], "cannot open video file")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return _Frames(video=videos[0], count=count)


def _read_frame(pts_path: Path, frames: _Frames, sch: LandmarkScheme | None,
                attributes: dict) -> Sample:
    stem = pts_path.stem
    if not stem.isdigit() or int(stem) < 1:
        raise DataError(pts_path, "the file name must be the 1-based frame number, "
                                  f"like 000001.pts; got {pts_path.name!r}")
    index = int(stem) - 1
    points = parse_pts(pts_path)
    use = sch or scheme_for_count(len(points))
    if use is None:
        raise DataError(pts_path, f"no landmark scheme has {len(points)} points; pass scheme=")
    if len(points) != use.num_points:
        raise DataError(pts_path, f"expected {use.num_points} points for scheme {use.name}, "
                                  f"got {len(points)}")
    attributes = {**attributes, "frame_index": index}
    if frames.folder is not None:
        image = find_image(frames.folder / stem)
        if image is None:
            raise DataError(pts_path, f"no frame image {stem}.* in {frames.folder} (looked for "
                                      f"{', '.join(IMAGE_EXTENSIONS)})")
        return Sample(image=str(image), landmarks=points, scheme=use.name,
                      attributes=attributes, source=str(pts_path))
    if frames.count > 0 and index >= frames.count:
        raise DataError(pts_path, f"frame {index + 1} is past the end of {frames.video} "
                                  f"({frames.count} frames)")
    return Sample(image=str(frames.video), landmarks=points, scheme=use.name, frame=index,
                  attributes=attributes, source=str(pts_path))

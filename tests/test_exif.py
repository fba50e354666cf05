"""Photos as cameras write them: EXIF orientation is applied for files and PIL images, with
points in the upright image; ``exif=False`` / ``--keep-exif-orientation`` keeps the stored
pixels (issue 12)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import facemark
from facemark.api import bundled_models
from facemark.cli import main
from facemark.data.images import EXIF_ORIENTATION_TAG, read_image, upright

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"
PHOTO = PHOTOS / "img1.jpg"


def _save(array: np.ndarray, path: Path, orientation: int | None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION_TAG] = orientation
    Image.fromarray(array).save(path, exif=exif, quality=100, subsampling=0)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_matches_pil(orientation, tmp_path):
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    path = tmp_path / f"o{orientation}.png"   # lossless: the pixels must match exactly
    _save(stored, path, orientation)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(upright(stored, orientation), expected)
    np.testing.assert_array_equal(read_image(path, exif=False), stored)


def _sideways(tmp_path: Path) -> tuple[np.ndarray, Path, Path]:
    """(upright pixels, the upright photo, the photo stored sideways with orientation 6)."""
    if not PHOTO.is_file():
        pytest.skip(f"{PHOTO} is absent (../shared/data/photos holds the real photos)")
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    straight = _save(photo, tmp_path / "upright.jpg", None)
    # a phone holds it turned: the stored pixels are the upright ones turned 90 degrees
    # counter-clockwise, and orientation 6 tells viewers to turn them clockwise
    sideways = _save(np.ascontiguousarray(np.rot90(photo, 1)), tmp_path / "portrait.jpg", 6)
    return photo, straight, sideways


def _close(a, b, size: float) -> bool:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) < 0.03 * size


@pytest.mark.shared_data
@pytest.mark.skipif(".pt" not in bundled_models().get("default", {}),
                    reason="no bundled default model")
def test_rotated_photo_gives_the_upright_faces(tmp_path):
    photo, straight, sideways = _sideways(tmp_path)
    lm = facemark.load()
    want = lm.detect(straight)
    assert len(want) >= 1, "the test photo should have a face"
    size = float(np.sqrt(np.prod(want[0].box[2:] - want[0].box[:2])))
    for given in (sideways, str(sideways), Image.open(sideways)):
        got = lm.detect(given)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert _close(a.box, b.box, size) and _close(a.points, b.points, size)
    # the stored pixels, when asked for: the face is sideways (points in the stored frame)
    assert read_image(sideways, exif=False).shape[:2] == photo.shape[1::-1]
    raw = lm.detect(sideways, exif=False)
    assert all(not _close(a.points, b.points, size) for a, b in zip(raw, want))


@pytest.mark.shared_data
@pytest.mark.skipif(".pt" not in bundled_models().get("default", {}),
                    reason="no bundled default model")
def test_detect_cli_turns_photos_upright(tmp_path, capsys):
    photo, straight, sideways = _sideways(tmp_path)
    faces = {}
    for name, path, extra in (("upright", straight, []), ("sideways", sideways, []),
                              ("raw", sideways, ["--keep-exif-orientation"])):
        out = tmp_path / name
        assert main(["detect", str(path), "-o", str(out), "-q", *extra]) == 0
        faces[name] = json.loads((out / "predictions.json").read_text())["faces"]
    capsys.readouterr()
    assert len(faces["upright"]) >= 1 and len(faces["sideways"]) == len(faces["upright"])
    a, b = faces["upright"][0], faces["sideways"][0]
    size = float(np.sqrt(np.prod(np.subtract(a["box"][2:], a["box"][:2]))))
    assert _close(a["points"], b["points"], size)
    assert all(not _close(f["points"], a["points"], size) for f in faces["raw"])

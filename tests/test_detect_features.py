"""``facemark detect --pose --chips DIR``: pose fields in the outputs, chips on disk, overlays
with pose axes, resuming, and one-line errors. Runs the bundled default model on a real
photo (../shared/data/photos, skipped where absent)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from facemark.api import bundled_models
from facemark.cli import main
from facemark.data.predictions import read_predictions

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"
pytestmark = [pytest.mark.skipif(".pt" not in bundled_models().get("default", {}),
                                 reason="no bundled default model"), pytest.mark.shared_data]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("img10.jpg", "couple.jpg"):
        if not (PHOTOS / name).is_file():
            pytest.skip(f"real photo not found at {PHOTOS / name} (../shared/data next to the "
                        "repository)")
        shutil.copy(PHOTOS / name, folder / name)
    return folder


def test_pose_and_chips_end_to_end(photos, tmp_path, capsys):
    out, chips = tmp_path / "out", tmp_path / "chips"
    args = ["detect", str(photos), "-o", str(out), "--pose", "--chips", str(chips),
            "--overlay", "--format", "both", "-q"]
    assert main(args) == 0
    for suffix in (".json", ".csv"):
        faces = read_predictions(out / f"predictions{suffix}").faces
        assert len(faces) == 3                                 # 1 + 2 faces
        for f in faces:
            assert set(f.pose) == {"yaw", "pitch", "roll", "rvec", "tvec"}
            assert -90 <= f.pose["yaw"] <= 90 and f.pose["tvec"][2] > 0
    frontal = [f for f in faces if f.image.endswith("img10.jpg")][0]
    assert abs(frontal.pose["yaw"]) < 5
    files = sorted(p.relative_to(chips).as_posix() for p in chips.rglob("*.png"))
    folder = photos.name
    assert files == [f"{folder}/couple_0.png", f"{folder}/couple_1.png", f"{folder}/img10_0.png"]
    chip = cv2.imread(str(chips / folder / "img10_0.png"))
    assert chip.shape == (112, 112, 3) and chip.std() > 20     # a face, not a blank
    overlay = cv2.imread(str(out / "overlays" / folder / "img10.jpg"))
    assert overlay is not None
    # the run resumes: nothing to do again while chips and parts are there
    capsys.readouterr()
    assert main(args) == 0
    assert "from cache  2" in capsys.readouterr().out
    (chips / folder / "couple_1.png").unlink()                 # a missing chip is made again
    assert main(args) == 0
    assert "from cache  1" in capsys.readouterr().out and (chips / folder / "couple_1.png").is_file()


def test_dlib_chips_and_no_pose_by_default(photos, tmp_path):
    out, chips = tmp_path / "out", tmp_path / "chips"
    assert main(["detect", str(photos / "img10.jpg"), "-o", str(out), "--chips", str(chips),
                 "--chip-template", "dlib", "--chip-size", "96", "-q"]) == 0
    chip = cv2.imread(str(chips / "img10_0.png"))
    assert chip.shape == (96, 96, 3)
    record = json.loads((out / "predictions.json").read_text().splitlines()[1].rstrip(","))
    assert "pose" not in record                                # optional: only with --pose


def test_bad_chip_options_are_one_line_errors(photos, tmp_path, capsys):
    assert main(["detect", str(photos / "img10.jpg"), "-o", str(tmp_path / "o"), "--chips",
                 str(tmp_path / "c"), "--chip-template", "vgg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown chip template 'vgg'" in err[0] and "arcface, dlib" in err[0]
    assert not (tmp_path / "c").exists()                     # stopped before any image
    with pytest.raises(SystemExit):
        main(["detect", str(photos / "img10.jpg"), "--chips", "c", "--chip-padding", "-1"])
    assert "expected a number >= 0" in capsys.readouterr().err

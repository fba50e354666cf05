"""``facemark data`` subcommands, run through facemark.cli.main."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facemark.cli import main
from facemark.data.cache import CropCache
from synthetic import make_pts_dataset, write_pts

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AFW = DATA / "300w" / "afw"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("facemark: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def faces(tmp_path):
    return make_pts_dataset(tmp_path / "faces", n=6, size=96)


def test_schemes_table(capsys):
    rc, out, _ = run(capsys, "data", "schemes")
    assert rc == 0
    header, rule, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["name", "points", "NME"]
    row = next(r for r in rows if r.startswith("300w68"))
    assert row.split()[1:3] == ["68", "inter_ocular"] and "ibug68" in row


def test_data_without_action_prints_help(capsys):
    rc, out, _ = run(capsys, "data")
    assert rc == 0 and "schemes" in out and "cache" in out


def test_info_synthetic(capsys, faces):
    rc, out, _ = run(capsys, "data", "info", str(faces))
    assert rc == 0
    assert "faces: 6 (6 labelled, 0 unlabelled) in 6 images" in out
    assert "scheme: 300w68 (68 points" in out and "sets: faces 6" in out
    assert "(format pts)" in out


@pytest.mark.shared_data
def test_info_on_shared_data(capsys):
    if not AFW.is_dir():
        pytest.skip(f"shared data not found at {AFW}")
    rc, out, _ = run(capsys, "data", "info", str(AFW.parent))
    assert rc == 0
    # AFW 337 + Helen train 870 + LFPW train 805 and test 224 (the shared data grows: the
    # count follows the folders, each reader's count is fixed)
    assert "helen 870" in out and "afw 337" in out
    if (AFW.parent / "lfpw").is_dir():
        assert "faces: 2236 (2236 labelled" in out and "lfpw 1029" in out


def test_bad_arguments_are_one_line_errors(capsys, faces, tmp_path):
    rc, _, err = run(capsys, "data", "info", str(faces), "--scheme", "nosuch")
    assert rc == 2 and "nosuch" in one_line_error(err)
    rc, _, err = run(capsys, "data", "info", str(tmp_path / "missing"))
    assert rc == 2 and "missing: dataset path not found" in one_line_error(err)
    rc, _, err = run(capsys, "data", "cache", str(faces), "-o", str(tmp_path / "c"),
                     "--crop-rule", "oval")
    assert rc == 2 and "--crop-rule: unknown crop rule 'oval'" in one_line_error(err)


def test_cache_two_datasets_then_refuse_then_overwrite(capsys, tmp_path, faces):
    more = make_pts_dataset(tmp_path / "more", n=3, size=80, seed=1)
    out_dir = tmp_path / "cache"
    rc, out, _ = run(capsys, "data", "cache", str(faces), str(more), "-o", str(out_dir),
                     "--size", "48", "--no-progress")
    assert rc == 0
    assert f"wrote 9 crops of 48x48 (300w68, crop rule 300w) to {out_dir}" in out
    assert "skipped: none" in out
    cache = CropCache.open(out_dir)
    assert len(cache) == 9 and cache.size == 48 and str(more) in cache.meta["source"]
    rc, _, err = run(capsys, "data", "cache", str(faces), "-o", str(out_dir), "--no-progress")
    assert rc == 2 and "already exists" in one_line_error(err)
    rc, out, _ = run(capsys, "data", "cache", str(faces), "-o", str(out_dir), "--no-progress",
                     "--overwrite", "--size", "32")
    assert rc == 0 and len(CropCache.open(out_dir)) == 6


def test_cache_with_context(capsys, tmp_path, faces):
    out_dir = tmp_path / "wide"
    rc, out, _ = run(capsys, "data", "cache", str(faces), "-o", str(out_dir), "--size", "48",
                     "--context", "1.5", "--no-progress")
    assert rc == 0 and "wrote 6 crops of 72x72" in out and "1.5x context around 48 px" in out
    cache = CropCache.open(out_dir)
    assert (cache.size, cache.crop_size, cache.context) == (72, 48, 1.5)
    with pytest.raises(SystemExit) as exit_:
        main(["data", "cache", str(faces), "-o", str(tmp_path / "x"), "--context", "0.5"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--context" in err and "from 1 to 4" in err


def test_cache_corrupt_image_stops_or_is_skipped(capsys, tmp_path, faces):
    (faces / "face_002.png").write_bytes(b"\x89PNG broken")
    rc, _, err = run(capsys, "data", "cache", str(faces), "-o", str(tmp_path / "c"), "--no-progress")
    assert rc == 2 and "face_002.png: cannot decode image" in one_line_error(err)
    assert not (tmp_path / "c").exists()
    rc, out, _ = run(capsys, "data", "cache", str(faces), "-o", str(tmp_path / "c"),
                     "--no-progress", "--skip-bad")
    assert rc == 0 and "wrote 5 crops" in out
    assert "skipped 1 bad record(s)" in out and "face_002.png: cannot decode image" in out


def test_cache_refuses_mixed_schemes(capsys, tmp_path, faces):
    other = tmp_path / "wflw"
    other.mkdir()
    cv2.imwrite(str(other / "a.png"), np.zeros((50, 50, 3), np.uint8))
    write_pts(other / "a.pts", np.random.default_rng(0).uniform(5, 45, (98, 2)))
    rc, _, err = run(capsys, "data", "cache", str(faces), str(other), "-o", str(tmp_path / "c"),
                     "--no-progress")
    assert rc == 2 and "300w68, wflw98" in one_line_error(err)


def test_check_clean_dataset(capsys, faces):
    rc, out, err = run(capsys, "data", "check", str(faces), "--no-progress")
    assert rc == 0 and out == ""
    assert "checked 6 faces in 6 images: no problems" in err


def test_check_lists_every_problem(capsys, faces):
    (faces / "face_001.png").write_bytes(b"garbage")
    pts = np.random.default_rng(0).uniform(20, 70, (68, 2))
    pts[8] = (300.0, 50.0)                        # far right of a 96 px image
    write_pts(faces / "face_004.pts", pts)
    (faces / "face_005.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    rc, out, err = run(capsys, "data", "check", str(faces), "--no-progress")
    assert rc == 1
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    assert any("face_001.png: cannot decode image" in line and "face_001.pts" in line for line in lines)
    assert any("face_004.pts: point 8 (jaw_08) at (300.0, 50.0) lies 204 px outside the 96x96"
               in line for line in lines)
    assert any("face_005.pts" in line and "68" in line for line in lines)
    assert "3 problem(s)" in err
    # a generous tolerance accepts the far point
    (faces / "face_001.png").unlink()
    (faces / "face_001.pts").unlink()
    (faces / "face_005.pts").unlink()
    rc, _, _ = run(capsys, "data", "check", str(faces), "--no-progress", "--tolerance", "3")
    assert rc == 0


def _coloured_pixels(png: Path) -> int:
    img = cv2.imread(str(png))
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return int(((abs(r - g) > 60) | (abs(g - b) > 60)).sum())


def test_show_dataset_and_cache(capsys, tmp_path, faces):
    png = tmp_path / "out" / "grid.png"
    rc, out, _ = run(capsys, "data", "show", str(faces), "-o", str(png), "--n", "4", "--size", "64")
    assert rc == 0 and "wrote 4 faces" in out
    img = cv2.imread(str(png))
    assert img.shape[0] > 2 * 192 and img.shape[1] == 2 * 192       # 2x2 tiles of 192 + legend
    assert _coloured_pixels(png) > 500                              # landmarks were drawn
    run(capsys, "data", "cache", str(faces), "-o", str(tmp_path / "c"), "--size", "64", "--no-progress")
    aug_png = tmp_path / "aug.png"
    rc, out, _ = run(capsys, "data", "show", str(tmp_path / "c"), "-o", str(aug_png), "--augment")
    assert rc == 0 and "wrote 6 faces" in out
    assert cv2.imread(str(aug_png)).shape[1] == 3 * 192
    plain = tmp_path / "plain.png"
    run(capsys, "data", "show", str(tmp_path / "c"), "-o", str(plain))
    assert not np.array_equal(cv2.imread(str(plain)), cv2.imread(str(aug_png)))


def test_show_bad_output_path(capsys, tmp_path, faces):
    rc, _, err = run(capsys, "data", "show", str(faces), "-o", str(tmp_path / "grid.nope"))
    assert rc == 2 and "grid.nope" in one_line_error(err)

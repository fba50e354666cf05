"""One line instead of a traceback (issue 12, third part): output folders that cannot be
written, runs that would replace other runs' results, corrupt merge parts, predictions that
match no image, incomplete CSV point columns, broken links, float images."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemark.cli import main
from facemark.errors import DataError
from facemark.data.predictions import PredictedFace, read_predictions, write_predictions

from test_detect_cli import detect, folder, model_file, write_image  # noqa: F401 (fixtures)


def _one_line(capsys, *wanted: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facemark: error: "), err
    for text in wanted:
        assert text in err, err
    return err


# -- -o ----------------------------------------------------------------------------------
def test_output_is_an_existing_file(tmp_path, model_file, capsys):
    image = write_image(tmp_path / "a.png", 0)
    out = tmp_path / "out.json"
    out.write_text("{}")
    assert detect(image, "-o", out, model=model_file) == 2
    _one_line(capsys, f"{out}: -o is an existing file")
    assert out.read_text() == "{}"


def test_output_cannot_be_created_or_written(tmp_path, model_file, capsys, monkeypatch):
    image = write_image(tmp_path / "a.png", 0)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert detect(image, "-o", blocker / "out", model=model_file) == 2
    _one_line(capsys, "cannot create the -o folder: Not a directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):   # root may write anywhere: make the check see no access
        monkeypatch.setattr("facemark.io.os.access", lambda path, mode: False)
    try:
        assert detect(image, "-o", locked, model=model_file) == 2
    finally:
        locked.chmod(0o755)
    _one_line(capsys, f"{locked}: the -o folder is not writable")


def test_disk_full_keeps_earlier_results(tmp_path, model_file, capsys, monkeypatch):
    image = write_image(tmp_path / "a.png", 0)
    out = tmp_path / "out"
    assert detect(image, "-o", out, model=model_file) == 0
    before = (out / "predictions.json").read_text()
    write_image(tmp_path / "a.png", 1)   # changed: it must be computed and written again

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    assert detect(image, "-o", out, model=model_file) == 2
    _one_line(capsys, "cannot write: No space left on device")
    monkeypatch.undo()
    assert (out / "predictions.json").read_text() == before
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_a_later_run_does_not_replace_other_inputs_results(folder, model_file, tmp_path,
                                                           capsys):
    out = tmp_path / "out"
    assert detect(folder / "face0.png", "-o", out, model=model_file) == 0
    assert detect(folder / "face0.png", "-o", out, model=model_file) == 0     # a re-run: fine
    capsys.readouterr()
    assert detect(folder / "face1.png", "-o", out, model=model_file) == 2
    _one_line(capsys, "predictions.json holds faces of 1 image(s) this run was not given",
              "face0.png", "--overwrite", "--merge")
    assert [f.image for f in read_predictions(out / "predictions.json").faces] == [
        (folder / "face0.png").as_posix()]
    # both runs' inputs together update it; --overwrite replaces it
    assert detect(folder / "face0.png", folder / "face1.png", "-o", out, model=model_file) == 0
    assert detect(folder / "face2.png", "-o", out, "--overwrite", model=model_file) == 0
    assert [f.image for f in read_predictions(out / "predictions.json").faces] == [
        (folder / "face2.png").as_posix()]
    # the parts of all three runs are kept: --merge joins them
    capsys.readouterr()
    assert main(["detect", "--merge", str(out)]) == 0
    assert len(read_predictions(out / "predictions.json").faces) == 3


# -- --merge and evaluate exit statuses ----------------------------------------------------
def test_merge_with_a_corrupt_part_exits_1(folder, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert detect(folder / "face0.png", folder / "face1.png", "-o", out, model=model_file) == 0
    part = sorted((out / ".parts").glob("*.json"))[0]
    part.write_text('{"format": "facemark.detect-part", "ver')
    capsys.readouterr()
    assert main(["detect", "--merge", str(out)]) == 1
    text = capsys.readouterr().out
    assert "unreadable parts (1), not merged" in text and part.name in text
    assert len(read_predictions(out / "predictions.json").faces) == 1


def _toy_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"gt{i}.png"), np.full((64, 64, 3), 128, np.uint8))
        pts = rng.uniform(10, 50, (68, 2))
        body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts)
        (folder / f"gt{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    return folder


def test_evaluate_with_no_matching_prediction_is_an_error(tmp_path, capsys):
    data = _toy_dataset(tmp_path / "data")
    preds = tmp_path / "preds.json"
    write_predictions(preds, [PredictedFace(image="other.png", points=np.full((68, 2), 20.0))],
                      scheme="300w68", method="m")
    assert main(["evaluate", str(preds), "--data", str(data)]) == 2
    _one_line(capsys, f"{preds}: none of its 1 predicted faces is of an image of the dataset",
              "'other.png'")


# -- readers ------------------------------------------------------------------------------
def test_csv_without_the_last_point_names_the_missing_columns(tmp_path):
    n = 68
    cols = [f"{c}{i}" for i in range(n - 1) for c in ("x", "y")] + [f"s{i}" for i in range(n)]
    row = ["a.png", ""] + ["1.0"] * (len(cols))
    path = tmp_path / "p.csv"
    path.write_text("# scheme: 300w68\nimage,frame," + ",".join(cols) + "\n"
                    + ",".join(row) + "\n")
    with pytest.raises(DataError, match=r"p.csv:2: point columns x67, y67 are missing"):
        read_predictions(path)


def test_broken_links_and_link_loops_are_reported(folder, model_file, tmp_path, capsys):
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "self.png").symlink_to(folder / "self.png")
    out = tmp_path / "out"
    assert detect(folder, "-o", out, model=model_file) == 0
    text = capsys.readouterr().out
    assert f"{folder / 'gone.jpg'}: broken symbolic link" in text
    assert f"{folder / 'self.png'}: symbolic link loop" in text


# -- float images ---------------------------------------------------------------------------
def test_float_images_in_0_1_are_scaled_and_others_named(model_file, tmp_path):
    from facemark.api import load

    lm = load(model_file, detector="test_middle_box")
    image = write_image(tmp_path / "face.png", 3)
    rgb = cv2.imread(str(image))[:, :, ::-1]
    want = lm.detect(rgb)
    got = lm.detect(rgb.astype(np.float32) / 255)
    assert len(got) == len(want) == 1
    np.testing.assert_allclose(got[0].points, want[0].points, atol=1e-3)
    with pytest.raises(ValueError, match=r"values in 0-1, got 25.5 to 255"):
        lm.detect(rgb.astype(np.float64) * (255 / rgb.max()))
    with pytest.raises(ValueError, match="NaN"):
        lm.detect(np.full((20, 20, 3), np.nan, np.float32))

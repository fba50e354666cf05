"""The batch engine and the calibration workflow are callable from Python, not only from
the CLI: ``facemark.detect_files`` and ``facemark.calibrate`` (the CLI tests cover the
behaviour; these check the Python entry points give the same results)."""
from __future__ import annotations

import json

import facemark
from facemark.cli import main
from test_calibration import faces, shifted_folder  # noqa: F401 (fixtures)
from test_detect_cli import DETECTOR, folder, model_file  # noqa: F401 (fixtures)


def test_detect_files_writes_what_the_cli_writes(folder, model_file, tmp_path, capsys):
    summary = facemark.detect_files([folder], tmp_path / "py", model=model_file,
                                    detector=DETECTOR)
    assert capsys.readouterr().out == ""           # quiet by default
    assert (summary.images, summary.faces, len(summary.skipped)) == (6, 5, 1)
    assert summary.exit_status == 0 and summary.other_files == 1
    assert summary.report().startswith("summary\n  inputs      7")
    assert main(["detect", str(folder), "-o", str(tmp_path / "cli"), "--model", str(model_file),
                 "--detector", DETECTOR, "--quiet"]) == 0
    ours = json.loads((tmp_path / "py" / "predictions.json").read_text())
    theirs = json.loads((tmp_path / "cli" / "predictions.json").read_text())
    assert ours["faces"] == theirs["faces"]
    again = facemark.BatchDetector(tmp_path / "py", model=model_file, detector=DETECTOR) \
        .detect(str(folder))
    assert again.cached == 6 and again.new_faces == 0


def test_calibrate_from_python(tmp_path, shifted_folder):
    from test_api import make_model_file

    model = make_model_file(tmp_path / "m.pt")
    run = facemark.calibrate(model, f"pts:{shifted_folder}", detectors=["test_shifted"],
                             test=f"pts:{shifted_folder}", output=tmp_path / "cal.pt",
                             progress=False)
    assert run.test_faces == 12 and run.rows[0]["found"] == "100.0%"
    assert run.table().startswith("| detector | box style |")
    cals = facemark.load(tmp_path / "cal.pt", detector="opencv").calibrations_
    assert set(cals) == {"test_shifted"} and cals["test_shifted"].faces == 12

"""``facemark evaluate`` end to end: on a synthetic .pts set and on the real 300-W subsets."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemark.cli import main
from facemark.data.formats import open_dataset
from facemark.evaluation import sources
from facemark.evaluation.meanface import MeanFaceBaseline
from facemark.data.predictions import PredictedFace, PredictionSet, write_predictions
from facemark.evaluation.report import evaluate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
W300 = DATA / "300w"
OUTPUTS = ("report.json", "report.md", "ced.png", "per_landmark.png", "best_worst.png")


def _shape(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(10, 50, (68, 2))


def _write_face(folder: Path, name: str, points: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), np.full((64, 64, 3), 128, np.uint8))
    body = "\n".join(f"{x + 1:.6f} {y + 1:.6f}" for x, y in points)   # .pts is 1-based
    (folder / f"{name}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")


@pytest.fixture()
def toy(tmp_path):
    """Train and test folders of .pts faces (one shape, different placements) + predictions."""
    base = _shape(0)
    for i, (s, dx) in enumerate([(1.0, 0), (0.8, 5), (1.1, -3)]):
        _write_face(tmp_path / "train", f"t{i}", base * s + dx)
    test = {"a": base + 2, "b": base * 0.9 + 4, "c": base - 1}
    for name, pts in test.items():
        _write_face(tmp_path / "test", name, pts)
    # predictions: "a" exact, "b" shifted by 1 px in x, "c" missing
    faces = [PredictedFace("a.png", test["a"]), PredictedFace("b.png", test["b"] + (1, 0))]
    write_predictions(tmp_path / "preds.json", faces, "300w68", "shifted")
    return tmp_path


def test_toy_end_to_end_with_missing_face(toy, capsys):
    out = toy / "out"
    rc = main(["evaluate", "meanface", f"mine={toy / 'preds.json'}", "--data", str(toy / "test"),
               "--train", str(toy / "train"), "--out", str(out), "--save-predictions"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "meanface" in printed and "mine" in printed
    assert "mine: 1 of 3 faces have no prediction" in printed
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0
    assert cv2.imread(str(out / "ced.png")) is not None
    report = json.loads((out / "report.json").read_text())
    mine = report["methods"]["mine"]["summary"]
    # "a" is exact (0), "b" is off by 1 px: NME_b = 1 / inter-ocular distance of b
    b = _shape(0) * 0.9 + 4
    iod_b = np.linalg.norm(b[36] - b[45])
    assert mine["missing"] == 1 and mine["count"] == 3
    assert mine["nme"] == pytest.approx((0 + 1 / iod_b) / 2, rel=1e-3)
    assert mine["fr"] == pytest.approx(1 / 3)          # the missing face fails
    # the test faces are the training shape moved and scaled: the mean face fits exactly
    assert report["methods"]["meanface"]["summary"]["nme"] == pytest.approx(0, abs=1e-4)
    faces = {Path(f["image"]).name: f for f in report["faces"]}
    assert faces["c.png"]["nme"]["mine"] is None and faces["c.png"]["found"]["mine"] is False
    saved = out / "predictions" / "meanface.json"
    assert json.loads(saved.read_text())["faces"][0]["image"] == "a.png"   # relative to --data
    md = (out / "report.md").read_text()
    assert "| mine |" in md and "## Per-landmark NME (%)" in md
    # mine against meanface (exact) on the two faces both predicted: +NME_b / 2 on average
    paired = report["paired"]["mine"]
    assert paired["count"] == 2 and paired["better"] == 0.0
    assert paired["diff"] == pytest.approx(1 / iod_b / 2, rel=1e-3)
    assert "paired with the first method" in printed and "## Paired differences" in md


def test_cli_user_errors_are_one_line(toy, capsys):
    test = str(toy / "test")
    assert main(["evaluate", "meanface", "--data", test]) == 2
    assert "needs training faces: give --train DATASET" in capsys.readouterr().err
    assert main(["evaluate", "preds.txt", "--data", test]) == 2
    err = capsys.readouterr().err
    assert "is not a prediction source I know" in err and "meanface:" in err
    assert main(["evaluate", str(toy / "nope.json"), "--data", test]) == 2
    assert "nope.json: prediction file not found" in capsys.readouterr().err
    assert main(["evaluate", "meanface", "--data", test, "--train", test,
                 "--crop-rule", "tight"]) == 2
    assert "--crop-rule 'tight' is not a crop rule" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "meanface", "--data", test, "--threshold", "-1"])
    assert e.value.code == 2


def test_skip_bad_lists_the_broken_record(toy, capsys):
    (toy / "test" / "d.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    cv2.imwrite(str(toy / "test" / "d.png"), np.zeros((8, 8, 3), np.uint8))
    args = ["evaluate", str(toy / "preds.json"), "--data", str(toy / "test")]
    assert main(args) == 2
    assert "d.pts: header says n_points: 68 but the file has 1 points" in capsys.readouterr().err
    assert main(args + ["--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 bad record(s)" in captured.err and "d.pts" in captured.err
    assert "(3 faces" in captured.out


def test_registered_source_kind_is_used(toy, capsys):
    def resolve(arg, samples, **kw):
        points = np.stack([s.landmarks for s in samples]) + (0, 2)
        return PredictionSet.from_samples(samples, points, method="plus2")

    sources.register_source(sources.PredictionSource(
        "toy", lambda a: a.startswith("toy:"), resolve, "toy:ANYTHING"), before="file")
    try:
        order = list(sources.SOURCES)
        assert order.index("toy") == order.index("file") - 1
        assert main(["evaluate", "toy:x", "--data", str(toy / "test")]) == 0
        assert "plus2" in capsys.readouterr().out
    finally:
        del sources.SOURCES["toy"]


def test_split_named():
    assert sources.split_named("pip=runs/a.json") == ("pip", "runs/a.json")
    assert sources.split_named("runs/x=1/a.json") == (None, "runs/x=1/a.json")
    assert sources.split_named("meanface") == (None, "meanface")


def test_report_subset_tables_for_300w_sets(toy):
    samples = open_dataset(toy / "test")
    for s, st in zip(samples, ["lfpw", "helen", "ibug"]):
        s.attributes["set"] = st
    pset = PredictionSet.from_samples(samples, np.stack([s.landmarks for s in samples]), "gt")
    report = evaluate({"gt": pset}, samples, subsets="300w", threshold=0.08)
    assert report.subset_counts == {"all": 3, "common": 2, "challenge": 1, "full": 3,
                                    "set=helen": 1, "set=ibug": 1, "set=lfpw": 1}
    md = report.to_markdown()
    assert "## Subsets: gt" in md and "| challenge | 1 | 0.00 | 0.00 | 1.0000 | 0 |" in md
    assert "FR@0.08 %" in md


# ---------------------------------------------------------------------------------------
# Real data: mean face fitted on 300-W Helen (train part), evaluated on AFW
# ---------------------------------------------------------------------------------------
@pytest.mark.shared_data
@pytest.mark.skipif(not (W300 / "afw").is_dir() or not (W300 / "helen" / "trainset").is_dir(),
                    reason=f"needs the 300-W subsets in {W300} (../shared/data)")
def test_meanface_on_300w_afw_and_two_sources_side_by_side(tmp_path, capsys):
    afw, helen = str(W300 / "afw"), str(W300 / "helen" / "trainset")
    out = tmp_path / "out"
    assert main(["evaluate", "meanface", "--data", afw, "--train", helen, "--out", str(out)]) == 0
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0
    for png in ("ced.png", "per_landmark.png", "best_worst.png"):
        assert cv2.imread(str(out / png)) is not None
    summary = json.loads((out / "report.json").read_text())["methods"]["meanface"]["summary"]
    assert summary["count"] == 337 and summary["missing"] == 0
    # measured 21.80% (docs/results.md): a plausible positive number, far from a real model
    assert 0.10 < summary["nme"] < 0.40
    capsys.readouterr()

    # the same baseline through a prediction file, next to the built-in source
    test = open_dataset(afw)
    pset = MeanFaceBaseline("300w").fit(open_dataset(helen)).predict(test)
    pred_file = write_predictions(tmp_path / "meanface.json", pset)
    out2 = tmp_path / "out2"
    assert main(["evaluate", f"file={pred_file}", "meanface", "--data", afw, "--train", helen,
                 "--out", str(out2)]) == 0
    methods = json.loads((out2 / "report.json").read_text())["methods"]
    assert list(methods) == ["file", "meanface"]
    assert methods["file"]["summary"]["nme"] == pytest.approx(summary["nme"], abs=1e-6)
    assert methods["file"]["summary"]["auc"] == pytest.approx(summary["auc"], abs=1e-6)
    printed = capsys.readouterr().out
    assert printed.count("21.80") >= 2

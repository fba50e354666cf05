"""The bundled default model: what ships, that it loads with both engines, and that it finds
real faces accurately (on ../shared/data where present)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import facemark
from facemark.api import bundled_models

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BUNDLED = bundled_models().get("default", {})
needs_model = pytest.mark.skipif(".pt" not in BUNDLED, reason="no bundled default model")


@needs_model
def test_shipped_files_are_small_and_carry_what_inference_needs():
    total = sum(p.stat().st_size for p in BUNDLED.values())
    assert total <= 30 * 2 ** 20, f"bundled default model files take {total / 2 ** 20:.1f} MB"
    assert set(BUNDLED) == {".pt"}     # the .onnx is made from it into the user cache
    for engine in ("torch", "onnx"):
        lm = facemark.load(engine=engine)
        assert lm.scheme == "300w68" and lm.num_points == 68
        assert {"dlib_hog", "opencv_haar"} <= set(lm.calibrations_)
    assert facemark.load().engine_.kind == "onnx"     # the CPU default is onnxruntime


@needs_model
def test_onnx_is_exported_once_into_the_user_cache(tmp_path, monkeypatch):
    from facemark.api import bundled_onnx, resolve_model_path

    monkeypatch.setenv("FACEMARK_CACHE", str(tmp_path / "cache"))
    path = resolve_model_path(None)
    assert path.parent == tmp_path / "cache" and path.suffix == ".onnx"
    assert path.name.startswith("default-")
    mtime = path.stat().st_mtime_ns
    assert bundled_onnx("default", BUNDLED[".pt"]) == path and path.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]  # no temp files
    assert resolve_model_path(None, engine="torch") == BUNDLED[".pt"]


@needs_model
def test_unwritable_cache_falls_back_to_torch_with_a_warning(tmp_path, monkeypatch):
    from facemark.api import resolve_model_path
    from facemark.errors import FacemarkError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FACEMARK_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="FACEMARK_CACHE.*PyTorch instead"):
        assert resolve_model_path(None) == BUNDLED[".pt"]
    with pytest.raises(FacemarkError, match="FACEMARK_CACHE"):
        resolve_model_path(None, engine="onnx")


@pytest.mark.parametrize("name", ["default", "accurate"])
def test_engines_agree_on_a_real_face(name):
    from facemark.data.images import sample_image

    if ".pt" not in bundled_models().get(name, {}):
        pytest.skip(f"no bundled {name} model")
    image = sample_image()
    a = facemark.load(name, engine="torch").detect(image)
    b = facemark.load(name, engine="onnx").detect(image)
    assert len(a) == len(b) == 1
    size = np.sqrt(np.prod(a[0].box[2:] - a[0].box[:2]))
    # the .onnx is exported from the float16 .pt: within 0.5% of the face size
    assert np.abs(a[0].points - b[0].points).max() < 0.005 * size


@needs_model
def test_readme_first_command_finds_the_sample_face(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "facemark", "detect", "--sample", "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "grace_hopper.jpg: 1 face" in proc.stdout


@needs_model
@pytest.mark.shared_data
def test_accuracy_on_held_out_ytf68_test_faces():
    csv = SHARED / "ytf68" / "test_frames_keypoints.csv"
    if not csv.is_file():
        pytest.skip("../shared/data/ytf68 is absent")
    from facemark.data.formats import open_dataset
    from facemark.evaluation.metrics import nme

    samples = open_dataset(f"csv:{csv}")[::8]          # 97 of the 770 held-out faces
    lm = facemark.load()
    errors = []
    for s in samples:
        faces = lm.detect(s.image)
        truth = s.landmarks
        centre = truth.mean(axis=0)
        best = min(faces, key=lambda f: np.linalg.norm(f.points.mean(0) - centre), default=None)
        if best is None:
            errors.append(np.inf)
            continue
        errors.append(float(nme(best.points[None], truth[None], "300w68")[0]))
    errors = np.array(errors)
    found = np.isfinite(errors)
    assert found.mean() > 0.9
    # dlib's 68-point model: 6.95% on all of ytf68/test (../shared/REFERENCE.md); the
    # shipped model measured 4.93% on all 770 faces (docs/model-card.md)
    assert np.mean(errors[found]) < 0.0695
    # and it fails (NME > 10%) on fewer faces than dlib's 9% (misses included)
    assert np.mean(~found | (errors > 0.1)) < 0.09


@needs_model
@pytest.mark.shared_data
def test_every_face_of_the_group_photo():
    photo = SHARED / "photos" / "group_t1.jpg"
    if not photo.is_file():
        pytest.skip("../shared/data/photos is absent")
    faces = facemark.load().detect(photo)
    assert len(faces) == 6
    for f in faces:
        assert f.points.shape == (68, 2) and f.confidence > 0.3

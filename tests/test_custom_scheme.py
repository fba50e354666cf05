"""A landmark scheme of one's own: the scheme file's checks, and the round trip
``facemark train`` -> ``facemark export`` -> ``facemark detect`` on a 10-point scheme that
facemark does not know, where the later steps see only the model file (the scheme file is
gone and the process has forgotten the scheme, as a fresh process on another machine)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import facemark.data.schemes as schemes
from facemark.cli import main
from facemark.data.schemes import (adopt_scheme, get_scheme, list_schemes, load_scheme_file,
                                   scheme_for_count, scheme_from_dict, scheme_to_dict)
from facemark.errors import ConfigError
from facemark.inference.detectors import DetectedFace, FaceDetector, register_detector

from synthetic import make_face, write_pts

NAMES = ["brow_r", "brow_l", "eye_r_outer", "eye_r_inner", "eye_l_inner", "eye_l_outer",
         "nose_tip", "mouth_r", "mouth_l", "chin"]
# where each of NAMES sits among the synthetic faces' 68 template points (iBUG order)
FROM_68 = [17, 26, 36, 39, 42, 45, 30, 48, 54, 8]
SCHEME = {
    "name": "test_own10",
    "description": "ten points of a test",
    "names": NAMES,
    "mirror": [["brow_r", "brow_l"], ["eye_r_outer", "eye_l_outer"], [3, 4],
               ["mouth_r", "mouth_l"]],
    "outer_eye_corners": ["eye_r_outer", "eye_l_outer"],
    "regions": {"eyes": [2, 3, 4, 5], "mouth": ["mouth_r", "mouth_l"]},
    "skeleton": [["eye_r_outer", "eye_r_inner"], ["eye_l_inner", "eye_l_outer"]],
}
DETECTOR = "test_own10_middle_box"


class MiddleBoxDetector(FaceDetector):
    """One face box in the middle of any image."""

    name = DETECTOR
    summary = "test detector"

    def _load(self) -> None:
        pass

    def _detect(self, image):
        h, w = image.shape[:2]
        return [DetectedFace(box=(w * 0.2, h * 0.2, w * 0.8, h * 0.8), score=0.9)]


try:
    register_detector(MiddleBoxDetector)
except ValueError:  # registered by an earlier import of this module
    pass


@pytest.fixture
def fresh_registry(monkeypatch):
    """Schemes read from files or models during the test are forgotten afterwards."""
    monkeypatch.setattr(schemes, "_USER_SCHEMES", {})
    monkeypatch.setattr(schemes, "_USER_ALIASES", {})
    monkeypatch.setattr(schemes, "_FILE_CACHE", {})


def write_scheme(path: Path, data=None) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data or SCHEME))
    return path


# ----------------------------------------------------------------------- the scheme file
def test_scheme_file_yaml_and_json_read_alike(tmp_path, fresh_registry):
    y = load_scheme_file(write_scheme(tmp_path / "own.yaml", SCHEME))
    j = load_scheme_file(write_scheme(tmp_path / "own.json", SCHEME))
    assert scheme_to_dict(y) == scheme_to_dict(j)
    assert y.num_points == 10 and y.nme_norm == "inter_ocular"
    assert list(y.flip_indices) == [1, 0, 5, 4, 3, 2, 6, 8, 7, 9]
    assert y.region_of[3] == "eyes" and y.region_of[6] == "other"
    # a path works wherever a name does; the name then too, but it is no built-in
    assert get_scheme(str(tmp_path / "own.yaml")).name == "test_own10"
    assert get_scheme("test_own10").names == tuple(NAMES)
    assert "test_own10" not in list_schemes() and scheme_for_count(10) is None
    # the whole flip permutation is accepted in place of pairs
    perm = load_scheme_file(write_scheme(tmp_path / "perm.yaml",
                                         {**SCHEME, "mirror": [1, 0, 5, 4, 3, 2, 6, 8, 7, 9]}))
    assert perm.mirror == y.mirror
    # built-in schemes survive the round trip through plain data
    for name in list_schemes():
        assert adopt_scheme(scheme_from_dict(scheme_to_dict(get_scheme(name)))) is get_scheme(name)


@pytest.mark.parametrize("change, key, message", [
    ({"name": None}, "name", "non-empty string"),
    ({"names": None}, "names", "missing"),
    ({"num_points": 9}, "names", "10 names for num_points 9"),
    ({"names": NAMES[:9] + ["brow_r"]}, "names", "duplicate"),
    ({"mirror": None}, "mirror", "missing"),
    ({"mirror": [1, 0, 5, 4, 3, 3, 6, 8, 7, 9]}, "mirror", "not a permutation"),
    ({"mirror": [1, 2, 0, 4, 3, 5, 6, 8, 7, 9]}, "mirror", "not an involution"),
    ({"mirror": [1, 0]}, "mirror", "one 0-based index per point"),
    ({"mirror": [["brow_r", "brow_l"], ["brow_l", "chin"]]}, "mirror", "not a permutation"),
    ({"mirror": [["brow_r", 10]]}, "mirror", "index 10 out of range for 10 points"),
    ({"mirror": [["brow_r", "brow_l"]]}, "mirror", "no mirror partner"),
    ({"outer_eye_corners": ["eye_r_outr", "eye_l_outer"]}, "outer_eye_corners",
     "did you mean 'eye_r_outer'"),
    ({"outer_eye_corners": [2]}, "outer_eye_corners", "expected 2 points"),
    ({"outer_eye_corners": None}, "outer_eye_corners", "missing"),
    ({"regions": {"eyes": [-1]}}, "regions.eyes", "out of range"),
    ({"nme_norm": "ocular"}, "nme_norm", "not one of"),
    ({"mirrors": []}, "mirrors", "did you mean 'mirror'"),
])
def test_scheme_file_errors_name_the_file_and_key(tmp_path, fresh_registry, change, key, message):
    data = {**SCHEME, **change}
    if change.get("nme_norm") is None and "outer_eye_corners" in change:
        data["nme_norm"] = "inter_ocular"
    data = {k: v for k, v in data.items() if v is not None}
    path = write_scheme(tmp_path / "own.yaml", data)
    with pytest.raises(ConfigError, match=message) as info:
        load_scheme_file(path)
    assert str(info.value).startswith(f"{path}: key {key!r}: ")


def test_scheme_file_errors_in_the_cli_and_config_are_one_line(tmp_path, fresh_registry, capsys):
    (tmp_path / "broken.yaml").write_text("name: [\n")
    (tmp_path / "faces").mkdir()
    assert main(["data", "info", str(tmp_path / "faces"), "--scheme",
                 str(tmp_path / "broken.yaml")]) == 2
    assert "broken.yaml:2: invalid YAML" in capsys.readouterr().err
    config = tmp_path / "cfg.yaml"
    config.write_text("data:\n  train: [faces]\n  scheme: missing.yaml\n")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "config key 'data.scheme'" in err and str(tmp_path / "missing.yaml") in err
    assert "Traceback" not in err
    # one name, two different schemes: refused, naming both sources
    write_scheme(tmp_path / "a.yaml", SCHEME)
    write_scheme(tmp_path / "b.yaml", {**SCHEME, "nme_norm": "box"})
    get_scheme(str(tmp_path / "a.yaml"))
    with pytest.raises(ConfigError, match=r"b\.yaml.*differs.*a\.yaml"):
        get_scheme(str(tmp_path / "b.yaml"))
    with pytest.raises(ConfigError, match="built-in"):
        adopt_scheme(scheme_from_dict({**SCHEME, "name": "300w68"}))


# ----------------------------------------------------------------------- the round trip
def make_dataset(folder: Path, n: int, size: int = 96) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        img, pts = make_face(rng, size)
        cv2.imwrite(str(folder / f"face_{i:02d}.png"), img[:, :, ::-1])
        write_pts(folder / f"face_{i:02d}.pts", pts[FROM_68])
    return folder


def test_train_export_detect_on_a_scheme_of_ones_own(tmp_path, fresh_registry, monkeypatch,
                                                     capsys):
    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "faces", n=8)
    write_scheme(tmp_path / "own10.yaml")
    config = tmp_path / "own.yaml"
    config.write_text(f"""
experiment: own10
data:
  train: [pts:{data}]
  scheme: own10.yaml          # relative to this config file
  val_fraction: 0.25
  input_size: 64
  cache_dir: cache
  num_workers: 0
model: {{name: pipnet, backbone: mobilenet_v2, net_stride: 32, num_nb: 4}}
optim: {{lr: 1.0e-3, epochs: 1, batch_size: 6, milestones: [1]}}
trainer: {{out_dir: runs, accelerator: cpu, devices: 1, log_every_n_steps: 1,
          channels_last: false}}
""")
    assert main(["train", str(config)]) == 0
    ckpt = tmp_path / "runs" / "own10" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert blob["hyper_parameters"]["scheme"] == "test_own10"
    assert blob["hyper_parameters"]["data_info"]["scheme_definition"]["names"] == NAMES

    # From here on only the model files know the scheme.
    (tmp_path / "own10.yaml").unlink()
    monkeypatch.setattr(schemes, "_USER_SCHEMES", {})
    monkeypatch.setattr(schemes, "_USER_ALIASES", {})
    with pytest.raises(KeyError):
        get_scheme("test_own10")

    pt, onnx = tmp_path / "own10.pt", tmp_path / "own10.onnx"
    assert main(["export", str(ckpt), "-o", str(pt), "--format", "pt"]) == 0
    stored = torch.load(pt, map_location="cpu", weights_only=False)
    assert stored["scheme"] == "test_own10" and stored["scheme_definition"]["names"] == NAMES

    monkeypatch.setattr(schemes, "_USER_SCHEMES", {})
    assert main(["export", str(pt), "-o", str(onnx), "--format", "onnx"]) == 0
    import onnx as onnx_lib

    from facemark.inference.export import read_metadata

    meta = read_metadata(onnx_lib.load(str(onnx)))
    assert json.loads(meta["scheme_definition"]) == scheme_to_dict(
        scheme_from_dict(SCHEME))

    image = tmp_path / "photo.png"
    img, _ = make_face(np.random.default_rng(11), 96)
    cv2.imwrite(str(image), img[:, :, ::-1])
    for model in (onnx, pt):
        monkeypatch.setattr(schemes, "_USER_SCHEMES", {})
        out = tmp_path / f"out_{model.suffix[1:]}"
        capsys.readouterr()
        assert main(["detect", str(image), "--model", str(model), "--detector", DETECTOR,
                     "-o", str(out), "--flip-test", "--overlay", "--quiet"]) == 0, \
            capsys.readouterr().err
        doc = json.loads((out / "predictions.json").read_text())
        assert doc["scheme"] == "test_own10"
        (face,) = doc["faces"]
        assert np.asarray(face["points"]).shape == (10, 2)
        assert any((out / "overlays").iterdir())
    # evaluating reads the dataset in the scheme the file declares (as the model stores it)
    write_scheme(tmp_path / "own10.yaml")
    capsys.readouterr()
    assert main(["evaluate", str(pt), "--data", f"pts:{data}", "--scheme",
                 str(tmp_path / "own10.yaml"), "--flip-test"]) == 0
    out = capsys.readouterr().out
    assert "scheme test_own10" in out and "eye_r_outer and eye_l_outer" in out

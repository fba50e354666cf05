"""facemark detect on Ray (issue 12): a local cluster the test starts and stops itself.

Skipped where Ray is not installed (``pip install facemark[ray]``), and where the local
Ray cannot start on the machine (the reason is printed).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from facemark.inference.distributed import detect_files_on_ray  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"


def assert_same_predictions(ray_out: Path, local_out: Path) -> None:
    """The Ray run wrote the standard prediction files, with the faces a local run finds."""
    ray_doc = json.loads((ray_out / "predictions.json").read_text())
    local_doc = json.loads((local_out / "predictions.json").read_text())
    assert [f["image"] for f in ray_doc["faces"]] == [f["image"] for f in local_doc["faces"]]
    for a, b in zip(ray_doc["faces"], local_doc["faces"]):
        np.testing.assert_allclose(a["points"], b["points"], atol=1e-3)
    assert (ray_out / "predictions.csv").is_file()


@pytest.fixture(scope="module")
def local_ray():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - Ray raises plain Exception when a node cannot start
        pytest.skip(f"a local Ray cluster cannot start here ({str(e).splitlines()[0]})")
    yield
    ray.shutdown()


def _photos(folder: Path) -> list[Path]:
    folder.mkdir()
    names = ["img1.jpg", "img2.jpg", "group_t1.jpg"]
    if all((PHOTOS / n).is_file() for n in names):
        for n in names:
            (folder / n).write_bytes((PHOTOS / n).read_bytes())
    else:  # no shared data: plain pictures (no faces) still go through the whole pipeline
        for i, n in enumerate(names):
            cv2.imwrite(str(folder / n), np.full((60, 80, 3), 40 * i, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    return sorted(folder.iterdir())


@pytest.mark.slow
def test_ray_run_matches_local_run_and_resumes(tmp_path, local_ray):
    import facemark

    folder = tmp_path / "photos"
    _photos(folder)
    local = facemark.detect_files([str(folder)], tmp_path / "local", detector="opencv")
    summary = detect_files_on_ray([str(folder)], tmp_path / "ray", workers=2,
                                  detector="opencv", formats="both")
    assert summary.images == 3 and summary.cached == 0
    assert len(summary.skipped) == 1 and "broken.jpg" in str(summary.skipped[0])
    # the standard prediction files, with the same faces a local run finds
    assert_same_predictions(tmp_path / "ray", tmp_path / "local")
    assert summary.faces == local.faces
    # resumable: a second run finds every image's part and sends nothing to Ray
    again = detect_files_on_ray([str(folder)], tmp_path / "ray", workers=2, detector="opencv",
                                formats="both")
    assert (again.images, again.cached) == (0, 3)
    # and a local run into the same folder resumes from the Ray run's parts
    assert facemark.detect_files([str(folder)], tmp_path / "ray", detector="opencv",
                                 formats="both").cached == 3


class _LocalDataset:
    """Ray Data's calls that distributed.py makes, run in this process (the pipeline's
    contract, checked where a Ray node cannot start)."""

    def __init__(self, rows):
        self.rows = rows

    def map_batches(self, cls, *, batch_size, batch_format, fn_constructor_kwargs, compute,
                    num_cpus):
        assert batch_format == "numpy" and num_cpus >= 1
        actor = cls(**fn_constructor_kwargs)
        out = []
        for i in range(0, len(self.rows), batch_size):
            chunk = self.rows[i:i + batch_size]
            batch = {k: np.array([r[k] for r in chunk]) for k in chunk[0]}
            result = actor(batch)
            out += [dict(zip(result, values)) for values in zip(*result.values())]
        return _LocalDataset(out)

    def iter_rows(self):
        return iter(self.rows)


def test_pipeline_in_process(tmp_path, monkeypatch):
    """The driver, the actor and the outputs, with Ray Data's calls run in this process."""
    import facemark

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray.data, "from_items",
                        lambda rows, override_num_blocks: _LocalDataset(list(rows)))
    monkeypatch.setattr(ray.data, "ActorPoolStrategy", lambda size: ("pool", size))
    folder = tmp_path / "photos"
    _photos(folder)
    local = facemark.detect_files([str(folder)], tmp_path / "local", detector="opencv")
    summary = detect_files_on_ray([str(folder)], tmp_path / "ray", detector="opencv",
                                  formats="both")
    assert (summary.images, summary.cached, summary.faces) == (3, 0, local.faces)
    assert len(summary.skipped) == 1 and "broken.jpg" in str(summary.skipped[0])
    assert_same_predictions(tmp_path / "ray", tmp_path / "local")
    again = detect_files_on_ray([str(folder)], tmp_path / "ray", detector="opencv",
                                formats="both")
    assert (again.images, again.cached) == (0, 3)
    assert facemark.detect_files([str(folder)], tmp_path / "ray", detector="opencv",
                                 formats="both").cached == 3
    from facemark.cli import main   # the CLI's --ray takes the same path
    assert main(["detect", str(folder), "-o", str(tmp_path / "cli"), "--ray", "-q",
                 "--detector", "opencv", "--ray-workers", "1"]) == 0
    assert json.loads((tmp_path / "cli" / "predictions.json").read_text())["faces"] == \
        json.loads((tmp_path / "local" / "predictions.json").read_text())["faces"]


def test_ray_refuses_what_it_does_not_make(tmp_path):
    from facemark.errors import ConfigError

    with pytest.raises(ConfigError, match="overlay"):
        detect_files_on_ray([str(tmp_path)], tmp_path / "out", overlay=True)
    with pytest.raises(ConfigError, match="shard"):
        detect_files_on_ray([str(tmp_path)], tmp_path / "out", shard=(0, 2))

"""Packs (facemark/data/pack.py): JPEG crops + a CSV table that cut the same training crops as
the original images, training from a pack alone, and bad input."""
import json

import numpy as np
import pytest

from synthetic import make_pts_dataset

from facemark.cli import main
from facemark.data.cache import crop_sample
from facemark.data.formats import open_dataset
from facemark.data.images import read_image
from facemark.data.pack import pack_faces
from facemark.errors import ConfigError, DataError


@pytest.fixture()
def faces(tmp_path):
    return make_pts_dataset(tmp_path / "faces", n=6, size=160)


def test_pack_cuts_the_same_crops_as_the_originals(faces, tmp_path):
    samples = open_dataset(f"pts:{faces}")
    result = pack_faces(samples, tmp_path / "packs", "mine", size=64, context=1.5, quality=95,
                        progress=False)
    assert result.count == 6 and result.bytes > 0
    meta = json.loads((tmp_path / "packs" / "mine.json").read_text())
    assert meta["image_size"] == 96 and meta["scheme"] == "300w68"
    packed = open_dataset(f"csv:{result.csv}")
    assert len(packed) == 6 and packed[0].scheme == "300w68"
    for a, b in zip(samples, packed):
        assert read_image(b.image).shape == (96, 96, 3)
        ca, _, pa, _ = crop_sample(a, read_image(a.image), 64, "300w")
        cb, _, pb, _ = crop_sample(b, read_image(b.image), 64, "300w")
        np.testing.assert_allclose(pa, pb, atol=0.01)          # same crop box, same points
        assert np.abs(ca.astype(int) - cb.astype(int)).mean() < 6   # JPEG + one resampling


def test_pack_refuses_what_it_cannot_hold(faces, tmp_path):
    samples = open_dataset(f"pts:{faces}")
    with pytest.raises(ConfigError, match="face boxes"):
        pack_faces(samples, tmp_path / "p", "x", rule="wflw", progress=False)
    with pytest.raises(ConfigError, match="context"):
        pack_faces(samples, tmp_path / "p", "x", context=0.5, progress=False)
    with pytest.raises(ConfigError, match="quality"):
        pack_faces(samples, tmp_path / "p", "x", quality=0, progress=False)
    with pytest.raises(ConfigError, match="name"):
        pack_faces(samples, tmp_path / "p", "a/b", progress=False)
    samples[1].landmarks[3] = np.nan
    with pytest.raises(DataError, match="missing point"):
        pack_faces(samples, tmp_path / "p", "x", progress=False)
    result = pack_faces(samples, tmp_path / "p", "x", skip_bad=True, progress=False, size=32)
    assert result.count == 5 and "face_001" in result.skipped[0]
    with pytest.raises(DataError, match="exists"):
        pack_faces(samples[:1], tmp_path / "p", "x", progress=False, size=32)
    assert pack_faces(samples[:1], tmp_path / "p", "x", progress=False, size=32,
                      overwrite=True).count == 1
    assert len(list((tmp_path / "p" / "x").iterdir())) == 1       # the old crops are gone
    assert not [p for p in (tmp_path / "p").iterdir() if p.name.startswith(".")]


def test_cli_pack_excludes_listed_images_and_names_packs(faces, tmp_path, capsys):
    listed = tmp_path / "val.txt"
    listed.write_text(f"# validation faces\n{faces / 'face_002.png'}\n\n")
    out = tmp_path / "packs"
    assert main(["data", "pack", f"pts:{faces}", "-o", str(out), "--size", "32",
                 "--exclude", str(listed), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    table = next(out.glob("*.csv"))
    assert table.stem.endswith("_faces") and f"csv:{table}" in printed   # named for its folder
    assert len(open_dataset(f"csv:{table}")) == 5
    assert main(["data", "pack", f"pts:{faces}", f"pts:{faces}", "-o", str(out),
                 "--size", "32", "--no-progress"]) == 2
    assert "--names" in capsys.readouterr().err
    assert main(["data", "pack", f"pts:{faces}", "-o", str(out), "--names", "a,b"]) == 2
    assert main(["data", "pack", f"pts:{faces}", "-o", str(out), "--crop-rule", "nope"]) == 2
    assert main(["data", "pack", f"pts:{faces}", "-o", str(out), "--names", "val",
                 "--exclude", str(tmp_path / "none.txt")]) == 2
    assert "none.txt" in capsys.readouterr().err


@pytest.mark.slow   # trains one epoch
def test_training_runs_from_a_pack_alone(faces, tmp_path):
    """The pack is all a training machine needs: the original images can be gone."""
    import shutil

    import torch

    from facemark.training.config import load_config
    from facemark.training.run import train

    torch.set_num_threads(1)
    result = pack_faces(open_dataset(f"pts:{faces}"), tmp_path / "packs", "faces", size=64,
                        context=1.25, progress=False)
    shutil.rmtree(faces)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(f"""
experiment: from_pack
data:
  train: [csv:packs/faces.csv]
  val_fraction: 0.34
  input_size: 64
  context: 1.25
  cache_dir: cache
  num_workers: 0
model: {{name: pipnet, backbone: resnet18, net_stride: 32, num_nb: 4}}
optim: {{epochs: 1, batch_size: 2}}
trainer: {{out_dir: runs, accelerator: cpu, devices: 1, log_every_n_steps: 1}}
""")
    out = train(load_config(cfg_path))
    assert (tmp_path / "runs" / "from_pack" / "checkpoints" / "last.ckpt").is_file()
    assert out is not None

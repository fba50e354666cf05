"""The mean face has one implementation, ``facemark.data.meanface.mean_face``: the crop
cache's and the training data module's mean faces are that function's result, bit for bit."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facemark.data.cache import build_cache
from facemark.data.meanface import mean_face
from facemark.data.sample import Sample
from facemark.errors import DataError
from facemark.training.config import DataConfig
from facemark.training.datamodule import LandmarkDataModule
from synthetic import make_face, make_pts_dataset


def _samples(folder, n=5, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img, pts = make_face(rng, 96)
        path = folder / f"face_{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        out.append(Sample(image=str(path), landmarks=pts, scheme="300w68", source=f"{path}:1"))
    return out


def test_mean_face_ignores_unannotated_points():
    pts = np.array([[[0.2, 0.3], [np.nan, np.nan]], [[0.4, 0.5], [0.6, 0.7]]])
    assert np.allclose(mean_face(pts), [[0.3, 0.4], [0.6, 0.7]], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"point\(s\) \['b'\] are annotated in none"):
        mean_face(pts[:1], names=["a", "b"])


def test_the_cache_mean_face_is_the_function(tmp_path):
    samples = _samples(tmp_path / "img")
    samples[0].landmarks = None                      # an unlabelled crop: NaN points
    samples[0].box = np.array([10, 10, 80, 85], np.float32)
    cache = build_cache(samples, tmp_path / "c", size=32, progress=False)
    pts = cache.normalised_landmarks()
    assert np.isnan(pts[0]).all()
    assert np.array_equal(cache.mean_face(), mean_face(pts))
    # and what the cache computed before it called the function (issue 11): same bits
    assert np.array_equal(cache.mean_face(), np.nanmean(pts, axis=0))


def test_the_cache_names_a_landmark_no_crop_annotates(tmp_path):
    samples = _samples(tmp_path / "img", n=2)
    for s in samples:
        s.landmarks, s.box = None, np.array([10, 10, 80, 85], np.float32)
    cache = build_cache(samples, tmp_path / "c", size=32, progress=False)
    with pytest.raises(DataError, match="no crop annotates landmark"):
        cache.mean_face()


def test_the_datamodule_mean_face_is_the_function(tmp_path):
    train = [str(make_pts_dataset(tmp_path / f"d{k}", n=4, seed=k, size=96)) for k in range(2)]
    data = LandmarkDataModule(DataConfig(train=train, input_size=32, augment="none",
                                         cache_dir=str(tmp_path / "cache"), num_workers=0))
    got = data.mean_face()
    caches = data.train_caches
    assert len(caches) == 2 and sum(len(c) for c in caches) == 8
    assert np.array_equal(got, mean_face(np.concatenate([c.normalised_landmarks()
                                                         for c in caches])))
    # one dataset alone: the data module and the cache agree too
    one = LandmarkDataModule(DataConfig(train=train[:1], input_size=32, augment="none",
                                        cache_dir=str(tmp_path / "cache"), num_workers=0))
    assert np.array_equal(one.mean_face(), one.train_caches[0].mean_face())

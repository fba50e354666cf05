"""Crop cache (build, open, failure modes) and the torch datasets that read it."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import facemark.data.cache as cache_mod
from facemark.data.augment import Augment
from facemark.data.cache import CropCache, build_cache, is_cache
from facemark.data.crops import box_to_affine, crop_box, invert_affine, transform_points, warp_image
from facemark.data.dataset import LandmarkDataset, UnlabelledDataset
from facemark.data.images import read_image
from facemark.data.sample import Sample
from facemark.data.schemes import IBUG68
from facemark.errors import ConfigError, DataError, SkipLog
from synthetic import make_face

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AFW = DATA / "300w" / "afw"


def synthetic_samples(folder: Path, n: int = 6, size: int = 160, seed: int = 0) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img, pts = make_face(rng, size)
        path = folder / f"face_{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        out.append(Sample(image=str(path), landmarks=pts, scheme="300w68",
                          attributes={"set": "synthetic", "i": np.int64(i)}, source=f"{path}:1"))
    return out


@pytest.fixture
def samples(tmp_path):
    return synthetic_samples(tmp_path / "img")


# ----------------------------------------------------------------------- round trips
def test_build_and_open_round_trip_synthetic(tmp_path, samples):
    cache = build_cache(samples, tmp_path / "c", size=64, rule="300w", progress=False,
                        source="synthetic")
    again = CropCache.open(tmp_path / "c")
    assert len(again) == len(samples) == 6 and again.size == 64 and again.scheme == "300w68"
    assert again.landmarks.shape == (6, 68, 2) and again.landmarks.dtype == np.float32
    assert again.visible.shape == (6, 68) and again.visible.all()
    assert again.affine.shape == (6, 2, 3)
    assert again.meta["source"] == "synthetic" and again.meta["crop_rule"]["name"] == "300w"
    assert again.records[2]["attributes"] == {"set": "synthetic", "i": 2}
    for i, s in enumerate(samples):
        image = read_image(s.image)
        m = box_to_affine(crop_box("300w", s.landmarks), 64)
        assert np.array_equal(again.image(i), warp_image(image, m, 64))
        assert np.allclose(again.affine[i], m)
        back = again.to_image(i, again.landmarks[i])
        assert np.abs(back - s.landmarks).max() < 1e-3
    assert np.array_equal(cache.landmarks, again.landmarks)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["c", "img"]   # no tmp folder left


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10 ** 6), scale=st.floats(0.3, 3.0), size=st.sampled_from([32, 96, 256]))
def test_cached_points_map_back_to_the_image(tmp_path, seed, scale, size):
    rng = np.random.default_rng(seed)
    img_path = tmp_path / "blank.png"
    if not img_path.exists():
        cv2.imwrite(str(img_path), np.zeros((40, 50, 3), np.uint8))
    pts = rng.uniform(-30, 30, (68, 2)) * scale + rng.uniform(0, 200, 2)
    box = np.r_[pts.min(0) - 5, pts.max(0) + 5]
    s = Sample(image=str(img_path), landmarks=pts, scheme="300w68", box=box)
    out = tmp_path / f"c{seed}-{size}"
    cache = build_cache([s], out, size=size, rule="wflw", progress=False, overwrite=True)
    back = transform_points(cache.landmarks[0], invert_affine(cache.affine[0]))
    assert np.abs(back - s.landmarks).max() < 1e-3
    assert cache.records[0]["crop_from"] == "box"


@pytest.mark.shared_data
def test_round_trip_on_real_300w(tmp_path):
    from facemark.data.formats import open_dataset
    if not AFW.is_dir():
        pytest.skip(f"shared data not found at {AFW}")
    samples = open_dataset(str(AFW))[:5]
    cache = build_cache(samples, tmp_path / "afw", size=128, rule="300w", progress=False)
    assert len(cache) == 5 and cache.records[0]["attributes"]["set"] == "afw"
    for i, s in enumerate(samples):
        assert np.abs(cache.to_image(i, cache.landmarks[i]) - s.landmarks).max() < 1e-3
        # the 300w rule: landmark box x1.1, so every point lies inside the crop
        assert (cache.landmarks[i] > 0).all() and (cache.landmarks[i] < 127).all()
    mean = cache.mean_face()
    assert mean.shape == (68, 2) and (mean > 0).all() and (mean < 1).all()
    # subject's right eye corner on the image left, chin below the nose
    assert mean[IBUG68.index("eye_r_00"), 0] < mean[IBUG68.index("eye_l_03"), 0]
    assert mean[IBUG68.index("jaw_08"), 1] > mean[IBUG68.index("nose_bridge_03"), 1]
    assert cache.image(0).mean() > 20          # a real face, not a black crop


# ----------------------------------------------------------------------- bad input
def test_corrupt_image_names_the_file(tmp_path, samples):
    bad = Path(samples[3].image)
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="face_3.png"):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    assert not (tmp_path / "c").exists()
    assert not list(tmp_path.glob("c.tmp-*"))


def test_skip_bad_lists_the_skipped_file(tmp_path, samples):
    Path(samples[1].image).write_bytes(b"")
    log = SkipLog(True)
    cache = build_cache(samples, tmp_path / "c", size=32, skip_bad=log, progress=False)
    assert len(cache) == 5
    assert len(cache.skipped) == 1 and "face_1.png" in cache.skipped[0]
    assert "face_1.png" in log.summary()
    assert all("face_1.png" not in r["image"] for r in cache.records)
    assert CropCache.open(tmp_path / "c").skipped == cache.skipped


def test_all_skipped_is_an_error(tmp_path, samples):
    for s in samples:
        Path(s.image).write_bytes(b"x")
    with pytest.raises(DataError, match="no usable samples"):
        build_cache(samples, tmp_path / "c", size=32, skip_bad=True, progress=False)
    assert not (tmp_path / "c").exists()


def test_wrong_scheme_and_point_count(tmp_path, samples):
    good = samples[2].landmarks
    samples[2].landmarks = good[:60]
    with pytest.raises(DataError, match=r"face_2.png:1: expected 68 landmarks .* got 60"):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    samples[2].landmarks = np.zeros((68, 2), np.float32)
    with pytest.raises(DataError, match=r"face_2.png:1: degenerate crop box"):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    samples[2].landmarks = good
    samples[4].scheme = "wflw98"
    with pytest.raises(DataError, match="face_4.png:1: scheme 'wflw98' differs"):
        build_cache(samples, tmp_path / "c", size=32, progress=False)


def test_unlabelled_needs_a_box(tmp_path, samples):
    samples[0].landmarks = None
    with pytest.raises(DataError, match="unlabelled sample and no face box"):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    samples[0].box = np.array([20, 20, 120, 130], np.float32)
    cache = build_cache(samples, tmp_path / "c", size=32, progress=False)
    assert np.isnan(cache.landmarks[0]).all() and not cache.visible[0].any()
    assert cache.labelled.tolist() == [False] + [True] * 5
    assert cache.records[0]["crop_from"] == "box"
    assert np.isfinite(cache.mean_face()).all()


def test_existing_cache_is_kept_unless_overwrite(tmp_path, samples):
    build_cache(samples[:2], tmp_path / "c", size=32, progress=False)
    with pytest.raises(DataError, match="already exists.*overwrite"):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    assert len(CropCache.open(tmp_path / "c")) == 2
    assert len(build_cache(samples, tmp_path / "c", size=32, progress=False, overwrite=True)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "img"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not a crop cache"):
        build_cache(samples, other, size=32, progress=False, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_interrupted_build_leaves_no_cache(tmp_path, samples, monkeypatch):
    calls = []

    def flaky(path, frame=None):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return read_image(path, frame)

    monkeypatch.setattr(cache_mod, "read_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob("c.tmp-*"))
    with pytest.raises(DataError, match="not found"):
        CropCache.open(tmp_path / "c")


def test_killed_build_leftovers_are_removed(tmp_path, samples):
    dead = tmp_path / "c.tmp-2147483646"            # no such process
    dead.mkdir()
    (dead / "images.u8").write_bytes(b"half")
    with pytest.raises(DataError, match="no meta.json"):
        CropCache.open(dead)
    build_cache(samples, tmp_path / "c", size=32, progress=False)
    assert not dead.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c", "img"]


def test_half_written_folders_do_not_open(tmp_path, samples):
    good = tmp_path / "good"
    build_cache(samples, good, size=32, progress=False)

    def broken(name, edit):
        d = tmp_path / name
        shutil.copytree(good, d)
        edit(d)
        return d

    no_meta = broken("no_meta", lambda d: (d / "meta.json").unlink())
    with pytest.raises(DataError, match="no meta.json"):
        CropCache.open(no_meta)
    assert not is_cache(no_meta)
    short = broken("short", lambda d: (d / "images.u8").write_bytes(
        (d / "images.u8").read_bytes()[:-100]))
    with pytest.raises(DataError, match=r"images.u8: expected 18432 bytes for 6 crops"):
        CropCache.open(short)
    shape = broken("shape", lambda d: np.save(d / "landmarks.npy", np.zeros((6, 5, 2), np.float32)))
    with pytest.raises(DataError, match=r"landmarks.npy: expected float32 array of shape \(6, 68, 2\)"):
        CropCache.open(shape)
    gone = broken("gone", lambda d: (d / "affine.npy").unlink())
    with pytest.raises(DataError, match="affine.npy: missing"):
        CropCache.open(gone)

    def old_version(d):
        meta = json.loads((d / "meta.json").read_text())
        meta["version"] = 99
        (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="version 99"):
        CropCache.open(broken("v99", old_version))
    garbled = broken("garbled", lambda d: (d / "meta.json").write_text("{nope"))
    with pytest.raises(DataError, match="meta.json: cannot parse"):
        CropCache.open(garbled)
    records = broken("records", lambda d: (d / "records.json").write_text("[]"))
    with pytest.raises(DataError, match="records.json: expected 6 records, got 0"):
        CropCache.open(records)


def test_each_image_is_decoded_once(tmp_path, samples, monkeypatch):
    # three faces in one image (interleaved with others) -> one decode of that image
    shared = [Sample(image=samples[0].image, landmarks=samples[0].landmarks + d,
                     scheme="300w68") for d in (0, 3, 6)]
    order = [shared[0], samples[1], shared[1], samples[2], shared[2]]
    calls = []
    monkeypatch.setattr(cache_mod, "read_image",
                        lambda p, f=None: calls.append(p) or read_image(p, f))
    cache = build_cache(order, tmp_path / "c", size=32, progress=False)
    assert len(cache) == 5 and sorted(calls) == sorted({s.image for s in order})
    assert [r["image"] for r in cache.records] == [s.image for s in order]   # order kept


# ----------------------------------------------------------------------- views
def test_subset_and_pickle(tmp_path, samples):
    cache = build_cache(samples, tmp_path / "c", size=32, progress=False)
    sub = cache.subset([4, 1])
    assert len(sub) == 2 and np.array_equal(sub.image(0), cache.image(4))
    assert np.array_equal(sub.landmarks, cache.landmarks[[4, 1]])
    assert sub.records[1] == cache.records[1]
    assert len(cache.subset(cache.labelled)) == 6
    with pytest.raises(IndexError):
        cache.subset([6])
    blob = pickle.dumps(sub)
    assert len(blob) < 32 * 32 * 3 * 2            # the memmap is not pickled
    assert np.array_equal(pickle.loads(blob).image(0), cache.image(4))


# ----------------------------------------------------------------------- datasets
@pytest.fixture
def cache(tmp_path, samples):
    samples[5].landmarks[[IBUG68.index("eye_r_00"), IBUG68.index("jaw_00")]] = np.nan
    return build_cache(samples, tmp_path / "c", size=64, progress=False)


def test_item_layout(cache):
    ds = LandmarkDataset(cache)
    item = ds[5]
    assert set(item) >= {"image", "landmarks", "mask", "index"} and item["index"] == 5
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert torch.allclose(item["image"], torch.from_numpy(cache.image(5).copy()).permute(2, 0, 1) / 255)
    assert item["landmarks"].shape == (68, 2) and item["landmarks"].dtype == torch.float32
    assert item["mask"].dtype == torch.bool and item["mask"].sum() == 66
    assert not item["mask"][IBUG68.index("eye_r_00")]
    assert torch.all(item["landmarks"][~item["mask"]] == 0)
    want = (cache.landmarks[5] + 0.5) / 64
    assert np.allclose(item["landmarks"].numpy()[item["mask"].numpy()],
                       want[item["mask"].numpy()], atol=1e-6)
    assert len(ds) == 6 and ds[-1]["index"] == 5
    with pytest.raises(IndexError):
        ds[6]


def test_augmented_items_are_reproducible_and_vary(cache):
    aug = Augment.pipnet("300w68", 64)
    a, b = LandmarkDataset(cache, aug, seed=1), LandmarkDataset(cache, aug, seed=1)
    for i in range(len(a)):
        assert torch.equal(a[i]["image"], b[i]["image"])
        assert torch.equal(a[i]["landmarks"], b[i]["landmarks"])
    first = [a[i]["image"] for i in range(6)]
    a.set_epoch(1)
    assert a.epoch == 1
    assert any(not torch.equal(x, a[i]["image"]) for i, x in enumerate(first))
    c = LandmarkDataset(cache, aug, seed=2)
    assert any(not torch.equal(x, c[i]["image"]) for i, x in enumerate(first))
    # mask follows the flip permutation
    flipped = LandmarkDataset(cache, Augment(IBUG68, 64, flip=1.0, p_shift=0, p_rotation=0,
                                             occlusion=0, blur=0, gray=0))
    item = flipped[5]
    assert not item["mask"][IBUG68.index("eye_l_03")] and item["mask"][IBUG68.index("eye_r_00")]
    assert not item["mask"][IBUG68.index("jaw_16")] and item["visible"].sum() == 66


def test_workers_match_the_main_process(cache):
    aug = Augment.pipnet("300w68", 64)
    ds = LandmarkDataset(cache, aug, seed=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1, persistent_workers=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = torch.cat([b["image"] for b in loader])
        want = torch.stack([ds[i]["image"] for i in range(len(ds))])
        assert torch.equal(got, want), epoch


def test_pseudo_labels_and_unlabelled(tmp_path, samples):
    samples[2].landmarks = None
    samples[2].box = np.array([10, 10, 150, 150], np.float32)
    cache = build_cache(samples, tmp_path / "c", size=32, progress=False)
    un = UnlabelledDataset(cache)
    assert len(un) == 1 and un[0]["row"] == 2 and not un[0]["mask"].any()
    pseudo = cache.landmarks.copy()
    pseudo[2] = 16.0
    ds = LandmarkDataset(cache, landmarks=pseudo)
    assert ds[2]["mask"].all() and torch.allclose(ds[2]["landmarks"], torch.tensor(16.5 / 32))
    with pytest.raises(ConfigError, match="landmarks: expected shape"):
        LandmarkDataset(cache, landmarks=pseudo[:3])
    with pytest.raises(ConfigError, match="does not match"):
        LandmarkDataset(cache, Augment.pipnet("wflw98", 32))


# ----------------------------------------------------------------------- context
def test_context_cache_holds_the_crop_and_image_around_it(tmp_path, samples):
    plain = build_cache(samples, tmp_path / "plain", size=64, progress=False)
    wide = build_cache(samples, tmp_path / "wide", size=64, progress=False, context=1.5)
    assert (wide.size, wide.crop_size, wide.context) == (96, 64, 1.5)
    assert (plain.size, plain.crop_size, plain.context) == (64, 64, 1.0)
    assert np.allclose(plain.crop_region(), [-0.5, -0.5, 63.5, 63.5])
    region = wide.crop_region()
    assert np.isclose(region[2] - region[0], 64) and np.isclose(region[0] + region[2], 95)
    # without augmentation the dataset gives the same crop and points as a plain cache
    a, b = LandmarkDataset(plain)[2], LandmarkDataset(wide)[2]
    assert b["image"].shape == (3, 64, 64)
    assert torch.allclose(a["landmarks"], b["landmarks"], atol=1e-5)
    assert (a["image"] - b["image"]).abs().mean() < 0.02
    # the stored points are the image's points in the wider crop
    img = read_image(samples[2].image)
    box = crop_box("300w", landmarks=samples[2].landmarks)
    c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * 0.75
    want = transform_points(samples[2].landmarks, box_to_affine([*(c - half), *(c + half)], 96))
    assert np.allclose(wide.landmarks[2], want, atol=1e-4)
    assert wide.image(2).shape == (96, 96, 3) and img.ndim == 3


def test_context_augmentation_shows_image_where_a_plain_cache_shows_fill(tmp_path, samples):
    plain = build_cache(samples, tmp_path / "plain", size=64, progress=False)
    wide = build_cache(samples, tmp_path / "wide", size=64, progress=False, context=1.5)
    # zoom out only: the crop box grows to 4/3 of its side (inside the 1.5x stored crop)
    aug = Augment("300w68", 64, shift=0.0, rotation=0.0, flip=0.0, scale=(0.75, 0.75), p_scale=1.0,
                  occlusion=0.0, blur=0.0, gray=0.0)
    a, b = LandmarkDataset(plain, aug)[1], LandmarkDataset(wide, aug)[1]
    assert torch.allclose(a["landmarks"], b["landmarks"], atol=1e-5)   # same geometry
    border = np.zeros((64, 64), bool)
    border[:4], border[-4:], border[:, :4], border[:, -4:] = True, True, True, True
    # the synthetic images have a non-black background: fill only where the stored crop ends
    assert float(a["image"][:, torch.from_numpy(border)].max()) == 0.0
    assert float(b["image"][:, torch.from_numpy(border)].mean()) > 0.05
    inner = torch.zeros(64, 64, dtype=torch.bool)
    inner[24:40, 24:40] = True
    assert (a["image"][:, inner] - b["image"][:, inner]).abs().mean() < 0.02


@pytest.mark.parametrize("context", [0.5, 0.99, float("nan"), True, "2"])
def test_bad_context_is_refused(tmp_path, samples, context):
    with pytest.raises(ConfigError, match="context"):
        build_cache(samples, tmp_path / "c", size=64, progress=False, context=context)


def test_old_caches_without_context_keys_still_open(tmp_path, samples):
    cache = build_cache(samples, tmp_path / "c", size=64, progress=False)
    meta = json.loads((cache.path / "meta.json").read_text())
    del meta["context"], meta["crop_size"]
    (cache.path / "meta.json").write_text(json.dumps(meta))
    old = CropCache.open(cache.path)
    assert (old.context, old.crop_size) == (1.0, 64)
    assert LandmarkDataset(old)[0]["image"].shape == (3, 64, 64)


def test_augmentation_flip_is_the_mirror_of_the_plain_item(cache):
    """What training calls a flipped face is exactly what flip test feeds the model."""
    aug = Augment("300w68", 64, shift=0.0, rotation=0.0, flip=1.0, occlusion=0.0, blur=0.0,
                  gray=0.0)
    flipped, plain = LandmarkDataset(cache, aug)[3], LandmarkDataset(cache)[3]
    assert torch.equal(flipped["image"], torch.flip(plain["image"], dims=[2]))
    want = plain["landmarks"].numpy()[IBUG68.flip_indices].copy()
    want[:, 0] = 1.0 - want[:, 0]
    mask = flipped["mask"].numpy()
    np.testing.assert_allclose(flipped["landmarks"].numpy()[mask], want[mask], atol=1e-6)

"""``facemark detect`` end to end: folders with bad files, resuming, shards and --merge,
JSON/CSV outputs readable by read_predictions, overlays, a synthetic video, a fake webcam.

A tiny random-weight model and a registered test detector (one box in the middle of any
image that is not flat) keep the runs fast and deterministic.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from facemark.cli import main
from facemark.data.predictions import read_predictions
from facemark.inference.detectors import DetectedFace, FaceDetector, register_detector
from facemark.inference.outputs import collect_inputs, parse_shard, read_parts, shard

from synthetic import make_face, template68

SIZE = 64
DETECTOR = "test_middle_box"


class MiddleBoxDetector(FaceDetector):
    """One face box in the middle half of any image that is not flat."""

    name = DETECTOR
    summary = "test detector"

    def _load(self) -> None:
        pass

    def _detect(self, image):
        if image.std() == 0:
            return []
        h, w = image.shape[:2]
        return [DetectedFace(box=(w / 4, h / 4, 3 * w / 4, 3 * h / 4), score=0.75)]


try:
    register_detector(MiddleBoxDetector)
except ValueError:  # already registered by an earlier import of this module
    pass


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from facemark.models.model_file import ModelInfo, save_model
    from facemark.models.registry import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("pipnet", num_points=68, backbone="mobilenet_v2", input_size=SIZE,
                         mean_face=template68()).eval()
    return save_model(model, ModelInfo("300w68", SIZE, "300w", {}),
                      tmp_path_factory.mktemp("model") / "tiny.pt")


def write_image(path: Path, seed: int, size: int = 96) -> Path:
    img, _ = make_face(np.random.default_rng(seed), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[:, :, ::-1])
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    for i in range(4):
        write_image(d / f"face{i}.png", i)
    write_image(d / "sub" / "deep.jpg", 9)
    cv2.imwrite(str(d / "flat.png"), np.full((40, 50, 3), 77, np.uint8))     # no face
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "notes.txt").write_text("not an image")
    return d


def detect(*argv, model=None) -> int:
    args = ["detect", *map(str, argv), "--detector", DETECTOR, "--quiet"]
    if model is not None:
        args += ["--model", str(model)]
    return main(args)


# ---------------------------------------------------------------------------------------
def test_folder_with_a_corrupt_image(folder, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["detect", str(folder), "-o", str(out), "--model", str(model_file),
                 "--detector", DETECTOR]) == 0
    text = capsys.readouterr().out
    assert "photos/face0.png: 1 face" in text and "photos/flat.png: 0 faces" in text
    assert "skipped 1 input(s):" in text and "broken.jpg: cannot decode image" in text
    assert "summary" in text and "faces/s" in text
    assert "1 file(s) in the folders were neither images nor videos" in text
    preds = read_predictions(out / "predictions.json")
    assert preds.scheme == "300w68"
    names = sorted(Path(f.image).name for f in preds.faces)
    assert names == ["deep.jpg", "face0.png", "face1.png", "face2.png", "face3.png"]
    face = preds.faces[0]
    assert face.points.shape == (68, 2) and face.score == pytest.approx(0.75)
    np.testing.assert_allclose(face.box, [24, 24, 72, 72])
    assert face.point_scores.shape == (68,)
    assert not (out / "overlays").exists()


def test_resume_skips_done_inputs(folder, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert detect(folder, "-o", out, model=model_file) == 0
    first = (out / "predictions.json").read_text()
    parts = sorted((out / ".parts").glob("*.json"))
    assert len(parts) == 6                                   # 5 faces + the flat image
    stamps = [p.stat().st_mtime_ns for p in parts]
    capsys.readouterr()
    assert detect(folder, "-o", out, model=model_file) == 0
    text = capsys.readouterr().out
    assert "from cache  6" in text and "processed   0 images" in text
    assert (out / "predictions.json").read_text() == first
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    # video-only options do not touch the results of images
    assert detect(folder, "-o", out, "--no-smooth", "--max-frames", "3", model=model_file) == 0
    assert "from cache  6" in capsys.readouterr().out
    # a changed file is computed again, the others still come from the cache
    write_image(folder / "face1.png", 42)
    assert detect(folder, "-o", out, model=model_file) == 0
    text = capsys.readouterr().out
    assert "from cache  5" in text and "processed   1 image" in text
    # another option (flip test) is another result: nothing comes from the cache
    assert detect(folder, "-o", out, "--flip-test", model=model_file) == 0
    assert "from cache  0" in capsys.readouterr().out


def test_shards_partition_the_inputs_and_merge(folder, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    seen = []
    for i in range(3):
        assert detect(folder, "-o", out, "--shard", f"{i}/3", model=model_file) == 0
        part = read_predictions(out / f"predictions.shard-{i}-of-3.json")
        seen += [f.image for f in part.faces]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 5       # disjoint, complete
    assert not (out / "predictions.json").exists()
    capsys.readouterr()
    assert main(["detect", "--merge", str(out), "--format", "both"]) == 0
    text = capsys.readouterr().out
    assert "merged" in text and "6 (6 images, 0 videos)" in text
    merged = read_predictions(out / "predictions.json")
    assert sorted(f.image for f in merged.faces) == sorted(seen)
    assert len(read_predictions(out / "predictions.csv").faces) == 5
    # a one-machine run gives the same faces as the merged shards
    single = tmp_path / "single"
    assert detect(folder, "-o", single, model=model_file) == 0
    ref = {f.image: f.points for f in read_predictions(single / "predictions.json").faces}
    for f in merged.faces:
        np.testing.assert_allclose(f.points, ref[f.image], atol=1e-4)


def test_merge_refuses_mixed_settings_and_empty_folders(folder, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert detect(folder / "face0.png", "-o", out, model=model_file) == 0
    assert detect(folder / "face1.png", "-o", out, "--flip-test", "--overwrite",
                  model=model_file) == 0
    capsys.readouterr()
    assert main(["detect", "--merge", str(out)]) == 2
    assert "different models or options" in capsys.readouterr().err
    assert main(["detect", "--merge", str(tmp_path / "empty")]) == 2
    assert "no result parts to merge" in capsys.readouterr().err


@given(n=st.integers(0, 40), count=st.integers(1, 7))
def test_shard_is_a_partition(n, count):
    items = list(range(n))
    shards = [shard(items, i, count) for i in range(count)]
    assert sorted(x for s in shards for x in s) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_option_errors(capsys):
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "a/b", "-1/3", "0/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    with pytest.raises(SystemExit):
        main(["detect", "x.jpg", "--shard", "3/3"])
    assert "0 <= i < n" in capsys.readouterr().err


def test_csv_and_overlays(folder, model_file, tmp_path):
    out = tmp_path / "out"
    assert detect(folder, "-o", out, "--format", "both", "--overlay", model=model_file) == 0
    js, cs = read_predictions(out / "predictions.json"), read_predictions(out / "predictions.csv")
    assert len(js.faces) == len(cs.faces) == 5
    for a, b in zip(js.faces, cs.faces):
        np.testing.assert_allclose(a.points, b.points)
    overlay = out / "overlays" / "photos" / "face0.png"
    drawn = cv2.imread(str(overlay))
    original = cv2.imread(str(folder / "face0.png"))
    assert drawn.shape == original.shape and (drawn != original).any()
    assert (out / "overlays" / "photos" / "sub" / "deep.jpg").is_file()
    assert (out / "overlays" / "photos" / "flat.png").is_file()
    # a removed overlay makes its input run again on --overlay (and only that one)
    overlay.unlink()
    assert detect(folder, "-o", out, "--overlay", model=model_file) == 0
    assert overlay.is_file()


def write_video(path: Path, frames: int = 6, size: int = 96) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    assert writer.isOpened()
    rng = np.random.default_rng(5)
    img, _ = make_face(rng, size)
    for k in range(frames):
        writer.write(np.roll(img, k, axis=1)[:, :, ::-1].copy())
    writer.release()
    return path


def test_video_file(tmp_path, model_file, capsys):
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    assert detect(video, "-o", out, "--overlay", "--format", "both", model=model_file) == 0
    preds = read_predictions(out / "videos" / "clip.mp4.json")
    assert [f.frame for f in preds.faces] == list(range(6))
    assert all(f.image.endswith("clip.mp4") for f in preds.faces)
    assert len(read_predictions(out / "videos" / "clip.mp4.csv").faces) == 6
    assert not (out / "predictions.json").exists()          # no images in this run
    cap = cv2.VideoCapture(str(out / "overlays" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    text = capsys.readouterr().out
    assert "clip.mp4: 6 frames, 6 faces" not in text          # --quiet
    parts, bad = read_parts(out)
    assert [p.kind for p in parts] == ["video"] and not bad and parts[0].info["frames"] == 6
    assert detect(video, "-o", out, "--overlay", model=model_file) == 0     # resumed
    assert "from cache  1" in capsys.readouterr().out
    assert detect(video, "-o", tmp_path / "short", "--max-frames", "2", model=model_file) == 0
    short = read_predictions(tmp_path / "short" / "videos" / "clip.mp4.json")
    assert [f.frame for f in short.faces] == [0, 1]


def test_broken_video_is_skipped(tmp_path, model_file, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    write_image(tmp_path / "ok.png", 1)
    assert detect(tmp_path / "bad.mp4", tmp_path / "ok.png", "-o", tmp_path / "out",
                  model=model_file) == 0
    text = capsys.readouterr().out
    assert "bad.mp4: cannot open video file" in text and "skipped     1" in text


class FakeCapture:
    """Stands in for cv2.VideoCapture(int): a camera that gives ``frames`` frames."""

    frames = 5

    def __init__(self, source):
        self.source, self.left = source, self.frames
        self.img = make_face(np.random.default_rng(0), 80)[0][:, :, ::-1].copy()

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.source == 0

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 80,
                cv2.CAP_PROP_FRAME_HEIGHT: 80}.get(prop, 0.0)

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, self.img

    def release(self):
        pass


def test_webcam_index(tmp_path, model_file, monkeypatch, capsys):
    import facemark.inference.video as video

    monkeypatch.setattr(video.cv2, "VideoCapture", FakeCapture)
    out = tmp_path / "out"
    assert detect("0", "-o", out, "--max-frames", "3", model=model_file) == 0
    preds = read_predictions(out / "videos" / "webcam0.mp4.json")
    assert [f.frame for f in preds.faces] == [0, 1, 2] and preds.faces[0].image == "webcam:0"
    assert not (out / ".parts").exists() or not list((out / ".parts").glob("*.json"))
    capsys.readouterr()
    assert detect("1", "-o", out, model=model_file) == 1                  # no such camera
    assert "webcam:1: cannot open the camera" in capsys.readouterr().out


def test_missing_paths_and_exit_status(tmp_path, model_file, capsys):
    write_image(tmp_path / "ok.png", 1)
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    assert detect(tmp_path / "ok.png", tmp_path / "nope.jpg", tmp_path / "doc.pdf",
                  "-o", tmp_path / "out", model=model_file) == 0
    text = capsys.readouterr().out
    assert "nope.jpg: no such file or folder" in text and "doc.pdf: not an image or video" in text
    assert "skipped     2" in text
    # nothing could be processed: exit status 1, still with a summary
    assert detect(tmp_path / "nope.jpg", "-o", tmp_path / "out2", model=model_file) == 1
    assert "summary" in capsys.readouterr().out
    # an empty folder is an error before any model is loaded
    (tmp_path / "empty").mkdir()
    assert detect(tmp_path / "empty", model=model_file) == 2
    assert "no images or videos found" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, model_file, monkeypatch, capsys):
    write_image(tmp_path / "ok.png", 1)
    monkeypatch.setattr("facemark.inference.model_path.bundled_models", lambda: {})
    assert main(["detect", str(tmp_path / "ok.png"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no default model is bundled" in err and "--model PATH" in err and "Traceback" not in err
    assert main(["detect", str(tmp_path / "ok.png"), "--model", str(model_file),
                 "--detector", "nosuch", "-o", str(tmp_path / "o")]) == 2
    assert "unknown name 'nosuch'" in capsys.readouterr().err
    assert main(["detect"]) == 2
    assert "give at least one PATH" in capsys.readouterr().err
    assert main(["detect", "--merge", str(tmp_path), "x.jpg"]) == 2


def test_collect_inputs_names_and_recursion(folder):
    got = collect_inputs([str(folder)], recursive=False)
    assert [Path(i.name).name for i in got.inputs] == [
        "broken.jpg", "face0.png", "face1.png", "face2.png", "face3.png", "flat.png"]
    assert got.other_files == 1 and not got.problems
    deep = collect_inputs([str(folder), str(folder / "face0.png"), "3"])
    assert [i.kind for i in deep.inputs].count("image") == 7 and deep.inputs[-1].kind == "webcam"
    assert len({i.output for i in deep.inputs}) == len(deep.inputs)


def test_list_detectors(capsys):
    assert main(["detect", "--list-detectors"]) == 0
    text = capsys.readouterr().out
    assert "opencv_haar" in text and DETECTOR in text


# ---------------------------------------------------------------------------------------
# Video tracking and smoothing (the loop behind facemark detect VIDEO)
# ---------------------------------------------------------------------------------------
class TemplateEngine:
    """A confident fake model: the 68-point template inside every crop, plus noise."""

    kind = "test"

    def __init__(self, info, noise: float = 0.0, confidence: float = 0.9, seed: int = 0):
        self.info, self.noise, self.confidence = info, noise, confidence
        self.rng = np.random.default_rng(seed)

    def predict(self, x):
        b = x.shape[0]
        pts = np.tile(template68() * 0.6 + 0.2, (b, 1, 1))
        pts = pts + self.rng.normal(0, self.noise, pts.shape)
        return (torch.as_tensor(pts, dtype=torch.float32),
                torch.full((b, 68), self.confidence))


class ArraySource:
    """Frames from memory, with the VideoSource interface track_video uses."""

    def __init__(self, frames, fps=25.0):
        self.frames, self.source, self.fps_ = frames, "memory", fps

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __iter__(self):
        return iter(enumerate(self.frames))


def video_landmarker(model_file, engine_kwargs=None, **kwargs):
    import facemark

    lm = facemark.load(model_file, detector=DETECTOR, **kwargs)
    lm.engine_ = TemplateEngine(lm.info_, **(engine_kwargs or {}))
    return lm


def still_frames(n=12, size=96):
    img, _ = make_face(np.random.default_rng(2), size)
    return [img] * n


def test_tracking_reuses_landmarks_and_redetects_every_k_frames(model_file):
    from facemark.inference.video import track_video

    lm = video_landmarker(model_file)
    frames = list(track_video(lm, ArraySource(still_frames(12)), detect_every=5))
    assert [f.index for f in frames if f.detected] == [0, 5, 10]
    assert all(len(f.faces) == 1 and f.faces[0].track_id == 0 for f in frames)
    assert frames[0].faces[0].score == pytest.approx(0.75)      # the detector's box
    assert frames[1].faces[0].score is None                      # a box from the landmarks
    # a still face keeps its box: the one proposed from landmarks is the detector's again
    for f in frames:
        np.testing.assert_allclose(f.faces[0].box, [24, 24, 72, 72], atol=1e-6)
        np.testing.assert_allclose(f.faces[0].points, frames[0].faces[0].points, atol=1e-6)


def test_low_confidence_runs_the_detector_every_frame(model_file):
    from facemark.inference.video import track_video

    lm = video_landmarker(model_file, {"confidence": 0.1})
    frames = list(track_video(lm, ArraySource(still_frames(4)), detect_every=50))
    assert all(f.detected for f in frames)
    flat = [np.full((60, 80, 3), 99, np.uint8)] * 3              # no face: empty lists
    assert [f.faces for f in track_video(lm, ArraySource(flat))] == [[], [], []]


def test_smoothing_lowers_jitter_and_can_be_turned_off(model_file):
    from facemark.inference.video import JitterMeter, track_video

    # the detector box on every frame keeps the crops still: what moves is the model's noise
    # (with boxes from landmarks, this crop-anchored fake model would drift with its box)
    frames = still_frames(30)
    lm = video_landmarker(model_file, {"noise": 0.01})
    meter = JitterMeter()
    for f in track_video(lm, ArraySource(frames), detect_every=1):
        meter.add(f)
    jit = meter.result()
    assert jit["frames"] == 29 and jit["smoothed"] < 0.5 * jit["raw"]
    off = video_landmarker(model_file, {"noise": 0.01}, smoothing=False)
    meter = JitterMeter()
    for f in track_video(off, ArraySource(frames), detect_every=1):
        np.testing.assert_allclose(f.faces[0].points, f.raw_points[0])
        meter.add(f)
    assert meter.result()["smoothed"] == pytest.approx(meter.result()["raw"])


def test_sample_photo_is_added_to_the_inputs(model_file, tmp_path, capsys):
    from facemark.data.images import sample_image

    assert sample_image().is_file()
    out = tmp_path / "out"
    assert main(["detect", "--sample", "-o", str(out), "--model", str(model_file),
                 "--detector", DETECTOR]) == 0
    assert "grace_hopper.jpg: 1 face" in capsys.readouterr().out
    preds = read_predictions(out / "predictions.json")
    assert [Path(f.image).name for f in preds.faces] == ["grace_hopper.jpg"]


def test_refine_options(folder, model_file, tmp_path, capsys):
    import json

    def refine_setting(out):
        part = next(p for p in out.rglob("*.json") if "settings" in p.read_text())
        return json.loads(part.read_text())["settings"]["refine"]

    # the default refines once (the test model is trained on 300w landmark crops)
    assert detect(folder / "face0.png", "-o", tmp_path / "a", model=model_file) == 0
    assert detect(folder / "face0.png", "-o", tmp_path / "b", "--no-refine", model=model_file) == 0
    assert detect(folder / "face0.png", "-o", tmp_path / "c", "--refine", "--refine-passes", "2",
                  model=model_file) == 0
    assert [refine_setting(tmp_path / d) for d in "abc"] == [1, 0, 2]
    capsys.readouterr()
    assert detect(folder / "face0.png", "-o", tmp_path / "d", "--no-refine", "--refine",
                  model=model_file) == 2
    assert "--no-refine contradicts" in capsys.readouterr().err

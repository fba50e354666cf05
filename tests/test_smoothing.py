"""One Euro filter, jitter metric, and the model-independent face tracker.

The tracker is driven by a synthetic scene: faces are point sets moving over a blank
frame, a fake detector returns their boxes (in a detector-like style: taller and lower
than the points), and a fake landmarker returns the true points (plus noise) when it is
given a box on a face and a low confidence otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facemark.inference.detectors.base import DetectedFace, FaceDetector, box_iou
from facemark.inference.smoothing import OneEuroFilter, jitter, smooth_track
from facemark.inference.tracking import BoxRelation, FaceTracker, TrackedFace

FPS = 30.0


def _still(rng, frames=200, points=20, size=120.0, noise=0.01):
    base = rng.uniform(0, size, (points, 2))
    return base, base[None] + rng.normal(0, noise * size, (frames, points, 2))


# ---------------------------------------------------------------------------------------
# One Euro filter
# ---------------------------------------------------------------------------------------
def test_constant_signal_passes_unchanged():
    pts = np.array([[10.0, 20.0], [30.5, 40.25], [0.0, -3.0]])
    f = OneEuroFilter()
    for i in range(50):
        np.testing.assert_allclose(f(pts, face_size=57.0), pts, atol=1e-12)


def test_first_call_returns_input_and_reset_forgets():
    f = OneEuroFilter()
    a, b = np.zeros((4, 2)), np.full((4, 2), 100.0)
    np.testing.assert_array_equal(f(a), a)
    out = f(b)
    assert (out > 0).all() and (out < 100).all()   # smoothed towards the past
    f.reset()
    np.testing.assert_array_equal(f(b), b)


def test_noise_on_a_still_face_is_reduced():
    rng = np.random.default_rng(0)
    size = 150.0
    _, noisy = _still(rng, size=size)
    raw = jitter(noisy, size)
    smooth = jitter(smooth_track(noisy, size), size)
    assert smooth < 0.3 * raw, (raw, smooth)


def test_fast_step_followed_with_little_lag_thanks_to_beta():
    """A jump of one face size: with beta the output is within 5% of the face size after 3
    frames; with beta = 0 (a plain low-pass at min_cutoff) it is still far behind."""
    size = 100.0
    track = np.zeros((40, 5, 2))
    track[20:] += size
    fast = smooth_track(track, size, beta=10.0)
    slow = smooth_track(track, size, beta=0.0)
    err_fast = np.abs(fast[23] - track[23]).max() / size
    err_slow = np.abs(slow[23] - track[23]).max() / size
    assert err_fast < 0.05, err_fast
    assert err_slow > 0.3, err_slow


def test_moving_face_lag_is_about_one_percent():
    """The documented default behaviour: half a face size per second, lag ~1% of the face."""
    rng = np.random.default_rng(1)
    size, frames = 150.0, 240
    t = np.arange(frames) / FPS
    base = rng.uniform(0, size, (20, 2))
    move = base[None] + np.stack([0.5 * size * t, 0 * t], 1)[:, None, :]
    noisy = move + rng.normal(0, 0.01 * size, move.shape)
    out = smooth_track(noisy, size)
    lag = np.mean(move[60:, :, 0] - out[60:, :, 0]) / size
    assert 0 < lag < 0.02, lag


def test_units_do_not_depend_on_image_size():
    """Scaling the points and the face size together scales the output exactly."""
    rng = np.random.default_rng(2)
    _, noisy = _still(rng, frames=30, size=100.0)
    a = smooth_track(noisy, 100.0)
    b = smooth_track(noisy * 7.0, 700.0)
    np.testing.assert_allclose(b, a * 7.0, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(0.05, 50.0), shift=st.floats(-500, 500))
def test_filter_commutes_with_scale_and_shift(scale, shift):
    rng = np.random.default_rng(3)
    _, noisy = _still(rng, frames=12, points=3, size=80.0)
    a = smooth_track(noisy, 80.0)
    b = smooth_track(noisy * scale + shift, 80.0 * scale)
    np.testing.assert_allclose(b, a * scale + shift, rtol=1e-7, atol=1e-6 * (1 + abs(shift)))


def test_per_frame_timestamps():
    rng = np.random.default_rng(4)
    _, noisy = _still(rng, frames=20, points=4)
    # explicit 1/fps timestamps equal the default clock
    np.testing.assert_allclose(smooth_track(noisy, 120.0, times=np.arange(20) / FPS),
                               smooth_track(noisy, 120.0), atol=1e-12)
    # a longer gap between frames means less smoothing of that frame
    f1, f2 = OneEuroFilter(), OneEuroFilter()
    a, b = np.zeros((1, 2)), np.ones((1, 2)) * 10
    f1(a, t=0.0)
    f2(a, t=0.0)
    short = f1(b, t=1 / 30)
    long = f2(b, t=1.0)
    assert 0 < short[0, 0] < long[0, 0] < 10
    # irregular timestamps run and stay between the inputs
    times = np.cumsum(rng.uniform(0.01, 0.1, 20))
    out = smooth_track(noisy, 120.0, times=times)
    assert np.isfinite(out).all()


def test_timestamps_must_increase():
    f = OneEuroFilter()
    f(np.zeros((2, 2)), t=1.0)
    with pytest.raises(ValueError, match="timestamps must increase"):
        f(np.zeros((2, 2)), t=1.0)


def test_nan_points_stay_nan_and_keep_state():
    f = OneEuroFilter()
    f(np.array([[0.0, 0.0], [5.0, 5.0]]))
    out = f(np.array([[np.nan, np.nan], [5.0, 5.0]]))
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1], [5.0, 5.0])
    out = f(np.array([[0.0, 0.0], [5.0, 5.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.0], [5.0, 5.0]])


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_cutoff=0), "min_cutoff"), (dict(beta=-1), "beta"), (dict(fps=0), "fps"),
    (dict(d_cutoff=float("nan")), "d_cutoff")])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OneEuroFilter(**kwargs)(np.zeros((2, 2)))


def test_shape_errors():
    f = OneEuroFilter()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        f(np.zeros(4))
    f(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="reset"):
        f(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="face_size"):
        f(np.zeros((3, 2)), face_size=0)


# ---------------------------------------------------------------------------------------
# jitter
# ---------------------------------------------------------------------------------------
def test_jitter_by_hand():
    track = np.zeros((3, 2, 2))
    track[1, 0] = [3, 4]        # point 0 moves 5 px, then back 5 px
    sizes = np.array([10.0, 10.0, 20.0])
    # frame 1: (5/10 + 0) / 2, frame 2: (5/20 + 0) / 2 -> mean 0.1875
    assert jitter(track, sizes) == pytest.approx(0.1875)
    assert jitter(track * 2, sizes * 2) == pytest.approx(0.1875)
    assert jitter(np.zeros((5, 3, 2)), 50.0) == 0.0


def test_jitter_ignores_nan_and_checks_input():
    track = np.zeros((3, 2, 2))
    track[1, 1] = np.nan
    track[2, 0] = [1, 0]
    assert jitter(track, 1.0) == pytest.approx(0.5)   # valid motions 0 and 1; NaN skipped
    with pytest.raises(ValueError, match="at least 2 frames"):
        jitter(np.zeros((1, 3, 2)), 1.0)
    with pytest.raises(ValueError, match=r"\(T, N, 2\)"):
        jitter(np.zeros((4, 3)), 1.0)
    with pytest.raises(ValueError, match="face_size"):
        jitter(np.zeros((4, 3, 2)), np.array([1.0, 1.0, 0.0, 1.0]))


# ---------------------------------------------------------------------------------------
# Tracking with a fake scene
# ---------------------------------------------------------------------------------------
TEMPLATE = np.random.default_rng(10).uniform(0, 1, (12, 2))
TEMPLATE[:2] = [[0, 0], [1, 1]]            # the points span the unit square
DETECTOR_STYLE = BoxRelation(dx=0.0, dy=0.1, sw=1.3, sh=1.4)


@dataclass
class SceneFace:
    start: int            # first frame it is visible
    end: int              # last frame + 1
    origin: tuple[float, float]
    velocity: tuple[float, float]   # pixels per frame
    size: float
    occluded: tuple[int, ...] = ()  # frames where the landmarker fails on it


class Scene:
    """Faces moving over a 640 x 480 frame; ``frame`` sets the current frame index."""

    def __init__(self, faces: list[SceneFace], noise: float = 0.0, seed: int = 0):
        self.faces = faces
        self.noise = noise
        self.index = 0
        self.rng = np.random.default_rng(seed)
        self.image = np.zeros((480, 640, 3), np.uint8)

    def visible(self) -> list[SceneFace]:
        """Faces in the scene now whose detector box is at least half inside the frame."""
        out = []
        for f in self.faces:
            if f.start <= self.index < f.end:
                x1, y1, x2, y2 = self.detector_box(f)
                inside = (max(0.0, min(x2, 640) - max(x1, 0)) * max(0.0, min(y2, 480) - max(y1, 0)))
                if inside >= 0.5 * (x2 - x1) * (y2 - y1):
                    out.append(f)
        return out

    def points(self, face: SceneFace) -> np.ndarray:
        t = self.index - face.start
        xy = np.array(face.origin) + t * np.array(face.velocity)
        return xy + TEMPLATE * face.size

    def detector_box(self, face: SceneFace) -> np.ndarray:
        pts = self.points(face)
        return DETECTOR_STYLE.apply(np.r_[pts.min(0), pts.max(0)])

    def landmarks(self, box: np.ndarray) -> tuple[np.ndarray, float]:
        """The fake landmark model: right points on a face, garbage elsewhere."""
        best, best_iou = None, 0.0
        for f in self.visible():
            iou = box_iou(box, self.detector_box(f))[0, 0]
            if iou > best_iou:
                best, best_iou = f, iou
        if best is None or best_iou < 0.3 or self.index in best.occluded:
            garbage = self.rng.uniform(box[:2], box[2:], (len(TEMPLATE), 2))
            return garbage, 0.1
        pts = self.points(best) + self.rng.normal(0, self.noise * best.size, TEMPLATE.shape)
        return pts, 0.9


class SceneDetector(FaceDetector):
    name = "scene"

    def __init__(self, scene: Scene | None = None, min_size: int = 1, score_threshold: float = 0.0):
        super().__init__(min_size=min_size, score_threshold=score_threshold)
        self.scene = scene
        self.calls: list[int] = []

    def _load(self) -> None:
        pass

    def _detect(self, image):
        self.calls.append(self.scene.index)
        return [DetectedFace(self.scene.detector_box(f), 1.0) for f in self.scene.visible()]


def run_scene(scene: Scene, frames: int, **tracker_args):
    detector = SceneDetector(scene)
    tracker = FaceTracker(detector, **tracker_args)
    log = []
    for i in range(frames):
        scene.index = i
        boxes = tracker.boxes_for(scene.image)
        results = [scene.landmarks(b.box) for b in boxes]
        faces = tracker.update(i, results)
        log.append((boxes, faces))
    return detector, tracker, log


def test_one_moving_face_keeps_its_id_and_box():
    scene = Scene([SceneFace(0, 100, (50, 60), (3.0, 1.0), 100.0)])
    detector, tracker, log = run_scene(scene, 60, detect_every=10)
    assert detector.calls == list(range(0, 60, 10))
    for i, (boxes, faces) in enumerate(log):
        assert [f.track_id for f in faces] == [0]
        scene.index = i
        # the landmark-predicted box matches the detector's style (dy, sw, sh learned)
        assert box_iou(boxes[0].box, scene.detector_box(scene.faces[0]))[0, 0] > 0.9
        assert boxes[0].from_detector == (i == 0)
    assert not any(f.lost for _, faces in log for f in faces)


def test_new_face_is_found_at_the_next_scheduled_detection():
    scene = Scene([SceneFace(0, 100, (50, 60), (1.0, 0.0), 90.0),
                   SceneFace(15, 100, (400, 200), (-1.0, 0.5), 110.0)])
    _, _, log = run_scene(scene, 40, detect_every=10)
    ids = [sorted(f.track_id for f in faces) for _, faces in log]
    assert ids[19] == [0]
    assert all(i == [0, 1] for i in ids[20:])


def test_low_confidence_triggers_detection_and_reacquires_the_same_id():
    scene = Scene([SceneFace(0, 100, (100, 100), (2.0, 0.0), 100.0, occluded=(12,))])
    detector, _, log = run_scene(scene, 30, detect_every=10, min_confidence=0.5)
    assert detector.calls == [0, 10, 13, 23]     # 13: right after the bad frame 12; then every 10
    assert log[12][1][0].lost and log[12][1][0].confidence == pytest.approx(0.1)
    assert all(f.track_id == 0 for _, faces in log for f in faces)
    assert log[13][0][0].from_detector


def test_lost_face_ends_and_ids_are_not_reused():
    scene = Scene([SceneFace(0, 12, (100, 100), (0.0, 0.0), 100.0),
                   SceneFace(25, 100, (300, 100), (0.0, 0.0), 100.0)])
    _, tracker, log = run_scene(scene, 40, detect_every=10)
    assert [f.track_id for f in log[11][1]] == [0]
    assert log[12][1][0].lost                       # face gone: garbage, low confidence
    assert log[13][1] == []                         # detector ran, found nothing: dropped
    assert [f.track_id for f in log[30][1]] == [1]  # found at frame 30, a new id


def test_face_leaving_the_frame_is_dropped():
    scene = Scene([SceneFace(0, 200, (400, 100), (25.0, 0.0), 100.0)])
    _, tracker, log = run_scene(scene, 20, detect_every=100)
    # the face moves out to the right; once its box is mostly outside, the track ends
    assert log[-1][1] == [] and tracker.tracks_ == []


def test_tracking_smooths_a_still_noisy_face():
    scene = Scene([SceneFace(0, 200, (200, 150), (0.0, 0.0), 120.0)], noise=0.01, seed=3)
    _, _, log = run_scene(scene, 120, detect_every=30)
    raw = np.stack([faces[0].raw_points for _, faces in log])
    smooth = np.stack([faces[0].points for _, faces in log])
    j_raw, j_smooth = jitter(raw, 120.0), jitter(smooth, 120.0)
    assert j_smooth < 0.5 * j_raw, (j_raw, j_smooth)
    # and smoothing off returns the raw points
    scene2 = Scene([SceneFace(0, 200, (200, 150), (0.0, 0.0), 120.0)], noise=0.01, seed=3)
    _, _, log2 = run_scene(scene2, 5, smoothing=False)
    for _, faces in log2:
        np.testing.assert_array_equal(faces[0].points, faces[0].raw_points)


def test_update_accepts_objects_with_scores():
    @dataclass
    class Result:
        points: np.ndarray
        scores: np.ndarray

    scene = Scene([SceneFace(0, 10, (100, 100), (0.0, 0.0), 100.0)])
    tracker = FaceTracker(SceneDetector(scene))
    boxes = tracker.boxes_for(scene.image)
    pts, _ = scene.landmarks(boxes[0].box)
    out = tracker.update(0, [Result(pts, np.full(len(pts), 0.8))])
    assert isinstance(out[0], TrackedFace) and out[0].confidence == pytest.approx(0.8)


def test_update_contract_errors():
    scene = Scene([SceneFace(0, 10, (100, 100), (0.0, 0.0), 100.0)])
    tracker = FaceTracker(SceneDetector(scene))
    with pytest.raises(RuntimeError, match="boxes_for"):
        tracker.update(0, [])
    boxes = tracker.boxes_for(scene.image)
    with pytest.raises(ValueError, match="1 boxes"):
        tracker.update(0, [])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        tracker.update(0, [(np.zeros(5), 0.9)])
    assert len(boxes) == 1
    with pytest.raises(ValueError, match="detect_every"):
        FaceTracker(SceneDetector(scene), detect_every=0).boxes_for(scene.image)


def test_max_faces_keeps_the_best_detections():
    scene = Scene([SceneFace(0, 10, (50, 50), (0.0, 0.0), 100.0),
                   SceneFace(0, 10, (300, 50), (0.0, 0.0), 100.0)])
    _, tracker, log = run_scene(scene, 3, max_faces=1)
    assert all(len(faces) == 1 for _, faces in log)


def test_box_relation_round_trip():
    rel = BoxRelation(0.05, 0.1, 1.3, 1.4)
    lm = np.array([10.0, 20.0, 110.0, 140.0])
    det = rel.apply(lm)
    back = BoxRelation.measure(det, lm)
    assert (back.dx, back.dy, back.sw, back.sh) == pytest.approx((0.05, 0.1, 1.3, 1.4))
    half = BoxRelation().blend(rel, 0.5)
    assert half.sw == pytest.approx(1.15) and math.isclose(half.dy, 0.05)

"""Broken inputs, generated (issue 12): every dataset reader, ``facemark detect`` and
``facemark evaluate`` get truncated and random bytes, wrong point counts, NaN/inf and huge
numbers, bad UTF-8, bad headers, and tiny, huge and undecodable images.

Each case must end in a result or a :class:`facemark.errors.FacemarkError` (the CLI: exit
status 1 or 2 and a one-line message) that names the file, never another exception, and
must not lose anything an earlier run wrote. Run counts and the defects this found are in
``docs/fuzzing.md``; ``FUZZ_EXAMPLES`` (environment) raises the number of cases per test::

    FUZZ_EXAMPLES=200 OMP_NUM_THREADS=1 python -m pytest -q tests/test_fuzz_inputs.py
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facemark.cli import main
from facemark.data.formats import open_dataset
from facemark.data.sample import Sample
from facemark.data.schemes import get_scheme
from facemark.errors import FacemarkError

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
#: the CLI cases run a whole command each: fewer by default
FUZZ_CLI = settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 3))
#: cases tried, per test, for docs/fuzzing.md (printed with -s)
TRIED: dict[str, int] = {}


def _count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


# ---------------------------------------------------------------------------------------
# valid seeds, one per format: (dataset spec, the file the cases corrupt, binary?)
# ---------------------------------------------------------------------------------------
def _image(path: Path, w: int = 16, h: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # (cv2.imwrite crashes on a file name that is not UTF-8; bytes written here do not)
    ok, buf = cv2.imencode(path.suffix, np.full((h, w, 3), 100, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _points(n: int, seed: int = 0, scale: float = 10.0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(1, scale, (n, 2)), 3)


def _pts_text(p: np.ndarray) -> str:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in p)
    return f"version: 1\nn_points: {len(p)}\n{{\n{body}\n}}\n"


def _cells(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def seed_csv(root: Path):
    _image(root / "train" / "f0.jpg")
    _image(root / "train" / "f1.jpg")
    n = 68
    rows = [",".join(str(c) for c in [""] + list(range(2 * n)))]
    rows += [",".join([f"f{i}.jpg", *map(str, _points(n, i).ravel())]) for i in range(2)]
    path = root / "train_keypoints.csv"
    path.write_text("\n".join(rows) + "\n")
    return f"csv:{path}", path, False


def seed_pts(root: Path):
    _image(root / "set" / "a.jpg")
    path = root / "set" / "a.pts"
    path.write_text(_pts_text(_points(68) + 1))
    return f"pts:{root}", path, False


def seed_ljson(root: Path):
    _image(root / "a.jpg")
    p = _points(68)
    doc = {"version": 3, "groups": {"LJSON": {
        "landmarks": {"points": [[y, x] for x, y in p.tolist()]},
        "labels": [{"label": "all", "mask": list(range(68))}]}}}
    path = root / "a.ljson"
    path.write_text(json.dumps(doc))
    return f"ljson:{root}", path, False


def seed_dlib(root: Path):
    _image(root / "a.jpg")
    parts = "\n".join(f"      <part name='{k:02d}' x='{int(x)}' y='{int(y)}'/>"
                      for k, (x, y) in enumerate(_points(68)))
    path = root / "faces.xml"
    path.write_text("<?xml version='1.0' encoding='ISO-8859-1'?>\n<dataset>\n<images>\n"
                    "  <image file='a.jpg'>\n    <box top='1' left='2' width='10' height='9'>\n"
                    f"{parts}\n    </box>\n  </image>\n</images>\n</dataset>\n")
    return f"dlib:{path}", path, False


def seed_coco(root: Path):
    _image(root / "img0.png")
    kps = np.column_stack([_points(68), np.full(68, 2)]).ravel().tolist()
    doc = {"images": [{"id": 0, "file_name": "img0.png"}],
           "annotations": [{"image_id": 0, "id": 0, "keypoints": kps, "bbox": [1, 2, 10, 9]}]}
    path = root / "faces.json"
    path.write_text(json.dumps(doc))
    return f"coco:{path}", path, False


def seed_wflw(root: Path):
    _image(root / "WFLW_images" / "0--Parade" / "a.jpg")
    nums = " ".join(f"{v:.6f}" for v in _points(98).ravel())
    main_dir = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    main_dir.mkdir(parents=True)
    path = main_dir / "list_98pt_rect_attr_test.txt"
    path.write_text(f"{nums} 1 2 12 11 0 1 0 0 1 0 0--Parade/a.jpg\n")
    return f"wflw:{path}", path, False


def seed_lapa(root: Path):
    split = root / "LaPa" / "test"
    _image(split / "images" / "9_1.jpg")
    (split / "landmarks").mkdir(parents=True)
    path = split / "landmarks" / "9_1.txt"
    path.write_text("106\n" + "".join(f"{x} {y}\n" for x, y in _points(106)))
    return f"lapa:{root / 'LaPa'}", path, False


def seed_300vw(root: Path):
    video = root / "300VW" / "114"
    (video / "imgs").mkdir(parents=True)
    _image(video / "imgs" / "000001.jpg")
    (video / "annot").mkdir()
    path = video / "annot" / "000001.pts"
    path.write_text(_pts_text(_points(68) + 1))
    return f"300vw:{root / '300VW'}", path, False


def seed_folder(root: Path):
    path = _image(root / "photos" / "a.png")
    return f"folder:{root / 'photos'}", path, True


def seed_cofw(root: Path):
    rng = np.random.default_rng(0)
    n = get_scheme("cofw29").num_points
    images = [rng.integers(0, 256, (20, 31), dtype=np.uint8) for _ in range(2)]
    phis = np.array([np.concatenate([rng.uniform(1, 20, 2 * n), np.zeros(n)]) for _ in range(2)])
    path = root / "COFW_test.mat"
    scipy.io.savemat(path, {"IsT": _cells(images), "phisT": phis,
                            "bboxesT": np.array([[3.0, 4, 15, 12]] * 2)})
    return f"cofw:{path}", path, True


def seed_cofw68(root: Path):
    ann = root / "COFW68_Data" / "test_annotations"
    ann.mkdir(parents=True)
    _image(ann / "im_1.png", 31, 20)
    path = ann / "1_points.mat"
    scipy.io.savemat(path, {"Points": _points(68, scale=20), "Occ": np.zeros((1, 68), bool)})
    return f"cofw68:{ann}", path, True


def seed_aflw(root: Path):
    n = get_scheme("aflw19").num_points
    _image(root / "flickr" / "0" / "image00002.jpg")
    path = root / "AFLWinfo_release.mat"
    scipy.io.savemat(path, {"data": np.tile(np.arange(2 * n, dtype=np.float64), (2, 1)),
                            "bbox": np.tile([1.0, 30.0, 2.0, 40.0], (2, 1)),
                            "nameList": _cells([np.array(["0/image00002.jpg"])] * 2),
                            "mask_new": np.ones((2, n)), "ra": np.array([[1.0, 2.0]])})
    return f"aflw:{path}", path, True


SEEDS = {"csv": seed_csv, "pts": seed_pts, "ljson": seed_ljson, "dlib": seed_dlib,
         "coco": seed_coco, "wflw": seed_wflw, "lapa": seed_lapa, "300vw": seed_300vw,
         "folder": seed_folder, "cofw": seed_cofw, "cofw68": seed_cofw68, "aflw": seed_aflw}

# ---------------------------------------------------------------------------------------
# corruptions
# ---------------------------------------------------------------------------------------
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
BAD_NUMBERS = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e400", b"-1e308", b"1e30",
               b"", b"abc", b"0x1F", b"1,5", b"\xff\xfe"]
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x00", b"\xef\xbb\xbf"]


@st.composite
def corruption(draw, binary: bool):
    """(name, function bytes -> bytes)."""
    kinds = ["truncate", "random", "flip", "empty", "insert_bad_utf8"]
    if not binary:
        kinds += ["bad_number", "drop_number", "extra_number", "bad_header", "drop_line"]
    kind = draw(st.sampled_from(kinds))
    frac = draw(st.floats(0, 1))
    blob = draw(st.binary(min_size=1, max_size=64))
    if kind == "truncate":
        return kind, lambda b: b[:int(len(b) * frac)]
    if kind == "random":
        return kind, lambda b: blob
    if kind == "empty":
        return kind, lambda b: b""
    if kind == "flip":
        def flip(b):
            arr = bytearray(b)
            for j, v in enumerate(blob[:8]):
                if arr:
                    arr[(int(frac * len(arr)) + 97 * j) % len(arr)] ^= v or 1
            return bytes(arr)
        return kind, flip
    if kind == "insert_bad_utf8":
        bad = draw(st.sampled_from(BAD_UTF8))
        return kind, lambda b: b[:int(len(b) * frac)] + bad + b[int(len(b) * frac):]
    if kind == "bad_header":
        return kind, lambda b: blob.replace(b"\n", b" ") + b"\n" + b.partition(b"\n")[2]
    if kind == "drop_line":
        def drop_line(b):
            lines = b.split(b"\n")
            del lines[int(frac * (len(lines) - 1))]
            return b"\n".join(lines)
        return kind, drop_line
    new = draw(st.sampled_from(BAD_NUMBERS))

    def numbers(b):
        found = list(_NUMBER.finditer(b))
        if not found:
            return b
        m = found[int(frac * (len(found) - 1))]
        if kind == "bad_number":
            return b[:m.start()] + new + b[m.end():]
        if kind == "drop_number":   # one coordinate fewer: a wrong point count
            return b[:m.start()] + b[m.end():].lstrip(b" ,")
        return b[:m.end()] + b" 1.5" + b[m.end():]   # extra_number
    return kind, numbers


def _names_file(message: str, *paths: Path) -> bool:
    return any(str(p) in message or p.name in message for p in paths)


# ---------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_reader_gets_broken_file(tmp_path_factory, fmt):
    root = tmp_path_factory.mktemp(f"seed_{fmt}")
    spec, target, binary = SEEDS[fmt](root)
    assert open_dataset(spec), f"the {fmt} seed must read"    # the seed itself is valid
    original = target.read_bytes()

    @FUZZ
    @given(corruption(binary))
    def run(case):
        kind, corrupt = case
        _count(f"reader:{fmt}")
        target.write_bytes(corrupt(original))
        if os.environ.get("FUZZ_DUMP"):   # the last case tried, for a crash (segfault)
            shutil.copy(target, os.environ["FUZZ_DUMP"])
        try:
            samples = open_dataset(spec)
        except FacemarkError as e:
            assert _names_file(str(e), target, Path(spec.partition(":")[2])), \
                f"{fmt}/{kind}: message names no file: {e}"
            return
        finally:
            target.write_bytes(original)
        for s in samples:
            assert isinstance(s, Sample)
            if s.landmarks is not None:   # NaN marks an unannotated point; inf is never data
                assert not np.isinf(s.landmarks).any(), f"{fmt}/{kind}: inf landmarks read"
            if s.box is not None:
                assert np.isfinite(s.box).all(), f"{fmt}/{kind}: non-finite box read"
    run()


def test_reader_gets_bad_utf8_path_names(tmp_path):
    """File names that are not UTF-8 (Linux allows any bytes) must not break messages."""
    folder = tmp_path / "pts"
    folder.mkdir()
    name = os.fsdecode(b"bad\xffname")
    (folder / f"{name}.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    _image(folder / f"{name}.jpg")
    with pytest.raises(FacemarkError) as info:
        open_dataset(f"pts:{folder}")
    str(info.value).encode("utf-8", "backslashreplace")   # printable


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_prediction_file_keeps_a_non_utf8_image_name(tmp_path, suffix):
    from facemark.data.predictions import PredictedFace, read_predictions, write_predictions
    name = os.fsdecode(b"ph\xffoto.jpg")
    path = write_predictions(tmp_path / f"p{suffix}", [PredictedFace(name, _points(68))],
                             "300w68")
    assert read_predictions(path).faces[0].image == name


def test_detect_and_messages_with_non_utf8_file_names(tmp_path, capsys):
    photo = _image(tmp_path / os.fsdecode(b"ph\xffoto.png"), 40, 30)
    broken = tmp_path / os.fsdecode(b"bro\xfeken.jpg")
    broken.write_bytes(b"\xff\xd8\xff\xe0")
    rc = main(["detect", str(photo), str(broken), "-o", str(tmp_path / "out"),
               "--detector", "opencv", "--format", "both"])
    text = "\n".join(capsys.readouterr())
    assert rc in (0, 1) and "Traceback" not in text
    assert "ken.jpg" in text   # the broken file is named


# ---------------------------------------------------------------------------------------
# facemark detect
# ---------------------------------------------------------------------------------------
def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels, with one small compressed row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _encoded(shape, ext=".png") -> bytes:
    ok, buf = cv2.imencode(ext, np.random.default_rng(0).integers(0, 255, shape, np.uint8))
    assert ok
    return buf.tobytes()


@st.composite
def broken_image(draw):
    """(case name, file suffix, bytes)."""
    kind = draw(st.sampled_from(["truncated_jpeg", "truncated_png", "random", "empty", "tiny",
                                 "strip", "huge_header", "grey16", "flipped_jpeg"]))
    frac = draw(st.floats(0, 1))
    if kind == "truncated_jpeg":
        data = _encoded((40, 30, 3), ".jpg")
        return kind, ".jpg", data[:int(len(data) * frac)]
    if kind == "truncated_png":
        data = _encoded((40, 30, 3))
        return kind, ".png", data[:int(len(data) * frac)]
    if kind == "random":
        return kind, draw(st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tif"])), \
            draw(st.binary(max_size=256))
    if kind == "empty":
        return kind, ".jpg", b""
    if kind == "tiny":
        h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        return kind, ".png", _encoded((h, w, 3))
    if kind == "strip":
        return kind, ".png", _encoded((1, 6000, 3) if frac < 0.5 else (6000, 1, 3))
    if kind == "huge_header":
        side = draw(st.sampled_from([70000, 100000, 2**31 - 1]))
        return kind, ".png", _png_header_only(side, side)
    if kind == "grey16":
        ok, buf = cv2.imencode(".png", np.full((20, 20), 65535, np.uint16))
        return kind, ".png", buf.tobytes()
    data = bytearray(_encoded((40, 30, 3), ".jpg"))
    for j in range(8):
        data[(int(frac * len(data)) + 131 * j) % len(data)] ^= 0x5A
    return kind, ".jpg", bytes(data)


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """An earlier run's output: one good photo done (what no later run may lose)."""
    root = tmp_path_factory.mktemp("done")
    good = root / "good.jpg"
    img = np.full((160, 160, 3), 120, np.uint8)
    cv2.circle(img, (80, 80), 50, (180, 150, 130), -1)
    cv2.imwrite(str(good), img)
    out = root / "out"
    assert main(["detect", str(good), "-o", str(out), "--detector", "opencv"]) == 0
    return good, out, {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_detect_gets_broken_images(tmp_path_factory, done_run, capsys):
    good, done_out, before = done_run

    @FUZZ_CLI
    @given(broken_image())
    def run(case):
        kind, suffix, data = case
        _count("detect")
        root = tmp_path_factory.mktemp("detect")
        out = root / "out"
        shutil.copytree(done_out, out)
        bad = root / f"broken_{kind}{suffix}"
        bad.write_bytes(data)
        capsys.readouterr()
        rc = main(["detect", str(good), str(bad), "-o", str(out), "--detector", "opencv"])
        text = "\n".join(capsys.readouterr())
        assert rc in (0, 1, 2), f"{kind}: exit {rc}"
        assert "Traceback" not in text
        predictions = json.loads((out / "predictions.json").read_text())
        assert any(f["image"].endswith("good.jpg") for f in predictions["faces"]) or \
            not json.loads(before[Path("predictions.json")])["faces"], f"{kind}: good.jpg lost"
        for rel, data_before in before.items():   # every earlier file still there
            assert (out / rel).is_file(), f"{kind}: {rel} lost"
        if "skipped" in text:   # a skipped file is named
            assert bad.name in text, text
    run()


def test_detect_refuses_bad_input_alone_with_a_line(tmp_path, capsys):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8\xff")
    rc = main(["detect", str(bad), "-o", str(tmp_path / "out"), "--detector", "opencv"])
    text = "\n".join(capsys.readouterr())
    assert rc == 1 and "x.jpg" in text and "Traceback" not in text


# ---------------------------------------------------------------------------------------
# facemark evaluate
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    from facemark.data.predictions import PredictedFace, write_predictions
    root = tmp_path_factory.mktemp("eval")
    spec, _, _ = seed_csv(root)
    samples = open_dataset(spec)
    files = {}
    for suffix in (".json", ".csv"):
        faces = [PredictedFace(Path(s.image).name, s.landmarks + 0.5, score=0.9,
                               box=[1, 2, 12, 11], point_scores=np.full(68, 0.7))
                 for s in samples]
        files[suffix] = write_predictions(root / f"preds{suffix}", faces, "300w68", "m")
    out = root / "report"
    assert main(["evaluate", f"m={files['.json']}", "--data", spec, "--out", str(out)]) == 0
    return spec, files, out


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_evaluate_gets_broken_prediction_file(tmp_path_factory, eval_files, capsys, suffix):
    spec, files, report = eval_files
    original = files[suffix].read_bytes()
    before = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}

    @FUZZ_CLI
    @given(corruption(False))
    def run(case):
        kind, corrupt = case
        _count(f"evaluate{suffix}")
        path = tmp_path_factory.mktemp("ev") / f"broken{suffix}"
        path.write_bytes(corrupt(original))
        out = path.parent / "report"
        shutil.copytree(report, out)
        capsys.readouterr()
        rc = main(["evaluate", f"m={path}", "--data", spec, "--out", str(out)])
        text = "\n".join(capsys.readouterr())
        assert "Traceback" not in text
        assert rc in (0, 1, 2), f"{kind}: exit {rc}"
        if rc:
            assert path.name in text, f"{kind}: message names no file: {text[-300:]}"
            for name, data in before.items():   # a failed run leaves the old report whole
                assert (out / name).read_bytes() == data, f"{kind}: {name} changed"
    run()


@pytest.mark.parametrize("fmt", ["csv", "pts", "ljson", "dlib", "coco"])
def test_evaluate_gets_broken_dataset(tmp_path_factory, eval_files, capsys, fmt):
    _, files, _ = eval_files
    root = tmp_path_factory.mktemp(f"evds_{fmt}")
    spec, target, binary = SEEDS[fmt](root)
    original = target.read_bytes()

    @FUZZ_CLI
    @given(corruption(binary))
    def run(case):
        kind, corrupt = case
        _count(f"evaluate-data:{fmt}")
        target.write_bytes(corrupt(original))
        try:
            capsys.readouterr()
            rc = main(["evaluate", f"m={files['.json']}", "--data", spec])
            text = "\n".join(capsys.readouterr())
        finally:
            target.write_bytes(original)
        assert "Traceback" not in text and rc in (0, 1, 2), f"{kind}: exit {rc}"
        if rc:
            assert _names_file(text, target, Path(spec.partition(":")[2]),
                               files[".json"]), f"{kind}: {text[-300:]}"
    run()


def test_report_counts():
    """Prints the cases tried per test (for docs/fuzzing.md; run with -s)."""
    if TRIED:
        print("\nfuzz cases tried:", sum(TRIED.values()), dict(sorted(TRIED.items())))

"""Unlabelled faces for self-training, distillation and DANN: where their boxes come from, how
a box becomes a crop, and their crop caches.

``self_training.boxes`` says where the boxes come from: ``dataset`` (the dataset's own
boxes; landmarks, if any, are never used), ``image`` (the whole image is the box: for
already-cropped faces), ``detector`` or ``detector:NAME`` (a face detector from
:mod:`facemark.inference.detectors`, every face it finds, reached through the face-finder
registry :mod:`facemark.data.face_finders`). ``self_training.crop_rule`` says how a box
becomes a crop (a rule name, a mapping of :class:`~facemark.data.crops.CropRule` fields, or
one per dataset). See :mod:`facemark.training.self_training` for the whole config section.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from facemark.data.cache import CropCache, build_cache
from facemark.data.crops import CropRule, get_crop_rule
from facemark.data.face_finders import create_face_finder
from facemark.data.formats import open_dataset
from facemark.data.images import EXIF_ORIENTATION_TAG, read_image
from facemark.data.sample import Sample
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, SkipLog
from facemark.io import atomic_write_text
from facemark.training.config import TrainConfig
from facemark.training.datamodule import cache_path

BOX_MODES = ("dataset", "image", "detector")
_RULE_FIELDS = ("scale", "shift_y", "top_cut", "square")


def check_unlabelled(cfg: TrainConfig) -> None:
    """What every method of ``self_training.method`` needs: unlabelled datasets, how their
    faces are found and cropped (``boxes``, ``crop_rule``), and one device.

    Raises:
        ConfigError: naming the key.
    """
    st = cfg.self_training
    mode, name = box_mode(st.boxes)
    if mode == "detector":      # the detectors registered, NAME known: before caches are built
        try:
            create_face_finder("detector", name)
        except ConfigError as e:
            raise ConfigError(f"config key 'self_training.boxes' ({st.boxes!r}): {e}") from None
    if not cfg.data.unlabelled:
        raise ConfigError("config key 'data.unlabelled' is empty: name the unlabelled datasets "
                          "to learn from (e.g. folder:path/to/images)")
    unlabelled_rules(cfg)
    devices, nodes = cfg.trainer.devices, cfg.trainer.num_nodes
    many = (isinstance(devices, int) and not isinstance(devices, bool) and devices > 1) or \
        (isinstance(devices, (list, tuple)) and len(devices) > 1) or \
        (isinstance(devices, str) and devices.strip() not in ("auto", "1")) or nodes > 1
    if many:
        raise ConfigError(f"{st.method}: training with unlabelled data runs on one device "
                          f"(trainer.devices={devices!r}, "
                          f"trainer.num_nodes={nodes}): set trainer.devices=1")


def box_mode(boxes: str) -> tuple[str, str | None]:
    """``"detector:dlib_hog"`` -> ("detector", "dlib_hog"); ConfigError for other words."""
    mode, _, arg = str(boxes).partition(":")
    if mode not in BOX_MODES or (arg and mode != "detector"):
        raise ConfigError(f"config key 'self_training.boxes': {boxes!r} is not one of dataset, "
                          "image, detector, detector:NAME")
    return mode, (arg or None)


def _rule(value: Any, key: str, default: str):
    if value is None:
        value = default
    if isinstance(value, str):
        try:
            return get_crop_rule(value)
        except KeyError as e:
            raise ConfigError(f"config key {key!r}: {e.args[0]}") from None
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(_RULE_FIELDS) - {"source"})
        if unknown:
            raise ConfigError(f"config key {key!r}: unknown field {unknown[0]!r} (fields: "
                              f"{', '.join(_RULE_FIELDS)})")
        try:
            fields = {k: (bool(v) if k == "square" else float(v)) for k, v in value.items()
                      if k in _RULE_FIELDS}
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected numbers, got {value!r}") from None
        if fields.get("scale", 1.0) <= 0:
            raise ConfigError(f"config key '{key}.scale' must be > 0, got {fields['scale']}")
        return CropRule("box", **fields)
    raise ConfigError(f"config key {key!r}: expected a crop rule name or a mapping of "
                      f"{', '.join(_RULE_FIELDS)}, got {value!r}")


def unlabelled_rules(cfg: TrainConfig) -> list:
    """One CropRule per ``data.unlabelled`` dataset (``self_training.crop_rule``)."""
    value = cfg.self_training.crop_rule
    n = len(cfg.data.unlabelled)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"config key 'self_training.crop_rule': {len(value)} rules for "
                              f"{n} unlabelled datasets; give one rule, or one per dataset")
        return [_rule(v, f"self_training.crop_rule[{i}]", cfg.data.crop_rule)
                for i, v in enumerate(value)]
    return [_rule(value, "self_training.crop_rule", cfg.data.crop_rule)] * n


def _whole_image_box(sample) -> np.ndarray:
    """The image's own frame as a box (pixel-centre convention: edges at -0.5, W - 0.5)."""
    if sample.frame is None:
        try:
            from PIL import Image

            with Image.open(sample.image) as im:
                w, h = im.size
                if im.getexif().get(EXIF_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
                    w, h = h, w  # read_image turns the photo upright: a quarter turn
            return np.array([-0.5, -0.5, w - 0.5, h - 0.5], dtype=np.float32)
        except Exception:   # not a format PIL reads: decode it the facemark way (clear errors)
            pass
    h, w = read_image(sample.image, sample.frame).shape[:2]
    return np.array([-0.5, -0.5, w - 0.5, h - 0.5], dtype=np.float32)


def unlabelled_samples(spec: str, scheme: str, boxes: str, log: SkipLog,
                       detector=None, progress: bool = False) -> tuple[list, list[str]]:
    """The faces of an unlabelled dataset, without landmarks, each with a box.

    Args:
        spec: a dataset string (``open_dataset``); read with its format's own scheme.
        scheme: the scheme the samples are given (the model's: their crops are all NaN).
        boxes: ``dataset``, ``image`` or ``detector[:NAME]`` (see the module docstring).
        log: SkipLog for unreadable records and images.
        detector: a face detector for ``detector`` boxes (None: the registered one that
            ``boxes`` names, :mod:`facemark.data.face_finders`).
        progress: show a progress bar while the detector runs.

    Returns:
        (samples, messages naming the images where the detector found no face).
    """
    mode, name = box_mode(boxes)
    raw = open_dataset(spec, skip_bad=log)
    out, no_face = [], []
    if mode == "detector" and detector is None:
        detector = create_face_finder("detector", name).load()
    seen: dict[tuple, list] = {}
    bar = None
    if progress and mode == "detector":
        from tqdm import tqdm

        bar = tqdm(total=len(raw), desc=f"finding faces ({spec})", unit="image")
    for s in raw:
        if bar is not None:
            bar.update(1)
        where = s.source or s.image
        try:
            if mode == "dataset":
                if s.box is None:
                    raise DataError(where, "no face box in the dataset; use self_training.boxes="
                                           "detector (or image for already-cropped faces)")
                found = [s.box]
            elif mode == "image":
                found = [_whole_image_box(s)]
            else:
                key = (s.image, s.frame)
                if key not in seen:      # a dataset may list an image once per face
                    seen[key] = [f.box for f in detector.detect(read_image(s.image, s.frame))]
                    if not seen[key]:
                        who = getattr(detector, "name", "the detector")
                        no_face.append(f"{where}: no face found by {who}")
                found, seen[key] = seen[key], []
        except DataError as e:
            log(e)
            continue
        for box in found:
            out.append(Sample(image=s.image, landmarks=None, scheme=scheme, box=box,
                              attributes=dict(s.attributes), frame=s.frame, source=s.source))
    if bar is not None:
        bar.close()
    return out, no_face


def open_or_build_unlabelled_cache(spec: str, rule, cfg: TrainConfig, log: SkipLog,
                                   detector=None, progress: bool = True,
                                   size: int | None = None):
    """The crop cache of one unlabelled dataset (built once, like the labelled caches), at
    ``size`` px (None: ``data.input_size``; a teacher of another size asks for its own),
    with the labelled crops' ``data.context`` around each crop, so that augmentation that
    moves the box finds image there rather than black fill.

    Returns:
        (CropCache, list of no-face messages), the latter kept beside the cache in
        ``<cache>.boxes.json`` so a reopened cache still reports them.
    """
    data = cfg.data
    size = size or data.input_size
    scheme = get_scheme(data.scheme).name
    rule_text = json.dumps(dataclasses.asdict(rule), sort_keys=True)
    tag = "unl" + hashlib.sha1(rule_text.encode()).hexdigest()[:6]
    path = cache_path(data.cache_dir, f"{spec}|unlabelled|{cfg.self_training.boxes}|{rule_text}",
                      scheme, tag, size, data.context)
    side = path.with_name(path.name + ".boxes.json")
    if (path / "meta.json").is_file():
        no_face = json.loads(side.read_text()).get("no_face", []) if side.is_file() else []
        return CropCache.open(path), no_face
    samples, no_face = unlabelled_samples(spec, scheme, cfg.self_training.boxes, log, detector,
                                          progress)
    if not samples:
        raise DataError(spec, f"no unlabelled face to crop ({len(no_face)} image(s) without a "
                              f"detected face, {len(log.skipped)} skipped)")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(side, json.dumps({"spec": spec, "no_face": no_face}, indent=1))
    cache = build_cache(samples, path, size=size, rule=rule, skip_bad=log,
                        progress=progress, scheme=scheme,
                        source=f"unlabelled {spec} ({cfg.self_training.boxes} boxes)",
                        context=data.context)
    return cache, no_face

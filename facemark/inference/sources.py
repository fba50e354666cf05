"""Prediction sources that run a landmark model or a detector: the ``model`` and ``dlib``
kinds of SOURCE for ``facemark evaluate``.

The registry and the kinds that need no inference (``file``, ``meanface``) live in
:mod:`facemark.evaluation.sources`; importing this module adds these two to it, in the
order ``facemark evaluate`` tries them (``model``, ``file``, ``meanface``, ``dlib``).
:func:`resolve_predictions` is the registry's own function, re-exported here so that a caller
that imports it from this module knows every kind::

    from facemark.inference.sources import resolve_predictions
    pset = resolve_predictions("facemark/weights/default.pt", samples, detector="auto")

* ``model``: a trained model, ``.ckpt`` (``facemark train``) or ``.pt`` (``facemark
  export --format pt``); each face is cropped by the model's crop rule (or ``crop_rule``)
  from its ground-truth landmarks or box, as the benchmarks do; with ``detector=NAME``
  from that detector's box instead (the model's calibration for it when it has one).
* ``dlib`` / ``dlib:PREDICTOR.dat``: dlib's 68-point shape predictor on its own HOG
  detector's boxes (a face dlib does not find has no prediction and counts as a failure).
"""
from __future__ import annotations

from pathlib import Path

from facemark.data.convert import can_convert
from facemark.data.crops import check_test_crops, crop_box
from facemark.data.images import read_image
from facemark.data.predictions import PredictionSet
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, SkipLog
from facemark.evaluation.bench import dlib_landmarks, find_dlib_predictor
from facemark.evaluation.sources import PredictionSource, register_source, resolve_predictions
from facemark.inference.calibration import calibrations_of, detect_samples, to_crop_boxes
from facemark.inference.detectors import create_detector
from facemark.inference.landmarker import first_pass_size, refine_passes, refined_crop_box
from facemark.models.crop_predict import predict_samples
from facemark.models.model_file import load_model


def _model_accepts(arg: str) -> bool:
    return Path(arg).suffix.lower() in (".ckpt", ".pt", ".pth")


def _detector_points(model, meta, samples, detector: str, log: SkipLog, flip_test: bool,
                     batch_size: int, refine: bool | int = False,
                     first_size: int | None = None, test_crops: int = 1):
    """Points from detector boxes (the model's calibration for that detector, else the
    generic ``detector`` crop rule); faces the detector misses get NaN points. ``refine``
    extra passes each predict again from a crop made from the previous landmarks, the
    first pass on ``first_size`` px crops, the last averaging ``test_crops`` crops
    (``Landmarker(refine=..., first_pass_size=..., test_crops=...)``)."""
    import numpy as np

    det = create_detector(detector).load()
    found = detect_samples(samples, det, on_error=log, progress=True)
    cal = calibrations_of(meta.info).get(det.box_style)
    to_crop = cal.crop_box if cal is not None else (lambda b: crop_box("detector", box=b))
    boxes = to_crop_boxes(found.boxes, to_crop)
    crops = f"{det.name} boxes, " + ("calibrated" if cal is not None else "crop rule 'detector'")
    refine = refine_passes(refine, meta.crop_rule, meta.info.get("refine_passes"))
    first = first_pass_size(first_size, meta.input_size, meta.info.get("first_pass_size"),
                            refine)
    if first != meta.input_size:
        model.check_other_input_size(first)
    passes = 1 + refine
    for k in range(passes):
        points, conf, ok = predict_samples(model, samples, crop_rule=meta.crop_rule,
                                           input_size=first if k == 0 else meta.input_size,
                                           batch_size=batch_size,
                                           flip_test=flip_test, on_error=log,
                                           crop_boxes=boxes,
                                           test_crops=test_crops if k + 1 == passes else 1)
        if k + 1 < passes:
            boxes = np.stack([refined_crop_box(meta.crop_rule, points[i], boxes[i]) if ok[i]
                              else np.full(4, np.nan) for i in range(len(samples))])
    if refine:
        crops += ", refined" + (f" {refine} times" if refine > 1 else "")
        if first != meta.input_size:
            crops += f" (first pass at {first} px)"
    if test_crops > 1:
        crops += f", {test_crops} test crops"
    return points, conf, ok, crops


def _model_resolve(arg: str, samples, *, crop_rule: str | None = None,
                   skip_bad: SkipLog | bool = False, scheme: str | None = None,
                   flip_test: bool = False, batch_size: int = 32, detector: str | None = None,
                   refine: bool | int = False, first_pass_size: int | None = None,
                   test_crops: int = 1, **kw) -> PredictionSet:
    model, meta = load_model(arg)
    test_crops = check_test_crops(test_crops)
    wanted = get_scheme(scheme or (samples[0].scheme if len(samples) else meta.scheme)).name
    if get_scheme(meta.scheme).name != wanted:
        hint = (f"; add --convert-to {meta.scheme} to convert the dataset's points"
                if can_convert(wanted, meta.scheme) else "")
        raise ConfigError(f"{arg}: the model predicts scheme {meta.scheme} but the dataset is "
                          f"{wanted}; evaluate it on a {meta.scheme} dataset{hint}")
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    if detector:
        points, conf, ok, crops = _detector_points(model, meta, samples, detector, log,
                                                   flip_test, batch_size, refine,
                                                   first_pass_size, test_crops)
    else:
        points, conf, ok = predict_samples(model, samples, crop_rule=crop_rule or meta.crop_rule,
                                           input_size=meta.input_size, batch_size=batch_size,
                                           flip_test=flip_test, on_error=log, progress=True,
                                           test_crops=test_crops)
        crops = f"ground truth, crop rule {crop_rule or meta.crop_rule!r}" + (
            f", {test_crops} test crops" if test_crops > 1 else "")
    kept = [s for s, good in zip(samples, ok) if good]
    pset = PredictionSet.from_samples(kept, points[ok], method=Path(arg).stem,
                                      scheme=meta.scheme, scores=conf[ok])
    pset.info = {"model": str(arg), "crops": crops, "input_size": meta.input_size,
                 "flip_test": flip_test}
    return pset


#: the landmark scheme of dlib's shape_predictor_68_face_landmarks.dat
DLIB_SCHEME = "300w68"


def _dlib_accepts(arg: str) -> bool:
    return arg == "dlib" or arg.startswith("dlib:")


def _dlib_resolve(arg: str, samples, *, skip_bad: SkipLog | bool = False,
                  scheme: str | None = None, **kw) -> PredictionSet:
    """dlib's 68-point shape predictor on its own HOG detector's boxes (faces it misses
    have no prediction). ``dlib:PATH`` names the predictor file; plain ``dlib`` finds the
    one ``face_recognition_models`` installs."""
    import numpy as np

    wanted = get_scheme(scheme or (samples[0].scheme if len(samples) else DLIB_SCHEME))
    if wanted.name != get_scheme(DLIB_SCHEME).name:
        raise ConfigError(f"SOURCE dlib predicts the {DLIB_SCHEME} points; the dataset is "
                          f"{wanted.name}")
    predictor, what = find_dlib_predictor(arg.partition(":")[2] or None)
    if predictor is None:
        raise ConfigError(f"SOURCE dlib: {what}")
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    found = detect_samples(samples, create_detector("dlib_hog"), on_error=log, progress=True)
    points = np.full((len(samples), wanted.num_points, 2), np.nan)
    for i in np.flatnonzero(found.found):
        image = read_image(samples[i].image, frame=samples[i].frame)
        points[i] = dlib_landmarks(predictor, image, [found.boxes[i]])[0]
    kept = [s for s, good in zip(samples, found.found) if good]
    pset = PredictionSet.from_samples(kept, points[found.found], method="dlib",
                                      scheme=wanted.name)
    pset.info = {"model": what, "crops": "dlib_hog boxes"}
    return pset


register_source(PredictionSource("model", _model_accepts, _model_resolve,
                                 "a trained model (.ckpt from facemark train, .pt)"),
                before="file")
register_source(PredictionSource("dlib", _dlib_accepts, _dlib_resolve,
                                 "'dlib' or 'dlib:PREDICTOR.dat': dlib's 68-point predictor "
                                 "on its HOG boxes"))

__all__ = ["DLIB_SCHEME", "resolve_predictions"]

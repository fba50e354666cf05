"""The mean-face baseline: place the training set's mean face in each test crop.

This is the floor every landmark method must beat, and it shows how much of an NME comes
from the crop alone. No image is decoded:

* ``fit``: each training face is cropped with a crop rule (``facemark.data.crops``:
  ``crop_box`` + ``box_to_affine``), its landmarks are mapped to normalised crop
  coordinates ``(x_px + 0.5) / S`` and averaged, ignoring points that are not annotated
  (:func:`facemark.data.meanface.mean_face`).
* ``predict``: for each test face, the crop box is made by the same rule (from its
  ground-truth landmarks, or from its face box when the rule uses boxes), the mean face is
  placed in it and mapped back to image pixels with ``invert_affine``.

With the ``300w`` rule the test crop comes from the ground-truth landmarks, as in the 300-W
test protocol (PIPNet crops test faces from ground-truth boxes), so the baseline knows
where the face is and how big: its NME measures the shape variation the crop leaves.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facemark.data.crops import (CropRule, box_to_affine, crop_box, denormalise_points,
                                 get_crop_rule, invert_affine, normalise_points, transform_points)
from facemark.data.meanface import mean_face
from facemark.data.predictions import PredictionSet
from facemark.data.schemes import get_scheme
from facemark.errors import DataError


def _where(sample) -> str:
    return sample.source or sample.image


class MeanFaceBaseline:
    """Mean face placed in each crop.

    Args:
        crop_rule: name of a rule in ``facemark.data.crops.CROP_RULES`` or a CropRule.
        size: crop size S in pixels (only sets the pixel grid of the normalised
            coordinates; the result does not depend on it).

    Attributes (after ``fit``):
        mean_: float64 (N, 2) mean face in normalised crop coordinates.
        scheme_: the landmark scheme name.
        n_train_: number of training faces.
    """

    def __init__(self, crop_rule: str | CropRule = "300w", size: int = 256):
        self.crop_rule = crop_rule
        self.size = size

    def _box(self, sample, rule: CropRule) -> np.ndarray:
        if sample.landmarks is None and (rule.source != "box" or sample.box is None):
            need = "a face box" if rule.source == "box" else "landmarks (the crop rule uses them)"
            raise DataError(_where(sample), f"the face has no {need} to place a crop on")
        try:
            box = crop_box(rule, sample.landmarks, sample.box)
        except ValueError as e:
            raise DataError(_where(sample), f"cannot make a crop box: {e}") from None
        if not (np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]):
            raise DataError(_where(sample), f"degenerate crop box {np.round(box, 2).tolist()}")
        return box

    def fit(self, samples: Sequence) -> "MeanFaceBaseline":
        """Learn the mean face from annotated training samples; returns self."""
        rule = get_crop_rule(self.crop_rule)
        if not len(samples):
            raise ValueError("MeanFaceBaseline.fit needs at least one training sample")
        scheme = get_scheme(samples[0].scheme)
        normalised = np.empty((len(samples), scheme.num_points, 2))
        for i, s in enumerate(samples):
            if get_scheme(s.scheme).name != scheme.name:
                raise DataError(_where(s), f"training faces mix schemes: {scheme.name} and {s.scheme}")
            if s.landmarks is None:
                raise DataError(_where(s), "training face has no landmarks (unlabelled sample)")
            matrix = box_to_affine(self._box(s, rule), self.size)
            normalised[i] = normalise_points(transform_points(s.landmarks, matrix), self.size)
        self.mean_ = mean_face(normalised, names=scheme.names)
        self.scheme_ = scheme.name
        self.n_train_ = len(samples)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise RuntimeError("this MeanFaceBaseline is not fitted yet; call fit(train_samples) first")

    def predict_points(self, samples: Sequence) -> np.ndarray:
        """Mean face placed in each sample's crop: float64 (B, N, 2) image pixels."""
        self._check_fitted()
        rule = get_crop_rule(self.crop_rule)
        crop_px = denormalise_points(self.mean_, self.size)
        out = np.empty((len(samples), len(self.mean_), 2))
        for i, s in enumerate(samples):
            if get_scheme(s.scheme).name != self.scheme_:
                raise DataError(_where(s), f"the mean face is for scheme {self.scheme_}, the face "
                                           f"is {s.scheme}")
            inverse = invert_affine(box_to_affine(self._box(s, rule), self.size))
            out[i] = transform_points(crop_px, inverse)
        return out

    def predict(self, samples: Sequence, method: str = "meanface") -> PredictionSet:
        """A PredictionSet with one face per sample (at the sample's image and frame)."""
        points = self.predict_points(samples)
        pset = PredictionSet.from_samples(samples, points, method=method, scheme=self.scheme_)
        rule = self.crop_rule if isinstance(self.crop_rule, str) else repr(self.crop_rule)
        pset.info = {"crop_rule": rule, "train_faces": self.n_train_}
        return pset

"""Moved to :mod:`facemark.data.predictions` (issue #11); this path stays for code written
against the old docs (``facemark.evaluation.predictions.write_predictions``)."""
from facemark.data.predictions import (  # noqa: F401
    DECIMALS, FORMAT_NAME, FORMAT_VERSION, MATCH_IOU, SUFFIXES, PredictedFace, PredictionSet,
    assign_predictions, match_predictions, pose_record, read_predictions, write_predictions)

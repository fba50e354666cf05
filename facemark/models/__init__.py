"""Landmark models: backbones, heads with their codecs, the registry and cost measurement.

    from facemark.models import create_model, list_models
    model = create_model("pipnet_r18", num_points=68, mean_face=mean_face)
    points, confidence = model.predict(images)        # (B, N, 2) in [0, 1], (B, N)
"""
from facemark.models.backbones import (
    create_backbone, list_backbones, load_backbone_weights, register_norm_layer)
from facemark.models.heads import CoordHead, GRMIHead, LandmarkHead, MapHead, PIPHead
from facemark.models.model import IMAGENET_MEAN, IMAGENET_STD, LandmarkModel, PredictModule
from facemark.models.registry import (
    create_model, list_models, model_arguments, model_config, model_from_config, register_model)
import facemark.models.norm  # noqa: F401,E402  (registers norm_layer "sepbn", "mixbn", ...)

__all__ = [
    "CoordHead", "GRMIHead", "IMAGENET_MEAN", "IMAGENET_STD", "LandmarkHead", "LandmarkModel",
    "MapHead", "PIPHead", "PredictModule", "create_backbone", "create_model", "list_backbones",
    "list_models", "load_backbone_weights", "model_arguments", "model_config", "model_from_config",
    "register_model", "register_norm_layer",
]

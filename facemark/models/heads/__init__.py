"""Landmark heads, each with its codec, and the registered models built on them.

- ``PIPHead`` (pip.py): PIPNet, with or without the neighbour regression module.
- ``STCHead`` (stc.py): PIPNet with the coarse score maps of self-training with curriculum.
- ``CoordHead`` (coordnet.py): CoordNet and the SepBN paper's Vanilla CNN.
- ``MapHead`` (mapnet.py): MapNet, Gaussian heatmaps at stride 4/2/1.
- ``GRMIHead`` (grmi.py): G-RMI, disk heatmaps + offsets at output stride 8.

Importing this package registers the models (``facemark.models.registry``).
"""
from facemark.models.heads.base import LandmarkHead, masked_mean
from facemark.models.heads.coordnet import CoordHead
from facemark.models.heads.grmi import GRMIHead
from facemark.models.heads.mapnet import MapHead
from facemark.models.heads.pip import PIPHead, neighbour_indices
from facemark.models.heads.stc import STCHead

__all__ = ["CoordHead", "GRMIHead", "LandmarkHead", "MapHead", "PIPHead", "STCHead",
           "masked_mean", "neighbour_indices"]

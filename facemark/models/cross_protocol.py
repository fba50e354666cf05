"""A shared backbone with one landmark head per dataset (cross-protocol network training).

Separable Batch Normalization for Robust Facial Landmark Localization with Cross-protocol
Network Training (papers/sepbn.txt, Sec. IV and Fig. 5): datasets annotated with different
landmark schemes train one network whose convolution layers are shared and whose heads
(branches) each regress one scheme's points. Training it (both CNT stages, the data, the
checkpoints and exporting each head) is :mod:`facemark.training.cross_protocol`.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.model import LandmarkModel
from facemark.models.registry import model_from_config

_PER_HEAD_KEYS = ("num_points", "mean_face")


class CrossProtocolNet(nn.Module):
    """A shared backbone with one landmark head per dataset.

    Args:
        heads: head name -> model config (``facemark.models.registry.model_config``) of the
            whole single-dataset model; the configs may differ only in ``num_points`` and
            ``mean_face`` (same model, backbone, norm layer and input size).

    Attributes:
        backbone: the shared trunk (the first model's).
        heads: ``nn.ModuleDict`` name -> head.
        input_size: crop side S.
    """

    def __init__(self, heads: dict[str, dict[str, Any]]):
        super().__init__()
        if not heads:
            raise ConfigError("CrossProtocolNet: no heads given")
        shared = {n: {k: v for k, v in c.items() if k not in _PER_HEAD_KEYS}
                  for n, c in heads.items()}
        first_name = next(iter(heads))
        for name, rest in shared.items():
            if rest != shared[first_name]:
                diff = sorted(k for k in set(rest) | set(shared[first_name])
                              if rest.get(k) != shared[first_name].get(k))
                raise ConfigError(f"cross-protocol heads {first_name!r} and {name!r} describe "
                                  f"different networks (keys {diff}); they must share the backbone")
        models = {name: model_from_config(config) for name, config in heads.items()}
        first = models[first_name]
        self.backbone = first.backbone
        self.heads = nn.ModuleDict({name: m.head for name, m in models.items()})
        self.input_size = first.input_size
        self.register_buffer("mean", first.mean.clone(), persistent=False)
        self.register_buffer("std", first.std.clone(), persistent=False)
        self.configs = {name: dict(config) for name, config in heads.items()}

    @property
    def names(self) -> list[str]:
        return list(self.heads)

    def features(self, images: Tensor) -> Tensor:
        """Backbone features of images (B, 3, S, S) RGB in [0, 1]."""
        return self.backbone((images - self.mean) / self.std)

    def forward(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """Every head's raw outputs for every image: name -> outputs."""
        feats = self.features(images)
        return {name: head(feats) for name, head in self.heads.items()}

    def branch(self, name: str):
        """Head ``name`` on the shared backbone as a ``LandmarkModel`` (modules shared, not
        copied), with its model config: what ``save_model`` writes and ``load_model`` reads."""
        if name not in self.heads:
            raise ConfigError(f"cross-protocol network has no head {name!r} "
                              f"(heads: {', '.join(self.heads)})")
        model = LandmarkModel(self.backbone, self.heads[name], input_size=self.input_size)
        model.config = dict(self.configs[name])
        return model.train(self.training)


__all__ = ["CrossProtocolNet"]

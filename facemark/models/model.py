"""``LandmarkModel``: a backbone and a head, with one codec for training and inference.

Images enter as float32 (B, 3, H, W) RGB in [0, 1]; the model subtracts the ImageNet mean
and divides by the standard deviation itself (buffers, so an ONNX export needs no outside
preprocessing beyond the crop). Landmarks are normalised crop coordinates in [0, 1]
(``(x_px + 0.5) / S``); ``mask`` (B, N) bool marks annotated points.

    model = create_model("pipnet_r18", num_points=68, mean_face=mean_face)
    outputs = model(images)                          # raw head outputs
    targets = model.encode(landmarks, mask)          # same keys as outputs
    total, parts = model.loss(outputs, targets)      # masked
    points, confidence = model.decode(outputs)       # (B, N, 2), (B, N)
"""
from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor, nn

from facemark.errors import ConfigError
from facemark.models.backbones.base import Backbone
from facemark.models.heads.base import LandmarkHead, TensorDict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LandmarkModel(nn.Module):
    """Backbone + landmark head + input normalisation.

    Args:
        backbone: feature extractor (see ``facemark.models.backbones``).
        head: landmark head built for ``backbone.out_channels`` and ``backbone.stride``.
        input_size: side S of the square crops the model is trained on (pixels).
        mean, std: per-channel RGB normalisation applied to [0, 1] images.

    Attributes:
        config: name and constructor arguments, set by ``create_model`` (see
            ``facemark.models.registry.model_config``); None for a hand-built model.
    """

    def __init__(self, backbone: Backbone, head: LandmarkHead, *, input_size: int,
                 mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.config: dict | None = None

    @property
    def num_points(self) -> int:
        return self.head.num_points

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Raw head outputs for images (B, 3, H, W) float in [0, 1]."""
        return self.head(self.forward_features(images))

    def forward_features(self, images: Tensor) -> Tensor:
        """The backbone's last feature map (B, C, H / s, W / s) for images (B, 3, H, W) in
        [0, 1]; ``forward`` is ``head(forward_features(images))`` (timm's split)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"LandmarkModel: images must be (B, 3, H, W) RGB in [0, 1], "
                             f"got shape {tuple(images.shape)}")
        return self.backbone((images - self.mean) / self.std)

    def check_other_input_size(self, size: int) -> int:
        """``size`` when the model can also run on ``size`` x ``size`` crops: its head reads
        the grid off the feature map (``head.cell``) and ``size`` is a multiple of the cell
        (and of the backbone's stride) from one cell up to ``input_size``. The weights are
        those of ``input_size``, so accuracy at another size is the caller's to measure
        (``benchmarks/first_pass_size.py``).

        Raises:
            ConfigError: another size, or a head sized for ``input_size`` only.
        """
        cell = self.head.cell
        if cell is None:
            raise ConfigError(f"{type(self.head).__name__} is built for {self.input_size} px "
                              f"crops only; it cannot run on {size!r} px crops")
        cell = max(int(cell), int(getattr(self.backbone, "stride", 1)))
        if isinstance(size, bool) or not isinstance(size, Integral) or size % cell \
                or not cell <= size <= self.input_size:
            raise ConfigError(f"crop size: expected a multiple of {cell} from {cell} to "
                              f"{self.input_size} (the model's own), got {size!r}")
        return int(size)

    def input_sizes(self) -> list[int]:
        """Every crop side the model runs on, smallest first: its own ``input_size`` and
        the others :meth:`check_other_input_size` accepts (just ``[input_size]`` for a head
        sized for its input). The sizes an ONNX export with ``dynamic_size`` takes."""
        cell = self.head.cell
        if cell is None:
            return [self.input_size]
        cell = max(int(cell), int(getattr(self.backbone, "stride", 1)))
        return sorted({*range(cell, self.input_size + 1, cell), self.input_size})

    def encode(self, landmarks: Tensor, mask: Tensor | None = None,
               input_size: int | None = None) -> dict[str, Tensor]:
        """Training targets for landmarks (B, N, 2) in [0, 1]; mask (B, N) bool (None: all).

        ``input_size``: the targets of crops of that side instead of the model's own (a
        size :meth:`check_other_input_size` accepts, for a head that ``encodes_other_grids``).
        """
        if input_size is None or input_size == self.input_size:
            return self.head.encode(landmarks, mask)
        if not self.head.encodes_other_grids:
            raise ConfigError(f"{type(self.head).__name__} encodes targets for "
                              f"{self.input_size} px crops only, not {input_size!r} px")
        size = self.check_other_input_size(input_size)
        return self.head.encode(landmarks, mask, grid=size // self.head.cell)

    def loss(self, outputs: TensorDict, targets: TensorDict) -> tuple[Tensor, TensorDict]:
        """(total scalar, weighted parts by name); missing points contribute nothing."""
        return self.head.loss(outputs, targets)

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(points (B, N, 2) in [0, 1] crop coordinates, confidence (B, N) in [0, 1])."""
        return self.head.decode(outputs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``decode(forward(images))`` without gradients; any batch size.

        Like any PyTorch module, call ``model.eval()`` first for inference (BatchNorm).
        """
        return self.head.predict(self.forward_features(images))

    def predictor(self) -> "PredictModule":
        """A module whose ``forward`` is ``decode(forward(images))``: the thing to export to
        ONNX. It starts in this model's train/eval mode (a fresh module would start in train
        mode, and ``torch.onnx.export`` restores that mode on the model afterwards)."""
        return PredictModule(self).train(self.training)


class PredictModule(nn.Module):
    """Wraps a ``LandmarkModel``: images (B, 3, S, S) -> (points (B, N, 2), confidence (B, N)).

    Export with ``torch.onnx.export(model.predictor().eval(), images, ..., dynamo=False,
    dynamic_axes={"images": {0: "batch"}, ...})``; the decode (argmax, offsets, neighbour
    averaging) is part of the graph, so onnxruntime returns the same points as PyTorch.
    """

    def __init__(self, model: LandmarkModel):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.head.predict(self.model.forward_features(images))

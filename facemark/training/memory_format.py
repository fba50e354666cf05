"""channels_last memory format for CPU training (``trainer.channels_last``).

Measured on this project's 2-core CPU (``benchmarks/train_speed.py``, docs/results.md):
a PIPNet-MobileNetV2 training step at 128 px is 1.25x faster with the model's weights in
channels_last (NHWC) layout; oneDNN's convolutions then run in NHWC for every layer, since
a channels_last weight makes the convolution choose that layout whatever the input's is.
The numbers computed are the same up to float rounding; checkpoints store ordinary tensors.
"""
from __future__ import annotations

import lightning as L
import torch


class ChannelsLast(L.Callback):
    """Lightning callback: put the module's 4-D weights in channels_last when fitting starts."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)

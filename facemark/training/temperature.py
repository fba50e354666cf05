"""Temperature annealing of the attention in SepBN / MixBN layers.

The SepBN paper (papers/sepbn.txt, Sec. V-A) sets the initial temperature of the attention
softmax to tau = 30 and reduces it to 1 over the first 30 epochs, following Dynamic
Convolution (Chen et al. 2020), which anneals linearly; Table IV compares this with fixed
temperatures (1, 5, 10, 20, 30), which ``schedule="constant"`` reproduces.

Config keys (section ``temperature`` of a training config)::

    temperature:
      start: 30.0        # tau at epoch 0
      end: 1.0           # tau from epoch ``epochs`` on
      epochs: 30         # length of the annealing
      schedule: linear   # linear | exponential | constant (tau = start throughout)

The value is set at the start of every training epoch from the epoch number alone, so a
resumed run continues the schedule exactly; it lives in each layer's ``tau`` buffer, so
checkpoints and exported models keep the value they were trained with. Models without
SepBN / MixBN layers are left alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L

from facemark.errors import ConfigError
from facemark.models.norm import attention_layers

SCHEDULES = ("linear", "exponential", "constant")


@dataclass
class TemperatureSchedule:
    """tau as a function of the (0-based) epoch.

    Args:
        start: tau at epoch 0 (paper: 30).
        end: tau once the annealing is over (paper: 1).
        epochs: epochs the annealing takes (paper: 30); 0 jumps straight to ``end``.
        schedule: ``"linear"`` (paper), ``"exponential"`` (geometric: the same factor every
            epoch) or ``"constant"`` (``start`` throughout, Table IV's fixed tau).
    """

    start: float = 30.0
    end: float = 1.0
    epochs: int = 30
    schedule: str = "linear"

    def check(self) -> "TemperatureSchedule":
        """Raise ConfigError naming the ``temperature.*`` key that is out of range."""
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"config key 'temperature.schedule': {self.schedule!r} is not one "
                              f"of {', '.join(SCHEDULES)}")
        for key in ("start", "end"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"config key 'temperature.{key}' must be a number > 0, "
                                  f"got {value!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"config key 'temperature.epochs' must be an integer >= 0, "
                              f"got {self.epochs!r}")
        return self

    def at(self, epoch: float) -> float:
        """tau at ``epoch`` (0-based; fractions allowed)."""
        if self.schedule == "constant":
            return float(self.start)
        if self.epochs == 0 or epoch >= self.epochs:
            return float(self.end)
        t = max(float(epoch), 0.0) / self.epochs
        if self.schedule == "linear":
            return float(self.start + (self.end - self.start) * t)
        return float(self.start * (self.end / self.start) ** t)


def set_temperature(module, value: float) -> int:
    """Set tau of every SepBN / MixBN layer in ``module``; returns how many there are."""
    layers = list(attention_layers(module))
    for layer in layers:
        layer.temperature = value
    return len(layers)


class TemperatureAnnealing(L.Callback):
    """Lightning callback: anneal the attention temperature of every SepBN / MixBN layer.

    At the start of each training epoch it sets tau = ``schedule.at(epoch)`` in every such
    layer of the LightningModule and logs it as ``train/temperature``.

    Args:
        schedule: a :class:`TemperatureSchedule` (default: the paper's 30 -> 1 over 30
            epochs, linear).
    """

    def __init__(self, schedule: TemperatureSchedule | None = None):
        super().__init__()
        self.schedule = (schedule or TemperatureSchedule()).check()

    @classmethod
    def from_config(cls, section) -> "TemperatureAnnealing":
        """From the ``temperature`` config section (any object with the four attributes)."""
        return cls(TemperatureSchedule(start=section.start, end=section.end,
                                       epochs=section.epochs, schedule=section.schedule))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        tau = self.schedule.at(trainer.current_epoch)
        if set_temperature(pl_module, tau):
            pl_module.log("train/temperature", tau, on_step=False, on_epoch=True)


__all__ = ["SCHEDULES", "TemperatureAnnealing", "TemperatureSchedule", "set_temperature"]

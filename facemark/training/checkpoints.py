"""The checkpoint callbacks of a run folder, shared by every trainer (``facemark train``,
cross-protocol stages, self-training rounds).

``<run>/checkpoints/``::

    last.ckpt   end of the last complete epoch (the resume point)
    best.ckpt   with a validation set: lowest validation NME;
                without one: the same as last.ckpt (``last.ckpt`` links to it)

Lightning refuses two ModelCheckpoint callbacks with the same state key (monitor, mode and
save frequency). With a validation set the two callbacks differ in their monitor; without
one they would be identical, so a single callback saves ``best.ckpt`` every epoch and
links ``last.ckpt`` to it (a copy where the file system has no links).
"""
from __future__ import annotations

from pathlib import Path

#: what ``best.ckpt`` holds, as run summaries say it
BEST_BY_VALIDATION = "lowest val/nme"
BEST_BY_LAST_EPOCH = "last epoch (no validation set)"


class RunCheckpoints:
    """The ModelCheckpoint callbacks of one fit in ``ckpt_dir``.

    Args:
        ckpt_dir: the ``checkpoints`` folder of the run.
        has_val: whether the fit has validation data (then ``best`` monitors ``val/nme``).
    """

    def __init__(self, ckpt_dir: str | Path, has_val: bool):
        from lightning.pytorch.callbacks import ModelCheckpoint

        self.dir = Path(ckpt_dir)
        self.has_val = bool(has_val)
        if self.has_val:
            self.best = ModelCheckpoint(dirpath=self.dir, filename="best", monitor="val/nme",
                                        mode="min", save_top_k=1, save_last=False,
                                        enable_version_counter=False)
            last = ModelCheckpoint(dirpath=self.dir, filename="last", save_top_k=1,
                                   every_n_epochs=1, save_on_train_epoch_end=True,
                                   enable_version_counter=False)
            self.callbacks = [self.best, last]
        else:  # one callback: the best is the last epoch
            self.best = ModelCheckpoint(dirpath=self.dir, filename="best", monitor=None,
                                        save_top_k=1, save_last="link", every_n_epochs=1,
                                        save_on_train_epoch_end=True,
                                        enable_version_counter=False)
            self.callbacks = [self.best]

    @property
    def last_path(self) -> Path:
        return self.dir / "last.ckpt"

    @property
    def best_by(self) -> str:
        """What ``best.ckpt`` is: the lowest validation NME, or the last epoch."""
        return BEST_BY_VALIDATION if self.has_val else BEST_BY_LAST_EPOCH

    def best_path(self) -> Path | None:
        """``best.ckpt`` once saved (without validation: the last epoch's checkpoint)."""
        path = self.best.best_model_path
        return Path(path) if path and Path(path).is_file() else None

    def best_score(self) -> float | None:
        """The best validation NME; None without a validation set."""
        score = self.best.best_model_score if self.has_val else None
        return None if score is None else float(score)


__all__ = ["BEST_BY_LAST_EPOCH", "BEST_BY_VALIDATION", "RunCheckpoints"]

"""Keep the weights of the best validation epoch and say when to stop: shared by every epoch loop."""

from __future__ import annotations

import math

import torch


class BestEpoch:
    """Best validation score so far, its epoch, a copy of its weights, and epochs since."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.score = -math.inf
        self.epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def update(self, score: float, epoch: int, module: torch.nn.Module) -> bool:
        """Record one epoch's score; True (and a copy of the weights) when it is a new best."""
        if score > self.score:
            self.score, self.epoch, self.stale = score, epoch, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return True
        self.stale += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    def restore(self, module: torch.nn.Module) -> bool:
        """Load the best weights into ``module``; False when no epoch was validated."""
        if self.state is None:
            return False
        module.load_state_dict(self.state)
        return True


def kept_epoch(history: list[dict], metric: str) -> dict | None:
    """The record of the epoch whose weights a fit kept, read back from its ``history`` (``BestEpoch``'s
    choice: the first epoch with the highest ``val_<metric>``); None where no epoch was validated."""
    validated = [record for record in history or [] if record.get(f"val_{metric}") is not None]
    return max(validated, key=lambda record: record[f"val_{metric}"]) if validated else None

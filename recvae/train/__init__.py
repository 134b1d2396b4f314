"""The one training loop (Trainer), its checkpoints, early stopping, posterior diagnostics and auto-β."""

from recvae.train.trainer import EpochCallback, Trainer, Validation

__all__ = ["EpochCallback", "Trainer", "Validation"]

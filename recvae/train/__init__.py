"""Training loops, schedules, diagnostics, checkpoints and device choice."""

from recvae.train.config import TrainingConfig
from recvae.train.device import resolve_device
from recvae.train.schedules import BETA_SCHEDULES, beta_at

__all__ = ["BETA_SCHEDULES", "TrainingConfig", "beta_at", "resolve_device"]

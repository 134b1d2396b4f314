"""Training loops, schedules, checkpoints and device choice."""

from recvae.train.config import TrainingConfig
from recvae.train.device import resolve_device
from recvae.train.schedules import linear_beta

__all__ = ["TrainingConfig", "linear_beta", "resolve_device"]

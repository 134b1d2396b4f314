"""The one training loop (``Trainer``) and the interface through which it drives a model's training step."""

from recvae.models.training.early_stopping import kept_epoch
from recvae.models.training.step import Phase, TrainingPlan, TrainingStep
from recvae.models.training.trainer import EpochCallback, Trainer

__all__ = ["EpochCallback", "Phase", "Trainer", "TrainingPlan", "TrainingStep", "kept_epoch"]

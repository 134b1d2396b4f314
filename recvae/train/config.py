"""Options every trained model shares; each model's config extends them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """How to train: epochs, batches, optimiser, early stopping, seed and device.

    Defaults are the Mult-VAE paper's: Adam with learning rate 1e-3, batches of 500
    users, up to 200 epochs keeping the weights of the best validation NDCG@100.
    """

    epochs: int = 200
    batch_size: int = 500
    learning_rate: float = 1e-3
    patience: int | None = 20
    validation_metric: str = "ndcg@100"
    seed: int = 98765
    device: str | None = None

    def __post_init__(self):
        from recvae.evaluate.metrics import parse_metric

        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be at least 1, or None to train every epoch")
        parse_metric(self.validation_metric)

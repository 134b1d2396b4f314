"""From a run specification to a fitted model: the one model builder (``build_model``, ``fit_model``) and
auto-β. The training loop itself is ``recvae.models.training.Trainer``, which every model fits with."""

from recvae.models.training import EpochCallback, Trainer
from recvae.models.training.validation import validation_scorer
from recvae.train.build import build_model, fit_model

__all__ = ["EpochCallback", "Trainer", "build_model", "fit_model", "validation_scorer"]

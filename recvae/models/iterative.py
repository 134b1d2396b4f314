"""Models that learn by epochs: their ``fit`` hands their training step to the one Trainer."""

from __future__ import annotations

import dataclasses
from abc import abstractmethod

import scipy.sparse as sp
import torch

from recvae.data.shard import UserRows
from recvae.data.vocab import Vocabulary
from recvae.models.device import resolve_device
from recvae.models.inputs import as_csr
from recvae.models.recommender import Recommender
from recvae.models.training.distributed import launched_world
from recvae.models.training.step import TrainingPlan, TrainingStep
from recvae.models.training.trainer import Trainer
from recvae.models.training.validation import as_scorer

# config fields a resumed run may change: what a checkpoint need not match
RESUMABLE_CHANGES = ("epochs", "device", "patience", "describe_training_users")  # none changes the training


class IterativeRecommender(Recommender):
    """A model trained by epochs. A subclass builds its module and step (``start_training``) and scores;
    the loop (epochs, batches, early stopping, checkpoints, torchrun) is the ``Trainer``'s."""

    history_: list[dict]

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None, *,
            trainer: Trainer | None = None, item_features=None) -> IterativeRecommender:
        """Train on ``user_items`` and return ``self``; ``history_`` lists the epochs.

        ``validation``: held-out users (``recvae.split.HeldOut``) whose ``validation_metric`` picks the epoch
        kept, or a callable scoring the model, or None (every epoch, the last kept). ``trainer``: a
        ``Trainer`` for checkpoints, resume, callbacks or progress (default: none of them). Under torchrun
        ``user_items`` may be the rank's ``UserRows``. ``item_features``: the items' encoded side features
        (items x ``item_feature_width``, rows in the columns' order: ``recvae.data.features``), for a model
        that reads them (Mult-VAE, Mult-DAE, CVAE; refused by the others).
        """
        if trainer is not None and not isinstance(trainer, Trainer):
            raise TypeError(f"trainer must be a recvae.models.Trainer, not {type(trainer).__name__}")
        features = self._checked_item_features(item_features, user_items)
        train = user_items if isinstance(user_items, UserRows) else self._training_matrix(user_items)
        scorer = as_scorer(validation, self.config.validation_metric, train.shape[1])
        self._forget_fit()

        def start(matrix: sp.csr_matrix, device: torch.device, generator: torch.Generator,
                  device_generator: torch.Generator) -> TrainingStep:
            step = self.start_training(matrix, device, generator, device_generator, features)
            self._set_fitted(matrix, items, step.module, device)  # validation scores the model while it trains
            return step

        try:
            history = (trainer or Trainer()).run(start, train, self.training_plan(),
                                                 (lambda: scorer(self)) if scorer is not None else None)
        except BaseException:
            self._forget_fit()
            raise
        self.history_ = history
        self.metadata_ = {"history": history}
        if isinstance(train, UserRows):  # under torchrun: each process's own users, described together
            self._describe_training_users(as_csr(train.matrix, binarize=self.config.binarize),
                                          gather=launched_world().gather, share=train.matrix.shape[0] / train.shape[0])
        else:
            self._describe_training_users(train)
        return self

    def training_plan(self) -> TrainingPlan:
        """How the Trainer runs this model, from its config (a ``TrainingConfig``)."""
        c = self.config
        return TrainingPlan(epochs=c.epochs, batch_size=c.batch_size, patience=c.patience,
                            validation_metric=c.validation_metric, seed=c.seed, device=resolve_device(c.device),
                            precision=c.precision, binarize=c.binarize, identity=self._identity())

    def _identity(self) -> dict:
        """What a checkpoint must match to be resumed: the model and its config, less what a resume may change."""
        config = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in RESUMABLE_CHANGES}
        return {"name": self.name, "config": config}

    @abstractmethod
    def start_training(self, user_items: sp.csr_matrix, device: torch.device, generator: torch.Generator,
                       device_generator: torch.Generator, item_features: torch.Tensor | None = None) -> TrainingStep:
        """Build a freshly initialised module on ``device`` (weights drawn from the CPU ``generator``)
        and return its training step; ``device_generator`` draws on ``device`` (dropout, noise);
        ``item_features``: what ``_checked_item_features`` returned."""

"""Validation while training: held-out users turned into the scoring callback the Trainer calls
after every epoch, and the default ``fit`` of the models that train by epochs."""

from __future__ import annotations

from recvae.evaluate.evaluation import DEFAULT_METRICS, evaluate
from recvae.models.base import IterativeRecommender, Recommender, as_csr
from recvae.split.base import HeldOut
from recvae.train import Trainer, Validation


def validation_scorer(heldout: HeldOut, metric: str, metrics=DEFAULT_METRICS) -> Validation:
    """A callback scoring a model on ``heldout`` by ``metrics`` plus ``metric`` (the one that picks the epoch)."""
    wanted = tuple(dict.fromkeys((*metrics, metric)))
    return lambda model: evaluate(model, heldout, wanted).summary()


def as_validation(model: IterativeRecommender, user_items, validation) -> Validation | None:
    """``validation`` as the Trainer takes it: held-out users become a scorer by the model's metric."""
    if validation is None or callable(validation):
        return validation
    if not isinstance(validation, HeldOut):
        raise TypeError(f"validation must be held-out users (recvae.split.HeldOut) or a callable, "
                        f"not {type(validation).__name__}")
    if not len(validation):
        return None
    as_csr(validation.fold_in, user_items.shape[1], "validation.fold_in")
    return validation_scorer(validation, model.config.validation_metric)


def fit_model(model: Recommender, user_items, validation=None, items=None, trainer: Trainer | None = None) -> Recommender:
    """Fit any model: one that trains by epochs through ``trainer`` (default options if None), validated
    on ``validation`` (held-out users or a scorer); any other by its own ``fit``. ``model.fit`` of an
    iterative model is this function with the default trainer."""
    if not isinstance(model, IterativeRecommender):
        return model.fit(user_items, validation, items)
    return (trainer or Trainer()).fit(model, user_items, as_validation(model, user_items, validation), items)


IterativeRecommender.use_fitter(fit_model)

"""The one way from a run specification (a model's name and hyperparameters) to a fitted model, which the
Python API, ``recvae train``, ``recvae tune`` and the benchmark all use."""

from __future__ import annotations

import dataclasses

from recvae.data.vocab import Vocabulary
from recvae.models import IterativeRecommender, RecBoleConfig, RecBoleModel, Recommender, Trainer, model_class
from recvae.models.config import config_from_dict

RECBOLE_PREFIX = "recbole:"


def build_model(name: str, params: dict | None = None, *, validation_metric: str | None = None,
                describe_training_users: bool = True) -> Recommender:
    """The unfitted model registered as ``name`` (or ``recbole:<Model>``, RecBole's model through the
    adapter) with ``params`` over its config's defaults, checked: every check that needs no data.

    ``validation_metric``: what a model that picks its epoch on validation users picks it by, unless
    ``params`` name one (a benchmark or a study ranks by its own metric, and the history must hold it).
    ``describe_training_users=False``: for a model that is scored and thrown away (a study's trial, a
    benchmark's fit), which needs no mixture over its users nor their anomaly quantiles; not a searched
    parameter, so it is not in ``params`` (nor in what a study writes)."""
    params = dict(params or {})
    if name.startswith(RECBOLE_PREFIX):
        # the adapter's own settings (patience, fold-in) by name; everything else is RecBole's
        own = {f.name for f in dataclasses.fields(RecBoleConfig)} - {"model", "params"}
        config = RecBoleConfig(model=name[len(RECBOLE_PREFIX):], params={k: v for k, v in params.items() if k not in own},
                               **{k: v for k, v in params.items() if k in own})
        cls = RecBoleModel
    else:
        cls = model_class(name)
        unknown = set(params) - {f.name for f in dataclasses.fields(cls.config_class)}
        if unknown:
            raise ValueError(f"{cls.name} has no hyperparameter(s) {sorted(unknown)}")
        config = config_from_dict(cls.config_class, params)
    if validation_metric is not None and "validation_metric" not in params and issubclass(cls, IterativeRecommender):
        config = dataclasses.replace(config, validation_metric=validation_metric)
    if not describe_training_users:
        config = dataclasses.replace(config, describe_training_users=False)
    return cls(config)


def fit_model(model: Recommender, user_items, validation=None, items: Vocabulary | None = None,
              trainer: Trainer | None = None, item_features=None) -> Recommender:
    """Fit any model and return it: one that trains by epochs through ``trainer`` (checkpoints, callbacks,
    progress; default: none), validated on ``validation`` (held-out users or a scorer); any other by its fit.
    ``item_features``: the items' side features, for a model that reads them (its ``item_feature_width``)."""
    if isinstance(model, IterativeRecommender):
        return model.fit(user_items, validation, items, trainer=trainer, item_features=item_features)
    model._checked_item_features(item_features, user_items)  # refused: no other model reads them
    return model.fit(user_items, validation, items)

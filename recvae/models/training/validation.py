"""Held-out users turned into the scorer the Trainer calls after every epoch."""

from __future__ import annotations

from collections.abc import Callable

from recvae.defaults import DEFAULT_METRICS
from recvae.models.inputs import as_csr
from recvae.score.ranking import per_user_metrics, summarise
from recvae.split.base import HeldOut

# Scores a model on validation users: {"ndcg@100": ..., "ndcg@100_se": ..., ...}.
Scorer = Callable[[object], dict]


def validation_scorer(heldout: HeldOut, metric: str, metrics=DEFAULT_METRICS) -> Scorer:
    """A scorer of a model on ``heldout`` by ``metrics`` plus ``metric`` (the one that picks the epoch)."""
    wanted = tuple(dict.fromkeys((*metrics, metric)))
    return lambda model: summarise(per_user_metrics(model, heldout.fold_in, heldout.target, wanted))


def as_scorer(validation, metric: str, n_items: int) -> Scorer | None:
    """``validation`` as a fit takes it (held-out users, a scorer, or None) as a scorer or None."""
    if validation is None or callable(validation):
        return validation
    if not isinstance(validation, HeldOut):
        raise TypeError(f"validation must be held-out users (recvae.split.HeldOut) or a callable, "
                        f"not {type(validation).__name__}")
    if not len(validation):
        return None
    as_csr(validation.fold_in, n_items, "validation.fold_in")
    return validation_scorer(validation, metric)

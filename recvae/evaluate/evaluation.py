"""Evaluate a recommender on held-out users, block by block."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recvae.evaluate.baselines import content_similarity, random_ranking
from recvae.defaults import DEFAULT_METRICS, PRESPLIT_METRICS
from recvae.errors import whole_at_least
from recvae.score.metrics import mean_and_se, metric_curves, parse_metric
from recvae.score.ranking import per_user_metrics, ranked_blocks, summarise
from recvae.split.base import HeldOut

log = logging.getLogger(__name__)


def default_metrics(protocol: str) -> tuple[str, ...]:
    """The metrics a protocol is reported with unless others are asked for."""
    return PRESPLIT_METRICS if protocol == "presplit" else DEFAULT_METRICS


@dataclass(frozen=True)
class EvaluationResult:
    """Per-user values of each metric (rows follow ``users``) and their summary."""

    users: np.ndarray
    per_user: dict[str, np.ndarray]

    def mean(self, metric: str) -> float:
        return mean_and_se(self.per_user[metric])[0]

    def standard_error(self, metric: str) -> float:
        return mean_and_se(self.per_user[metric])[1]

    def summary(self) -> dict[str, float]:
        """``{"ndcg@100": mean, "ndcg@100_se": standard error, ...}``."""
        return summarise(self.per_user)


def evaluate(model, heldout: HeldOut, metrics=DEFAULT_METRICS, batch_size: int = 1000,
             allowed_items: np.ndarray | None = None) -> EvaluationResult:
    """Rank all items (or ``allowed_items`` alone: the cold items of ``recvae.split.conditioned.cold_items``)
    for each held-out user from the fold-in items (which are excluded) and measure.

    ``model`` is any fitted recvae recommender, or anything with its ``top_n`` (``ScoredRanking``); it sees
    only ``heldout.fold_in``. ``metrics``: names such as "ndcg@100" (one name, or several).
    """
    if not isinstance(heldout, HeldOut):
        raise TypeError("heldout must be held-out users (recvae.split.HeldOut: a split's test or validation), not "
                        f"{type(heldout).__name__}: a model is judged on a target it did not see")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    whole_at_least(1, batch_size=batch_size)
    if allowed_items is None:
        warn_if_k_covers_the_candidates(metrics, heldout)
    per_user = per_user_metrics(model, heldout.fold_in, heldout.target, metrics, batch_size, allowed_items)
    return EvaluationResult(users=heldout.users, per_user=per_user)


def warn_if_k_covers_the_candidates(metrics, heldout: HeldOut) -> bool:
    """Say so when a metric's K reaches the number of items some user can be recommended (the catalogue less
    their fold-in): every candidate is then in their top K, and the metric cannot tell models apart."""
    if heldout.fold_in.shape[0] == 0:
        return False
    most = heldout.fold_in.shape[1] - int(np.diff(heldout.fold_in.indptr).min())
    blind = [m for m in metrics if parse_metric(m)[1] >= most]
    if blind:
        log.warning("%s: K is at least the %d items a test user can be recommended (%d items less their fold-in): "
                    "every candidate is in the top K, so the value is the same for every model; use a smaller K",
                    ", ".join(blind), most, heldout.fold_in.shape[1])
    return bool(blind)


def evaluate_curves(model, heldout: HeldOut, max_k: int = 100, batch_size: int = 1000) -> dict[str, np.ndarray]:
    """Mean Recall@K and NDCG@K over held-out users for K = 1..max_k (arrays of length max_k)."""
    whole_at_least(1, max_k=max_k, batch_size=batch_size)
    max_k = min(max_k, heldout.fold_in.shape[1])
    sums = {"recall": np.zeros(max_k), "ndcg": np.zeros(max_k)}
    counts = np.zeros(max_k)
    for _, top, target in ranked_blocks(model, heldout.fold_in, heldout.target, max_k, batch_size):
        curves = metric_curves(top, target)
        for name in sums:
            sums[name] += np.nansum(curves[name], axis=0)
        counts += np.sum(~np.isnan(curves["ndcg"]), axis=0)
    return {name: total / np.maximum(counts, 1) for name, total in sums.items()}


COLD_ITEM_METRICS = ("ndcg@20", "recall@20")


def evaluate_cold_items(model, cold, item_features, metrics=COLD_ITEM_METRICS, seed: int = 0,
                        heldout: HeldOut | None = None, model_heldout: HeldOut | None = None) -> dict[str, EvaluationResult]:
    """The cold-item protocol (``recvae.split.conditioned.cold_items``): its test users (or ``heldout``, e.g.
    its validation users) rank the cold items alone from their warm items, by ``model`` (fitted on
    ``cold.split``, reading ``item_features``), by the items' content alone (``content_similarity``: the
    baseline) and by chance (``random_ranking`` drawn with ``seed``). ``model_heldout``: the same users as the
    model reads them, where it reads more than their items (a CVAE's, with their features appended:
    ``recvae.split.conditioned.heldout_with_features``)."""
    heldout = cold.test if heldout is None else heldout
    results = {getattr(model, "name", "model"): evaluate(model, model_heldout or heldout, metrics, allowed_items=cold.items)}
    return {**results, **cold_item_baselines(cold, item_features, metrics, seed, heldout)}


def cold_item_baselines(cold, item_features, metrics=COLD_ITEM_METRICS, seed: int = 0,
                        heldout: HeldOut | None = None) -> dict[str, EvaluationResult]:
    """The cold-item protocol's baselines alone (``evaluate_cold_items``'s): the items' content and chance."""
    heldout = cold.test if heldout is None else heldout
    baselines = {"content similarity": content_similarity(item_features),
                 "random": random_ranking(heldout.fold_in.shape[1], seed)}
    return {name: evaluate(ranker, heldout, metrics, allowed_items=cold.items) for name, ranker in baselines.items()}

"""Ranking metrics as pure functions of (top-K item indices, target matrix).

Definitions follow Liang et al. (2018): Recall@K (``recall@K``) divides the hits by
``min(K, number of target items)``; NDCG@K uses binary relevance, a log2 discount
and an ideal DCG over ``min(K, number of target items)`` positions. The LightGCN/NGCF
protocol divides the hits by all of a user's target items instead: that is
``recall_full@K``, a different number whenever a user has more than K target items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hits(top_items: np.ndarray, target: sp.csr_matrix) -> np.ndarray:
    """Boolean (users x K): whether the item at each rank is in the user's target row (-1 pads a short list)."""
    top_items = np.asarray(top_items)
    if top_items.ndim != 2 or top_items.shape[0] != target.shape[0]:
        raise ValueError(f"top_items must be (users, K) with {target.shape[0]} rows, got {top_items.shape}")
    n_items = np.int64(target.shape[1])
    rows = np.repeat(np.arange(target.shape[0], dtype=np.int64), np.diff(target.indptr))
    target_keys = np.sort(rows * n_items + target.indices)
    ranked_keys = np.arange(top_items.shape[0], dtype=np.int64)[:, None] * n_items + top_items
    return np.isin(ranked_keys, target_keys, assume_unique=False) & (top_items >= 0)


def _n_target(target: sp.csr_matrix) -> np.ndarray:
    return np.diff(target.indptr).astype(np.float64)


def recall_at_k(top_items: np.ndarray, target: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user Recall@K; users without target items get NaN."""
    found = hits(top_items[:, :k], target).sum(axis=1)
    denom = np.minimum(k, _n_target(target))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, found / denom, np.nan)


def recall_full_at_k(top_items: np.ndarray, target: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user hits in the top K over all of the user's target items (LightGCN's Recall@K); NaN without targets."""
    found = hits(top_items[:, :k], target).sum(axis=1)
    denom = _n_target(target)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, found / denom, np.nan)


def ndcg_at_k(top_items: np.ndarray, target: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user NDCG@K with binary relevance; users without target items get NaN."""
    top_items = top_items[:, :k]
    discount = 1.0 / np.log2(np.arange(2, top_items.shape[1] + 2))
    dcg = hits(top_items, target) @ discount
    ideal_cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = ideal_cum[np.minimum(k, _n_target(target)).astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg / idcg, np.nan)


METRICS = {"recall": recall_at_k, "recall_full": recall_full_at_k, "ndcg": ndcg_at_k}

DEFINITIONS = {
    "recall": "Recall@K divides a user's hits in the top K by min(K, test items) (Liang et al. 2018)",
    "recall_full": "Recall_full@K divides them by all of the user's test items (the LightGCN protocol)",
    "ndcg": "NDCG@K: binary relevance, log2 discount, ideal DCG over min(K, test items) positions",
}


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@100"`` -> ``("ndcg", 100)``."""
    kind, _, k = name.lower().partition("@")
    if kind not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {name!r}; expected e.g. ndcg@100, recall@20 or recall_full@20")
    return kind, int(k)


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean over users and its standard error (sample standard deviation / sqrt(n))."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def metric_curves(top_items: np.ndarray, target: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Per-user Recall@K and NDCG@K for every K from 1 to ``top_items.shape[1]`` at once.

    Returns arrays of shape (users, K); entry ``[:, k - 1]`` equals ``recall_at_k(.., k)``
    and ``ndcg_at_k(.., k)``.
    """
    found = hits(top_items, target)
    ks = np.arange(1, found.shape[1] + 1)
    n_target = _n_target(target)[:, None]
    discount = 1.0 / np.log2(ks + 1)
    dcg = np.cumsum(found * discount, axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal_cum[np.minimum(ks[None, :], n_target).astype(np.int64)]
    denom = np.minimum(ks[None, :], n_target)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "recall": np.where(denom > 0, np.cumsum(found, axis=1) / denom, np.nan),
            "ndcg": np.where(idcg > 0, dcg / idcg, np.nan),
        }

"""Rank held-out users' items from their fold-in histories and measure the rankings, block by block:
what evaluation and validation while training both compute."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recvae.score.metrics import METRICS, mean_and_se, parse_metric


def ranked_blocks(model, fold_in: sp.csr_matrix, target: sp.csr_matrix, k: int, batch_size: int,
                  allowed_items: np.ndarray | None = None):
    """(row slice, top-k item indices, target rows) per block of held-out users; fold-in items excluded, and
    items outside ``allowed_items`` (None: none). ``model`` is any fitted recommender (its ``top_n``)."""
    k = min(k, fold_in.shape[1])
    for start in range(0, fold_in.shape[0], batch_size):
        rows = slice(start, min(start + batch_size, fold_in.shape[0]))
        top, _ = model.top_n(fold_in[rows], k, exclude_seen=True, allowed_items=allowed_items)
        yield rows, top, target[rows]


def per_user_metrics(model, fold_in: sp.csr_matrix, target: sp.csr_matrix, metrics,
                     batch_size: int = 1000, allowed_items: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each metric (``"ndcg@100"``, ...) per held-out user, rows as in ``fold_in``, ranking ``allowed_items``
    alone where given."""
    parsed = [parse_metric(m) for m in metrics]
    per_user = {m: np.empty(fold_in.shape[0]) for m in metrics}
    for rows, top, block_target in ranked_blocks(model, fold_in, target, max(k for _, k in parsed), batch_size,
                                                 allowed_items):
        for name, (kind, k) in zip(metrics, parsed):
            per_user[name][rows] = METRICS[kind](top, block_target, k)
    return per_user


def summarise(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """``{"ndcg@100": mean, "ndcg@100_se": standard error, ...}``."""
    out = {}
    for name, values in per_user.items():
        out[name], out[f"{name}_se"] = mean_and_se(values)
    return out

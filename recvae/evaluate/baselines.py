"""Rankings that are not models, for protocols where no model's baseline fits: an item's content alone (the
cold-item protocol's baseline: a new item has no users for popularity to count) and chance."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

from recvae.errors import DataError


class ScoredRanking:
    """Ranks items by ``scores``, a function from a block of histories (CSR, users x items) to its scores of
    every item (a dense array): read by ``recvae.evaluate.evaluate`` as a model's ``top_n`` is."""

    def __init__(self, scores: Callable[[sp.csr_matrix], np.ndarray], n_items: int):
        self.scores = scores
        self.n_items_ = n_items

    def top_n(self, user_items: sp.csr_matrix, n: int, exclude_seen: bool = True,
              allowed_items: np.ndarray | None = None, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        import torch  # recvae.evaluate is imported by the CLI's parser, which must not load torch

        from recvae.score.topk import top_n_from_scores

        user_items = sp.csr_matrix(user_items)
        if user_items.shape[1] != self.n_items_:
            raise DataError(f"user_items has {user_items.shape[1]} columns for {self.n_items_} items")
        indices, values = [], []
        for start in range(0, user_items.shape[0], batch_size):
            block = user_items[start:start + batch_size]
            scores = torch.from_numpy(np.asarray(self.scores(block), dtype=np.float32))
            top, value = top_n_from_scores(scores, n, block if exclude_seen else None, allowed_items)
            indices.append(top)
            values.append(value)
        return np.concatenate(indices), np.concatenate(values)


def content_similarity(item_features) -> ScoredRanking:
    """A user's score of an item: the cosine between the item's features (items x features, e.g.
    ``recvae.data.features``' encoding of its genres) and the sum of the features of the user's items."""
    features = sp.csr_matrix(item_features, dtype=np.float64)
    unit_items = _unit_rows(features)

    def scores(user_items: sp.csr_matrix) -> np.ndarray:
        profiles = _unit_rows(sp.csr_matrix((user_items != 0).astype(np.float64)) @ features)
        return (profiles @ unit_items.T).toarray()
    return ScoredRanking(scores, features.shape[0])


def random_ranking(n_items: int, seed: int) -> ScoredRanking:
    """Every item in a random order per user (chance), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return ScoredRanking(lambda user_items: rng.random((user_items.shape[0], n_items)), n_items)


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix)

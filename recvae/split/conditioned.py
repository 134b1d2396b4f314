"""Splits for conditional models and cold-start users.

``with_user_features`` appends each user's encoded side features (``recvae.data.features``) to every part of a
split as the last columns: training rows, fold-ins, and empty columns on the targets, so that a conditional
model (``recvae.models.CVAE``) reads them wherever it reads a history and no metric ever counts them.

``cold_start`` keeps only ``given`` of each held-out user's items as the fold-in (0: the features alone), every
other item of theirs the target: a new user's first days.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, at_least
from recvae.split.base import HeldOut, Split

FEATURE_PREFIX = "feature:"  # a feature column's ID in the split's item vocabulary


def _with_columns(matrix: sp.csr_matrix, columns: sp.csr_matrix) -> sp.csr_matrix:
    return sp.hstack([matrix, columns], format="csr", dtype=np.float32)


def _heldout_with(heldout: HeldOut | None, features: sp.csr_matrix) -> HeldOut | None:
    if heldout is None:
        return None
    rows = features[heldout.users]
    return HeldOut(heldout.users, _with_columns(heldout.fold_in, rows),
                   _with_columns(heldout.target, sp.csr_matrix(rows.shape, dtype=np.float32)))


def with_user_features(split: Split, features: sp.csr_matrix, names: list[str]) -> Split:
    """``split`` with ``features`` (one row per user of ``split.users``, one column per name) appended to every
    part; the item vocabulary gains one ID per feature, ``"feature:<name>"``, and its item IDs become text."""
    if features.shape != (len(split.users), len(names)):
        raise DataError(f"features of shape {features.shape} for {len(split.users)} users and {len(names)} names")
    features = sp.csr_matrix(features, dtype=np.float32)
    # text IDs throughout: a vocabulary mixing integer items with named features would not read back as it was saved
    items = Vocabulary(np.array([*(str(i) for i in split.items.ids), *(FEATURE_PREFIX + n for n in names)], dtype=object),
                       split.items.name)
    return Split(_with_columns(split.train, features[split.train_users]), split.train_users,
                 _heldout_with(split.validation, features), _heldout_with(split.test, features), split.users, items,
                 {**split.params, "user_features": len(names)})


def cold_start(heldout: HeldOut, given: int, seed: int, features: int = 0) -> HeldOut:
    """The users of ``heldout`` with more than ``given`` items, ``given`` of them (drawn with ``seed``) as the
    fold-in and the rest as the target. ``features``: how many last columns are side features, kept in the
    fold-in and out of the target."""
    at_least(0, given=given, features=features)
    whole = (heldout.fold_in + heldout.target).tocsr()
    n_items = whole.shape[1] - features
    items_only = whole[:, :n_items].tocsr()
    counts = np.diff(items_only.indptr)
    keep = np.flatnonzero(counts > given)
    rng = np.random.default_rng(seed)
    fold_rows, target_rows = [], []
    for row in keep:
        items = items_only.indices[items_only.indptr[row]:items_only.indptr[row + 1]]
        chosen = np.zeros(len(items), dtype=bool)
        chosen[rng.choice(len(items), given, replace=False)] = True
        fold_rows.append(items[chosen])
        target_rows.append(items[~chosen])
    fold_in = _rows_matrix(fold_rows, whole.shape[1])
    if features:
        fold_in = fold_in + sp.csr_matrix(whole[keep]).multiply(_feature_mask(whole.shape[1], n_items))
    return HeldOut(heldout.users[keep], sp.csr_matrix(fold_in, dtype=np.float32),
                   _rows_matrix(target_rows, whole.shape[1]))


def _rows_matrix(rows: list[np.ndarray], width: int) -> sp.csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), width))


def _feature_mask(width: int, n_items: int) -> sp.csr_matrix:
    mask = np.zeros((1, width), dtype=np.float32)
    mask[0, n_items:] = 1.0
    return sp.csr_matrix(mask)

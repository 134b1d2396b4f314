"""Splits for conditional models and cold-start users.

``with_user_features`` appends each user's encoded side features (``recvae.data.features``) to every part of a
split as the last columns: training rows, fold-ins, and empty columns on the targets, so that a conditional
model (``recvae.models.CVAE``) reads them wherever it reads a history and no metric ever counts them.

``cold_start`` keeps only ``given`` of each held-out user's items as the fold-in (0: the features alone), every
other item of theirs the target: a new user's first days.

``cold_items`` removes a share of the items from training entirely, and asks each held-out user's other items
which of those new items they take: a new item's first days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recvae.data.shard import UserRows, item_sums, item_users
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ParameterError, whole_at_least
from recvae.split.base import HeldOut, Split

FEATURE_PREFIX = "feature:"  # a feature column's ID in the split's item vocabulary


def _with_columns(matrix: sp.csr_matrix, columns: sp.csr_matrix) -> sp.csr_matrix:
    return sp.hstack([matrix, columns], format="csr", dtype=np.float32)


def _training_with_columns(train, columns: sp.csr_matrix):
    """The training matrix with ``columns`` (a row per training user) appended; under torchrun (a process's
    ``UserRows``) its own rows' columns, and the whole matrix's column statistics extended by theirs."""
    if not isinstance(train, UserRows):
        return _with_columns(train, columns)
    return UserRows(_with_columns(train.matrix, columns[train.rows]), train.rows, train.n_users, train.nnz + columns.nnz,
                    np.concatenate([train.item_sums, item_sums(columns)]),
                    np.concatenate([train.item_users, item_users(columns)]))


def heldout_with_features(heldout: HeldOut | None, features: sp.csr_matrix) -> HeldOut | None:
    """``heldout`` with its users' rows of ``features`` (one row per user of the split) appended to the
    fold-ins, and empty columns to the targets: as a conditional model reads held-out users."""
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
    return Split(_training_with_columns(split.train, features[split.train_users]), split.train_users,
                 heldout_with_features(split.validation, features), heldout_with_features(split.test, features), split.users, items,
                 {**split.params, "user_features": len(names)})


def cold_start(heldout: HeldOut, given: int, seed: int, features: int = 0) -> HeldOut:
    """The users of ``heldout`` with more than ``given`` items, ``given`` of them (drawn with ``seed``) as the
    fold-in and the rest as the target. ``features``: how many last columns are side features, kept in the
    fold-in and out of the target."""
    whole_at_least(0, given=given, features=features)
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


@dataclass(frozen=True)
class ColdItems:
    """The cold-item protocol of a split: ``split`` without any interaction with the ``items`` (columns) in
    training or in its held-out users' parts (its validation users still pick the epoch, on warm items);
    ``validation`` and ``test``: the held-out users with at least one cold item, each user's warm items as
    the fold-in and the cold ones as the target, ranked among the cold items alone."""

    split: Split
    items: np.ndarray
    validation: HeldOut | None
    test: HeldOut


def cold_items(split: Split, share: float, seed: int) -> ColdItems:
    """Make ``share`` of ``split``'s items cold: drawn with ``seed`` among the items some training user has,
    at least one. Under torchrun (a training matrix held in parts, ``UserRows``) every process draws from the
    whole matrix's users per item, so every process makes the same items cold as one process would."""
    if not 0.0 < share < 1.0:
        raise ParameterError("share", share, "must lie in (0, 1)")
    if split.validation is not None and split.validation.fold_in.shape[1] != split.n_items:
        raise DataError("cold_items takes a split over items alone (no user feature columns)")
    candidates = np.flatnonzero(item_users(split.train) > 0)
    chosen = np.random.default_rng(seed).choice(candidates, max(1, round(share * len(candidates))), replace=False)
    cold = np.sort(chosen)
    is_cold = np.zeros(split.n_items, dtype=bool)
    is_cold[cold] = True
    warm = _keeping(~is_cold)
    warm_parts = [None if h is None else HeldOut(h.users, _masked(h.fold_in, warm), _masked(h.target, warm))
                  for h in (split.validation, split.test)]
    warm_split = Split(_warm_training(split.train, ~is_cold), split.train_users, *warm_parts, split.users, split.items,
                       {**split.params, "cold_items": len(cold), "cold_seed": seed})
    return ColdItems(warm_split, cold, _cold_targets(split.validation, warm, _keeping(is_cold)),
                     _cold_targets(split.test, warm, _keeping(is_cold)))


def _warm_training(train, is_warm: np.ndarray):
    """The training matrix without the cold items' columns; a process's part (``UserRows``) keeps the whole
    matrix's column statistics, the cold items' set to zero."""
    if not isinstance(train, UserRows):
        return _masked(train, _keeping(is_warm))
    return UserRows(_masked(train.matrix, _keeping(is_warm)), train.rows, train.n_users,
                    train.nnz - int(train.item_users[~is_warm].sum()), train.item_sums * is_warm,
                    train.item_users * is_warm)


def _keeping(columns: np.ndarray) -> sp.dia_matrix:
    return sp.diags(columns.astype(np.float32))


def _masked(matrix: sp.csr_matrix, keep: sp.dia_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix @ keep, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()  # the product's rows come unsorted; a split's matrices are canonical, as the log's
    return out


def _cold_targets(heldout: HeldOut | None, warm: sp.dia_matrix, cold: sp.dia_matrix) -> HeldOut | None:
    if heldout is None:
        return None
    whole = (heldout.fold_in + heldout.target).tocsr()
    target = _masked(whole, cold)
    rows = np.flatnonzero(np.diff(target.indptr) > 0)
    return HeldOut(heldout.users[rows], _masked(whole, warm)[rows], target[rows])

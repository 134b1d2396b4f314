"""Strong generalization (Liang et al. 2018, section 4.2): whole users are held out."""

from __future__ import annotations

import logging

import numpy as np

from recvae.defaults import SEED
from recvae.data.interactions import Interactions
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, DataParameterError, ParameterError
from recvae.split.base import Split, holdout_mask, make_heldout, split_rows

log = logging.getLogger(__name__)


def strong_generalization_split(
    data: Interactions,
    heldout_users: int,
    *,
    holdout_fraction: float = 0.2,
    min_items_to_hold_out: int = 5,
    seed: int = SEED,
) -> Split:
    """The paper's protocol.

    Users are permuted; the last ``2 * heldout_users`` become validation and test
    users, the rest train. Items no training user has seen are dropped. Of each
    held-out user with at least ``min_items_to_hold_out`` items, ``floor(holdout_fraction * n)``
    random items are the target and the others the fold-in; users with fewer items
    have no target and are not scored.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ParameterError("holdout_fraction", holdout_fraction, "must lie strictly between 0 and 1")
    rng, train_users, val_users, test_users = permuted_users(data.n_users, heldout_users, seed)
    matrix = data.matrix
    seen = np.flatnonzero(np.diff(matrix[train_users].tocsc().indptr) > 0)
    if len(seen) == 0:
        raise DataError("the training users have no interactions")
    matrix = matrix[:, seen].tocsr()
    parts = heldout_parts(lambda users: matrix[users], val_users, test_users, rng, holdout_fraction, min_items_to_hold_out)
    return Split(train=matrix[train_users], train_users=train_users, validation=parts["validation"], test=parts["test"],
                 users=data.users, items=data.items.subset(seen),
                 params=strong_params(heldout_users, holdout_fraction, min_items_to_hold_out, seed))


def permuted_users(n_users: int, heldout_users: int, seed: int):
    """The protocol's draw of users: (the generator, to go on drawing the targets with; training, validation
    and test users, each sorted). One process and the sharded split draw the same."""
    if heldout_users < 1:
        raise ParameterError("heldout_users", heldout_users, "must be at least 1")
    if n_users <= 2 * heldout_users:
        raise DataParameterError("heldout_users", heldout_users, f"{n_users} users cannot give {heldout_users} validation "
                             f"and {heldout_users} test users and still leave users to train on")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_users)
    n_train = n_users - 2 * heldout_users
    return (rng, np.sort(order[:n_train]), np.sort(order[n_train:n_train + heldout_users]),
            np.sort(order[n_train + heldout_users:]))


def heldout_parts(rows_of, val_users, test_users, rng, holdout_fraction: float, min_items_to_hold_out: int) -> dict:
    """The validation and test parts: each held-out user's items cut into fold-in and target (``rows_of``: the
    users' rows over the kept items), in the order the protocol draws them."""
    parts = {}
    for name, users in (("validation", val_users), ("test", test_users)):
        rows = rows_of(users)
        fold_in, target = split_rows(rows, holdout_mask(rows, holdout_fraction, min_items_to_hold_out, rng))
        parts[name] = make_heldout(users, fold_in, target)
        if len(parts[name]) == 0:
            raise DataError(f"no {name} user has {min_items_to_hold_out} or more items to hold out")
        if len(parts[name]) < len(users):
            log.info("%d of %d %s users have no target item and are not scored", len(users) - len(parts[name]), len(users), name)
    return parts


def strong_params(heldout_users: int, holdout_fraction: float, min_items_to_hold_out: int, seed: int) -> dict:
    return {"protocol": "strong", "n_heldout_users": heldout_users, "holdout_fraction": holdout_fraction,
            "min_items_to_hold_out": min_items_to_hold_out, "seed": seed}


def validation_from_training(split: Split, seed: int = SEED) -> Split:
    """Validation users carved out of a split's training users (10% of them, strong generalization), for
    protocols that come without any: what tuning needs so that test users are never looked at."""
    train = split.train
    data = Interactions(train, Vocabulary(np.arange(train.shape[0]), "user"), Vocabulary(np.arange(train.shape[1]), "item"))
    return strong_generalization_split(data, max(1, round(0.1 * train.shape[0])), seed=seed)

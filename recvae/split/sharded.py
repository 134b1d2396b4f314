"""The strong-generalization split of a log no process holds whole: each process holds the rows of the
users it owns (recvae.data.shard) and the processes exchange only what is per user or per item (IDs,
item counts) and the few held-out users' rows. The result equals ``strong_generalization_split`` of the
whole log: the same users, items, training rows and held-out parts, with each process holding its own
training users' rows (a :class:`UserRows`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.interactions import Preprocessing, preprocess
from recvae.data.readers import INTEGER_ID
from recvae.data.shard import gathered_rows
from recvae.data.vocab import Vocabulary
from recvae.defaults import SEED
from recvae.errors import DataError
from recvae.split.base import Split, holdout_mask, make_heldout, split_rows

log = logging.getLogger(__name__)

Gather = Callable[[object], list]  # every process's value, in rank order, on every process


def sharded_strong_split(
    frame: pd.DataFrame,
    preprocessing: Preprocessing,
    n_heldout_users: int | None,
    gather: Gather,
    *,
    holdout_fraction: float = 0.2,
    min_items_to_hold_out: int = 5,
    seed: int = SEED,
    source: str = "data",
) -> Split:
    """``strong_generalization_split(Interactions.from_frame(preprocess(log)))`` from this process's
    ``frame``: the rows of the users it owns, IDs as text (``recvae.data.shard.read_user_shard``).
    ``n_heldout_users`` None holds out 10% of the users (after preprocessing) in each part."""
    # typed over the whole log before preprocessing, as one process's reader types them
    frame = frame.assign(user=_typed(frame["user"], gather), item=_typed(frame["item"], gather))
    frame = _preprocess(frame, preprocessing, gather, source)
    users, items = _vocabulary(frame["user"], "user", gather), _vocabulary(frame["item"], "item", gather)
    rows, cols = users.index_of(frame["user"].to_numpy()), items.index_of(frame["item"].to_numpy())
    mine = np.unique(rows)  # this process's users, increasing
    local = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (np.searchsorted(mine, rows), cols)),
                          shape=(len(mine), len(items)))
    local.sum_duplicates()
    local.data[:] = 1.0

    n_users = len(users)
    if n_heldout_users is None:
        n_heldout_users = max(1, round(0.1 * n_users))
    if n_heldout_users < 1:
        raise DataError("n_heldout_users must be at least 1")
    if n_users <= 2 * n_heldout_users:
        raise DataError(
            f"heldout_users={n_heldout_users}: {n_users} users cannot give {n_heldout_users} validation and "
            f"{n_heldout_users} test users and still leave users to train on")
    rng = np.random.default_rng(seed)  # the whole-log split's draws, in its order
    order = rng.permutation(n_users)
    n_train = n_users - 2 * n_heldout_users
    train_users = np.sort(order[:n_train])
    val_users = np.sort(order[n_train:n_train + n_heldout_users])
    test_users = np.sort(order[n_train + n_heldout_users:])

    training = np.isin(mine, train_users)
    seen = np.logical_or.reduce(gather(np.diff(local[training].tocsc().indptr) > 0))
    seen = np.flatnonzero(seen)
    if len(seen) == 0:
        raise DataError("the training users have no interactions")
    # held-out users are few: their rows go to every process, which then cuts them as one process would
    heldout = [part for part in gather((mine[~training], local[~training])) if part[0].size]
    heldout_users = np.concatenate([p[0] for p in heldout])
    order_of = np.argsort(heldout_users)
    heldout_matrix = sp.vstack([p[1] for p in heldout]).tocsr()[order_of][:, seen].tocsr()
    heldout_users = heldout_users[order_of]
    parts = {}
    for name, part_users in (("validation", val_users), ("test", test_users)):
        held = heldout_matrix[np.searchsorted(heldout_users, part_users)]
        fold_in, target = split_rows(held, holdout_mask(held, holdout_fraction, min_items_to_hold_out, rng))
        parts[name] = make_heldout(part_users, fold_in, target)
        if len(parts[name]) == 0:
            raise DataError(f"no {name} user has {min_items_to_hold_out} or more items to hold out")
    train = local[training][:, seen].tocsr()
    return Split(
        train=gathered_rows(train, np.searchsorted(train_users, mine[training]), n_train, gather),
        train_users=train_users,
        validation=parts["validation"],
        test=parts["test"],
        users=users,
        items=items.subset(seen),
        params={"protocol": "strong", "n_heldout_users": n_heldout_users, "holdout_fraction": holdout_fraction,
                "min_items_to_hold_out": min_items_to_hold_out, "seed": seed},
    )


def _preprocess(frame: pd.DataFrame, config: Preprocessing, gather: Gather, source: str) -> pd.DataFrame:
    """``preprocess`` over every process's rows: duplicates, ratings and users are each one process's
    business (a user's rows are all in one); the item count filter sums every process's counts."""
    before = sum(gather(len(frame)))
    if len(frame):
        frame = preprocess(frame, dataclasses.replace(config, min_item_interactions=0, min_user_interactions=0), source)
    if config.min_item_interactions > 1:
        counts = pd.concat(gather(frame["item"].value_counts())).groupby(level=0).sum()
        frame = frame.loc[frame["item"].map(counts).to_numpy() >= config.min_item_interactions]
    if config.min_user_interactions > 1:
        frame = frame.loc[frame["user"].map(frame["user"].value_counts()).to_numpy() >= config.min_user_interactions]
    if sum(gather(len(frame))) == 0:
        raise DataError(f"{source}: no interaction left after preprocessing ({before} rows before; "
                        + ", ".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)) + ")")
    return frame.reset_index(drop=True)


def _typed(ids: pd.Series, gather: Gather) -> pd.Series:
    """IDs (int64, text, or both: recvae.data.shard keeps a chunk of integers as int64) typed as
    recvae.data.readers._ids types the whole column: integers when every ID spells one (or some are
    written "12.0" and the rest are integers), text otherwise."""
    if pd.api.types.is_integer_dtype(ids):
        flags = gather((True, True, False))
    else:
        text = ids.astype(str)  # an int64 chunk's IDs are exactly the text they were read from
        is_int = text.str.fullmatch(INTEGER_ID).to_numpy()
        as_float = text.str.fullmatch(INTEGER_ID + r"\.0+").to_numpy()
        flags = gather((bool(is_int.all()), bool((is_int | as_float).all()), bool(as_float.any())))
    if all(f[0] for f in flags):
        return ids.astype(np.int64)
    if all(f[1] for f in flags) and any(f[2] for f in flags):
        return ids if pd.api.types.is_integer_dtype(ids) else text.str.replace(r"\.0+$", "", regex=True).astype(np.int64)
    return ids.astype(str).astype(object)


def _vocabulary(ids: pd.Series, name: str, gather: Gather) -> Vocabulary:
    """The whole log's vocabulary of these IDs: every process's, sorted as Interactions.from_frame sorts."""
    _, vocabulary = pd.factorize(np.concatenate(gather(pd.unique(ids.to_numpy()))), sort=True)
    return Vocabulary(np.asarray(vocabulary), name)

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

from recvae.data.interactions import Preprocessing, interaction_matrix, preprocess
from recvae.data.readers import INTEGER_AS_DECIMAL_ID, INTEGER_ID
from recvae.data.shard import gathered_rows
from recvae.data.vocab import Vocabulary
from recvae.defaults import SEED
from recvae.errors import DataError
from recvae.split.base import Split
from recvae.split.strong import heldout_parts, permuted_users, strong_params

log = logging.getLogger(__name__)

Gather = Callable[[object], list]  # every process's value, in rank order, on every process


def sharded_strong_split(
    frame: pd.DataFrame,
    preprocessing: Preprocessing,
    heldout_users: int | None,
    gather: Gather,
    *,
    holdout_fraction: float = 0.2,
    min_items_to_hold_out: int = 5,
    seed: int = SEED,
    source: str = "data",
) -> Split:
    """``strong_generalization_split(Interactions.from_frame(preprocess(log)))`` from this process's
    ``frame``: the rows of the users it owns, IDs as text (``recvae.data.shard.read_user_shard``).
    ``heldout_users`` None holds out 10% of the users (after preprocessing) in each part."""
    # typed over the whole log before preprocessing, as one process's reader types them
    frame = frame.assign(user=_typed(frame["user"], gather), item=_typed(frame["item"], gather))
    frame = _preprocess(frame, preprocessing, gather, source)
    users, items = _vocabulary(frame["user"], "user", gather), _vocabulary(frame["item"], "item", gather)
    rows, cols = users.index_of(frame["user"].to_numpy()), items.index_of(frame["item"].to_numpy())
    mine = np.unique(rows)  # this process's users, increasing
    local = interaction_matrix(np.searchsorted(mine, rows), cols, frame["rating"] if "rating" in frame else None,
                               (len(mine), len(items)))

    heldout_users = heldout_users if heldout_users is not None else max(1, round(0.1 * len(users)))
    rng, train_users, val_users, test_users = permuted_users(len(users), heldout_users, seed)
    training = np.isin(mine, train_users)
    seen = np.flatnonzero(np.logical_or.reduce(gather(np.diff(local[training].tocsc().indptr) > 0)))
    if len(seen) == 0:
        raise DataError("the training users have no interactions")
    heldout_users, heldout_matrix = _heldout_rows(mine[~training], local[~training][:, seen].tocsr(), gather)
    parts = heldout_parts(lambda part: heldout_matrix[np.searchsorted(heldout_users, part)], val_users, test_users,
                          rng, holdout_fraction, min_items_to_hold_out)
    train = local[training][:, seen].tocsr()
    return Split(train=gathered_rows(train, np.searchsorted(train_users, mine[training]), len(train_users), gather),
                 train_users=train_users, validation=parts["validation"], test=parts["test"], users=users,
                 items=items.subset(seen), params=strong_params(heldout_users, holdout_fraction, min_items_to_hold_out, seed))


def _heldout_rows(users: np.ndarray, rows: sp.csr_matrix, gather: Gather) -> tuple[np.ndarray, sp.csr_matrix]:
    """Every process's held-out users and their rows, sorted by user: they are few, so every process gets all
    of them and cuts them as one process would."""
    heldout = [part for part in gather((users, rows)) if part[0].size]
    all_users = np.concatenate([p[0] for p in heldout])
    order = np.argsort(all_users)
    return all_users[order], sp.vstack([p[1] for p in heldout]).tocsr()[order]


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
    recvae.data.readers.typed_ids types the whole column: integers when every ID spells one (or some are
    written "12.0" and the rest are integers), text otherwise."""
    if pd.api.types.is_integer_dtype(ids):
        flags = gather((True, True, False))
    else:
        text = ids.astype(str)  # an int64 chunk's IDs are exactly the text they were read from
        is_int = text.str.fullmatch(INTEGER_ID).to_numpy()
        as_float = text.str.fullmatch(INTEGER_AS_DECIMAL_ID).to_numpy()
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

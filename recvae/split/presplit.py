"""Splits that arrive as files: a training log and a test log, e.g. LightGCN's train.txt / test.txt
(read by ``recvae.data.read_lightgcn``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recvae.data.interactions import Interactions
from recvae.errors import DataError
from recvae.split.base import Split, make_heldout


def presplit(train: pd.DataFrame, test: pd.DataFrame) -> Split:
    """A split from two (user, item) frames; test users fold in their training items.

    Items that appear only in the test log get columns too (no model can rank them
    well, which is the honest score). There are no validation users.
    """
    both = pd.concat([train[["user", "item"]], test[["user", "item"]]], ignore_index=True)
    everything = Interactions.from_frame(both)
    users, items = everything.users, everything.items
    train_m = Interactions.from_frame(train, users, items).matrix
    test_m = Interactions.from_frame(test, users, items).matrix
    train_rows = np.flatnonzero(np.diff(train_m.indptr) > 0)
    all_users = np.arange(len(users))
    test_part = make_heldout(all_users, train_m, test_m)
    if len(test_part) == 0:
        raise DataError("the test log has no interactions")
    return Split(
        train=train_m[train_rows],
        train_users=train_rows,
        validation=None,
        test=test_part,
        users=users,
        items=items,
        params={"protocol": "presplit"},
    )


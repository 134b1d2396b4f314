"""Weak generalization: every user trains; a random share of each user's items is held out."""

from __future__ import annotations

import numpy as np

from recvae.defaults import SEED
from recvae.data.interactions import Interactions
from recvae.errors import DataError, ParameterError, fraction
from recvae.split.base import Split, holdout_mask, make_heldout, split_rows


def random_holdout_split(
    data: Interactions,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    min_items_to_hold_out: int = 5,
    seed: int = SEED,
) -> Split:
    """Hold out ``test_fraction`` (then ``validation_fraction`` of the rest) of each user's items.

    The model trains on what remains of every user. Validation users fold in their
    training items; test users fold in their training and validation items.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ParameterError("test_fraction", test_fraction, "must lie in (0, 1)")
    fraction(validation_fraction=validation_fraction)
    rng = np.random.default_rng(seed)
    rest, test = split_rows(data.matrix, holdout_mask(data.matrix, test_fraction, min_items_to_hold_out, rng))
    users = np.arange(data.n_users)
    validation = None
    train = rest
    if validation_fraction > 0:
        train, val = split_rows(rest, holdout_mask(rest, validation_fraction, min_items_to_hold_out, rng))
        validation = make_heldout(users, train, val)
    test_part = make_heldout(users, rest, test)
    if len(test_part) == 0:
        raise DataError(f"no user has {min_items_to_hold_out} or more items to hold out")
    return Split(
        train=train,
        train_users=users,
        validation=validation if validation is not None and len(validation) else None,
        test=test_part,
        users=data.users,
        items=data.items,
        params={
            "protocol": "holdout",
            "test_fraction": test_fraction,
            "validation_fraction": validation_fraction,
            "min_items_to_hold_out": min_items_to_hold_out,
            "seed": seed,
        },
    )

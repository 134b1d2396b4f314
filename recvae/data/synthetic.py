"""A deterministic generator of realistic interaction logs, so recvae runs with no download.

Three properties of real logs are built in: item popularity follows a power law,
user activity is log-normal, and users belong to a few latent taste groups whose
items they prefer, which is the structure a collaborative-filtering model can learn
and a popularity ranking cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recvae.errors import ParameterError, at_least, settle_kinds


@dataclass(frozen=True)
class SyntheticLog:
    """Shape of the generated log; the defaults look like a small MovieLens."""

    n_users: int = 6000
    n_items: int = 3000
    n_groups: int = 24
    groups_per_user: int = 2
    median_activity: float = 45.0
    activity_sigma: float = 0.8
    min_activity: int = 5
    popularity_exponent: float = 1.1
    taste_strength: float = 3.0
    seed: int = 20180423
    string_ids: bool = True  # "u00042"/"i00007"; False gives the integer indices (less memory)

    def __post_init__(self):
        settle_kinds(self)
        at_least(1, n_users=self.n_users, n_groups=self.n_groups)
        at_least(2, n_items=self.n_items)
        if not 1 <= self.groups_per_user <= self.n_groups:
            raise ParameterError("groups_per_user", self.groups_per_user, "must lie in [1, {n_groups}]")
        if self.min_activity < 1 or self.min_activity >= self.n_items:
            raise ParameterError("min_activity", self.min_activity, "must lie in [1, {n_items})")


def generate_log(spec: SyntheticLog = SyntheticLog(), chunk_users: int = 1024) -> pd.DataFrame:
    """Return a log with columns user, item, rating (1-5 stars), timestamp; same spec, same log."""
    rng = np.random.default_rng(spec.seed)
    n_u, n_i = spec.n_users, spec.n_items
    popularity = (rng.permutation(n_i) + 10.0) ** -spec.popularity_exponent
    log_pop = np.log(popularity / popularity.sum())
    item_group = rng.integers(0, spec.n_groups, size=n_i)
    activity = np.clip(
        rng.lognormal(np.log(spec.median_activity), spec.activity_sigma, size=n_u).round(),
        spec.min_activity, n_i // 2,
    ).astype(np.int64)
    user_groups = np.stack([rng.choice(spec.n_groups, spec.groups_per_user, replace=False) for _ in range(n_u)])
    group_weight = rng.dirichlet(np.ones(spec.groups_per_user), size=n_u)

    users, items, ratings = [], [], []
    for start in range(0, n_u, chunk_users):
        stop = min(start + chunk_users, n_u)
        affinity = np.zeros((stop - start, spec.n_groups))
        np.put_along_axis(affinity, user_groups[start:stop], group_weight[start:stop], axis=1)
        taste = affinity[:, item_group]  # chunk x items, bounded by chunk_users
        logits = log_pop + spec.taste_strength * spec.groups_per_user * taste
        # Gumbel top-k draws each user's items without replacement, proportional to exp(logits).
        keys = logits + rng.gumbel(size=logits.shape)
        for row in range(stop - start):
            n = activity[start + row]
            # A copy: a slice would keep the whole catalogue-sized argpartition array alive per user.
            chosen = np.argpartition(-keys[row], n - 1)[:n].copy()
            users.append(np.full(n, start + row))
            items.append(chosen)
            stars = 2.5 + 2.5 * taste[row, chosen] + rng.normal(0.0, 1.0, size=n)
            ratings.append(np.clip(np.round(stars), 1, 5))
    user_idx = np.concatenate(users)
    item_idx = np.concatenate(items)
    order_in_user = np.concatenate([rng.permutation(len(u)) for u in users])
    if spec.string_ids:
        user_ids = np.char.add("u", np.char.zfill(user_idx.astype(str), 5)).astype(object)
        item_ids = np.char.add("i", np.char.zfill(item_idx.astype(str), 5)).astype(object)
    else:
        user_ids, item_ids = user_idx.astype(np.int64), item_idx.astype(np.int64)
    frame = pd.DataFrame(
        {
            "user": user_ids,
            "item": item_ids,
            "rating": np.concatenate(ratings).astype(np.float32),
            "timestamp": 1_600_000_000 + user_idx * 10_000 + order_in_user * 60,
        }
    )
    return frame

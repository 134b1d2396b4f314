"""A few test users shown whole: what the model saw, what it recommended, and which of those were held out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recvae.data.side import names_for
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, whole_at_least
from recvae.split.base import HeldOut


def example_users(model, heldout: HeldOut, users: Vocabulary, n_users: int = 3, n: int = 10, item_names=None,
                  seed: int = 0) -> pd.DataFrame:
    """For ``n_users`` test users drawn with ``seed``: one row per fold-in item (``part`` "history") and per
    recommendation (``part`` "recommended", best first, ``held_out`` True where the user's held-out items
    have it). Columns user, part, rank, item, held_out, and name with ``item_names`` (as
    ``Recommender.similar_df`` takes them). The model's own item IDs name the items."""
    whole_at_least(1, n_users=n_users, n=n)
    if len(heldout) and heldout.users.max() >= len(users):
        raise DataError(f"users names {len(users)} users, and the held-out users include row {heldout.users.max()}: "
                        "pass the vocabulary of the users the split was made from (Interactions.users)")
    rows = np.sort(np.random.default_rng(seed).choice(len(heldout), size=min(n_users, len(heldout)), replace=False))
    chosen = heldout.select(rows)
    top, _ = model.top_n(chosen.fold_in, n)
    catalogue = model.catalogue()
    parts = []
    for row in range(len(chosen)):
        seen = chosen.fold_in[row].indices
        seen = seen[seen < len(catalogue)]  # a CVAE's history ends with the user's features: no items
        held = set(chosen.target[row].indices.tolist())
        ranked = top[row][top[row] >= 0]
        parts.append(pd.DataFrame({"part": ["history"] * len(seen) + ["recommended"] * len(ranked),
                                   "rank": np.r_[np.zeros(len(seen), int), np.arange(1, len(ranked) + 1)],
                                   "index": np.r_[seen, ranked],
                                   "held_out": [False] * len(seen) + [int(i) in held for i in ranked]})
                     .assign(user=users.id_of([chosen.users[row]])[0]))
    frame = pd.concat(parts, ignore_index=True)
    frame["item"] = catalogue.id_of(frame["index"].to_numpy())
    names = names_for(catalogue, item_names)
    if names is not None:
        frame["name"] = names[frame["index"].to_numpy()]
    return frame.drop(columns="index")[["user", "part", "rank", "item", "held_out"] + (["name"] if names is not None else [])]


def format_examples(frame: pd.DataFrame, history_shown: int = 5) -> str:
    """The examples as text: per user, a few of its history and its recommendations, held-out ones marked."""
    lines = []
    label = (lambda r: f"{r['item']} {r['name']}") if "name" in frame else (lambda r: str(r["item"]))
    for user, rows in frame.groupby("user", sort=False):
        history = rows[rows["part"] == "history"]
        shown = "; ".join(label(r) for _, r in history.head(history_shown).iterrows())
        more = f" (and {len(history) - history_shown} more)" if len(history) > history_shown else ""
        lines.append(f"user {user}: history {shown}{more}")
        for _, r in rows[rows["part"] == "recommended"].iterrows():
            lines.append(f"  {r['rank']:>3}. {label(r)}{'   <- held out' if r['held_out'] else ''}")
    return "\n".join(lines)

"""Complete user histories, a block at a time, from a log too large to hold in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recvae.data.readers import iter_interactions
from recvae.errors import DataError
from recvae.score.recommend import Block, user_blocks

def iter_user_blocks(
    path: str | Path,
    *,
    users_per_block: int = 1000,
    chunk_rows: int = 1 << 18,
    reader: dict | None = None,
    id_kinds: dict | None = None,
    grouped: bool = True,
    shard: tuple[int, int] = (0, 1),
    min_rating: float | None = None,
) -> Iterator[Block]:
    """Yield blocks of at most ``users_per_block`` whole users.

    With ``grouped=True`` the log must keep each user's rows together (any order of
    users); memory then stays bounded by the chunk and the block, whatever the number
    of users, and a user met again after its block was yielded is an error. With
    ``grouped=False`` the whole log is read first and grouped in memory. ``min_rating`` keeps only
    interactions rated at least that, as training's preprocessing did.
    """
    index, n_shards = shard
    if not (n_shards >= 1 and 0 <= index < n_shards):
        raise ValueError(f"shard {index}/{n_shards}: expected 0 <= i < n")
    chunks = iter_interactions(path, chunk_rows=chunk_rows, id_kinds=id_kinds, **(reader or {}))
    if min_rating is not None:
        chunks = (_rated_at_least(chunk, min_rating, path) for chunk in chunks)
    if not grouped:
        frame = pd.concat([c[["user", "item"]] for c in chunks], ignore_index=True)
        order = np.argsort(pd.factorize(frame["user"])[0], kind="stable")
        chunks = iter([frame.iloc[order]])
    carry_users = carry_items = None
    finished = _HashSet()
    for chunk in chunks:
        users, items = chunk["user"].to_numpy(), chunk["item"].to_numpy()
        if carry_users is not None:
            users, items = np.concatenate([carry_users, users]), np.concatenate([carry_items, items])
        if len(users) == 0:
            continue
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        run_users = users[starts]
        if grouped:
            hashes = pd.util.hash_array(np.asarray(run_users))
            repeated = pd.Index(run_users).duplicated() | finished.contains(hashes)
            if repeated.any():
                raise DataError(
                    f"{path}: user {run_users[repeated].tolist()[0]!r} appears again after other users; the export streams "
                    "users and needs each user's rows together: sort the log by user, or pass grouped=False "
                    "(--ungrouped) to group it in memory"
                )
            finished.add(hashes[:-1])
        # The last user of the chunk may go on in the next one.
        carry_users, carry_items = users[starts[-1]:], items[starts[-1]:]
        yield from user_blocks(users[: starts[-1]], items[: starts[-1]], starts[:-1], users_per_block, index, n_shards)
    if carry_users is not None and len(carry_users):
        yield from user_blocks(carry_users, carry_items, np.array([0]), users_per_block, index, n_shards)


def _rated_at_least(chunk: pd.DataFrame, min_rating: float, path) -> pd.DataFrame:
    if "rating" not in chunk:
        raise DataError(f"{path}: min_rating={min_rating} asked for (the model was trained on ratings >= it), but the "
                        "file has no rating column; name it with --rating, or pass --min-rating none")
    return chunk.loc[chunk["rating"] >= min_rating]


class _HashSet:
    """64-bit hashes of the users already yielded: 8 bytes a user instead of a Python set's ~70.

    Kept as sorted runs, each at least twice the size of the next, so adding a chunk's users
    costs O(chunk · log users) amortised rather than re-sorting every user seen so far.
    """

    def __init__(self):
        self._runs: list[np.ndarray] = []

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            position = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            found |= run[position] == hashes
        return found

    def add(self, hashes: np.ndarray) -> None:
        if len(hashes) == 0:
            return
        self._runs.append(np.sort(hashes))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newest = self._runs.pop()
            self._runs[-1] = np.union1d(self._runs[-1], newest)

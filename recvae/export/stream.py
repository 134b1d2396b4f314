"""Complete user histories, a block at a time, from a log too large to hold in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recvae.data.readers import iter_interactions
from recvae.errors import DataError, DataParameterError, ParameterError
from recvae.score.recommend import shard_of, users_alike, whole_user_blocks

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
) -> Iterator[tuple[pd.DataFrame, int]]:
    """Yield (block, users of the block's stretch of the log in other shards): blocks of at most
    ``users_per_block`` whole users, frames with columns user, item and, where the log has one, rating.

    With ``grouped=True`` the log must keep each user's rows together (any order of
    users); memory then stays bounded by the chunk and the block, whatever the number
    of users, and a user met again after its block was yielded is an error. With
    ``grouped=False`` the whole log is read first and grouped in memory. ``min_rating`` keeps only
    interactions rated at least that, as training's preprocessing did.
    """
    index, n_shards = shard
    if not (n_shards >= 1 and 0 <= index < n_shards):
        raise ParameterError("shard", shard, "expected (i, n) with 0 <= i < n")
    chunks = iter_interactions(path, chunk_rows=chunk_rows, id_kinds=id_kinds, **(reader or {}))
    if min_rating is not None:
        chunks = (_rated_at_least(chunk, min_rating, path) for chunk in chunks)
    columns = lambda chunk: chunk[[c for c in ("user", "item", "rating") if c in chunk]]  # noqa: E731
    if not grouped:
        frame = pd.concat(users_alike([columns(c) for c in chunks]), ignore_index=True)
        chunks = iter([frame.iloc[np.argsort(pd.factorize(frame["user"])[0], kind="stable")]])
    finished = _HashSet()

    def completed(users: np.ndarray) -> None:
        if not grouped:
            return
        users = np.asarray(users)
        # as text: a chunk types its IDs alone, and user 5 of an integer chunk is user "5" of a text one
        hashes = pd.util.hash_array(users.astype(str).astype(object) if users.dtype.kind in "iu" else users)
        repeated = pd.Index(users).duplicated() | finished.contains(hashes)
        if repeated.any():
            raise DataError(
                f"{path}: user {users[repeated].tolist()[0]!r} appears again after other users; the export streams "
                "users and needs each user's rows together: sort the log by user, or pass {grouped=False} "
                "to group it in memory"
            )
        finished.add(hashes)

    # with shards, cut blocks of n_shards times the users, so that this shard's share of one is a whole block
    for block in whole_user_blocks((columns(c) for c in chunks), users_per_block * n_shards, completed):
        if n_shards == 1:
            yield block, 0
            continue
        users = block["user"].to_numpy()
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        mine = shard_of(users[starts], n_shards) == index
        yield block.iloc[np.repeat(mine, np.diff(np.r_[starts, len(users)]))], int((~mine).sum())


def _rated_at_least(chunk: pd.DataFrame, min_rating: float, path) -> pd.DataFrame:
    if "rating" not in chunk:
        raise no_rating_column(min_rating, path)
    return chunk.loc[chunk["rating"] >= min_rating]


def no_rating_column(min_rating: float, path) -> DataParameterError:
    """The error of a log without ratings read to keep those >= ``min_rating`` (by either export engine)."""
    return DataParameterError("min_rating", min_rating, f"asked for (the model was trained on ratings >= it), but "
                              f"{path} has no rating column; name it with {{rating}}, or pass {{min_rating}} none")


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

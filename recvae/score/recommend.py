"""Top-N for (user, item) histories in original IDs: the block step shared by
``Recommender.recommend_df`` and the streaming export, and the cutting of grouped rows into blocks of whole users."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError
from recvae.score.topk import top_n_from_scores

Block = tuple[np.ndarray, np.ndarray, int]  # (user IDs, item IDs) per interaction, users in other shards


@dataclass
class ExportStats:
    """Counts a caller reports: what was read, what was written, what was left out and why."""

    users: int = 0
    users_with_rows: int = 0
    users_without_known_items: int = 0
    users_on_fallback: int = 0
    interactions: int = 0
    unknown_item_interactions: int = 0
    rows: int = 0
    unknown_filter_items: int = 0
    users_in_other_shards: int = 0

    def add(self, other: ExportStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class RecommendOptions:
    n: int = 10
    include_seen: bool = False
    allowed_items: np.ndarray | None = None  # item indices
    fallback: str | None = None  # None or "popularity"
    batch_size: int = 1000
    item_chunk: int | None = None  # items scored at once (None: the whole catalogue)

    def __post_init__(self):
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.item_chunk is not None and self.item_chunk < 1:
            raise ValueError("item_chunk must be at least 1")
        if self.fallback not in (None, "popularity"):
            raise ValueError("fallback must be None or 'popularity'")


# Memory per (user, item) of a score block while it is ranked: the float32 score and, where the selection
# sorts keys (rows too narrow for the grouped kernel), an int64 key.
SCORE_BYTES = 12


def item_chunk_for(score_memory_mb: float, users_per_block: int) -> int:
    """Items per chunk that keep one block's scores within ``score_memory_mb`` megabytes."""
    if not score_memory_mb > 0:
        raise ValueError(f"score_memory_mb={score_memory_mb} must be positive")
    return max(1, int(score_memory_mb * 2**20 // (SCORE_BYTES * users_per_block)))


def item_filter(items: Vocabulary, allow=None, deny=None) -> tuple[np.ndarray | None, int]:
    """Item indices a recommendation may contain, from allow/deny lists of item IDs; unknown IDs are counted."""
    if allow is None and deny is None:
        return None, 0
    unknown = 0
    keep = np.ones(len(items), dtype=bool)
    if allow is not None:
        idx = items.index_of(np.asarray(allow), missing="ignore")
        unknown += int((idx < 0).sum())
        keep[:] = False
        keep[idx[idx >= 0]] = True
    if deny is not None:
        idx = items.index_of(np.asarray(deny), missing="ignore")
        unknown += int((idx < 0).sum())
        keep[idx[idx >= 0]] = False
    if not keep.any():
        raise DataError("the allow and deny lists leave no item to recommend")
    return np.flatnonzero(keep), unknown


def recommend_block(model, users: np.ndarray, items: np.ndarray, options: RecommendOptions) -> tuple[dict, ExportStats]:
    """Recommendations for a block of complete user histories.

    ``users`` and ``items`` are parallel arrays of original IDs (one row per interaction;
    a user with only unknown items may still appear). Returns columns (user, item,
    rank, score[, fallback]) as numpy arrays, and the block's counts.
    """
    vocab: Vocabulary = model.items_
    stats = ExportStats(interactions=len(users))
    codes, user_ids = pd.factorize(pd.Series(users, dtype=object if users.dtype == object else users.dtype), sort=False)
    user_ids = np.asarray(user_ids)
    stats.users = len(user_ids)
    cols = vocab.index_of(items, missing="ignore")
    known = cols >= 0
    stats.unknown_item_interactions = int((~known).sum())
    history = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (codes[known], cols[known])), shape=(len(user_ids), len(vocab))
    )
    history.sum_duplicates()
    history.data[:] = 1.0
    has_items = np.diff(history.indptr) > 0
    stats.users_without_known_items = int((~has_items).sum())

    parts = []  # (user IDs, item indices (users x width), scores, on fallback)
    if has_items.any():
        idx, score = model.top_n(
            history[has_items], options.n, exclude_seen=not options.include_seen,
            allowed_items=options.allowed_items, batch_size=options.batch_size, item_chunk=options.item_chunk,
        )
        parts.append((user_ids[has_items], idx, score, False))
    if options.fallback == "popularity" and not has_items.all():
        idx, score = top_n_from_scores(model.item_popularity_.unsqueeze(0), options.n, None, options.allowed_items)
        n_empty = int((~has_items).sum())
        parts.append((user_ids[~has_items], np.tile(idx, (n_empty, 1)), np.tile(score, (n_empty, 1)), True))
        stats.users_on_fallback = n_empty
    columns = {"user": [], "item": [], "rank": [], "score": [], "fallback": []}
    for part_users, idx, score, on_fallback in parts:
        valid = idx >= 0  # -1 pads a list that ran out of allowed, unseen items
        width = idx.shape[1]
        columns["user"].append(np.repeat(part_users, width)[valid.ravel()])
        columns["item"].append(vocab.ids[idx[valid]])
        columns["rank"].append(np.tile(np.arange(1, width + 1, dtype=np.int32), len(part_users))[valid.ravel()])
        columns["score"].append(score[valid].astype(np.float32, copy=False))
        columns["fallback"].append(np.full(int(valid.sum()), on_fallback))
        stats.users_with_rows += int(valid.any(axis=1).sum())
    empty = {"user": user_ids[:0], "item": vocab.ids[:0], "rank": np.empty(0, np.int32),
             "score": np.empty(0, np.float32), "fallback": np.empty(0, bool)}
    out = {k: np.concatenate(v) if v else empty[k] for k, v in columns.items()}
    if options.fallback is None:
        del out["fallback"]
    stats.rows = len(out["rank"])
    return out, stats


def shard_of(users: np.ndarray, n_shards: int) -> np.ndarray:
    """A stable shard number per user ID: the same in every process and run."""
    return (pd.util.hash_array(np.asarray(users)) % np.uint64(n_shards)).astype(np.int64)


def user_blocks(users, items, starts, users_per_block, index=0, n_shards=1) -> Iterator[Block]:
    """Cut rows grouped by user (``starts``: first row of each user) into blocks of whole users,
    keeping only the users of shard ``index`` of ``n_shards``."""
    if len(starts) == 0:
        return
    others = 0
    if n_shards > 1:
        mine = shard_of(users[starts], n_shards) == index
        others = int((~mine).sum())
        keep = np.repeat(mine, np.diff(np.r_[starts, len(users)]))
        users, items = users[keep], items[keep]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else starts[:0]
    if len(starts) == 0:
        yield users[:0], items[:0], others
        return
    bounds = np.r_[starts[::users_per_block], len(users)]
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        yield users[a:b], items[a:b], others if k == 0 else 0

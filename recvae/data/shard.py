"""One process's share of a log's users, for training on several processes (torchrun) without any of them
holding the whole log: which process owns a user, reading only its users' rows, and the training rows a
process holds of a matrix no process holds whole."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.readers import INTEGER_ID as _INTEGER
from recvae.data.readers import iter_interactions


def owners(ids: pd.Series, size: int) -> np.ndarray:
    """The process (0 .. size-1) each user ID belongs to, the same in every process and every run
    (pandas' hash_array has a fixed key), so a user's rows meet in one process wherever they lie in the
    file. An ID that may turn out to be an integer (12, "12", "12.0": see readers._ids) is hashed as
    that integer, any other by its text."""
    if pd.api.types.is_integer_dtype(ids):
        keys = pd.util.hash_array(ids.to_numpy(dtype=np.int64))
    else:
        text = ids.astype(str).str.strip().str.replace(rf"^({_INTEGER})\.0+$", r"\1", regex=True)
        integer = text.str.fullmatch(_INTEGER).to_numpy(dtype=bool)
        keys = np.empty(len(text), dtype=np.uint64)
        keys[integer] = pd.util.hash_array(text[integer].astype(np.int64).to_numpy())
        keys[~integer] = pd.util.hash_array(text[~integer].to_numpy(dtype=object))
    return (keys % np.uint64(size)).astype(np.int64)


def read_user_shard(frames: Iterator[pd.DataFrame], rank: int, size: int) -> pd.DataFrame:
    """The rows of the users ``rank`` owns, from chunks of a log; only one chunk and the kept rows are held.
    IDs read as text are kept as int64 where a chunk's are all integers as ``str(int)`` writes them (so
    the text is rebuilt exactly if another chunk's IDs turn out not to be), as text otherwise."""
    kept = []
    for frame in frames:
        frame = frame.loc[owners(frame["user"], size) == rank]
        kept.append(frame.assign(user=_compact(frame["user"]), item=_compact(frame["item"])))
    frame = pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0].reset_index(drop=True)
    frame.attrs["skipped_lines"] = sum(chunk.attrs.get("skipped_lines", 0) for chunk in kept)
    return frame


def _compact(ids: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(ids) or not len(ids):
        return ids
    text = ids.astype(str).str.strip()
    if text.str.fullmatch(_INTEGER).all():
        return text.astype(np.int64)
    return text


def file_chunks(path, reader: dict, chunk_rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
    """A log in chunks, IDs as read (integer columns as int64, anything else as text): whether they are
    integers is decided over every process's IDs (recvae.split.sharded)."""
    return iter_interactions(path, chunk_rows=chunk_rows, id_kinds={"user": "as_read", "item": "as_read"}, **reader)


@dataclass(frozen=True)
class UserRows:
    """Some rows of a users x items training matrix that no process holds whole: ``matrix`` holds the rows
    ``rows`` (increasing global row indices) of a matrix of ``n_users`` rows. ``item_sums`` (column sums)
    and ``item_users`` (users per item) are the whole matrix's, which is what a model learns its
    popularity and a sampled softmax its proposal from. ``user_activity``: the whole matrix's users per
    history length (what ``sample`` draws lengths from), where ``gathered_rows`` counted them; None once
    the rows change (side-feature columns, cold items), which the Trainer gathers again."""

    matrix: sp.csr_matrix
    rows: np.ndarray
    n_users: int
    nnz: int
    item_sums: np.ndarray
    item_users: np.ndarray
    user_activity: np.ndarray | None = None

    def __post_init__(self):
        if len(self.rows) != self.matrix.shape[0] or (np.diff(self.rows) <= 0).any():
            raise ValueError("rows must be increasing, one per row of matrix")
        if len(self.item_sums) != self.matrix.shape[1] or len(self.item_users) != self.matrix.shape[1]:
            raise ValueError("item_sums and item_users need one entry per item column")

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.matrix.shape[1]


def item_sums(user_items) -> np.ndarray:
    """Column sums of a training matrix, whole or held in parts (:class:`UserRows`)."""
    if isinstance(user_items, UserRows):
        return user_items.item_sums
    return np.asarray(user_items.sum(axis=0), dtype=np.float64).ravel()


def item_users(user_items) -> np.ndarray:
    """Users per item of a training matrix, whole or held in parts (:class:`UserRows`)."""
    if isinstance(user_items, UserRows):
        return user_items.item_users
    return np.asarray((user_items != 0).sum(axis=0), dtype=np.float64).ravel()


def user_activity(user_items) -> np.ndarray | None:
    """Users per history length (entry k: the users with k stored interactions) of a training matrix, whole
    or held in parts (:class:`UserRows`; None where its rows changed since they were counted)."""
    if isinstance(user_items, UserRows):
        return user_items.user_activity
    return np.bincount(np.diff(user_items.indptr))


def gathered_rows(matrix: sp.csr_matrix, rows: np.ndarray, n_users: int, gather) -> UserRows:
    """This process's ``rows`` of a matrix, with the whole matrix's column statistics and users per history
    length summed over every process's share (``gather(value)`` returns every process's value in rank order)."""
    parts = gather((item_sums(matrix), item_users(matrix), int(matrix.nnz), user_activity(matrix)))
    activity = np.zeros(max(len(p[3]) for p in parts), dtype=np.int64)
    for part in parts:
        activity[:len(part[3])] += part[3]
    return UserRows(matrix, np.asarray(rows, dtype=np.int64), n_users, sum(p[2] for p in parts),
                    np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0), activity)

"""The users x items matrix with the vocabularies that name its rows and columns."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, DataParameterError, as_typed, at_least, settle_kinds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preprocessing:
    """The paper's preprocessing, every step optional.

    Liang et al. keep ratings > 3.5 (``min_rating=4`` on integer stars) and users
    with at least 5 interactions; items are filtered before users, once.
    """

    min_rating: float | None = None
    min_user_interactions: int = 5
    min_item_interactions: int = 0
    merge_duplicates: bool = True

    def __post_init__(self):
        settle_kinds(self)
        at_least(0, min_user_interactions=self.min_user_interactions, min_item_interactions=self.min_item_interactions)


def preprocess(frame: pd.DataFrame, config: Preprocessing = Preprocessing(), source: str = "data") -> pd.DataFrame:
    """Merge duplicates (the latest wins), apply the rating threshold, then the item and user count filters."""
    if not isinstance(config, Preprocessing):  # preprocess(frame, 3.5) met .merge_duplicates on a float
        raise TypeError(f"config must be a Preprocessing, e.g. Preprocessing(min_rating=3.5), not "
                        f"{type(config).__name__}")
    before = len(frame)
    if "rating" in frame and (negative := int((frame["rating"] < 0).sum())):
        kept = config.min_rating is None or config.min_rating < 0
        log.warning("%s: %d rows have a rating below zero; %s", source, negative,
                    "they count as interactions like any other (set min_rating to drop them)" if kept
                    else f"min_rating={config.min_rating} drops them")
    if config.merge_duplicates:
        # The latest interaction wins when a pair repeats; file order stands in for time.
        if "timestamp" in frame:
            frame = frame.sort_values("timestamp", kind="stable")
        frame = frame.drop_duplicates(["user", "item"], keep="last")
    if config.min_rating is not None:
        if "rating" not in frame:
            raise DataParameterError("min_rating", config.min_rating, f"asked for, but {source} has no rating column")
        frame = frame.loc[frame["rating"] >= config.min_rating]
    if config.min_item_interactions > 1:
        counts = frame["item"].map(frame["item"].value_counts())
        frame = frame.loc[counts >= config.min_item_interactions]
    if config.min_user_interactions > 1:
        counts = frame["user"].map(frame["user"].value_counts())
        frame = frame.loc[counts >= config.min_user_interactions]
    if frame.empty:
        settings = ", ".join(f"{{{f.name}}} {as_typed(getattr(config, f.name))}" for f in dataclasses.fields(config))
        raise DataParameterError(None, None, f"{source}: no interaction left after preprocessing ({before} rows before; {settings})")
    log.info("%s: %d of %d rows kept after preprocessing", source, len(frame), before)
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Interactions:
    """Binary implicit feedback: a CSR users x items matrix and its vocabularies."""

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary

    def __post_init__(self):
        if self.matrix.shape != (len(self.users), len(self.items)):
            raise DataError(
                f"matrix shape {self.matrix.shape} does not match {len(self.users)} users x {len(self.items)} items"
            )

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, users: Vocabulary | None = None, items: Vocabulary | None = None
    ) -> Interactions:
        """Build from a frame with columns ``user`` and ``item`` and, where the log has one, ``rating``: the
        stored values (what a model with ``binarize=False`` sees; the others count every stored entry as 1).
        A (user, item) pair given twice stores the sum of its values (``preprocess`` keeps the latest row).

        Without vocabularies, the sorted distinct IDs become the indices; with them,
        an ID they lack is an error.
        """
        missing = {"user", "item"} - set(frame.columns)
        if missing:
            raise DataError(f"interaction frame lacks column(s) {sorted(missing)}")
        if frame.empty:
            raise DataError("interaction frame has no rows")
        if frame[["user", "item"]].isna().any().any():
            raise DataError("interaction frame has missing user or item IDs")
        if "rating" in frame:
            _check_ratings(frame["rating"])
        if users is None:
            rows, user_ids = pd.factorize(frame["user"], sort=True)
            users = Vocabulary(np.asarray(user_ids), "user")
        else:
            rows = users.index_of(frame["user"].to_numpy())
        if items is None:
            cols, item_ids = pd.factorize(frame["item"], sort=True)
            items = Vocabulary(np.asarray(item_ids), "item")
        else:
            cols = items.index_of(frame["item"].to_numpy())
        return cls(interaction_matrix(rows, cols, frame["rating"] if "rating" in frame else None,
                                      (len(users), len(items))), users, items)

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return self.matrix.nnz

    def fingerprint(self) -> str:
        """A hash of the matrix and IDs; equal logs give equal fingerprints."""
        digest = hashlib.sha256()
        for array in (self.matrix.indptr, self.matrix.indices):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        for vocab in (self.users, self.items):
            digest.update(repr(vocab.ids.tolist()).encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} interactions)"


def _check_ratings(ratings: pd.Series) -> None:
    """A frame's ratings are numbers, each given: text would fail deep in a conversion, and a missing one would
    be a NaN weight in training (a file's reader names the line instead)."""
    numbers = pd.to_numeric(ratings, errors="coerce")
    bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        first = ratings.index[np.flatnonzero(bad.to_numpy())[0]]
        raise DataError(f"interaction frame's rating column has {int(bad.sum())} value(s) that are not finite numbers "
                        f"(first {as_typed(ratings.loc[first])}, at index {as_typed(first)}): fill or drop them, or "
                        "drop the column to count every row as 1")


def interaction_matrix(rows: np.ndarray, cols: np.ndarray, ratings, shape: tuple[int, int]) -> sp.csr_matrix:
    """Users x items (float32 CSR): the ratings where given, else 1 per interaction (a repeated pair once)."""
    if ratings is None:
        matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix
    matrix = sp.csr_matrix((np.asarray(ratings, dtype=np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return matrix

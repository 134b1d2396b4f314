"""What a split is: a training matrix and held-out users, each a fold-in and a target part."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recvae.data.shard import UserRows
from recvae.data.vocab import Vocabulary


@dataclass(frozen=True)
class HeldOut:
    """Users scored by a model: it sees ``fold_in`` and is judged on ``target``.

    ``users`` are indices into the split's user vocabulary; row ``i`` of both
    matrices belongs to ``users[i]``. Every user here has at least one target item.
    """

    users: np.ndarray
    fold_in: sp.csr_matrix
    target: sp.csr_matrix

    def __post_init__(self):
        if self.fold_in.shape != self.target.shape or self.fold_in.shape[0] != len(self.users):
            raise ValueError("fold_in, target and users must have the same number of rows")

    def __len__(self) -> int:
        return len(self.users)

    def select(self, rows) -> HeldOut:
        return HeldOut(self.users[rows], self.fold_in[rows], self.target[rows])

    def __repr__(self) -> str:  # the dataclass's would print every user index and both matrices
        return f"HeldOut({len(self)} users, {self.fold_in.nnz} fold-in and {self.target.nnz} target interactions)"


@dataclass(frozen=True)
class Split:
    """Training interactions plus validation and test users, all over the same item columns."""

    train: sp.csr_matrix
    train_users: np.ndarray
    validation: HeldOut | None
    test: HeldOut
    users: Vocabulary
    items: Vocabulary
    params: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def fingerprint(self) -> str | None:
        """A hash of the training matrix, the held-out users' parts and the item IDs; None where no process
        holds the whole training matrix (a torchrun split, each rank holding its users' rows), whose
        model is then checked against the split its recorded data and split options rebuild."""
        if isinstance(self.train, UserRows):
            return None
        digest = hashlib.sha256()
        parts = [self.train, self.test.fold_in, self.test.target]
        if self.validation is not None:
            parts += [self.validation.fold_in, self.validation.target]
        for matrix in parts:
            for array in (matrix.indptr, matrix.indices):
                digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        digest.update(repr(self.items.ids.tolist()).encode())
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        val = len(self.validation) if self.validation is not None else 0
        return (
            f"{self.train.shape[0]} training users, {val} validation users, {len(self.test)} test users, "
            f"{self.n_items} items, {self.train.nnz} training interactions"
        )

    def __repr__(self) -> str:
        return f"Split({self.summary()}; {self.params})"


def holdout_mask(matrix: sp.csr_matrix, fraction: float, min_items: int, rng: np.random.Generator) -> np.ndarray:
    """Mark ``floor(fraction * n)`` random entries of each row with ``n >= min_items`` entries.

    Vectorised: one random key per entry, ranked within its row.
    """
    counts = np.diff(matrix.indptr)
    n_marked = np.where(counts >= min_items, np.floor(fraction * counts + 1e-9).astype(np.int64), 0)
    row_of = np.repeat(np.arange(matrix.shape[0]), counts)
    keys = rng.random(matrix.nnz)
    order = np.lexsort((keys, row_of))
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - matrix.indptr[row_of[order]]
    return rank < n_marked[row_of]


def split_rows(matrix: sp.csr_matrix, mask: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(entries not in mask, entries in mask) as two CSR matrices of the same shape."""
    kept = matrix.copy()
    kept.data = np.where(mask, 0, kept.data).astype(kept.dtype)
    kept.eliminate_zeros()
    taken = matrix.copy()
    taken.data = np.where(mask, taken.data, 0).astype(taken.dtype)
    taken.eliminate_zeros()
    return kept, taken


def make_heldout(users: np.ndarray, fold_in: sp.csr_matrix, target: sp.csr_matrix) -> HeldOut:
    """Keep only users with at least one target item: others have no defined metric."""
    has_target = np.diff(target.indptr) > 0
    return HeldOut(users[has_target], fold_in[has_target], target[has_target])

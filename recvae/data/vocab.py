"""External user/item IDs <-> contiguous row/column indices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recvae.errors import DataError


class Vocabulary:
    """An ordered set of external IDs; position ``i`` is index ``i`` of a matrix axis.

    IDs are integers or strings. Every output of recvae speaks the IDs, every
    matrix the indices.
    """

    def __init__(self, ids: Sequence | np.ndarray, name: str = "id"):
        index = pd.Index(np.asarray(ids))
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"{name} vocabulary has duplicate ID {dup!r}")
        self._index = index
        self.name = name

    @property
    def ids(self) -> np.ndarray:
        return self._index.to_numpy()

    def __len__(self) -> int:
        return len(self._index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, {len(self)} ids)"

    def index_of(self, ids, missing: str = "raise") -> np.ndarray:
        """Indices of ``ids``; with ``missing="ignore"`` unknown IDs get -1."""
        positions = self._index.get_indexer(pd.Index(np.atleast_1d(np.asarray(ids))))
        if missing == "raise" and (positions < 0).any():
            unknown = np.atleast_1d(np.asarray(ids))[positions < 0]
            raise DataError(
                f"unknown {self.name} ID {unknown.tolist()[0]!r}"
                + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else "")
            )
        return positions

    def id_of(self, indices) -> np.ndarray:
        return self.ids[np.asarray(indices)]

    def subset(self, indices) -> Vocabulary:
        return Vocabulary(self.ids[np.asarray(indices)], self.name)

    @property
    def kind(self) -> str:
        """"int" or "str": how the IDs are written out."""
        return "int" if np.issubdtype(self.ids.dtype, np.integer) else "str"

    def to_json(self) -> dict:
        values = self.ids.tolist() if self.kind == "int" else [str(x) for x in self.ids]
        return {"name": self.name, "kind": self.kind, "ids": values}

    @classmethod
    def from_json(cls, payload: dict) -> Vocabulary:
        try:
            kind, ids, name = payload["kind"], payload["ids"], payload["name"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"vocabulary JSON lacks field {exc}") from None
        if kind == "int":
            return cls(np.asarray(ids, dtype=np.int64), name)
        if kind == "str":
            return cls(np.asarray(ids, dtype=object), name)
        raise DataError(f"vocabulary JSON has unknown kind {kind!r}")

"""What ``recvae similar`` does: each asked item's nearest items by the model's own item representation, in
original IDs, names beside them when a table gives them, printed or written whole to CSV/TSV/Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recvae.data.readers import typed_ids
from recvae.errors import ParameterError, at_least, settle_kinds
from recvae.export.writer import FORMATS, write_whole
from recvae.io import claimed


@dataclass(frozen=True)
class SimilarSpec:
    """``items``: item IDs as a user types them (read as the model's IDs are: "1" is the integer ID 1), or
    ``("all",)``: every item the model scores."""

    model: str
    items: tuple[str | int, ...]
    out: str | None = None
    top_n: int = 10
    item_names: str | None = None  # a table of item ID → name (recvae.data.side.read_side_table)
    overwrite: bool = False

    def __post_init__(self):
        settle_kinds(self)
        at_least(1, top_n=self.top_n)
        if not self.items:
            raise ParameterError("items", ",".join(self.items), "name at least one item ID")
        if self.out is not None and Path(self.out).suffix.lower() not in FORMATS:
            raise ParameterError("out", self.out, "name a .csv, .tsv or .parquet file")


def similar_items_table(spec: SimilarSpec) -> pd.DataFrame:
    """The table ``Recommender.similar_df`` gives for ``spec``; written to ``spec.out`` (whole or not at all) when
    it names a file."""
    from recvae.models import Recommender

    if spec.out is not None:
        with claimed(spec.out, "the output", overwrite=spec.overwrite):
            return _written(_table(Recommender.load(spec.model), spec), spec.out)
    return _table(Recommender.load(spec.model), spec)


def _table(model, spec: SimilarSpec) -> pd.DataFrame:
    kind = model.items_.kind if model.items_ is not None else "str"
    items = None if spec.items == ("all",) else typed_ids(pd.Series(spec.items, dtype=object), kind)
    return model.similar_df(items, n=spec.top_n, item_names=spec.item_names)


def _written(frame: pd.DataFrame, out: str) -> pd.DataFrame:
    write_whole(out, {name: frame[name].to_numpy() for name in frame.columns})
    return frame

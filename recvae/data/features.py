"""Side features as a model reads them: a side table (``recvae.data.side.read_side_table``) encoded into one
row of numbers per user or item, with the encoding kept so that new users and items are encoded the same way.

Each column becomes one of three kinds, guessed from its values unless named:

- categorical (``F``, ``M``; MovieLens' age band and occupation codes): one-hot over the ``max_categories``
  most frequent values, the rest as "other";
- multi-valued (``Action|Comedy``): one indicator per value (the most frequent ``max_categories``);
- numeric (a count, a price, a year): standardised by the table's mean and standard deviation.

A year can be read from a title (``Toy Story (1995)``) as a numeric column ``year``. Every column also has a
"missing" indicator: an ID the table lacks, or an empty cell, sets it, and is counted, never dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.side import NAME_COLUMNS, aligned, read_side_table
from recvae.data.readers import normalised_name
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ParameterError, settled, whole_at_least

log = logging.getLogger(__name__)

KINDS = ("categorical", "multi", "numeric")
MULTI_SEPARATOR = "|"
FEW_NUMBERS = 30  # a numeric-looking column with at most this many values is a code (age band, occupation)
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class FeatureColumn:
    """One column's encoding: its ``kind``, its known ``categories`` (categorical, multi) or the ``mean`` and
    ``std`` that standardise it (numeric)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    def names(self) -> list[str]:
        """The encoded features' names, in order: each category (and "other"), or the value; then "missing"."""
        if self.kind == "numeric":
            values = [self.name]
        else:
            values = [f"{self.name}={c}" for c in self.categories] + ([f"{self.name}=other"] * (self.kind == "categorical"))
        return values + [f"{self.name} missing"]


@dataclass(frozen=True)
class FeatureEncoding:
    """How a side table becomes features: ``columns`` in order, and whether a ``year`` came from ``title_column``."""

    columns: tuple[FeatureColumn, ...]
    title_column: str | None = None

    @property
    def width(self) -> int:
        return sum(len(c.names()) for c in self.columns)

    def names(self) -> list[str]:
        return [name for column in self.columns for name in column.names()]

    def to_json(self) -> dict:
        return {"columns": [asdict(c) for c in self.columns], "title_column": self.title_column}

    @classmethod
    def from_json(cls, payload: dict) -> FeatureEncoding:
        return cls(tuple(FeatureColumn(**{**c, "categories": tuple(c["categories"])}) for c in payload["columns"]),
                   payload.get("title_column"))

    def transform(self, table: pd.DataFrame | None, vocabulary: Vocabulary, some_known: bool = True,
                  warn: bool = True) -> sp.csr_matrix:
        """The features of every ID of ``vocabulary`` (rows in its order, float32); IDs the table lacks get the
        missing indicators. Values the encoding never saw count as "other" (categorical) or are left out (multi).
        ``some_known=False`` accepts a table that has none of the IDs, ``warn=False`` leaves the count of IDs
        without a row to the caller (``recvae.data.side.aligned``)."""
        if table is None:  # no side data at all: every feature missing
            cells = {column.name: np.full(len(vocabulary), None, dtype=object) for column in self.columns}
            source = "no side table"
        else:
            table = _with_year(table, self.title_column)
            source = table.attrs.get("source", "the side table")
            lacking = [c.name for c in self.columns if c.name not in table]
            if lacking:
                raise DataError(f"{source}: no column {lacking[0]!r}, which the features were fitted with")
            cells = {c.name: aligned(table[c.name].astype(object), vocabulary, source, None, some_known, warn)
                     for c in self.columns}
        blocks = [_encode_column(column, cells[column.name], source) for column in self.columns]
        return sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else sp.csr_matrix((len(vocabulary), 0))


def _typed_index(table: pd.DataFrame, vocabulary: Vocabulary) -> np.ndarray:
    from recvae.data.readers import typed_ids

    return typed_ids(pd.Series(table.index.to_numpy(dtype=object)), vocabulary.kind)


def _with_year(table: pd.DataFrame, title_column: str | None) -> pd.DataFrame:
    if title_column is None:
        return table
    if title_column not in table:
        raise DataError(f"{table.attrs.get('source', 'the side table')}: no column {title_column!r} to read a year from")
    years = table[title_column].astype(str).str.extract(YEAR_IN_TITLE, expand=False)
    out = table.assign(year=years)
    out.attrs.update(table.attrs)
    return out


def fit_features(table: pd.DataFrame, vocabulary: Vocabulary, columns: tuple[str, ...] | None = None,
                 numeric: tuple[str, ...] = (), year_from_title: bool = False,
                 max_categories: int = 50) -> FeatureEncoding:
    """The encoding of ``table``'s ``columns`` (default: every column but names and titles) for the IDs of
    ``vocabulary``: kinds guessed from the values, except ``numeric`` ones, which must hold numbers (a cell
    that is not is refused, naming the file, line and column). ``year_from_title``: a numeric ``year`` column
    read from the title column's "(1995)". Logs how many of the vocabulary's IDs the table lacks and how many
    of its rows name IDs outside it."""
    columns = settled("columns", tuple[str, ...] | None, columns)  # a text would be read as its letters' columns
    numeric = settled("numeric", tuple[str, ...], numeric)
    whole_at_least(1, max_categories=max_categories)
    source = table.attrs.get("source", "the side table")
    title = None
    if year_from_title:
        title = next((c for c in table.columns if normalised_name(c) in NAME_COLUMNS), None)
        if title is None:
            raise ParameterError("year_from_title", True, f"needs a title column, and {source} has none "
                                 f"(columns: {list(table.columns)})")
        table = _with_year(table, title)
    names = list(columns) if columns is not None else [c for c in table.columns if normalised_name(c) not in NAME_COLUMNS]
    unknown = [c for c in [*names, *numeric] if c not in table.columns]
    if unknown:
        raise DataError(f"{source}: no column {unknown[0]!r}; the columns are {list(table.columns)}")
    positions = vocabulary.index_of(_typed_index(table, vocabulary), missing="ignore")
    known = positions >= 0
    if not known.any():
        raise DataError(f"{source}: none of its {len(table)} IDs is one of the {len(vocabulary)} {vocabulary.name}s")
    log.info("%s: %d of %d %ss have no row (their features: missing); %d rows name no %s of the log (ignored)",
             source, len(vocabulary) - int(known.sum()), len(vocabulary), vocabulary.name, int((~known).sum()),
             vocabulary.name)
    rows = table[known]
    first_line = table.attrs.get("first_line", 1)
    fitted = []
    for name in names:
        values = rows[name]
        kind = "numeric" if name in numeric else _guess_kind(values)
        if kind == "numeric":
            numbers = _numbers(table[name], source, name, first_line)[known]
            finite = numbers[~np.isnan(numbers)]
            fitted.append(FeatureColumn(name, kind, mean=float(finite.mean()) if len(finite) else 0.0,
                                        std=float(finite.std()) if len(finite) > 1 and finite.std() > 0 else 1.0))
        else:
            cells = values.dropna().astype(str)
            if kind == "multi":
                cells = cells.str.split(MULTI_SEPARATOR, regex=False).explode().str.strip()
            counts = cells[cells != ""].value_counts(sort=True)
            kept = sorted(counts.index[:max_categories], key=lambda v: (-counts[v], v))
            if len(counts) > max_categories:
                log.info("%s: column %r has %d values; the %d most frequent are kept, the rest are 'other'",
                         source, name, len(counts), max_categories)
            fitted.append(FeatureColumn(name, kind, categories=tuple(kept)))
    return FeatureEncoding(tuple(fitted), title)


def _guess_kind(values: pd.Series) -> str:
    cells = values.dropna().astype(str)
    if cells.str.contains(MULTI_SEPARATOR, regex=False).any():
        return "multi"
    numbers = pd.to_numeric(cells, errors="coerce")
    if len(cells) and numbers.notna().all() and cells.nunique() > FEW_NUMBERS:
        return "numeric"
    return "categorical"


def _numbers(values: pd.Series, source: str, column: str, first_line: int) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: line {row + first_line}, column {column!r}: {values.iloc[row]!r} is not a number")
    return numbers.to_numpy(dtype=np.float64)


def _encode_column(column: FeatureColumn, cells: np.ndarray, source: str) -> sp.csr_matrix:
    """One column's block (IDs x its features) from its cells in vocabulary order (None: no such cell)."""
    width = len(column.names())
    n = len(cells)
    missing = np.array([c is None or (isinstance(c, float) and np.isnan(c)) or str(c).strip() == "" for c in cells])
    rows, cols, vals = [np.flatnonzero(missing)], [np.full(int(missing.sum()), width - 1)], [np.ones(int(missing.sum()))]
    present = np.flatnonzero(~missing)
    if column.kind == "numeric":
        numbers = pd.to_numeric(pd.Series(cells[present], dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(numbers).any():
            raise DataError(f"{source}: column {column.name!r} holds {cells[present][np.isnan(numbers)][0]!r}, not a number")
        rows.append(present), cols.append(np.zeros(len(present), int)), vals.append((numbers - column.mean) / column.std)
    else:
        index = {c: i for i, c in enumerate(column.categories)}
        for row in present:
            values = (str(cells[row]).split(MULTI_SEPARATOR) if column.kind == "multi" else [str(cells[row])])
            hits = [index[v.strip()] for v in values if v.strip() in index]
            if column.kind == "categorical" and not hits:
                hits = [len(column.categories)]  # "other"
            rows.append(np.full(len(hits), row)), cols.append(np.array(hits, int)), vals.append(np.ones(len(hits)))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, width),
                         dtype=np.float32)


def encode_item_table(path, items: Vocabulary) -> tuple[sp.csr_matrix, FeatureEncoding]:
    """The items' side table at ``path`` (``recvae.data.side.read_side_table``) encoded for ``items``: every
    column but names and titles (MovieLens' genres), and a ``year`` read from the title where the table has a
    title column (a film's year is in MovieLens' titles, and a new film's is known the day it appears)."""
    table = read_side_table(path)
    has_title = any(normalised_name(c) in NAME_COLUMNS for c in table.columns)
    encoding = fit_features(table, items, year_from_title=has_title)
    return encoding.transform(table, items), encoding

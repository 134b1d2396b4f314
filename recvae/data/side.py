"""Side information: tables keyed by a user or item ID, as their publishers write them.

MovieLens' headerless ``movies.dat`` (``MovieID::Title::Genres``, ISO-8859-1) and ``users.dat``
(``UserID::Gender::Age::Occupation::Zip-code``) are read by their names; any other CSV/TSV (``movies.csv``,
a two-column ID → name list, a feature table) by its header, or without one as ID then values. One reader
serves item names beside recommendations, the latent-space report's features and the conditional models.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recvae.data.readers import ALIASES, guess_separator, normalised_name, open_bytes, typed_ids
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError

log = logging.getLogger(__name__)

# Headerless layouts known by file name (compression suffixes aside), with the encoding their publisher uses.
KNOWN_LAYOUTS = {
    "movies.dat": (("item", "title", "genres"), "latin-1"),
    "users.dat": (("user", "gender", "age", "occupation", "zip"), "latin-1"),
}
NAME_COLUMNS = ("title", "name", "itemname", "moviename", "artistname", "productname", "label")
_HEADER_WORDS = set().union(*ALIASES.values(), NAME_COLUMNS, {"id", "genres", "genre", "gender", "age", "occupation",
                                                             "zip", "zipcode", "category", "categories", "year"})


def read_side_table(path: str | Path, key: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """The table at ``path`` indexed by its ID column (``key``; left out, the column whose header names a user
    or an item, else the first), every other column as text. IDs must be unique: a repeated one is refused
    naming both lines. ``encoding``: of the text; default the layout's own (MovieLens' .dat files) or UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is a directory, expected a table")
    layout, layout_encoding = KNOWN_LAYOUTS.get(_plain_name(path), (None, None))
    text = _decoded(path, encoding or layout_encoding or "utf-8")
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first.strip():
        raise DataError(f"{path}: the file is empty")
    sep = guess_separator(path, first)
    if len(sep) > 1:
        text, first, sep = text.replace(sep, "\t"), first.replace(sep, "\t"), "\t"
    fields = first.split(sep)
    header = layout is None and any(normalised_name(f) in _HEADER_WORDS for f in fields)
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None, dtype=str,
                            keep_default_na=False, na_values=[""], skip_blank_lines=True, engine="c")
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse the table ({str(exc).strip()})") from None
    if not header:
        names = layout or ("id", *(f"column_{i}" for i in range(2, len(fields) + 1)))
        if len(names) != table.shape[1]:
            raise DataError(f"{path}: expected {len(names)} fields per line ({', '.join(names)}), found {table.shape[1]}")
        table.columns = list(names)
    return _keyed(path, table, key, first_line=2 if header else 1)


def _plain_name(path: Path) -> str:
    name = path.name.lower()
    return re.sub(r"\.(gz|bz2|xz)$", "", name)


def _decoded(path: Path, encoding: str) -> str:
    try:
        with open_bytes(path) as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid {encoding}; set {{encoding}} to the file's, "
                        "e.g. latin-1") from None
    except LookupError:
        raise DataError(f"{path}: {encoding!r} is not a text encoding Python knows") from None


def _keyed(path: Path, table: pd.DataFrame, key: str | None, first_line: int) -> pd.DataFrame:
    columns = [str(c) for c in table.columns]
    if key is not None:
        found = [c for c in columns if c == key] or [c for c in columns if normalised_name(c) == normalised_name(key)]
        if not found:
            raise DataError(f"{path}: no column {key!r} to key the table by; the columns are {columns}")
        key = found[0]
    else:
        ids = ALIASES["user"] | ALIASES["item"] | {"id"}
        key = next((c for c in columns if normalised_name(c) in ids), columns[0])
    values = table[key]
    if values.isna().any():
        line = int(np.flatnonzero(values.isna().to_numpy())[0]) + first_line
        raise DataError(f"{path}: line {line} has no ID in column {key!r}")
    repeated = values.duplicated(keep=False).to_numpy()
    if repeated.any():
        lines = np.flatnonzero(repeated)[:2] + first_line
        raise DataError(f"{path}: ID {values.iloc[lines[0] - first_line]!r} appears twice (lines {lines[0]} and "
                        f"{lines[1]}); a side table has one row per ID")
    keyed = table.set_index(key)
    keyed.attrs.update(source=str(path), first_line=first_line)  # where each row came from, for errors
    return keyed


def item_names(table: pd.DataFrame) -> pd.Series:
    """The name column of a side table: one headed title or name (any case), else its first column."""
    if table.shape[1] == 0:
        raise DataError("the table has an ID column only: there is no name to show")
    named = [c for c in table.columns if normalised_name(c) in NAME_COLUMNS]
    return table[named[0] if named else table.columns[0]]


def aligned(values: pd.Series, vocabulary: Vocabulary, source: str, missing: object = None,
            some_known: bool = True, warn: bool = True) -> np.ndarray:
    """``values`` (indexed by ID as read) in the order of ``vocabulary``; an ID the table lacks gets ``missing``.
    The table's IDs are typed as the vocabulary's (the text "1" is the integer ID 1 of a log read with integers).
    ``some_known``: a table naming none of the vocabulary's IDs is refused (another table, or IDs of another
    kind); False for a vocabulary that may well be all new (a block of users being scored). ``warn``: log how
    many IDs have no row (False where the caller counts them itself)."""
    ids = typed_ids(pd.Series(values.index.to_numpy(dtype=object)), vocabulary.kind)
    positions = vocabulary.index_of(ids, missing="ignore")
    out = np.full(len(vocabulary), None, dtype=object)
    known = positions >= 0
    out[positions[known]] = values.to_numpy(dtype=object)[known]
    absent = np.array([v is None for v in out])
    if not known.any() and some_known:
        raise DataError(f"{source}: none of its {len(values)} IDs is one of the model's {len(vocabulary)} "
                        f"{vocabulary.name}s (e.g. {values.index[0]!r} there, {vocabulary.ids[0]!r} in the model)")
    if absent.any() and warn:
        log.warning("%s: %d of the model's %d %ss have no row there", source, int(absent.sum()), len(vocabulary),
                    vocabulary.name)
    out[absent] = missing
    return out


GENRE_COLUMNS = ("genres", "genre", "category", "categories")


def item_genres(table: pd.DataFrame | None, items: Vocabulary) -> list[set]:
    """Each of ``items``' genres (a set; empty where the table has none, or no genre column) from a side
    table's genres column, multi-valued as MovieLens writes it (``Action|Comedy``)."""
    column = None if table is None else next((c for c in table.columns if c.lower() in GENRE_COLUMNS), None)
    if column is None:
        return [set() for _ in range(len(items))]
    raw = aligned(table[column].astype(object), items, "item features", missing="")
    return [set(str(g).split("|")) - {"", "(no genres listed)"} for g in raw]


def read_item_names(path: str | Path, items: Vocabulary, encoding: str | None = None) -> np.ndarray:
    """Each of ``items``' name from the table at ``path`` ("" where it has none), in the vocabulary's order."""
    return aligned(item_names(read_side_table(path, encoding=encoding)), items, str(path), missing="")


def names_for(items: Vocabulary, item_names) -> np.ndarray | None:
    """Names in ``items``' order from what a caller gave: a table's path, a Series or mapping ID → name, or an
    array already in that order; None stays None."""
    if item_names is None or isinstance(item_names, np.ndarray):
        if item_names is not None and len(item_names) != len(items):
            raise DataError(f"item_names has {len(item_names)} names for {len(items)} items")
        return item_names
    if isinstance(item_names, (str, Path)):
        return read_item_names(item_names, items)
    series = item_names if isinstance(item_names, pd.Series) else pd.Series(dict(item_names))
    return aligned(series.astype(object), items, "item_names", missing="")

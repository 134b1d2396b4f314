"""Read interaction logs (CSV/TSV/any delimiter, MovieLens, Parquet; gzip as is) into a tidy frame.

The frame has the columns ``user`` and ``item`` and, where the file has them,
``rating`` and ``timestamp``. Every problem with the file is raised as a
:class:`~recvae.errors.DataError` naming the file, the line or column and what
was expected.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recvae.errors import DataError, ParameterError

log = logging.getLogger(__name__)
progress_log = logging.getLogger("recvae.progress")  # what the user sees unless --quiet

ROLES = ("user", "item", "rating", "timestamp")

# Header names recognised without being told; compared lower-cased, without "_", "-" and spaces.
ALIASES = {
    "user": {"user", "userid", "uid", "users", "customer", "customerid", "visitorid", "member"},
    "item": {"item", "itemid", "iid", "items", "movie", "movieid", "product", "productid", "sid",
             "song", "songid", "track", "trackid", "article", "articleid", "book", "bookid", "isbn",
             "artist", "artistid", "album", "albumid", "business", "businessid", "restaurant", "venue", "venueid",
             "place", "placeid", "poi", "game", "gameid", "app", "appid", "anime", "animeid", "recipe", "recipeid",
             "video", "videoid", "show", "showid", "post", "postid", "news", "newsid", "repo", "repoid", "asin",
             "sku", "course", "courseid", "job", "jobid", "event", "eventid", "photo", "photoid"},
    "rating": {"rating", "ratings", "score", "weight", "value", "count", "counts", "plays", "playcount",
               "listens", "listencount", "clicks", "views", "stars", "frequency", "freq", "quantity", "qty"},
    "timestamp": {"timestamp", "time", "ts", "datetime", "date", "unixtime"},
}

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SNIFF_ORDER = ("::", "\t", ",", ";", "|", " ")
_PARQUET_SUFFIXES = {".parquet", ".pq"}


def normalised_name(name: str) -> str:
    """A header's name as compared: case, spaces, _ and - ignored, and quotes (recvae's own CSVs quote text)."""
    return re.sub(r"[\s_\-\"']", "", str(name)).lower()


def is_parquet(path: Path) -> bool:
    """Whether the reader takes ``path`` for Parquet (by its suffix, .parquet or .pq)."""
    return _inner_suffix(path) in _PARQUET_SUFFIXES


def _inner_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _OPENERS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def open_bytes(path: Path):
    opener = _OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")


def _read_text_bytes(path: Path) -> bytes:
    try:
        with open_bytes(path) as handle:
            return handle.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from None


def guess_separator(path: Path, first: str) -> str:
    suffix = _inner_suffix(path)
    if suffix == ".dat" and "::" in first:
        return "::"
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".tab"):
        return "\t"
    for sep in _SNIFF_ORDER:
        if sep in first:
            return sep
    raise DataError(
        f"{path}: line 1 {first[:80]!r} has no delimiter recvae knows "
        f"({', '.join(repr(s) for s in _SNIFF_ORDER)}); pass sep=..."
    )


def _say_columns(path: Path, names: list, header: bool, cols: dict) -> None:
    """One line naming the column taken for each role, so a guess the user did not intend shows at once."""
    def which(role):
        if role not in cols:
            return f"{role}: none"
        return f"{role} = column {names[cols[role]]!r}" if header else f"{role} = column {cols[role] + 1}"
    progress_log.info("%s: %s", path, ", ".join(which(role) for role in ROLES))


def resolve_columns(path: Path, names: list, header: bool, requested: dict) -> dict[str, int]:
    """Which column position of the file holds each role (user, item, rating, timestamp): as ``requested`` (a name,
    a position, or False to ignore it), else by the header's common names, else by position without a header."""
    resolved: dict[str, int] = {}
    for role in ROLES:
        want = requested.get(role)
        if want is None or want is False:  # False: ignore the column (a bool is an int, not a position)
            continue
        if isinstance(want, (int, np.integer)):
            if not 0 <= want < len(names):
                raise DataError(f"{path}: {role} column {want} does not exist; the file has {len(names)} columns")
            resolved[role] = int(want)
        else:
            if not header:
                raise DataError(f"{path}: {role} column {want!r} named, but the file has no header; give a position")
            matches = [i for i, n in enumerate(names) if str(n) == want] or [
                i for i, n in enumerate(names) if normalised_name(n) == normalised_name(want)]
            if not matches:
                raise DataError(f"{path}: no column {want!r} for {role}; the columns are {[str(n) for n in names]}")
            resolved[role] = matches[0]
    for position, role in enumerate(ROLES):
        if role in resolved or requested.get(role) is False:
            continue
        if header:
            found = [i for i, n in enumerate(names) if normalised_name(n) in ALIASES[role] and i not in resolved.values()]
            if found:
                resolved[role] = found[0]
        elif position < len(names) and position not in resolved.values():
            resolved[role] = position
    for role in ("user", "item"):
        if role not in resolved:
            raise DataError(
                f"{path}: cannot tell which column holds the {role} IDs; the columns are "
                f"{[str(n) for n in names]}; pass {role}=NAME or {role}=POSITION"
            )
    return resolved


# An ID that spells an integer as str(int) writes it (no sign but "-", no leading zero): it is read as one.
INTEGER_ID = r"-?(?:0|[1-9]\d{0,17})"
# The same integer written with a decimal point, as a spreadsheet exports it ("12.0"): read as that integer
# when every ID of the column spells an integer one way or the other.
INTEGER_AS_DECIMAL_ID = INTEGER_ID + r"\.0+"

_MISSING_WORDS = {"nan", "na", "n/a", "null", "none"}


def typed_ids(values: pd.Series, kind: str = "auto") -> np.ndarray:
    """IDs typed as ``kind``: "str"; "int" (int64, or an object array where some ID is no
    integer, so a lookup in an integer vocabulary finds it unknown); "auto": int64 when
    every ID spells an integer, strings otherwise; or "as_read": int64 from an integer column,
    the text otherwise (a chunk's IDs, to be typed with every other chunk's)."""
    if pd.api.types.is_float_dtype(values) and (values == values.round()).all():
        values = values.astype(np.int64)
    if pd.api.types.is_integer_dtype(values) and kind != "str":
        return values.to_numpy(dtype=np.int64)
    # A text ID is what the file says, spaces included (a quoted " spaced " ID keeps them); only a number's
    # surrounding spaces are insignificant, so " 12" and "12" are one integer ID.
    raw = values.astype(str)
    if kind in ("str", "as_read"):
        return raw.to_numpy(dtype=object)
    text = raw.str.strip()
    is_int = text.str.fullmatch(INTEGER_ID).to_numpy()
    written_as_float = text.str.fullmatch(INTEGER_AS_DECIMAL_ID).to_numpy()
    spelled = is_int | written_as_float

    def integers(ids: pd.Series) -> np.ndarray:
        return (ids.str.replace(r"\.0+$", "", regex=True) if written_as_float.any() else ids).astype(np.int64).to_numpy()

    if spelled.all():
        if written_as_float.any():
            # "1" and "1.0" in one integer column are one ID (a spreadsheet's export), not two.
            log.warning("%d IDs written with a decimal point (e.g. %r) are read as the integers they spell",
                        int(written_as_float.sum()), text[written_as_float].iloc[0])
        return integers(text)
    if kind == "int":
        # Looked up among integer IDs, each value is read alone: one that spells an integer ("12.0" included) is
        # that integer wherever it lies, so the answer does not hang on which other IDs share its chunk.
        mixed = raw.to_numpy(dtype=object)
        mixed[spelled] = integers(text[spelled])
        return mixed
    return raw.to_numpy(dtype=object)


def read_interactions(
    path: str | Path,
    *,
    user: str | int | None = None,
    item: str | int | None = None,
    rating: str | int | None | bool = None,
    timestamp: str | int | None | bool = None,
    sep: str | None = None,
    header: bool | None = None,
    skip_bad_lines: bool = False,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read an interaction log into a frame with columns user, item[, rating][, timestamp].

    Parameters
    ----------
    path
        CSV/TSV/TXT with any delimiter, MovieLens ``ratings.dat`` (``::``) or
        ``ratings.csv``, or Parquet; ``.gz``, ``.bz2`` and ``.xz`` are read as they are.
    user, item, rating, timestamp
        Column names (files with a header) or 0-based positions. Left out, they are
        found by common header names (``userId``, ``movieId``, ``rating``...) or, without
        a header, by position: user, item, rating, timestamp. ``False`` ignores a column.
    sep
        Field delimiter; guessed from the suffix or the first line when left out.
    header
        Whether line 1 is a header; guessed when left out (a header names a known column).
    skip_bad_lines
        Drop malformed lines instead of raising; the number dropped is logged and kept in
        ``frame.attrs["skipped_lines"]``.
    encoding
        Of a text file; default UTF-8 (UTF-16 when the file starts with its byte-order mark). Decoding
        is strict: a byte that is not valid in it stops the read, naming the line.
    """
    chunks = list(iter_interactions(
        path, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep, header=header,
        skip_bad_lines=skip_bad_lines, encoding=encoding,
    ))
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    frame.attrs["skipped_lines"] = sum(c.attrs["skipped_lines"] for c in chunks)
    if frame.attrs["skipped_lines"]:
        log.warning("%s: skipped %d malformed lines", path, frame.attrs["skipped_lines"])
    return frame


def iter_interactions(
    path: str | Path,
    *,
    chunk_rows: int | None = None,
    id_kinds: dict[str, str] | None = None,
    **options,
) -> Iterator[pd.DataFrame]:
    """:func:`read_interactions` in chunks of about ``chunk_rows`` lines, for logs too large to hold.

    ``id_kinds`` fixes how IDs are typed (``{"user": "int" | "str", "item": ...}``);
    left out, each chunk's IDs are typed on their own, which is safe only for one chunk.
    Each chunk carries its count of dropped lines in ``attrs["skipped_lines"]``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an interaction file")
    requested = {role: options.pop(role, None) for role in ROLES}
    unknown = set(options) - {"sep", "header", "skip_bad_lines", "encoding"}
    if unknown:
        raise TypeError(f"unknown reader option(s) {sorted(unknown)}")
    id_kinds = id_kinds or {}
    if is_parquet(path):
        yield from _parquet_chunks(path, requested, chunk_rows, id_kinds)
    else:
        encoding = text_encoding(path, options.get("encoding"))
        try:
            yield from _delimited_chunks(
                path, requested, options.get("sep"), options.get("header"), options.get("skip_bad_lines", False),
                chunk_rows, id_kinds, encoding,
            )
        except UnicodeDecodeError as exc:
            raise _decoding_error(path, encoding, exc) from None


def _parquet_chunks(path: Path, requested: dict, chunk_rows: int | None, id_kinds: dict) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        # pre_buffer=True (the default) keeps Arrow allocations growing row group after row group:
        # +110 MB over a 39M-row file, which breaks the export's flat-memory promise.
        parquet = pq.ParquetFile(path, pre_buffer=False)
        names = parquet.schema_arrow.names
        cols = resolve_columns(path, names, True, requested)
        _say_columns(path, names, True, cols)
        batches = parquet.iter_batches(batch_size=chunk_rows or max(parquet.metadata.num_rows, 1), columns=[names[p] for p in cols.values()])
        offset = 0
        for batch in batches:
            table = batch.to_pandas()
            raw = pd.DataFrame({role: table[names[pos]] for role, pos in cols.items()})
            # Parquet rows have no line numbers; report row numbers (1-based) instead.
            yield _clean(path, raw, np.arange(offset + 1, offset + len(raw) + 1), "row", False, id_kinds)
            offset += len(raw)
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if offset == 0:
        raise DataError(f"{path}: the file has no rows")


def text_encoding(path: Path, given: str | None = None) -> str:
    """The encoding a delimited log is read with, by both engines: ``given``, else UTF-16 or UTF-8-with-signature
    by the file's byte-order mark, else UTF-8."""
    return given or _bom_encoding(path) or "utf-8"


def _bom_encoding(path: Path) -> str | None:
    """UTF-16 or UTF-8-with-signature when the file starts with that byte-order mark."""
    try:
        with open_bytes(path) as handle:
            start = handle.read(4)
    except (OSError, EOFError, lzma.LZMAError):
        return None
    if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    return "utf-8-sig" if start[:3] == b"\xef\xbb\xbf" else None


def _decoding_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> DataError:
    """The first line the encoding cannot decode, found by reading the file again line by line."""
    number = "?"
    if not encoding.lower().replace("-", "").startswith("utf16"):
        with open_bytes(path) as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    line.decode(encoding)
                except UnicodeDecodeError as bad:
                    byte = line[bad.start:bad.start + 1].hex()
                    return DataError(f"{path}: line {number} is not valid {encoding} (byte 0x{byte} at column "
                                     f"{bad.start + 1}); set {{encoding}} to the file's, e.g. latin-1")
    return DataError(f"{path}: line {number}: not valid {encoding} ({exc.reason}); set {{encoding}} to the file's")


def _first_line_of(path: Path, encoding: str = "utf-8") -> str:
    try:
        with io.TextIOWrapper(open_bytes(path), encoding=encoding, newline="") as handle:
            for line in handle:
                text = line.strip("\r\n")
                if text.strip():
                    return text
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from None
    return ""


def _delimited_chunks(
    path: Path, requested: dict, sep: str | None, header: bool | None, skip_bad: bool,
    chunk_rows: int | None, id_kinds: dict, encoding: str = "utf-8",
) -> Iterator[pd.DataFrame]:
    source, sep, parse_sep, header = _delimited_source(path, requested, sep, header, encoding)
    counted = {"rows": 0, "skipped": []}
    with source, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reader = pd.read_csv(
                source, sep=r"\s+" if parse_sep == " " else parse_sep, header=0 if header else None, dtype=str,
                keep_default_na=False, na_values=[""], skip_blank_lines=False,
                on_bad_lines="warn" if skip_bad else "error", encoding=encoding, encoding_errors="strict",
                engine="c", chunksize=chunk_rows,
            )
            for frame in reader if chunk_rows else iter([reader]):
                new = [int(n) for w in caught for n in re.findall(r"Skipping line (\d+)", str(w.message))]
                caught.clear()
                clean = _clean_chunk(path, frame, requested, header, skip_bad, id_kinds, counted, new)
                if clean is not None:
                    yield clean
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty") from None
        except pd.errors.ParserError as exc:
            found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
            if found:
                want, line, saw = found.groups()
                raise DataError(
                    f"{path}: line {line}: expected {want} fields separated by {sep!r}, found {saw}"
                    " ({skip_bad_lines=True} drops such lines)"
                ) from None
            raise DataError(f"{path}: cannot parse the file ({str(exc).strip()})") from None
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise DataError(f"{path}: cannot read the file ({exc})") from None
    if counted["rows"] == 0:
        raise DataError(f"{path}: the file has a header but no rows" if header else f"{path}: the file is empty")


def delimited_layout(path: Path, requested: dict, sep: str | None = None, header: bool | None = None,
                     encoding: str = "utf-8") -> tuple[str, bool, list[str]]:
    """A delimited file's delimiter (as given or guessed from its first line), whether it has a header (guessed
    from the first line's names when not given), and the first line's fields: what the local reader and the
    Spark engine both read a log by."""
    try:
        first = _first_line_of(path, encoding)
    except UnicodeDecodeError as exc:
        raise _decoding_error(path, encoding, exc) from None
    except LookupError:  # before pandas gets it
        raise ParameterError("encoding", encoding, f"{path}: not a text encoding Python knows") from None
    if not first:
        raise DataError(f"{path}: the file is empty")
    sep = sep if sep is not None else guess_separator(path, first)
    fields = first.split(sep) if sep != " " else first.split()
    if header is None:
        named = {v for v in requested.values() if isinstance(v, str)}
        header = any(normalised_name(f) in set().union(*ALIASES.values()) for f in fields) or any(
            f.strip().strip("\"'") in named for f in fields)
    if len(fields) < 2:
        hint = [s for s in _SNIFF_ORDER if s != sep and s in first]
        raise DataError(
            f"{path}: line 1 has 1 field with delimiter {sep!r}; expected at least 2 (user, item)"
            + (f"; the line contains {hint[0]!r}: pass {{sep={hint[0]!r}}}" if hint else "")
        )
    return sep, header, fields


def _delimited_source(path: Path, requested: dict, sep: str | None, header: bool | None, encoding: str):
    """The open file, its delimiter as given or guessed, the delimiter the parser gets, and whether the file
    has a header (guessed from the first line's names when not given)."""
    sep, header, _ = delimited_layout(path, requested, sep, header, encoding)
    if len(sep) > 1:
        # pandas' C parser takes one-character delimiters only; MovieLens' "::" becomes a tab,
        # which needs the file in memory (MovieLens .dat files are small).
        text = _read_text_bytes(path).decode(encoding)
        if "\t" in text:
            raise DataError(f"{path}: the file mixes tabs with the delimiter {sep!r}")
        source, parse_sep = io.StringIO(text.replace(sep, "\t")), "\t"
    else:
        source, parse_sep = open_bytes(path), sep
    return source, sep, parse_sep, header


def _clean_chunk(path: Path, frame: pd.DataFrame, requested: dict, header: bool, skip_bad: bool, id_kinds: dict,
                 counted: dict, new_skipped: list[int]) -> pd.DataFrame | None:
    """One parsed chunk as the reader returns it, each row's file line number known (past skipped and
    blank lines and the header); None for a chunk of blank lines only."""
    counted["skipped"] = sorted(counted["skipped"] + new_skipped)
    lines = np.arange(len(frame)) + 1 + int(bool(header)) + counted["rows"]
    counted["rows"] += len(frame)
    for bad in counted["skipped"]:
        lines[lines >= bad] += 1
    blank = frame.isna().all(axis=1).to_numpy()
    frame, lines = frame.loc[~blank], lines[~blank]
    if frame.empty:
        return None
    names = list(frame.columns) if header else list(range(frame.shape[1]))
    cols = resolve_columns(path, names, bool(header), requested)
    if not counted.get("columns_said"):
        counted["columns_said"] = True
        _say_columns(path, names, bool(header), cols)
    raw = pd.DataFrame({role: frame.iloc[:, pos] for role, pos in cols.items()})
    clean = _clean(path, raw, lines, "line", skip_bad, id_kinds)
    clean.attrs["skipped_lines"] += len(new_skipped)
    return clean


def _clean(
    path: Path, raw: pd.DataFrame, lines: np.ndarray, where: str, skip_bad: bool, id_kinds: dict | None = None
) -> pd.DataFrame:
    """Check every value, convert IDs and numbers; bad rows raise, or are dropped when asked."""
    bad = np.zeros(len(raw), dtype=bool)
    problems = []
    for role in ROLES:
        if role not in raw:
            continue
        col = raw[role]
        empty = col.isna().to_numpy(copy=True)
        # Blank or "null"-like text can only hide in a text column; turning numbers into strings to
        # look for it would cost more than the rest of the read.
        if not pd.api.types.is_numeric_dtype(col.dtype):
            text = col.astype(str).str.strip()
            empty |= (text == "").to_numpy()
            if role in ("user", "item"):
                # A literal "NaN" or "null" in an ID column is a hole written out by some tool, not an ID.
                empty |= text.str.lower().isin(_MISSING_WORDS).to_numpy()
        if role in ("user", "item"):
            if empty.any():
                problems.append((empty, f"empty or missing {role} ID"))
            continue
        if role == "rating":
            numbers = pd.to_numeric(col.where(~empty), errors="coerce")
            wrong = numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
            if wrong.any():
                problems.append((wrong, "rating is not a number"))
            raw["rating"] = numbers.astype(np.float32)
        else:
            stamps = pd.to_numeric(col.where(~empty), errors="coerce")
            if stamps.isna().to_numpy()[~empty].any():
                stamps = pd.to_datetime(col.where(~empty), errors="coerce", utc=True)
            wrong = stamps.isna().to_numpy()
            if wrong.any():
                problems.append((wrong, "timestamp is neither a number nor a date"))
            raw["timestamp"] = stamps
    for mask, what in problems:
        if not skip_bad:
            first = int(np.flatnonzero(mask)[0])
            more = int(mask.sum()) - 1
            raise DataError(
                f"{path}: {where} {lines[first]}: {what} "
                f"(value {raw.iloc[first].to_dict()!r})"
                + (f"; {more} more such {where}s" if more else "")
                + ("" if where == "row" else " ({skip_bad_lines=True} drops such lines)")
            )
        bad |= mask
    if bad.any():
        raw = raw.loc[~bad]
    if raw.empty:
        raise DataError(f"{path}: no valid {where}s")
    id_kinds = id_kinds or {}
    out = pd.DataFrame({role: typed_ids(raw[role], id_kinds.get(role, "auto")) for role in ("user", "item")})
    for role in ("rating", "timestamp"):
        if role in raw:
            out[role] = raw[role].to_numpy()
    out.attrs["skipped_lines"] = int(bad.sum())
    return out


def read_lightgcn(path: str | Path) -> pd.DataFrame:
    """Read LightGCN's format, ``user item item ...`` per line, into a (user, item) frame."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    users, items = [], []
    try:
        text = _read_text_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decoding_error(path, "utf-8", exc) from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [int(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not f.lstrip("-").isdigit())
            raise DataError(f"{path}: line {number}: {bad!r} is not an integer ID (expected 'user item item ...')") from None
        users.extend([values[0]] * (len(values) - 1))
        items.extend(values[1:])
    if not users:
        raise DataError(f"{path}: the file has no interactions")
    return pd.DataFrame({"user": np.asarray(users, dtype=np.int64), "item": np.asarray(items, dtype=np.int64)})

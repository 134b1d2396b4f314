"""Write recommendation rows to Parquet or CSV so that the target appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recvae.errors import DataError
from recvae.io import process_alive, replace_durably, writing

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}


def _arrow_column(name: str, values: np.ndarray) -> pa.Array:
    """IDs as int64 or text; a 2-D array (a vector per row: embeddings) as a fixed-size list column, which
    Parquet keeps and pandas, Spark and vector databases read as arrays."""
    if name in ("user", "item"):
        return _arrow_ids(values)
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).ravel()), values.shape[1])
    return pa.array(values)


def _arrow_ids(values: np.ndarray) -> pa.Array:
    if values.dtype == object:
        return pa.array(values.astype(str), type=pa.string())
    return pa.array(values)


def _users_turned_text(schema: pa.Schema, later: pa.Schema) -> bool:
    """Whether a user column written as integers comes as text in ``later`` rows."""
    return ("user" in schema.names and "user" in later.names and pa.types.is_integer(schema.field("user").type)
            and pa.types.is_string(later.field("user").type))


def _remove_orphans(path: Path) -> None:
    """Delete temporary files that killed exports of ``path`` left (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            stale.unlink(missing_ok=True)


class AtomicRecommendationWriter:
    """Streams column blocks into a temporary file beside ``path``; ``commit`` renames it into place.

    Used as a context manager, an exception (or Ctrl-C) removes the temporary file and
    leaves whatever was at ``path`` untouched.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise DataError(f"{self.path}: unknown output format; use .parquet, .csv or .tsv")
        if not self.path.parent.is_dir():
            raise DataError(f"{self.path.parent}: no such folder for the output")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        _remove_orphans(self.path)
        self._writer = None
        self.rows = 0

    def __enter__(self) -> AtomicRecommendationWriter:
        return self

    def write(self, columns: dict[str, np.ndarray]) -> None:
        with writing(self.path, "the output"):
            self._write(columns)

    def _write(self, columns: dict[str, np.ndarray]) -> None:
        arrays = {k: _arrow_column(k, v) for k, v in columns.items()}
        table = pa.table(arrays)
        if self._writer is None:
            self.schema = table.schema
            self._writer = self._open(self.schema)
        elif table.schema != self.schema:
            if _users_turned_text(self.schema, table.schema):
                self._users_as_text(table.schema.field("user"))
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"user or item IDs change type part-way through the input ({exc})") from None
        self._writer.write_table(table)
        self.rows += table.num_rows

    def _users_as_text(self, text_users: pa.Field) -> None:
        """A log read in chunks types a chunk's IDs alone, so integer users may be followed by text ones (a
        whole-log read, and the Spark engine, make them all text): the rows written so far are copied, their
        users as text, into a new temporary file that the export goes on writing (streamed, once per export)."""
        written, written_schema = self.tmp, self.schema
        self._writer.close()
        self.tmp = self.tmp.with_name(f".{self.path.name}.{os.getpid()}.text.tmp")
        self.schema = written_schema.set(written_schema.get_field_index("user"), text_users)
        self._writer = self._open(self.schema)
        try:
            if self.format == "parquet":
                batches = pq.ParquetFile(written).iter_batches()
            else:
                batches = pacsv.open_csv(
                    written, parse_options=pacsv.ParseOptions(delimiter=self._delimiter, newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(column_types={f.name: f.type for f in written_schema}))
            for batch in batches:
                self._writer.write_table(pa.Table.from_batches([batch]).cast(self.schema))
        finally:
            written.unlink(missing_ok=True)

    @property
    def _delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    def _open(self, schema: pa.Schema):
        if self.format == "parquet":
            # Scores are nearly all distinct and their mantissas look random: a dictionary for them
            # is built, then abandoned (half the write time, a larger file), and Snappy spends a
            # fifth of the remaining write time without shrinking them.
            others = [name for name in schema.names if name != "score"]
            return pq.ParquetWriter(self.tmp, schema, use_dictionary=others,
                                    compression={**{name: "snappy" for name in others}, "score": "none"})
        return pacsv.CSVWriter(self.tmp, schema, write_options=pacsv.WriteOptions(delimiter=self._delimiter))

    def commit(self, empty_columns: dict[str, np.ndarray]) -> None:
        if self._writer is None:  # no row at all: still write a file with the columns
            self.write(empty_columns)
        with writing(self.path, "the output"):
            self._writer.close()
            self._writer = None
            replace_durably(self.tmp, self.path)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)


def write_whole(path: str | Path, columns: dict[str, np.ndarray]) -> None:
    """Columns already held whole (a table of similar items, item vectors, group lists) written to ``path``,
    appearing only when complete."""
    with AtomicRecommendationWriter(path) as writer:
        writer.write(columns)
        writer.commit(columns)

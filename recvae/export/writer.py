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


def _remove_orphans(path: Path) -> None:
    """Delete temporary files that killed exports of ``path`` left (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 : -len(".tmp")]
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
            if self.format == "parquet":
                # Scores are nearly all distinct and their mantissas look random: a dictionary for them
                # is built, then abandoned (half the write time, a larger file), and Snappy spends a
                # fifth of the remaining write time without shrinking them.
                others = [name for name in self.schema.names if name != "score"]
                self._writer = pq.ParquetWriter(
                    self.tmp, self.schema, use_dictionary=others,
                    compression={**{name: "snappy" for name in others}, "score": "none"},
                )
            else:
                options = pacsv.WriteOptions(delimiter="\t" if self.format == "tsv" else ",")
                self._writer = pacsv.CSVWriter(self.tmp, self.schema, write_options=options)
        elif table.schema != self.schema:
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"user or item IDs change type part-way through the input ({exc})") from None
        self._writer.write_table(table)
        self.rows += table.num_rows

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

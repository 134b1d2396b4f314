"""Batch top-N, embeddings and anomaly scores on Spark: the block steps of ``recvae recommend``, ``embed`` and
``score-users`` run by Spark's Python workers.

Needs ``pip install recvae[spark]`` (pyspark and Java). The histories are repartitioned by user and sorted
within each partition, so a user's rows arrive together; ``mapInPandas`` hands each worker its Arrow batches,
which are cut into blocks of whole users (a user cut by a batch boundary is carried into the next batch) and
scored by ``recommend_block``, the function the single-machine export calls. Each Python worker loads the
model once and keeps it for every partition it scores.
"""

from __future__ import annotations

import codecs
import dataclasses
import errno
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.readers import (INTEGER_AS_DECIMAL_ID, INTEGER_ID, delimited_layout, is_parquet, resolve_columns,
                                 text_encoding)
from recvae.data.side import names_for
from recvae.errors import DataError, ParameterError, whole_at_least
from recvae.export.embed import USER_COLUMNS, known_block
from recvae.export.stream import no_rating_column
from recvae.io import WriteError
from recvae.score.recommend import (ExportStats, RecommendOptions, UserSide, item_chunk_for, item_filter,
                                    recommend_block, whole_user_blocks)


@functools.lru_cache(maxsize=2)
def cached_model(model_dir: str):
    """The model a process scores with (a worker's, or the driver's), loaded once and kept while it lives."""
    from recvae.models import Recommender

    return Recommender.load(model_dir)


@functools.lru_cache(maxsize=2)
def cached_user_side(model_dir: str, user_features: str | None) -> UserSide | None:
    """A CVAE's users' table as a process reads it beside ``cached_model(model_dir)``: once, kept while it lives."""
    return UserSide.for_model(cached_model(model_dir), user_features)


class ExportCounters:
    """The counts the single-machine export reports (``ExportStats``), summed over Spark's Python workers by
    accumulators: read ``stats()`` once an action (the write) has scored the rows. A task Spark runs again (a
    lost executor, speculation) adds its counts again, as Spark's accumulators in transformations do."""

    def __init__(self, spark):
        context = spark.sparkContext
        self._counters = {name: context.accumulator(0) for name in ExportStats.__dataclass_fields__}

    def add(self, stats: ExportStats) -> None:
        """On a worker, or on the driver for what it counts itself."""
        for name, counter in self._counters.items():
            counter.add(getattr(stats, name))

    def stats(self) -> ExportStats:
        return ExportStats(**{name: counter.value for name, counter in self._counters.items()})


def recommend_spark(histories, model_dir: str, *, n: int = 100, include_seen: bool = False,
                    allow=None, deny=None, fallback: str | None = None, users_per_block: int = 1000,
                    partitions: int | None = None, score_memory_mb: float | None = None, item_names=None,
                    user_features: str | None = None, counters: ExportCounters | None = None):
    """A Spark DataFrame (user, item, rank, score[, fallback]): the top ``n`` items of every user in
    ``histories``, a Spark DataFrame with columns ``user`` and ``item`` (original IDs, as the model knows
    its items; other columns are ignored).

    The options are ``export_recommendations``'s: ``allow``/``deny`` are lists of item IDs, ``fallback=
    "popularity"`` gives users without a known item the most popular ones. ``model_dir`` must be readable
    by every executor (a local path under ``local[N]``, a shared or mounted filesystem on a cluster).
    ``partitions`` sets how many partitions the users are spread over (default: Spark's shuffle setting).
    ``score_memory_mb`` bounds a block's score memory on each worker (the catalogue scored in item chunks).
    ``item_names`` (a table's path, read on the driver, or a Series ID → name) adds a name column.
    ``user_features``: a CVAE's users' table (its path, readable by every executor as ``model_dir`` is): each
    Python worker reads it once and looks its block's users up by ID. ``counters``: an ``ExportCounters`` the
    workers add their blocks' counts to (users without a known item, interactions with unknown items, ...).
    """
    from pyspark.sql import types as T

    model = _driver_model(histories, model_dir, user_features, users_per_block, partitions)
    for name, items in (("allow", allow), ("deny", deny)):
        if isinstance(items, (str, bytes, os.PathLike)):  # each character would be an (unknown) item ID
            raise ParameterError(name, items, "expected a list of item IDs (export_spark reads them from a file)")
    catalogue = model.catalogue()
    allowed, unknown_filter_items = item_filter(model.items_, allow, deny)
    if counters is not None:
        counters.add(ExportStats(unknown_filter_items=unknown_filter_items))
    options = RecommendOptions(n=n, include_seen=include_seen, allowed_items=allowed, fallback=fallback,
                               batch_size=users_per_block,
                               item_chunk=None if score_memory_mb is None else item_chunk_for(score_memory_mb, users_per_block),
                               item_names=names_for(catalogue, item_names))
    # written as the model's catalogue (a CVAE's text IDs that all spell integers are written as integers)
    item_type = T.LongType() if catalogue.kind == "int" else T.StringType()

    def rows_of(worker_model, block: pd.DataFrame, side: UserSide | None) -> dict:
        out, stats = recommend_block(worker_model, block, dataclasses.replace(options, user_side=side))
        if counters is not None:
            counters.add(stats)
        return out

    return _map_user_blocks(histories, model_dir, user_features, users_per_block, partitions, rows_of,
                            _output_schema(histories.schema["user"].dataType, item_type, options))


def _driver_model(histories, model_dir: str, user_features: str | None, users_per_block, partitions):
    """The model as the driver reads it (checking the directory and reading the item IDs once), with the checks
    made before any Spark job: histories that are no Spark DataFrame, a block or partition count that is not a
    whole number from 1 (a worker would fail on it mid-job), a CVAE without its users' table, a model without
    item IDs, histories without a ``user`` or ``item`` column."""
    if not hasattr(histories, "mapInPandas"):
        raise TypeError(f"histories must be a Spark DataFrame, not a {type(histories).__module__}."
                        f"{type(histories).__name__} (spark.createDataFrame makes one; a pandas table is scored in "
                        "this process by model.recommend_df)")
    whole_at_least(1, users_per_block=users_per_block)
    if partitions is not None:
        whole_at_least(1, partitions=partitions)
    model = cached_model(str(model_dir))
    # a CVAE without its users' table is refused here
    cached_user_side(str(model_dir), None if user_features is None else str(user_features))
    if model.items_ is None:
        raise DataError(f"{model_dir}: the model does not know its item IDs; cannot read or write IDs")
    missing = {"user", "item"} - set(histories.columns)
    if missing:
        raise DataError(f"the histories DataFrame has no column {sorted(missing)} (it has {histories.columns})")
    return model


def _map_user_blocks(histories, model_dir: str, user_features: str | None, users_per_block: int,
                     partitions: int | None, rows_of, schema):
    """``histories`` repartitioned by user and sorted, so that a user's rows arrive together; each Python worker
    cuts its Arrow batches into blocks of whole users and turns each into rows (a dict of columns) with
    ``rows_of(model, block, side)``, the model and a CVAE's users' table loaded once per worker."""
    from pyspark.sql.functions import coalesce, col, lit

    model = cached_model(str(model_dir))
    integer_items = np.issubdtype(model.items_.ids.dtype, np.integer)
    # an item ID that is not an ID of the model's kind is an unknown item, as in the single-machine export
    unknown = int(model.items_.ids.min()) - 1 if integer_items else "\x00recvae: not an item"
    # a model that keeps values (binarize=False) sees the log's ratings, as in training and the local export
    rating = [col("rating").cast("float")] if "rating" in histories.columns and not model.config.binarize else []
    item = _item_ids(histories, integer_items)
    frame = histories.select(col("user"), coalesce(item, lit(unknown)).alias("item"), *rating)
    frame = frame.repartition(partitions, "user") if partitions else frame.repartition("user")
    frame = frame.sortWithinPartitions("user")
    directory, features = str(model_dir), None if user_features is None else str(user_features)

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        worker_model, side = cached_model(directory), cached_user_side(directory, features)
        for block in whole_user_blocks(frames, users_per_block):  # the block functions type the IDs as the model's
            yield pd.DataFrame(rows_of(worker_model, block, side))

    return frame.mapInPandas(score, schema)


def user_rows_spark(histories, model_dir: str, what: str, *, users_per_block: int = 1000,
                    partitions: int | None = None, user_features: str | None = None,
                    counters: ExportCounters | None = None):
    """A Spark DataFrame with a row per user of ``histories`` (as ``recommend_spark`` takes them) who has an item
    the model knows: ``what="embed"``: user, mean and std (the posterior's, where the model has one; arrays of
    float32), what ``recvae embed`` writes; ``what="score"``: user, score, reconstruction, kl, interactions and
    percentile (where the model keeps its training users' quantiles), what ``recvae score-users`` writes
    (without ``--neighbours``, which needs every user's position at once). ``counters``: users read, written
    and left out (no known item)."""
    from pyspark.sql import types as T

    if what not in USER_COLUMNS:
        raise ParameterError("what", what, f"must be one of {', '.join(USER_COLUMNS)}")
    model = _driver_model(histories, model_dir, user_features, users_per_block, partitions)
    columns_of = USER_COLUMNS[what]
    empty = columns_of(model, sp.csr_matrix((0, model.n_items_), dtype=np.float32), 1)  # refused before any job
    fields = [T.StructField("user", histories.schema["user"].dataType)]
    for name, values in empty.items():
        kind = (T.ArrayType(T.FloatType()) if values.ndim == 2 else T.LongType()
                if np.issubdtype(values.dtype, np.integer) else T.DoubleType())
        fields.append(T.StructField(name, kind))

    def rows_of(worker_model, block: pd.DataFrame, side: UserSide | None) -> dict:
        user_ids, history, stats = known_block(worker_model, block, side)
        if counters is not None:
            counters.add(stats)
        columns = columns_of(worker_model, history, users_per_block)
        return {"user": user_ids, **{k: list(v) if v.ndim == 2 else v for k, v in columns.items()}}

    return _map_user_blocks(histories, model_dir, user_features, users_per_block, partitions, rows_of,
                            T.StructType(fields))


# an ID that spells an integer, as the local reader reads one (recvae.data.readers.typed_ids), "1.0" included
SPELLED_INTEGER = f"^(?:{INTEGER_ID}|{INTEGER_AS_DECIMAL_ID})$"


def _spelled_integer(column):
    """The integer a text column spells where it spells one as the local reader reads it, else null; so "018"
    is no integer (the local reader keeps it as text: another ID than 18), where Spark's cast would make it 18."""
    from pyspark.sql.functions import regexp_replace, trim, when

    spelled = trim(column)
    return when(spelled.rlike(SPELLED_INTEGER), regexp_replace(spelled, r"\.0+$", "").cast("long"))


def _item_ids(histories, integer_items: bool):
    """The item column as the model's IDs: integers where the model's are (a text or fractional value that is
    not one is null, an unknown item), text otherwise."""
    from pyspark.sql import types as T
    from pyspark.sql.functions import col, floor, when

    item = col("item")
    if not integer_items:
        return item.cast("string")
    kind = histories.schema["item"].dataType
    if isinstance(kind, T.StringType):
        return _spelled_integer(item)
    if isinstance(kind, (T.FloatType, T.DoubleType, T.DecimalType)):
        return when(item == floor(item), item.cast("long"))
    return item.cast("long")


def _typed_users(frame):
    """The user column typed as the local reader types a log's users: integers where every ID spells one, the
    text otherwise ("00042" stays "00042"). Text IDs cost one pass over the log (as Spark's schema inference,
    which read "00042" as 42, did)."""
    from pyspark.sql import types as T
    from pyspark.sql.functions import col

    if not isinstance(frame.schema["user"].dataType, T.StringType):
        return frame
    if frame.where(_spelled_integer(col("user")).isNull()).limit(1).count():
        return frame
    return frame.withColumn("user", _spelled_integer(col("user")))


def _output_schema(user_type, item_type, options: RecommendOptions):
    """The rows' Spark schema: user, item, rank, score, then fallback and name where asked for."""
    from pyspark.sql import types as T

    fields = [T.StructField("user", user_type), T.StructField("item", item_type),
              T.StructField("rank", T.IntegerType()), T.StructField("score", T.FloatType())]
    if options.fallback is not None:
        fields.append(T.StructField("fallback", T.BooleanType()))
    if options.item_names is not None:
        fields.append(T.StructField("name", T.StringType()))
    return T.StructType(fields)


def export_spark(interactions: str, model_dir: str, out: str, *, allow_file: str | None = None,
                 deny_file: str | None = None, reading: dict | None = None, **options) -> ExportStats:
    """``recvae recommend --engine spark``: read a Parquet/CSV/TSV log with Spark, score it with
    ``recommend_spark`` (``options``) and write ``out`` (a Parquet directory) through Spark; returns the counts the
    local export returns (``ExportStats``; ``rows``: the rows written). ``reading``: how the log is read and
    Spark started (``spark_job``'s keywords)."""
    from recvae.export.export import _read_id_list

    model = cached_model(str(model_dir))
    kind = "int" if np.issubdtype(model.items_.ids.dtype, np.integer) else "str"
    allow = _read_id_list(allow_file, kind) if allow_file else None
    deny = _read_id_list(deny_file, kind) if deny_file else None
    return spark_job(interactions, model_dir, out, lambda frame, counters: recommend_spark(
        frame, model_dir, allow=allow, deny=deny, counters=counters, **options), **(reading or {}))


def spark_job(interactions: str, model_dir: str, out: str, build, *, master: str | None = None,
              user: str | int | None = None, item: str | int | None = None, rating: str | int | bool | None = None,
              sep: str | None = None, header: bool | None = None, encoding: str | None = None,
              min_rating: float | None = None, progress: bool | None = None, quiet: bool = False) -> ExportStats:
    """Read a Parquet/CSV/TSV log with Spark, turn it into rows with ``build(histories, counters)`` (a Spark
    DataFrame; ``counters``: an ``ExportCounters`` its workers add to) and write them to ``out`` (a Parquet
    directory); returns the counters' ``ExportStats``, ``rows`` counted in what was written.

    The columns, delimiter and header are found as the local reader finds them (``recvae.data.read_interactions``:
    ``user``, ``item``, ``rating`` a name, a position or None for the usual names; a delimited file's layout
    read from its first line; ``encoding`` None: UTF-8, or UTF-16 by its byte-order mark), before Spark starts.
    The output appears only when complete: Spark writes beside it and the finished directory is renamed.
    ``progress``: Spark's console progress bar (None: where stderr is a terminal). ``quiet``: a Spark this call
    starts logs errors only (its start-up lines and warnings go), and pyspark's FutureWarnings are not shown.
    """
    import os
    import shutil
    import sys
    import tempfile
    import warnings

    target = Path(out)
    if target.suffix != ".parquet":
        raise ParameterError("out", out, "the Spark engine writes a Parquet directory; name it *.parquet")
    source = Path(interactions)
    if not source.exists():
        raise DataError(f"{interactions}: no such file or directory")
    read_log = _log_reader(source, {"user": user, "item": item, "rating": rating, "timestamp": False}, sep, header,
                           encoding, min_rating)
    model = cached_model(str(model_dir))
    with warnings.catch_warnings():
        if quiet:  # pyspark's FutureWarning about pandas 3 on every job is neither a result nor an error
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark\.")
        spark = _start_spark(master, progress if progress is not None else sys.stderr.isatty(), quiet)
        try:  # typing a log's text user IDs reads it once, meeting a row the checks refuse
            frame = read_log(spark, with_rating=not model.config.binarize)  # the values such a model was trained on
        except Exception as exc:  # Py4J's and pyspark's own types
            raise spark_failure(exc, target) from None
        counters = ExportCounters(spark)
        result = build(frame, counters)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else "."))
        try:
            rows = _write(result, staging / "out", target)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(staging / "out", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    stats = counters.stats()
    stats.rows = rows  # counted in what was written: exact where a task ran twice
    return stats


# log4j2 at errors only, the driver's REPL logger included (else Spark prints "Setting default log level")
QUIET_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


VARIABLE = "LOG4J_CONFIGURATION_FILE"  # log4j2 reads its configuration file's path from it


def _start_spark(master: str | None, show_progress: bool, quiet: bool):
    """The Spark session (one already running is taken as it is); a failure to start is one line naming
    ``--master`` where it was given. ``quiet``: a JVM started here reads ``QUIET_LOG4J`` (through log4j2's
    environment variable, set only while it starts and only where the user has not set it, so that a user's
    spark-defaults and log4j configuration stay as they are)."""
    import os
    import shutil
    import tempfile

    from pyspark.sql import SparkSession

    # the bar is carriage-return redraws: in a log file or under --quiet it is noise
    builder = SparkSession.builder.appName("recvae").config("spark.ui.showConsoleProgress", str(show_progress).lower())
    # a configuration of the user's own is theirs to keep
    folder = Path(tempfile.mkdtemp(prefix="recvae-log4j-")) if quiet and VARIABLE not in os.environ else None
    if folder is not None:
        (folder / "log4j2.properties").write_text(QUIET_LOG4J)
        os.environ[VARIABLE] = str(folder / "log4j2.properties")
    try:
        return (builder.master(master) if master else builder).getOrCreate()
    except Exception as exc:  # Spark's JVM errors arrive as Py4J's and pyspark's own types
        cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        if master:
            raise ParameterError("master", master, f"Spark could not start ({cause[:300]})") from None
        raise DataError(f"Spark could not start ({cause[:300]})") from None
    finally:
        if folder is not None:
            os.environ.pop(VARIABLE, None)
            shutil.rmtree(folder, ignore_errors=True)


def _log_reader(source: Path, requested: dict, sep: str | None, header: bool | None, encoding: str | None,
                min_rating: float | None):
    """The log's columns, delimiter, header and encoding found as the local reader finds them, before Spark starts;
    returns ``read(spark, with_rating)``, the log as a Spark DataFrame of user, item (and rating where it has one
    and ``with_rating``), without the interactions rated below ``min_rating``."""
    from pyspark.sql.functions import col

    delimited = not (is_parquet(source) or source.is_dir())  # a folder: a Parquet dataset, as Spark writes one
    if delimited:
        encoding = text_encoding(source, encoding)
        sep, header, fields = delimited_layout(source, requested, sep, header, encoding)
        if sep == " ":
            raise DataError(f"{source}: a log delimited by spaces is split on runs of whitespace by the local engine, "
                            "but on each single space by Spark's CSV reader; convert it to CSV, TSV or Parquet, or "
                            "export it with the local engine")
        columns = resolve_columns(source, fields, header, requested)
        spark_encoding, whole_files = _spark_encoding(source, encoding)
    else:
        schema = _parquet_columns(source)
        columns = resolve_columns(source, schema, True, requested)
    if min_rating is not None and "rating" not in columns:
        raise no_rating_column(min_rating, source)

    def read(spark, with_rating: bool):
        if delimited:
            # every column as text, typed below as the local reader types it: Spark's inference reads "007" as 7
            frame = spark.read.csv(str(source), sep=sep, header=header, encoding=spark_encoding, multiLine=whole_files)
        else:
            frame = spark.read.parquet(str(source))
        names = {role: (frame.columns if delimited else schema)[position] for role, position in columns.items()}
        frame = _checked_ids(frame, names, source, encoding if delimited else None)
        if min_rating is not None:
            frame = frame.where(col(names["rating"]).cast("double") >= min_rating)
        rated = [col(names["rating"]).alias("rating")] if with_rating and "rating" in names else []
        return _typed_users(frame.select(col(names["user"]).alias("user"), col(names["item"]).alias("item"), *rated))

    return read


def _checked_ids(frame, names: dict, source: Path, encoding: str | None):
    """``frame`` with checks on its IDs, made in the pass that scores the users (the first line was checked before
    Spark started), each stopping the export with one line naming the file: a row without a user or item ID (an
    empty or blank field), which the local reader refuses naming the line; and, in a delimited log (``encoding`` given),
    an ID holding U+FFFD, the replacement character, which Spark's CSV reader puts where bytes are not valid in
    the encoding before reading on, so that two IDs that differ only there would become one user."""
    from pyspark.sql import types as T
    from pyspark.sql.functions import col, concat, lit, raise_error, trim, when

    for role in ("user", "item"):
        name = names[role]
        text = isinstance(frame.schema[name].dataType, T.StringType)
        missing = col(name).isNull() | (trim(col(name)) == "") if text else col(name).isNull()
        checked = when(missing, raise_error(lit(
            f"{source}: a row has no {role} ID (an empty or blank field); the local engine names its line (and its "
            "--skip-bad-lines drops such lines)")))
        if encoding is not None and text:
            said = concat(lit(f"{source}: the {role} ID '"), col(name), lit(
                f"' holds U+FFFD, which Spark's CSV reader puts where bytes are not valid {encoding}; set "
                "--encoding to the file's (e.g. latin-1) or export it with the local engine, which names the line"))
            checked = checked.when(col(name).contains("\ufffd"), raise_error(said))
        frame = frame.withColumn(name, checked.otherwise(col(name)))
    return frame


# Python's canonical codec names (codecs.lookup) of the charsets Spark 4's CSV reader takes, by Spark's names
SPARK_CHARSETS = MappingProxyType({"utf-8": "utf-8", "utf-8-sig": "utf-8", "utf-16": "utf-16", "utf-16-le": "utf-16le",
                                   "utf-16-be": "utf-16be", "utf-32": "utf-32", "iso8859-1": "iso-8859-1",
                                   "ascii": "us-ascii"})


def _spark_encoding(source: Path, encoding: str) -> tuple[str, bool]:
    """Spark's name for ``encoding`` (refused before Spark starts where its CSV reader has none), and whether Spark
    must read each file whole: its line-by-line reader splits UTF-16 and UTF-32 text at the wrong bytes (a stray
    byte on each line's last field, a spurious last row), where its multi-line reader decodes them right. Spark
    drops a UTF-8 byte-order mark itself."""
    name = codecs.lookup(encoding).name  # the local reader has already decoded the first line with it
    if name not in SPARK_CHARSETS:
        raise ParameterError("encoding", encoding, f"{source}: Spark's CSV reader takes "
                             f"{', '.join(sorted(set(SPARK_CHARSETS.values())))} only; convert the log (iconv -t "
                             "UTF-8) or export it with the local engine")
    return SPARK_CHARSETS[name], name.startswith(("utf-16", "utf-32"))


def _parquet_columns(source: Path) -> list[str]:
    """A Parquet file's or folder's column names, read without Spark."""
    import pyarrow.dataset

    try:
        return pyarrow.dataset.dataset(str(source), format="parquet").schema.names
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(f"{source}: not a readable Parquet file or folder ({exc})") from None


USER_RAISED = "[USER_RAISED_EXCEPTION]"
DISK_FAILURES = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded")


def _write(result, staging: Path, target: Path) -> int:
    """Spark writes the rows (and, lazily, scores them) into ``staging``; a failure there is one line naming the
    output (``spark_failure``)."""
    try:
        result.write.parquet(str(staging))
        return result.sparkSession.read.parquet(str(staging)).count()
    except Exception as exc:  # Py4J's and pyspark's own types; a worker's error arrives wrapped in them
        raise spark_failure(exc, target) from None


def spark_failure(exc: Exception, target: Path) -> Exception:
    """What a Spark job's failure says, as one line: a check of recvae's own (``raise_error``) in its words, a write
    error naming the output for a full or read-only disk, else what the workers or Spark said."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    raised = [line for line in lines if USER_RAISED in line]  # in Spark 4's words
    if raised:
        return DataError(raised[-1].split(USER_RAISED, 1)[1].split(" SQLSTATE:", 1)[0].strip()[:600])
    disk = [line for line in lines if any(words in line for words in DISK_FAILURES)]
    if disk:
        return WriteError(errno.EIO, f"{target}: the output could not be written ({disk[-1][:300]})")
    # the root cause comes last in a Java chain ("Caused by: ..."), a worker's Python error in its own line
    named = [line for line in lines if "Error:" in line or "Exception:" in line]
    return DataError(f"{target}: the Spark export failed ({(named or lines)[-1][:300]})")

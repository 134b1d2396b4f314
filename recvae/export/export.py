"""Batch top-N export: stream users from a log, score them in blocks, write rows atomically.

Reading, scoring and writing overlap in three threads (pandas' parser, torch's kernels
and Arrow's writers release the GIL), with two blocks in flight between stages, so
memory is bounded by the block size and the catalogue.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from recvae.data.side import names_for
from recvae.errors import DataError, ParameterError, settled, whole_at_least
from recvae.score.recommend import (ExportStats, RecommendOptions, UserSide, item_chunk_for, item_filter,
                                   recommend_block)
from recvae.export.stream import iter_user_blocks
from recvae.export.writer import AtomicRecommendationWriter

log = logging.getLogger(__name__)
_DONE = object()
# Blocks between hand-backs of freed heap memory; a malloc_trim costs about a millisecond.
TRIM_EVERY_BLOCKS = 16


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def _return_freed_memory() -> None:
    """Give glibc's freed but kept heap pages back to the system, as Dask's workers do.

    The reader, scorer and writer free mid-sized arrays in different threads and glibc keeps
    the holes: over a 544-block export the peak resident set rose 41 MB after its first 100
    blocks without trimming, 10 MB with it (one pair of runs).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _prefetch(iterable: Iterable, depth: int) -> Iterator:
    """Run ``iterable`` in a background thread, ``depth`` items ahead; its errors surface here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="recvae-reader")
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _read_id_list(path: str | Path, kind: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such item list file")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if kind == "int":
        return np.asarray([int(x) if x.lstrip("-").isdigit() else x for x in ids], dtype=object)
    return np.asarray(ids, dtype=object)


def export_recommendations(
    model,
    interactions: str | Path,
    out: str | Path,
    *,
    n: int = 100,
    include_seen: bool = False,
    allow: str | Path | None = None,
    deny: str | Path | None = None,
    fallback: str | None = None,
    shard: tuple[int, int] = (0, 1),
    users_per_block: int = 1000,
    reader: dict | None = None,
    grouped: bool = True,
    progress: bool | None = None,
    min_rating: float | None = None,
    score_memory_mb: float | None = None,
    item_names=None,
    user_features: str | Path | None = None,
) -> ExportStats:
    """Write the top ``n`` items of every user in ``interactions`` to ``out`` (.parquet/.csv/.tsv).

    Columns: user, item (original IDs), rank (1 = best), score, and with
    ``fallback="popularity"`` a boolean ``fallback`` marking users who had no known item.
    ``allow``/``deny`` are files of item IDs, one per line. ``shard=(i, k)`` exports
    only the users whose ID hashes to shard ``i`` of ``k``. ``min_rating`` keeps only interactions rated
    at least that (``recvae recommend`` defaults it to what the model was trained with).
    ``score_memory_mb`` bounds the memory of a block's scores: the catalogue is then scored in chunks
    of items with a running top ``n`` (the same rows), for catalogues whose full block would not fit.
    ``item_names`` (a table's path or a Series ID → name, as ``Recommender.similar_df`` takes) adds a name column.
    ``user_features``: a CVAE's users' side table (``recvae.score.recommend.UserSide``); a user it lacks is
    scored with the missing indicators, and every user, with items or not, by the model.
    """
    interactions, shard, users_per_block, min_rating = _checked_reading(interactions, shard, users_per_block,
                                                                         min_rating)
    model._check_fitted()
    if model.items_ is None:
        raise DataError("the model does not know its item IDs (fit it with items=...); cannot read or write IDs")
    kind = model.items_.kind
    allowed, unknown_filter = item_filter(model.items_, _read_id_list(allow, kind) if allow else None,
                                          _read_id_list(deny, kind) if deny else None)
    options = RecommendOptions(
        n=n, include_seen=include_seen, allowed_items=allowed, fallback=fallback, batch_size=users_per_block,
        item_chunk=None if score_memory_mb is None else item_chunk_for(score_memory_mb, users_per_block),
        item_names=names_for(model.catalogue(), item_names), user_side=UserSide.for_model(model, user_features))
    blocks = iter_user_blocks(interactions, users_per_block=users_per_block, reader=reader, id_kinds={"item": kind},
                              grouped=grouped, shard=shard, min_rating=min_rating)
    stats = ExportStats(unknown_filter_items=unknown_filter)
    show = progress if progress is not None else sys.stderr.isatty()
    started = time.perf_counter()
    with AtomicRecommendationWriter(out) as writer, tqdm(desc="export", unit=" users", disable=not show) as bar:
        _score_and_write(model, blocks, options, writer, stats, bar)
        writer.commit(_empty_columns(model, options))
    seconds = time.perf_counter() - started
    log.info("exported %d users (%d rows) in %.1f s", stats.users_with_rows, stats.rows, seconds)
    return stats


def _empty_columns(model, options: RecommendOptions) -> dict[str, np.ndarray]:
    """The columns of an export without a row, typed as a block's (a file of no users still has its schema)."""
    empty = {"user": np.empty(0, dtype=object), "item": model.catalogue().ids[:0],
             "rank": np.empty(0, np.int32), "score": np.empty(0, np.float32)}
    if options.fallback is not None:
        empty["fallback"] = np.empty(0, bool)
    if options.item_names is not None:
        empty["name"] = np.empty(0, dtype=object)
    return empty


def _checked_reading(interactions, shard, users_per_block, min_rating) -> tuple:
    """The reading options of ``export_recommendations``, each refused by name before the log is opened."""
    if not isinstance(interactions, (str, os.PathLike)):
        raise TypeError(f"interactions must be the path of a log file, not a {type(interactions).__name__} (a table "
                        "in memory is scored by model.recommend_df)")
    shard = settled("shard", tuple[int, int], shard)
    if not 0 <= shard[0] < shard[1]:
        raise ParameterError("shard", shard, "expected (i, n) with 0 <= i < n")
    whole_at_least(1, users_per_block=users_per_block)
    return os.fspath(interactions), shard, users_per_block, settled("min_rating", float | None, min_rating)


def _score_and_write(model, blocks, options: RecommendOptions, writer: AtomicRecommendationWriter, stats: ExportStats,
                     bar) -> None:
    """Score ``blocks`` (read ahead in a thread) while a writer thread writes the finished ones."""
    pending: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def drain():
        while True:
            columns = pending.get()
            if columns is _DONE:
                return
            if not failure:
                try:
                    writer.write(columns)
                except BaseException as exc:
                    failure.append(exc)

    thread = threading.Thread(target=drain, daemon=True, name="recvae-writer")
    thread.start()
    blocks_done = 0
    try:
        for block, others in _prefetch(blocks, depth=2):
            stats.users_in_other_shards += others
            if len(block) == 0:
                continue
            columns, block_stats = recommend_block(model, block, options)
            stats.add(block_stats)
            if failure:
                break
            if block_stats.rows:
                pending.put(columns)
            bar.update(block_stats.users)
            blocks_done += 1
            if blocks_done % TRIM_EVERY_BLOCKS == 0:
                _return_freed_memory()
    finally:
        pending.put(_DONE)
        thread.join()
    if failure:
        raise failure[0]

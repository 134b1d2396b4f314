"""What ``recvae embed`` and ``recvae score-users`` do: every user of a log placed in the model's latent space
(posterior mean and standard deviation) or scored by how unlikely their history is (the negative ELBO), streamed
in user blocks like the export; and the model's item vectors."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recvae.errors import ParameterError, at_least, settle_kinds
from recvae.export.command import check_engine, check_min_rating, min_rating_for, spark_reading
from recvae.export.stream import iter_user_blocks
from recvae.export.writer import AtomicRecommendationWriter, write_whole
from recvae.io import claimed
from recvae.models.latent import require_latent_space
from recvae.score.recommend import ExportStats, UserSide, block_histories

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserLogSpec:
    """A log whose users are written a row each to ``out`` (``recvae score-users``: user, score, reconstruction,
    kl, interactions). ``min_rating`` and ``reader`` as in ``RecommendSpec``."""

    model: str
    interactions: str
    out: str
    batch_users: int = 1000
    min_rating: float | str | None = None
    grouped: bool = True
    reader: dict = field(default_factory=dict)
    overwrite: bool = False
    user_features: str | None = None  # a CVAE's users' table: each user's features are read by ID
    engine: str = "local"  # "spark": read, score and write through Spark (recvae.export.spark.user_rows_spark)
    master: str | None = None
    progress: bool | None = None  # Spark's console progress bar (None: where stderr is a terminal)
    quiet: bool = False  # Spark logs errors only

    def __post_init__(self):
        settle_kinds(self)
        at_least(1, batch_users=self.batch_users)
        check_min_rating(self.min_rating)
        check_engine(self.engine, self.master, self.reader)
        if self.engine == "spark" and Path(self.out).suffix != ".parquet":
            raise ParameterError("out", self.out, "the Spark engine writes a Parquet directory; name it *.parquet")


@dataclass(frozen=True)
class EmbedSpec(UserLogSpec):
    """``out``: the users' file (Parquet: user, mean, and std where the model has one, each vector a
    fixed-size list of float32); ``items_out``: the items' (item, then each kind of item vector the model
    has: output, input)."""

    items_out: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for name, path in (("out", self.out), ("items_out", self.items_out)):
            if path is not None and Path(path).suffix.lower() not in (".parquet", ".pq"):
                raise ParameterError(name, path, "name a .parquet file (a vector per row: CSV has no column for it)")


@dataclass
class EmbedResult:
    users: int
    users_without_known_items: int
    dimensions: int
    seconds: float


def embed_log(spec: EmbedSpec) -> EmbedResult:
    """Write ``spec.out`` (and ``spec.items_out``), each claimed first and appearing only when complete."""
    from recvae.models import Recommender

    model = Recommender.load(spec.model)
    dimensions = require_latent_space(model)  # before any reading
    side = UserSide.for_model(model, spec.user_features)
    with claimed(spec.out, "the embeddings", overwrite=spec.overwrite, directory=spec.engine == "spark"):
        result = _embed_users(model, spec, side, dimensions)
    if spec.items_out is not None:
        items = model.catalogue().ids
        with claimed(spec.items_out, "the item embeddings", overwrite=spec.overwrite):
            write_whole(spec.items_out, {"item": items, **model.item_embeddings()})
    return result


def position_columns(model, history: sp.csr_matrix, batch_size: int) -> dict:
    """What ``recvae embed`` writes of each user: the posterior mean, and its standard deviation where it has one."""
    encoding = model.encode(history, batch_size=batch_size)
    return {"mean": encoding.mean, **({"std": encoding.std} if encoding.std is not None else {})}


def score_columns(model, history: sp.csr_matrix, batch_size: int) -> dict:
    """What ``recvae score-users`` writes of each user (less ``neighbour_distance``, which needs all the users)."""
    scores = model.anomaly_scores(history, batch_size=batch_size)
    return {"score": scores.score, "reconstruction": scores.reconstruction, "kl": scores.kl,
            "interactions": scores.interactions.astype(np.int64),
            **({} if scores.percentile is None else {"percentile": scores.percentile})}


# the columns a user's row holds, by what is written: a history block -> columns (arrays, a row per user)
USER_COLUMNS = {"embed": position_columns, "score": score_columns}


def known_block(model, block, side: UserSide | None) -> tuple[np.ndarray, sp.csr_matrix, ExportStats]:
    """A block of a log's users (``block_histories``) less those without an item the model knows (a CVAE's feature
    columns aside): their IDs, their histories, and the block's counts (users read, written, left out, and
    those the users' table lacks), as both engines count them."""
    user_ids, history, _ = block_histories(model, block, side)
    known = np.diff(history[:, : model._item_columns(history.shape[1])].indptr) > 0
    stats = ExportStats(users=len(user_ids), users_with_rows=int(known.sum()),
                        users_without_known_items=int((~known).sum()),
                        users_without_side_row=0 if side is None else side.lacking(user_ids[known]))
    return user_ids[known], history[known], stats


def warn_lacking_side_rows(source: str, users: int) -> None:
    if users:
        log.warning("%s: %d users of the log have no row there: read with its missing features", source, users)


def _spark_user_rows(model, spec: UserLogSpec, what: str) -> tuple[int, int, float]:
    """``spec`` through Spark (``recvae.export.spark.user_rows_spark``): (users, left out, seconds)."""
    from recvae.export.spark import spark_job, user_rows_spark

    started = time.perf_counter()
    stats = spark_job(spec.interactions, spec.model, spec.out, lambda frame, counters: user_rows_spark(
        frame, spec.model, what, users_per_block=spec.batch_users, user_features=spec.user_features,
        counters=counters), **spark_reading(spec.reader, spec.master, min_rating_for(model, spec.min_rating),
                                            spec.progress, spec.quiet))
    warn_lacking_side_rows(spec.user_features, stats.users_without_side_row)
    return stats.rows, stats.users_without_known_items, time.perf_counter() - started


def _embed_users(model, spec: EmbedSpec, side: UserSide | None, dimensions: int) -> EmbedResult:
    if spec.engine == "spark":
        users, empty, seconds = _spark_user_rows(model, spec, "embed")
    else:
        users, empty, seconds = _stream_users(model, spec, side, lambda history: position_columns(
            model, history, spec.batch_users))
    log.info("placed %d users in %d dimensions in %.1f s", users, dimensions, seconds)
    return EmbedResult(users, empty, dimensions, seconds)


def _known_histories(model, spec, side: UserSide | None, skipped: list | None = None):
    """The log's users, a block at a time, as (IDs, histories over the model's items, then a CVAE's users'
    features from ``side``); users without an item the model knows are left out (and counted into
    ``skipped[0]``)."""
    blocks = iter_user_blocks(spec.interactions, users_per_block=spec.batch_users, reader=spec.reader,
                              id_kinds={"item": model.items_.kind}, grouped=spec.grouped,
                              min_rating=min_rating_for(model, spec.min_rating))
    lacking = 0
    for block, _ in blocks:
        user_ids, history, stats = known_block(model, block, side)
        lacking += stats.users_without_side_row
        if skipped is not None:
            skipped[0] += stats.users_without_known_items
        if len(user_ids):
            yield user_ids, history
    if lacking:
        warn_lacking_side_rows(side.table.attrs.get("source", "the users' table"), lacking)


def _stream_users(model, spec, side: UserSide | None, rows_of) -> tuple[int, int, float]:
    """Each block of the log's users through ``rows_of`` (their histories → columns) into ``spec.out``, whole or
    not at all; users without an item the model knows are counted and left out. (users, left out, seconds)."""
    started = time.perf_counter()
    users, skipped = 0, [0]
    with AtomicRecommendationWriter(spec.out) as writer:
        for user_ids, history in _known_histories(model, spec, side, skipped):
            writer.write({"user": user_ids, **rows_of(history)})
            users += len(user_ids)
        writer.commit({"user": np.empty(0, dtype=object), **rows_of(sp.csr_matrix((0, model.n_items_), dtype=np.float32))})
    return users, skipped[0], time.perf_counter() - started


@dataclass(frozen=True)
class ScoreUsersSpec(UserLogSpec):
    """``neighbours``: also each user's mean distance to that many nearest other users of the log in the latent
    space (``AnomalyScores.neighbour_distance``); the log is then read twice and every position held at once."""

    neighbours: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.neighbours is not None:
            at_least(1, neighbours=self.neighbours)
            if self.engine == "spark":
                raise ParameterError("neighbours", self.neighbours, "needs every user's position at once: use the "
                                     "local engine (without {engine} spark)")


def score_users_log(spec: ScoreUsersSpec) -> tuple[int, int, float]:
    """Write every user's anomaly score to ``spec.out``; returns (users, users left out, seconds)."""
    from recvae.models import Recommender
    from recvae.models.latent import neighbour_distances

    model = Recommender.load(spec.model)
    model.anomaly_scores(sp.csr_matrix((0, model.n_items_), dtype=np.float32))  # refused before any reading
    side = UserSide.for_model(model, spec.user_features)
    with claimed(spec.out, "the scores", overwrite=spec.overwrite, directory=spec.engine == "spark"):
        if spec.engine == "spark":
            return _spark_user_rows(model, spec, "score")
        distances = None
        if spec.neighbours is not None:  # a first pass: every position, then each one's neighbours
            positions = [model.encode(history, batch_size=spec.batch_users).mean
                         for _, history in _known_histories(model, spec, side)]
            distances = neighbour_distances(np.concatenate(positions) if positions else np.empty((0, 1)),
                                            spec.neighbours)
        done = [0]  # users written so far: the second pass meets them in the first's order

        def rows(history) -> dict:
            columns = score_columns(model, history, spec.batch_users)
            if distances is not None:
                columns["neighbour_distance"] = distances[done[0]:done[0] + history.shape[0]]
            done[0] += history.shape[0]
            return columns

        return _stream_users(model, spec, side, rows)


@dataclass(frozen=True)
class SampleSpec:
    """A synthetic log of ``users`` users drawn from a saved model (``Recommender.sample``), written to ``out``
    (CSV, TSV or Parquet: user, item, the layout ``recvae train --data`` reads)."""

    model: str
    out: str
    users: int
    seed: int = 0
    temperature: float = 1.0
    source: str = "posterior"  # where latent points are drawn: "posterior" (the training users') or "prior"
    batch_users: int = 1000
    overwrite: bool = False
    user_features: str | None = None  # a CVAE's users' table: each synthetic user takes a real user's features
    where: tuple[str, ...] = ()  # "column=value": only the table's users that match every one

    def __post_init__(self):
        from recvae.models.latent import SOURCES

        settle_kinds(self)
        at_least(1, users=self.users, batch_users=self.batch_users)
        if not self.temperature > 0:
            raise ParameterError("temperature", self.temperature, "must be positive")
        if self.source not in SOURCES:
            raise ParameterError("source", self.source, f"must be one of {', '.join(SOURCES)}")


def sample_log(spec: SampleSpec, model=None) -> int:
    """Write the synthetic log, block by block, whole or not at all; returns its interactions. ``model``: the
    one at ``spec.model``, when the caller has loaded it already."""
    from recvae.models import Recommender
    from recvae.models.latent import sample_users

    model = model if model is not None else Recommender.load(spec.model)
    if spec.where and spec.user_features is None:
        raise ParameterError("where", " and ".join(spec.where), "chooses users of the users' table: give it "
                             "(--user-features FILE)")
    side = UserSide.for_model(model, spec.user_features)
    conditions = None if side is None else side.draw(spec.users, spec.where, spec.seed)
    blocks = sample_users(model, spec.users, spec.seed, spec.temperature, spec.batch_users, spec.source, conditions)
    first = next(blocks)  # a model that cannot sample says so before the output is claimed
    rows = 0
    with claimed(spec.out, "the synthetic log", overwrite=spec.overwrite):
        with AtomicRecommendationWriter(spec.out) as writer:
            for block in (first, *blocks):
                writer.write({"user": block["user"].to_numpy(dtype=object), "item": block["item"].to_numpy()})
                rows += len(block)
            writer.commit({"user": np.empty(0, dtype=object), "item": model.catalogue().ids[:0]})
    return rows

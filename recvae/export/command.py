"""What ``recvae recommend`` does, as a function of a typed spec: check every option before any work, load the
model, keep the ratings it was trained on, and export through the local streaming writer or through Spark."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

import numpy as np

from recvae.errors import ParameterError, at_least, one_of, settle_kinds
from recvae.export.export import export_recommendations
from recvae.io import claimed
from recvae.score.recommend import ExportStats

log = logging.getLogger(__name__)

ENGINES = ("local", "spark")
# the master URLs Spark documents (spark-submit --master)
SPARK_MASTER = re.compile(r"local(\[(\d+|\*)(,\d+)?\])?|yarn|(spark|mesos|k8s)://\S+")


@dataclass(frozen=True)
class RecommendSpec:
    """One batch export. ``min_rating``: None keeps what the model was trained with, "none" every interaction,
    a number that threshold. ``shard``: "i/n", the i-th of n disjoint shares of the users (local engine).
    ``reader``: how to read the log (as ``recvae.data.read_interactions`` takes it, by either engine)."""

    model: str
    interactions: str
    out: str
    top_n: int = 100
    include_seen: bool = False
    allow: str | None = None
    deny: str | None = None
    fallback: str | None = None
    shard: str = "0/1"
    batch_users: int = 1000
    score_memory: float | None = None  # MB
    min_rating: float | str | None = None
    grouped: bool = True
    engine: str = "local"
    master: str | None = None
    reader: dict = field(default_factory=dict)
    item_names: str | None = None  # a table of item ID → name (recvae.data.side.read_side_table): adds a name column
    groups: str | None = None  # a file of groups of users: one list per group (recvae.export.groups)
    user_features: str | None = None  # a CVAE's users' side table (recvae.score.recommend.UserSide)
    progress: bool | None = None
    quiet: bool = False  # Spark logs errors only (recvae.export.spark.spark_job)
    overwrite: bool = False  # replace an existing output (a Spark output folder holding anything counts)

    def __post_init__(self):
        settle_kinds(self)
        self.shard_index()
        at_least(1, batch_users=self.batch_users, top_n=self.top_n)
        if self.score_memory is not None and not self.score_memory > 0:
            raise ParameterError("score_memory", self.score_memory, "expected a positive number of megabytes")
        check_engine(self.engine, self.master, self.reader)
        if self.engine == "spark" and self.shard_index()[1] > 1:
            raise ParameterError("shard", self.shard, "the Spark engine spreads the users itself; leave it out")
        if self.groups is not None and self.engine == "spark":
            raise ParameterError("groups", self.groups, "groups are recommended by the local engine")
        check_min_rating(self.min_rating)

    def shard_index(self) -> tuple[int, int]:
        try:
            index, n_shards = (int(p) for p in self.shard.split("/"))
            if not 0 <= index < n_shards:
                raise ValueError
        except ValueError:
            raise ParameterError("shard", self.shard, "expected i/n with 0 <= i < n, e.g. 0/4") from None
        return index, n_shards


def check_engine(engine: str, master: str | None, reader: dict) -> None:
    """An engine recvae has, a master URL only for Spark, and one Spark documents; no reader option Spark would
    leave unapplied."""
    one_of(ENGINES, engine=engine)
    if engine == "spark":
        if master is not None and not SPARK_MASTER.fullmatch(master):
            raise ParameterError("master", master, "not a Spark master URL (local, local[N], local[*], "
                                 "spark://HOST:PORT, yarn, k8s://..., mesos://...)")
        if reader.get("skip_bad_lines"):
            raise ParameterError("skip_bad_lines", True, "is the local engine's: Spark stops at a bad row, naming "
                                 "the file; clean the log or leave out {engine} spark")
    elif master is not None:
        raise ParameterError("master", master, "only with {engine} spark")


@dataclass
class RecommendResult:
    rows: int
    seconds: float
    min_rating: float | None
    min_rating_from_training: bool
    stats: ExportStats | None  # what was read, written and left out; None for groups


def recommend_log(spec: RecommendSpec) -> RecommendResult:
    """Export ``spec.top_n`` items for every user of ``spec.interactions`` to ``spec.out``, claimed first: an
    existing output is refused unless ``overwrite``, and so is one another run is writing."""
    with claimed(spec.out, "the output", overwrite=spec.overwrite, directory=spec.engine == "spark"):
        return _export(spec)


def check_min_rating(asked: float | str | None) -> None:
    """Refuse a ``min_rating`` that ``min_rating_for`` could not read, before the model is loaded."""
    if isinstance(asked, str) and asked != "none":
        try:
            float(asked)
        except ValueError:
            raise ParameterError("min_rating", asked, "expected a number or 'none'") from None


def min_rating_for(model, asked: float | str | None) -> float | None:
    """The rating threshold a log is read with: what the model was trained with unless ``asked`` says
    otherwise ("none": every interaction)."""
    trained_with = model.metadata_.get("data", {}).get("preprocessing", {}).get("min_rating")
    return trained_with if asked is None else None if asked == "none" else float(asked)


def spark_reading(reader: dict, master: str | None, min_rating: float | None, progress: bool | None,
                  quiet: bool) -> dict:
    """``spark_job``'s keywords from a command's reader options: the reader's the local engine takes, where Spark
    reads them alike (a timestamp column, bad-line skipping and grouping are the local engine's)."""
    return {"master": master, "min_rating": min_rating, "progress": progress, "quiet": quiet,
            **{k: reader.get(k) for k in ("user", "item", "rating", "sep", "header", "encoding")}}


def _export_groups(model, spec: RecommendSpec, min_rating: float | None) -> int:
    from recvae.data.readers import read_interactions
    from recvae.data.side import names_for
    from recvae.export.groups import read_groups, recommend_groups
    from recvae.score.recommend import UserSide

    side = UserSide.for_model(model, spec.user_features)  # the table is checked before the log is read
    groups = read_groups(spec.groups, model.metadata_.get("user_id_kind", "str"))
    members = np.concatenate([ids for _, ids in groups])
    histories = read_interactions(spec.interactions, **spec.reader)
    histories = histories[histories["user"].isin(members)]
    if min_rating is not None and "rating" in histories:
        histories = histories[histories["rating"] >= min_rating]
    return recommend_groups(model, histories, groups, spec.out, spec.top_n, spec.include_seen,
                            names_for(model.catalogue(), spec.item_names), side)


def _export(spec: RecommendSpec) -> RecommendResult:
    if spec.engine == "spark":
        from recvae.export.spark import cached_model

        model = cached_model(str(spec.model))  # the copy export_spark reuses on the driver: read once
    else:
        from recvae.models import Recommender

        model = Recommender.load(spec.model)
    min_rating = min_rating_for(model, spec.min_rating)
    if min_rating is not None:
        log.info("keeping interactions rated >= %g%s", min_rating, " (as in training)" if spec.min_rating is None else "")
    started = time.perf_counter()
    if spec.groups is not None:
        rows = _export_groups(model, spec, min_rating)
        return RecommendResult(rows, time.perf_counter() - started, min_rating, spec.min_rating is None, None)
    if spec.engine == "spark":
        from recvae.export.spark import export_spark

        stats = export_spark(
            spec.interactions, spec.model, spec.out, allow_file=spec.allow, deny_file=spec.deny,
            reading=spark_reading(spec.reader, spec.master, min_rating, spec.progress, spec.quiet),
            n=spec.top_n, include_seen=spec.include_seen, fallback=spec.fallback, users_per_block=spec.batch_users,
            score_memory_mb=spec.score_memory, item_names=spec.item_names, user_features=spec.user_features)
    else:
        stats = export_recommendations(
            model, spec.interactions, spec.out, n=spec.top_n, include_seen=spec.include_seen, allow=spec.allow,
            deny=spec.deny, fallback=spec.fallback, shard=spec.shard_index(), users_per_block=spec.batch_users,
            reader=spec.reader, grouped=spec.grouped, progress=spec.progress, min_rating=min_rating,
            score_memory_mb=spec.score_memory, item_names=spec.item_names, user_features=spec.user_features)
    return RecommendResult(stats.rows, time.perf_counter() - started, min_rating, spec.min_rating is None, stats)

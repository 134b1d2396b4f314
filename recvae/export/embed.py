"""What ``recvae embed`` does: every user of a log placed in the model's latent space (posterior mean and
standard deviation), streamed in user blocks like the export, and the model's item vectors, to Parquet."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recvae.errors import ParameterError, at_least
from recvae.export.command import min_rating_for
from recvae.export.stream import iter_user_blocks
from recvae.export.writer import AtomicRecommendationWriter
from recvae.io import claimed
from recvae.models.latent import require_latent_space
from recvae.score.recommend import block_histories

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedSpec:
    """``out``: the users' file (Parquet: user, mean, and std where the model has one, each vector a
    fixed-size list of float32); ``items_out``: the items' (item, then each kind of item vector the model
    has: output, input). ``min_rating`` and ``reader`` as in ``RecommendSpec``."""

    model: str
    interactions: str
    out: str
    items_out: str | None = None
    batch_users: int = 1000
    min_rating: float | str | None = None
    grouped: bool = True
    reader: dict = field(default_factory=dict)
    overwrite: bool = False

    def __post_init__(self):
        at_least(1, batch_users=self.batch_users)
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
    require_latent_space(model)  # before any reading
    with claimed(spec.out, "the embeddings", overwrite=spec.overwrite):
        result = _embed_users(model, spec)
    if spec.items_out is not None:
        with claimed(spec.items_out, "the item embeddings", overwrite=spec.overwrite):
            vectors = model.item_embeddings()
            with AtomicRecommendationWriter(spec.items_out) as writer:
                columns = {"item": model.items_.ids, **vectors}
                writer.write(columns)
                writer.commit(columns)
    return result


def _embed_users(model, spec: EmbedSpec) -> EmbedResult:
    started = time.perf_counter()
    blocks = iter_user_blocks(spec.interactions, users_per_block=spec.batch_users, reader=spec.reader,
                              id_kinds={"item": model.items_.kind}, grouped=spec.grouped,
                              min_rating=min_rating_for(model, spec.min_rating))
    users = empty = dimensions = 0
    with AtomicRecommendationWriter(spec.out) as writer:
        for block, _ in blocks:
            user_ids, history, _ = block_histories(model, block)
            known = np.diff(history.indptr) > 0  # a user with no item the model knows has no position
            empty += int((~known).sum())
            if not known.any():
                continue
            encoding = model.encode(history[known], batch_size=spec.batch_users)
            columns = {"user": user_ids[known], "mean": encoding.mean}
            if encoding.std is not None:
                columns["std"] = encoding.std
            writer.write(columns)
            users, dimensions = users + int(known.sum()), encoding.mean.shape[1]
        nobody = model.encode(sp.csr_matrix((0, model.n_items_), dtype=np.float32))
        writer.commit({"user": np.empty(0, dtype=object), "mean": nobody.mean,
                       **({"std": nobody.std} if nobody.std is not None else {})})
    seconds = time.perf_counter() - started
    log.info("placed %d users in %d dimensions in %.1f s", users, dimensions, seconds)
    return EmbedResult(users, empty, dimensions or nobody.mean.shape[1], seconds)

"""``recvae recommend --groups FILE``: one list per group of users (a household), from the weighted mean of
their posterior means decoded once (``Recommender.recommend_group``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recvae.data.readers import typed_ids
from recvae.errors import DataError
from recvae.export.writer import write_whole
from recvae.score.recommend import UserSide, block_histories


def read_groups(path: str | Path, kind: str) -> list[tuple[str, np.ndarray]]:
    """The groups of a text file, one per line: ``name: ID,ID,...`` or ``ID,ID,...`` (named by its line
    number); IDs typed as the model's users are (``kind``: "int" or "str")."""
    groups = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, members = line.rpartition(":") if ":" in line else (str(number), "", line)
        ids = [m.strip() for m in members.split(",") if m.strip()]
        if not ids:
            raise DataError(f"{path}: line {number}: a group names at least one user ID")
        groups.append((name.strip() or str(number), typed_ids(pd.Series(ids, dtype=object), kind)))
    if not groups:
        raise DataError(f"{path}: no group in the file (one per line: name: user ID, user ID, ...)")
    return groups


def recommend_groups(model, histories: pd.DataFrame, groups: list[tuple[str, np.ndarray]], out: str | Path, n: int,
                     include_seen: bool = False, item_names: np.ndarray | None = None,
                     user_side: UserSide | None = None) -> int:
    """Write group, item, rank, score (and name) for every group to ``out``, whole or not at all; returns the
    rows. ``histories`` holds the groups' users' rows (user, item[, rating]); a member without a known item
    is refused, naming them. A CVAE reads its members' side features from ``user_side`` and decodes the group
    with their mean."""
    parts = []
    for name, members in groups:
        rows = histories[histories["user"].isin(members)]
        user_ids, matrix, _ = block_histories(model, rows, user_side)
        items_of = matrix[:, : model._item_columns(matrix.shape[1])]
        missing = [m for m in members if m not in set(user_ids[np.diff(items_of.indptr) > 0].tolist())]
        if missing:
            raise DataError(f"group {name!r}: user {missing[0]!r} has no item the model knows in the log")
        items, scores = model.recommend_group(matrix, N=n, filter_already_liked_items=not include_seen)
        part = {"group": np.full(len(items), name, dtype=object), "item": model.catalogue().id_of(items),
                "rank": np.arange(1, len(items) + 1, dtype=np.int32), "score": scores.astype(np.float32)}
        if item_names is not None:
            part["name"] = item_names[items]
        parts.append(part)
    columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    write_whole(out, columns)
    return len(columns["rank"])

"""Top-N for (user, item) histories in original IDs: the block step shared by ``Recommender.recommend_df``, the
streaming export and Spark's workers, and the one cutting of grouped rows into blocks of whole users."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.features import FeatureEncoding
from recvae.data.readers import typed_ids
from recvae.data.side import read_side_table
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ParameterError, at_least, positive, settle_kinds
from recvae.score.topk import top_n_from_scores



@dataclass
class ExportStats:
    """Counts a caller reports: what was read, what was written, what was left out and why."""

    users: int = 0
    users_with_rows: int = 0
    users_without_known_items: int = 0
    users_on_fallback: int = 0
    interactions: int = 0
    unknown_item_interactions: int = 0
    rows: int = 0
    unknown_filter_items: int = 0
    users_in_other_shards: int = 0
    users_without_side_row: int = 0  # a CVAE's users the users' table lacks (scored with its missing features)

    def add(self, other: ExportStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def left_out(self, fallback: str | None, fallback_option: str = "--fallback popularity") -> list[str]:
        """What was ignored or scored otherwise, a sentence each: the CLI prints them, ``recommend_df`` logs
        them. ``fallback_option``: how the caller asks for popularity for users without a known item."""
        lines = []
        if self.unknown_item_interactions:
            lines.append(f"ignored {self.unknown_item_interactions} of {self.interactions} interactions with items "
                         "the model does not know")
        if self.users_without_known_items:
            what = ("got popularity (fallback column)" if fallback
                    else f"got no row ({fallback_option} gives them popular items)")
            lines.append(f"{self.users_without_known_items} users had no known item and {what}")
        if self.users_without_side_row:
            lines.append(f"{self.users_without_side_row} users had no row in the users' table and were scored with "
                         "its missing features")
        if self.unknown_filter_items:
            lines.append(f"{self.unknown_filter_items} items of the allow/deny lists are unknown to the model and "
                         "were ignored")
        return lines


@dataclass(frozen=True)
class UserSide:
    """The users' side table and the encoding a conditional model (CVAE) was trained with: what turns a
    block's user IDs into the feature columns it reads beside their items. A block looks its users up in an
    index of the table's IDs built once (per kind of ID), so its cost follows the block, not the table."""

    table: pd.DataFrame
    encoding: FeatureEncoding
    _indexes: dict = field(default_factory=dict, repr=False, compare=False)  # ID kind -> the table's IDs so typed

    @classmethod
    def for_model(cls, model, path) -> UserSide | None:
        """What ``model`` needs to score users of a log: for a CVAE the table at ``path`` (refused without one),
        encoded as in training; for any other model nothing (a table is refused)."""
        conditions = getattr(model.config, "conditions", 0)
        if path is None:
            if conditions:
                raise DataError(f"{model.name} reads each user's side features beside the items: give the users' "
                                "table it was trained with (--user-features FILE)")
            return None
        if not conditions:
            raise ParameterError("user_features", str(path), f"is read by a CVAE only, not by {model.name}")
        recorded = model.metadata_.get("user_features")
        if recorded is None:
            raise DataError("the model does not record how its users' features were encoded; train it with "
                            "recvae train --user-features FILE")
        return cls(read_side_table(path), FeatureEncoding.from_json(recorded))

    def draw(self, n: int, where: tuple[str, ...] = (), seed: int = 0) -> sp.csr_matrix:
        """The encoded features of ``n`` users drawn (with replacement, by ``seed``) from the table's rows that
        match every ``where`` clause, "column=value" (the text as the table writes it): what conditions a CVAE's
        synthetic users on a group of real ones (``sample``'s ``conditions``)."""
        keep = np.ones(len(self.table), dtype=bool)
        for clause in where:
            column, sep, value = clause.partition("=")
            if not sep or column not in self.table:
                raise ParameterError("where", clause, f"expected COLUMN=VALUE with a column of the users' table "
                                     f"({', '.join(map(str, self.table.columns))})")
            keep &= self.table[column].astype(str).str.strip().to_numpy() == value.strip()
        if not keep.any():
            raise ParameterError("where", " and ".join(where), "matches no row of the users' table")
        encoded = self.rows(self.table.index.to_numpy()[keep])
        return encoded[np.random.default_rng(seed).integers(encoded.shape[0], size=n)]

    def beside(self, history: sp.csr_matrix, user_ids: np.ndarray) -> sp.csr_matrix:
        """``history`` (users x the model's columns) with its last columns, the features, those of ``user_ids``
        (a row each; a log row that named a feature column is not an item and is dropped)."""
        items = history.shape[1] - self.encoding.width
        return sp.hstack([history[:, :items], self.rows(user_ids)], format="csr", dtype=np.float32)

    def rows(self, user_ids: np.ndarray) -> sp.csr_matrix:
        """The encoded features of ``user_ids`` (a user the table lacks gets the missing indicators; ``lacking``
        counts them)."""
        users = Vocabulary(np.asarray(user_ids), "user")
        positions = self._positions(users)
        rows = self.table.iloc[positions[positions >= 0]]
        rows.attrs.update(self.table.attrs)  # the file's name, for messages
        return self.encoding.transform(rows, users, some_known=False, warn=False)

    def lacking(self, user_ids: np.ndarray) -> int:
        """How many of ``user_ids`` have no row in the table."""
        return int((self._positions(Vocabulary(np.asarray(user_ids), "user")) < 0).sum())

    def _positions(self, users: Vocabulary) -> np.ndarray:
        index = self._indexes.get(users.kind)
        if index is None:
            index = pd.Index(typed_ids(pd.Series(self.table.index.to_numpy(dtype=object)), users.kind))
            if not index.is_unique:
                twice = index[index.duplicated()][0]
                raise DataError(f"{self.table.attrs.get('source', 'the users table')}: two rows read as user {twice!r}")
            self._indexes[users.kind] = index
        return index.get_indexer(users.ids)


@dataclass(frozen=True)
class RecommendOptions:
    n: int = 10
    include_seen: bool = False
    allowed_items: np.ndarray | None = None  # item indices
    fallback: str | None = None  # None or "popularity"
    batch_size: int = 1000
    item_chunk: int | None = None  # items scored at once (None: the whole catalogue)
    item_names: np.ndarray | None = None  # a name per item index: adds a name column
    user_side: UserSide | None = None  # a CVAE's users' features (UserSide.for_model)

    def __post_init__(self):
        settle_kinds(self)  # include_seen="no" would be true, and show the seen items
        at_least(1, n=self.n, batch_size=self.batch_size)
        if self.item_chunk is not None and self.item_chunk < 1:
            raise ParameterError("item_chunk", self.item_chunk, "must be at least 1")
        if self.fallback not in (None, "popularity"):
            raise ParameterError("fallback", self.fallback, "expected None or 'popularity'")


# Memory per (user, item) of a score block while it is ranked: the float32 score and, where the selection
# sorts keys (rows too narrow for the grouped kernel), an int64 key.
SCORE_BYTES = 12


def item_chunk_for(score_memory_mb: float, users_per_block: int) -> int:
    """Items per chunk that keep one block's scores within ``score_memory_mb`` megabytes."""
    positive(score_memory_mb=score_memory_mb)
    return max(1, int(score_memory_mb * 2**20 // (SCORE_BYTES * users_per_block)))


def item_filter(items: Vocabulary, allow=None, deny=None) -> tuple[np.ndarray | None, int]:
    """Item indices a recommendation may contain, from allow/deny lists of item IDs; unknown IDs are counted."""
    if allow is None and deny is None:
        return None, 0
    unknown = 0
    keep = np.ones(len(items), dtype=bool)
    if allow is not None:
        idx = items.index_of(np.asarray(allow), missing="ignore")
        unknown += int((idx < 0).sum())
        keep[:] = False
        keep[idx[idx >= 0]] = True
    if deny is not None:
        idx = items.index_of(np.asarray(deny), missing="ignore")
        unknown += int((idx < 0).sum())
        keep[idx[idx >= 0]] = False
    if not keep.any():
        raise DataError("the allow and deny lists leave no item to recommend")
    return np.flatnonzero(keep), unknown


def recommend_block(model, block: pd.DataFrame, options: RecommendOptions) -> tuple[dict, ExportStats]:
    """Recommendations for a block of complete user histories.

    ``block`` has a row per interaction: columns ``user`` and ``item`` (original IDs; a user with only
    unknown items may still appear) and, where the log has one, ``rating``: the value the model sees,
    as in training (its config's ``binarize`` decides whether it counts; a repeated item keeps its last
    row's). Returns columns (user, item, rank, score[, fallback]) as numpy arrays, and the block's counts.
    """
    vocab: Vocabulary = model.catalogue()
    user_ids, history, n_known = block_histories(model, block, options.user_side)
    stats = ExportStats(interactions=len(block), users=len(user_ids), unknown_item_interactions=len(block) - n_known,
                        users_without_side_row=0 if options.user_side is None else options.user_side.lacking(user_ids))
    has_items = np.diff(history.indptr) > 0
    stats.users_without_known_items = int((~has_items).sum())

    parts = []  # (user IDs, item indices (users x width), scores, on fallback)
    if has_items.any():
        idx, score = model.top_n(
            history[has_items], options.n, exclude_seen=not options.include_seen,
            allowed_items=options.allowed_items, batch_size=options.batch_size, item_chunk=options.item_chunk,
        )
        parts.append((user_ids[has_items], idx, score, False))
    if options.fallback == "popularity" and not has_items.all():
        idx, score = top_n_from_scores(model.item_popularity_.unsqueeze(0), options.n, None, options.allowed_items)
        n_empty = int((~has_items).sum())
        parts.append((user_ids[~has_items], np.tile(idx, (n_empty, 1)), np.tile(score, (n_empty, 1)), True))
        stats.users_on_fallback = n_empty
    columns = {"user": [], "item": [], "rank": [], "score": [], "fallback": []}
    for part_users, idx, score, on_fallback in parts:
        valid = idx >= 0  # -1 pads a list that ran out of allowed, unseen items
        width = idx.shape[1]
        columns["user"].append(np.repeat(part_users, width)[valid.ravel()])
        columns["item"].append(vocab.ids[idx[valid]])
        columns["rank"].append(np.tile(np.arange(1, width + 1, dtype=np.int32), len(part_users))[valid.ravel()])
        columns["score"].append(score[valid].astype(np.float32, copy=False))
        columns["fallback"].append(np.full(int(valid.sum()), on_fallback))
        stats.users_with_rows += int(valid.any(axis=1).sum())
    empty = {"user": user_ids[:0], "item": vocab.ids[:0], "rank": np.empty(0, np.int32),
             "score": np.empty(0, np.float32), "fallback": np.empty(0, bool)}
    out = {k: np.concatenate(v) if v else empty[k] for k, v in columns.items()}
    if options.fallback is None:
        del out["fallback"]
    if options.item_names is not None:
        out["name"] = (options.item_names[np.concatenate([idx[idx >= 0] for _, idx, _, _ in parts])] if parts
                       else np.empty(0, object))
    stats.rows = len(out["rank"])
    return out, stats


def block_histories(model, block: pd.DataFrame, user_side: UserSide | None = None) -> tuple[np.ndarray, sp.csr_matrix, int]:
    """A block's users (original IDs, in order of appearance), their histories over the model's items (the
    values the model sees, as in training) and the number of the block's rows with a known item. A CVAE's
    histories end with each user's side features, from ``user_side``."""
    conditions = getattr(model.config, "conditions", 0)
    if conditions and user_side is None:  # a history file has no feature columns: they would read as zeros
        raise DataError(f"{model.name} reads each user's side features beside the items: give the users' table it "
                        "was trained with (--user-features FILE; in Python, user_features=)")
    users = block["user"].to_numpy()
    codes, user_ids = pd.factorize(pd.Series(users, dtype=object if users.dtype == object else users.dtype), sort=False)
    valued = "rating" in block and not model.config.binarize  # a binarized model counts every row as 1 anyway
    # typed as the model's IDs: a frame read as numbers meets a CVAE's text IDs, a text frame an integer model's
    items = typed_ids(block["item"], model.items_.kind)
    history, n_known = _history(codes, model.items_.index_of(items, missing="ignore"),
                                block["rating"].to_numpy(np.float32) if valued else None, len(user_ids),
                                len(model.items_))
    user_ids = np.asarray(user_ids)
    if conditions:
        history = user_side.beside(history, user_ids)
    return user_ids, history, n_known


def _history(codes: np.ndarray, cols: np.ndarray, values: np.ndarray | None, n_users: int,
             n_items: int) -> tuple[sp.csr_matrix, int]:
    """The block's users x items histories over the known items (``cols`` -1: unknown), valued as given (a
    repeated item keeps its last row's value) or 1, and the number of rows with a known item."""
    known = cols >= 0
    rows, cols = codes[known], cols[known]
    if values is None:
        history = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
        history.sum_duplicates()
        history.data[:] = 1.0
    else:
        last = ~pd.DataFrame({"r": rows, "c": cols}).duplicated(keep="last").to_numpy()
        history = sp.csr_matrix((values[known][last], (rows[last], cols[last])), shape=(n_users, n_items))
    return history, int(known.sum())


def shard_of(users: np.ndarray, n_shards: int) -> np.ndarray:
    """A stable shard number per user ID: the same in every process and run."""
    return (pd.util.hash_array(np.asarray(users)) % np.uint64(n_shards)).astype(np.int64)


def whole_user_blocks(frames: Iterable[pd.DataFrame], users_per_block: int,
                      completed: Callable[[np.ndarray], None] | None = None) -> Iterator[pd.DataFrame]:
    """Blocks of at most ``users_per_block`` whole users from frames whose rows keep each user's rows together
    (a user's rows may run over the end of one frame into the next): the one place rows are cut into users'
    blocks, for the streaming export, Spark's workers and ``recommend_df``. ``completed``, when given, sees
    each frame's finished users (one ID per run of rows, in order) before they are cut."""
    pending = None
    for frame in frames:
        if pending is not None and len(pending):
            frame = pd.concat(users_alike([pending, frame]), ignore_index=True)
        if frame.empty:
            continue
        users = frame["user"].to_numpy()
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        if completed is not None:
            completed(users[starts[:-1]])
        cut = starts[-1]  # the last user may go on in the next frame
        yield from _cut(frame.iloc[:cut], starts[:-1], users_per_block)
        pending = frame.iloc[cut:]
    if pending is not None and len(pending):
        if completed is not None:
            completed(pending["user"].to_numpy()[:1])
        yield from _cut(pending, np.array([0]), users_per_block)


def users_alike(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Frames whose users are all integers or all text: a log read in chunks types each chunk's IDs alone, so
    user 7 may be an integer in one chunk and text in the next, where reading the whole log makes every ID
    text. Integer users beside text ones become their text, so a user whose rows cross a seam stays one user."""
    integer = [pd.api.types.is_integer_dtype(frame["user"]) for frame in frames]
    if all(integer) or not any(integer):
        return frames
    return [frame.assign(user=frame["user"].astype(str)) if is_int else frame for frame, is_int in zip(frames, integer)]


def _cut(frame: pd.DataFrame, starts: np.ndarray, users_per_block: int) -> Iterator[pd.DataFrame]:
    if not len(frame):
        return
    bounds = np.r_[starts[::users_per_block], len(frame)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield frame.iloc[a:b]

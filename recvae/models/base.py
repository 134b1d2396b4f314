"""The interface every recvae model follows, modelled on implicit's RecommenderBase."""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ModelFileError, NotFittedError
from recvae.models.serialization import read_model_dir, save_model_dir
from recvae.score.topk import top_n_from_scores
from recvae.split.base import HeldOut


POPULARITY_KEY = "_item_popularity"


def config_from_dict(config_class: type, values: dict):
    """Rebuild a config dataclass from JSON: lists become tuples where the field is a tuple."""
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} field(s): {sorted(unknown)}")
    fixed = {}
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            value = tuple(value)
        fixed[name] = value
    return config_class(**fixed)


def as_csr(user_items, n_items: int | None = None, what: str = "user_items") -> sp.csr_matrix:
    """Check and convert a users x items matrix; the first place bad shapes are caught."""
    if not sp.issparse(user_items):
        raise DataError(f"{what} must be a scipy.sparse matrix (users x items), got {type(user_items).__name__}")
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    if n_items is not None and matrix.shape[1] != n_items:
        raise DataError(f"{what} has {matrix.shape[1]} item columns; the model was fitted on {n_items} items")
    if matrix.nnz and (not np.isfinite(matrix.data).all()):
        raise DataError(f"{what} contains NaN or infinite values")
    return matrix


def cosine_similar_items(vectors: torch.Tensor, itemid: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` rows of ``vectors`` (one per item) closest in cosine to row ``itemid``, itself included."""
    if not 0 <= itemid < vectors.shape[0]:
        raise DataError(f"item index {itemid} is outside [0, {vectors.shape[0]})")
    with torch.no_grad():
        unit = torch.nn.functional.normalize(vectors, dim=1)
        values, indices = torch.topk(unit @ unit[itemid], min(n, vectors.shape[0]))
    return indices.cpu().numpy(), values.cpu().numpy()


class Recommender(ABC):
    """fit / recommend / top_n / save / load over CSR users x items matrices.

    Hyperparameters live in a frozen config dataclass, passed whole or as keywords
    (``MultVAE(latent_dim=100)``). Learned state ends in ``_`` and exists only after ``fit``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config=None, **params):
        base = config if config is not None else self.config_class()
        if not isinstance(base, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}")
        self.config = dataclasses.replace(base, **params)
        self.items_: Vocabulary | None = None

    def get_params(self) -> dict:
        return dataclasses.asdict(self.config)

    def set_params(self, **params) -> Recommender:
        self.config = dataclasses.replace(self.config, **params)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # -- fitting and scoring ------------------------------------------------------------------
    @abstractmethod
    def fit(self, user_items: sp.csr_matrix, validation: HeldOut | None = None, items: Vocabulary | None = None):
        """Learn from a users x items matrix; ``validation`` drives early stopping where a model has it."""

    @abstractmethod
    def _score_block(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Scores (rows x items) for a block of users given their histories."""

    def _set_fitted(self, user_items: sp.csr_matrix, items: Vocabulary | None) -> None:
        """Record what every fitted model knows besides its own parameters."""
        if items is not None and len(items) != user_items.shape[1]:
            raise DataError(f"items has {len(items)} IDs for {user_items.shape[1]} item columns")
        self._n_items = user_items.shape[1]
        self.items_ = items
        # Training popularity, for users with no known item (export's --fallback popularity).
        self.item_popularity_ = torch.from_numpy(np.diff(user_items.tocsc().indptr).astype(np.float32))
        self._fitted = True

    @property
    def n_items_(self) -> int:
        self._check_fitted()
        return self._n_items

    def _check_fitted(self) -> None:
        if not getattr(self, "_fitted", False):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense scores for a (small) block of users; use ``top_n`` for many users."""
        self._check_fitted()
        return self._score_block(as_csr(user_items, self._n_items)).cpu().numpy()

    def top_n(
        self,
        user_items: sp.csr_matrix,
        n: int,
        exclude_seen: bool = True,
        allowed_items: np.ndarray | None = None,
        batch_size: int = 1000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` item indices and scores for every row of ``user_items``, in user blocks."""
        self._check_fitted()
        user_items = as_csr(user_items, self._n_items)
        if n < 1:
            raise ValueError("n must be at least 1")
        blocks_i, blocks_s = [], []
        for start in range(0, user_items.shape[0], batch_size):
            block = user_items[start : start + batch_size]
            with torch.no_grad():
                scores = self._score_block(block)
            idx, val = top_n_from_scores(scores, n, block if exclude_seen else None, allowed_items)
            blocks_i.append(idx)
            blocks_s.append(val)
        if not blocks_i:
            width = min(n, self._n_items if allowed_items is None else len(allowed_items))
            return np.empty((0, width), dtype=np.int64), np.empty((0, width), dtype=np.float32)
        return np.concatenate(blocks_i), np.concatenate(blocks_s)

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True, items=None):
        """implicit's call: row ``i`` of ``user_items`` is the history of ``userid[i]``.

        Returns (item indices, scores); 1-D for one user, 2-D for an array of users.
        The model folds the history in, so any user with a history can be scored.
        """
        single = np.isscalar(userid)
        userids = np.atleast_1d(np.asarray(userid))
        user_items = as_csr(user_items, self._n_items if getattr(self, "_fitted", False) else None)
        if user_items.shape[0] != len(userids):
            raise DataError(
                f"user_items has {user_items.shape[0]} rows for {len(userids)} user IDs; "
                "pass one history row per user (user_items[userid])"
            )
        allowed = None
        if items is not None:
            allowed = np.unique(np.asarray(items, dtype=np.int64))
            if len(allowed) and (allowed.min() < 0 or allowed.max() >= self.n_items_):
                raise DataError(f"items must be item indices in [0, {self.n_items_})")
        ids, scores = self.top_n(user_items, N, exclude_seen=filter_already_liked_items, allowed_items=allowed)
        return (ids[0], scores[0]) if single else (ids, scores)

    def recommend_df(
        self, history: pd.DataFrame, n: int = 10, include_seen: bool = False, fallback: str | None = None,
        batch_size: int = 1000,
    ) -> pd.DataFrame:
        """Top ``n`` per user from a frame of (user, item) rows in original IDs.

        Returns columns user, item, rank (1 = best), score. Items the model does not
        know are ignored; a user without a known item gets no row, or popularity with
        ``fallback="popularity"`` (then a ``fallback`` column marks them). Any user with
        a history is scored by fold-in, whether or not it was in training.
        """
        from recvae.export.recommend import RecommendOptions, recommend_block
        from recvae.export.stream import user_blocks

        self._check_fitted()
        if self.items_ is None:
            raise DataError("the model does not know its item IDs (fit it with items=...)")
        missing = {"user", "item"} - set(history.columns)
        if missing:
            raise DataError(f"history lacks column(s) {sorted(missing)}; expected user and item")
        if history[["user", "item"]].isna().any().any():
            raise DataError("history has missing user or item IDs")
        options = RecommendOptions(n=n, include_seen=include_seen, fallback=fallback, batch_size=batch_size)
        codes = pd.factorize(history["user"])[0]
        order = np.argsort(codes, kind="stable")
        users = history["user"].to_numpy()[order]
        items = history["item"].to_numpy()[order]
        starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]]) if len(order) else order[:0]
        blocks = [recommend_block(self, u, i, options)[0] for u, i, _ in user_blocks(users, items, starts, batch_size)]
        if not blocks:
            blocks = [recommend_block(self, users, items, options)[0]]
        return pd.DataFrame({k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]})

    # -- persistence ----------------------------------------------------------------------------
    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save."""

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of ``_state``; sets the model fitted."""

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write a model directory (see :mod:`recvae.models.serialization`)."""
        self._check_fitted()
        meta = dict(getattr(self, "metadata_", {}) or {})
        meta.update(metadata or {})
        tensors = {**self._state(), POPULARITY_KEY: self.item_popularity_}
        return save_model_dir(path, self.name, self.get_params(), tensors, self.items_, meta)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model directory saved by ``save``; ``Recommender.load`` picks the right class."""
        from recvae.models import MODELS

        manifest, tensors, items = read_model_dir(path)
        kind = manifest["model"]
        model_class = MODELS.get(kind)
        if model_class is None:
            raise ModelFileError(f"{path}: unknown model kind {kind!r}; known: {sorted(MODELS)}")
        if cls is not Recommender and model_class is not cls:
            raise ModelFileError(f"{path}: holds a {kind}, not a {cls.name}")
        try:
            config = config_from_dict(model_class.config_class, manifest["config"])
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid config ({exc})") from None
        model = model_class(config)
        model.item_popularity_ = tensors.pop(POPULARITY_KEY, None)
        if model.item_popularity_ is None:
            raise ModelFileError(f"{path}: item popularity is missing")
        try:
            model._restore(tensors)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{path}: weights do not match the config ({exc})") from None
        if model.item_popularity_.shape != (model._n_items,):
            raise ModelFileError(f"{path}: item popularity does not match the model's {model._n_items} items")
        model.items_ = items
        model.metadata_ = manifest.get("metadata", {})
        return model

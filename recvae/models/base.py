"""The interface every recvae model follows, modelled on implicit's RecommenderBase, and the small
step interface through which ``recvae.train.Trainer`` drives the models that learn by epochs."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recvae.data.shard import item_sums
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ModelFileError, NotFittedError
from recvae.models.config import config_from_dict
from recvae.models.device import autocast
from recvae.models.nn import SparseBatch
from recvae.models.serialization import read_model_dir, save_model_dir
from recvae.score.recommend import RecommendOptions, recommend_block, user_blocks
from recvae.score.topk import top_n_from_scores, top_n_in_chunks

POPULARITY_KEY = "_item_popularity"


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What every model's config has. ``binarize`` (default True): every stored interaction counts
    as 1, whatever its value (counts, ratings); False keeps the values (confidence for ALS, counts
    for the multinomial likelihood, sums for popularity). It applies to training and to the
    histories scored later alike."""

    binarize: bool = True


def as_csr(user_items, n_items: int | None = None, what: str = "user_items", binarize: bool = False) -> sp.csr_matrix:
    """Check and convert a users x items matrix (float32 CSR); the first place bad input is caught."""
    if not sp.issparse(user_items):
        raise DataError(f"{what} must be a scipy.sparse matrix (users x items), got {type(user_items).__name__}")
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    if n_items is not None and matrix.shape[1] != n_items:
        raise DataError(f"{what} has {matrix.shape[1]} item columns; the model was fitted on {n_items} items")
    if matrix.nnz and (not np.isfinite(matrix.data).all()):
        raise DataError(f"{what} contains NaN or infinite values")
    if binarize and not (matrix.data == 1.0).all():  # the caller's matrix stays as it was
        matrix = matrix.copy()
        matrix.eliminate_zeros()
        matrix.data[:] = 1.0
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
    """fit / recommend / top_n / similar_items / save / load over CSR users x items matrices.

    Hyperparameters live in a frozen config dataclass, passed whole or as keywords
    (``MultVAE(latent_dim=100)``); ``get_params``/``set_params`` follow scikit-learn, so
    ``sklearn.base.clone`` works. Learned state ends in ``_`` and exists only after ``fit``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    # What `recvae tune` searches unless told otherwise: per hyperparameter a range or choices, as data
    # (recvae.tune.space reads it); empty for a model with nothing worth tuning.
    search_space: ClassVar[dict] = {}

    def __init__(self, config=None, **params):
        base = config if config is not None else self.config_class()
        if not isinstance(base, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}")
        self.config = dataclasses.replace(base, **params)
        self.items_: Vocabulary | None = None

    def get_params(self, deep: bool = True) -> dict:
        """The config's fields by name, the very objects it holds (scikit-learn's clone checks identity)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}

    def set_params(self, **params) -> Recommender:
        self.config = dataclasses.replace(self.config, **params)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # -- fitting and scoring ------------------------------------------------------------------
    @abstractmethod
    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> Recommender:
        """Learn from a users x items matrix and return ``self``.

        ``validation`` (held-out users) picks the epoch of models that train by epochs; the others
        accept and ignore it. ``items`` names the columns, for outputs in original IDs.
        """

    @abstractmethod
    def _item_scorer(self, user_items: sp.csr_matrix) -> Callable[[slice], torch.Tensor]:
        """For a block of users given their (prepared) histories, a function from a slice of the items to
        the block's scores of those items (rows x sliced items). The users' side is computed once; each
        call costs the slice's share of the item side, so a catalogue can be scored in chunks."""

    def _score_block(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Scores (rows x items) for a block of users given their (prepared) histories."""
        return self._scorer(user_items)(slice(None))

    def _scorer(self, user_items: sp.csr_matrix) -> Callable[[slice], torch.Tensor]:
        """``_item_scorer`` under the model's precision (``precision`` of its config: matrix products in
        bf16 / fp16 under autocast), its scores float32."""
        precision = getattr(self.config, "precision", "fp32")
        if precision == "fp32":
            return self._item_scorer(user_items)
        device = getattr(self, "device_", torch.device("cpu"))
        with autocast(device, precision):
            scorer = self._item_scorer(user_items)

        def scores(items) -> torch.Tensor:
            with autocast(device, precision):
                return scorer(items).float()
        return scores

    def _training_matrix(self, user_items) -> sp.csr_matrix:
        """The checked training matrix, values treated as ``binarize`` says."""
        matrix = as_csr(user_items, binarize=self.config.binarize)
        if matrix.nnz == 0:
            raise DataError("user_items has no interactions to learn from")
        return matrix

    def _histories(self, user_items, what: str = "user_items") -> sp.csr_matrix:
        """Histories to score, checked against the fitted catalogue and treated as in training."""
        return as_csr(user_items, self._n_items, what, binarize=self.config.binarize)

    def _set_fitted(self, user_items: sp.csr_matrix, items: Vocabulary | None) -> None:
        """Record what every fitted model knows besides its own parameters."""
        if items is not None and len(items) != user_items.shape[1]:
            raise DataError(f"items has {len(items)} IDs for {user_items.shape[1]} item columns")
        self._n_items = user_items.shape[1]
        self.items_ = items
        # Training popularity (users per item, or value sums without binarize), for users with no
        # known item (export's --fallback popularity) and the Popularity model.
        self.item_popularity_ = torch.from_numpy(item_sums(user_items).astype(np.float32))
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
        with torch.no_grad():
            return self._score_block(self._histories(user_items)).cpu().numpy()

    def top_n(
        self,
        user_items: sp.csr_matrix,
        n: int,
        exclude_seen: bool = True,
        allowed_items: np.ndarray | None = None,
        batch_size: int = 1000,
        item_chunk: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` item indices and scores for every row of ``user_items``, in user blocks.

        Width ``min(n, allowed items)``; a row with fewer items left is padded with item -1, score -inf.
        ``item_chunk`` scores the catalogue that many items at a time with a running top ``n`` (the same
        result), so a block's scores take ``batch_size x item_chunk`` floats whatever the catalogue.
        """
        self._check_fitted()
        user_items = self._histories(user_items)
        if n < 1:
            raise ValueError("n must be at least 1")
        if item_chunk is not None and item_chunk < 1:
            raise ValueError("item_chunk must be at least 1 (or None for the whole catalogue at once)")
        width = min(n, self._n_items if allowed_items is None else len(allowed_items))
        blocks_i = [np.empty((0, width), dtype=np.int64)]
        blocks_s = [np.empty((0, width), dtype=np.float32)]
        for start in range(0, user_items.shape[0], batch_size):
            block = user_items[start : start + batch_size]
            exclude = block if exclude_seen else None
            with torch.no_grad():
                if item_chunk is None or item_chunk >= self._n_items:
                    idx, val = top_n_from_scores(self._score_block(block), n, exclude, allowed_items)
                else:
                    idx, val = top_n_in_chunks(self._scorer(block), self._n_items, item_chunk, n, exclude, allowed_items)
            blocks_i.append(idx)
            blocks_s.append(val)
        return np.concatenate(blocks_i), np.concatenate(blocks_s)

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, items=None):
        """implicit's call: row ``i`` of ``user_items`` is the history of ``userid[i]``.

        Returns (item indices, scores), best first; 1-D for one user, 2-D for an array of users.
        The model folds the history in, so any user with a history can be scored. ``items``
        restricts the candidates to those indices, ``filter_items`` removes those (not both).
        Only items left after filtering are returned: a single user gets fewer than ``N`` when
        fewer are left; a batch is padded with item -1 and score -inf, as implicit does.
        """
        self._check_fitted()
        single = np.isscalar(userid)
        userids = np.atleast_1d(np.asarray(userid))
        user_items = self._histories(user_items)
        if user_items.shape[0] != len(userids):
            raise DataError(
                f"user_items has {user_items.shape[0]} rows for {len(userids)} user IDs; "
                "pass one history row per user (user_items[userid])"
            )
        if items is not None and filter_items is not None:
            raise ValueError("pass items or filter_items, not both")
        given = items if items is not None else filter_items
        allowed = None
        if given is not None:
            given = np.unique(np.asarray(given, dtype=np.int64))
            if len(given) and (given[0] < 0 or given[-1] >= self._n_items):
                raise DataError(f"items and filter_items must be item indices in [0, {self._n_items})")
            allowed = given if items is not None else np.setdiff1d(np.arange(self._n_items), given)
        ids, scores = self.top_n(user_items, N, exclude_seen=filter_already_liked_items, allowed_items=allowed)
        if single:
            keep = ids[0] >= 0
            return ids[0][keep], scores[0][keep]
        return ids, scores

    def similar_items(self, itemid: int, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` items most similar to ``itemid`` (itself first) and their similarities."""
        raise NotImplementedError(f"{self.name} has no item representation to compare")

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
        """Inverse of ``_state``; sets ``_n_items`` and the model fitted."""

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write a model directory (see :mod:`recvae.models.serialization`)."""
        self._check_fitted()
        meta = dict(getattr(self, "metadata_", {}) or {})
        meta.update(metadata or {})
        tensors = {**self._state(), POPULARITY_KEY: self.item_popularity_}
        return save_model_dir(path, self.name, dataclasses.asdict(self.config), tensors, self.items_, meta)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model directory saved by ``save``; ``Recommender.load`` picks the right class."""
        manifest, tensors, items = read_model_dir(path)
        kind = manifest["model"]
        model_class = REGISTRY.get(kind)
        if model_class is None:
            raise ModelFileError(f"{path}: unknown model kind {kind!r}; known: {sorted(REGISTRY)}")
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


# Every model by its name: what Recommender.load, the CLI and benchmark files look names up in.
REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model known by ``cls.name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two models are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


# -- models that learn by epochs ----------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One kind of pass over the training users within an epoch.

    ``passes``: how many times in a row; ``reported``: whether its loss terms make the epoch's
    record; ``batched``: False when the model reads the data itself (RecBole's data loader).
    """

    name: str
    passes: int = 1
    reported: bool = True
    batched: bool = True


class TrainingStep(ABC):
    """What ``recvae.train.Trainer`` needs from a model that learns by epochs.

    The Trainer owns the loop (epochs, shuffled batches, β, early stopping, checkpoints, resume,
    diagnostics, callbacks, the optimiser's update and, under torchrun, DistributedDataParallel);
    the step owns the model's side of it: its losses and optimisers, its phases and what happens
    between them. A batch's loss is its mean over the batch's users (so that ranks holding parts of
    one batch can be weighted back to it); its terms come back as sums over those users (with
    ``"users"``), so an epoch's averages are exact.
    """

    phases: tuple[Phase, ...] = (Phase("train"),)
    module: torch.nn.Module

    def batch_loss(self, phase: str, batch: SparseBatch, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch of a batched phase (its gradient is what ``optimizer_for(phase)`` applies)."""
        raise NotImplementedError(f"{type(self).__name__} has no batched phase {phase!r}")

    def optimizer_for(self, phase: str) -> torch.optim.Optimizer:
        """The optimiser a batched phase updates with (the only one, unless a model says otherwise)."""
        optimizers = list(self.optimizers().values())
        if len(optimizers) != 1:
            raise NotImplementedError(f"{type(self).__name__} has several optimisers: say which one {phase!r} uses")
        return optimizers[0]

    def train_pass(self, phase: str, epoch: int) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} has no unbatched phase {phase!r}")

    def end_phase(self, phase: str) -> None:
        """Called after a phase's last pass (RecVAE refreshes its prior here)."""

    def after_update(self, phase: str) -> None:
        """Called after every optimiser update (VASP projects its item-item weight back to a zero diagonal)."""

    def posterior(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mean and log-variance of the code for diagnostics; None for models without one."""
        return None

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name, checkpointed with the module."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Further state an exact resume needs (random generators a model keeps itself)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of ``extra_state``."""


Fitter = Callable[..., "IterativeRecommender"]


class IterativeRecommender(Recommender):
    """A model trained by epochs through ``recvae.train.Trainer``.

    A subclass builds its module and step (``start_training``) and scores; everything about the
    loop is the Trainer's. ``fit`` is ``Trainer().fit(self, ...)`` with the config's training
    options. Models import nothing from training or evaluation, so that function is handed in
    once, by ``recvae.evaluate`` (the layer that can turn held-out users into a validation
    callback) through ``use_fitter``; for checkpoints, callbacks or progress call the Trainer.
    """

    _fitter: ClassVar[Fitter | None] = None
    history_: list[dict]

    @staticmethod
    def use_fitter(fitter: Fitter) -> None:
        IterativeRecommender._fitter = fitter

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> IterativeRecommender:
        if IterativeRecommender._fitter is None:
            raise RuntimeError("no trainer is installed; import recvae (or recvae.evaluate) first")
        return IterativeRecommender._fitter(self, user_items, validation, items)

    @abstractmethod
    def start_training(self, user_items: sp.csr_matrix, device: torch.device, generator: torch.Generator,
                       device_generator: torch.Generator) -> TrainingStep:
        """Build a freshly initialised module on ``device`` (weights drawn from the CPU ``generator``)
        and return its training step; ``device_generator`` draws on ``device`` (dropout, noise)."""

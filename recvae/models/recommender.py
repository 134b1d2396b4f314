"""The contract every recvae model follows, modelled on implicit's RecommenderBase and scikit-learn's
estimators: configured in the constructor, fitted by ``fit`` (which returns ``self``), learned state in
attributes ending in ``_`` that exist only once fitted, one save/load of named tensors for every model."""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recvae.data.readers import typed_ids
from recvae.data.shard import item_sums, user_activity
from recvae.data.side import names_for
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ModelFileError, NotFittedError, ParameterError, whole_at_least
from recvae.models.config import TrainingConfig, checked_settings, config_from_dict
from recvae.models.device import autocast, resolve_device
from recvae.models.inputs import as_csr
from recvae.models.latent import (AnomalyScores, Encoding, NoLatentSpaceError, PosteriorMixture, Prior,
                                  anomaly_reference, anomaly_scores, decode, encode_in_blocks, fit_posterior_mixture,
                                  kl_to_prior, recommend_group, require_latent_space, sample_users)
from recvae.models.serialization import read_model_dir, save_model_dir
from recvae.score.recommend import ExportStats, RecommendOptions, UserSide, recommend_block, whole_user_blocks
from recvae.score.topk import top_n_from_scores, top_n_in_chunks

log = logging.getLogger(__name__)

POPULARITY_KEY = "_item_popularity"
ACTIVITY_KEY = "_user_activity"  # training users per history length: how many items a sampled user gets
# where the training users sit (sample's source="posterior") and how they score (anomaly percentiles)
MIXTURE_KEYS = ("_posterior_weights", "_posterior_means", "_posterior_scale_tril")
REFERENCE_KEY = "_anomaly_reference"
DESCRIBED_USERS = 20_000  # training users the mixture and the score quantiles are taken from, drawn beyond it
POSTERIOR_COMPONENTS = 10


def _encoded_and_scored(model, user_items: sp.csr_matrix, positions: np.ndarray | None):
    """The users' codes and anomaly scores, None for what the model has not (no latent space, or no likelihood
    to score by: the codes are then kept without the scores)."""
    try:
        encoding = (encode_in_blocks(model, user_items, 1000) if positions is None else
                    Encoding(np.asarray(positions, dtype=np.float32), None))
    except NoLatentSpaceError:
        return None, None
    try:
        return encoding, anomaly_scores(model, user_items, 1000).score
    except NoLatentSpaceError:
        return encoding, None


class Recommender(ABC):
    """fit / recommend / top_n / similar_items / save / load over CSR users x items matrices.

    Hyperparameters live in a frozen config dataclass, passed whole or as keywords
    (``MultVAE(latent_dim=100)``); ``get_params``/``set_params`` follow scikit-learn, so
    ``sklearn.base.clone`` works. Learned state ends in ``_`` and exists only after ``fit`` (or ``load``):
    ``n_items_``, ``items_`` (the item IDs, or None), ``item_popularity_``, ``device_`` and ``module_``, the
    torch module holding every learned tensor (a network, or named tensors such as EASE's weights), which
    is what ``save`` writes and ``load`` reads back.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    # What `recvae tune` searches unless told otherwise: per hyperparameter a range or choices, as data
    # (recvae.tune.space reads it); empty for a model with nothing worth tuning.
    search_space: ClassVar[dict] = {}
    # prefixes of ``module_``'s state that are derived, not saved (RecVAE's copy of its encoder)
    unsaved_state: ClassVar[tuple[str, ...]] = ()
    # why a model has no latent space (what encode, decode and item_embeddings say); "" for one that has
    no_latent_space: ClassVar[str] = ""

    def __init__(self, config=None, **params):
        base = config if config is not None else self.config_class()
        if not isinstance(base, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}")
        self.config = dataclasses.replace(base, **checked_settings(self.config_class, params, self.name))

    def get_params(self, deep: bool = True) -> dict:
        """The config's fields by name, the very objects it holds (scikit-learn's clone checks identity)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}

    def set_params(self, **params) -> Recommender:
        self.config = dataclasses.replace(self.config, **checked_settings(self.config_class, params, self.name))
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
        precision = self.config.precision if isinstance(self.config, TrainingConfig) else "fp32"
        if precision == "fp32":
            return self._item_scorer(user_items)
        device = self.device_
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
        return as_csr(user_items, self.n_items_, what, binarize=self.config.binarize)

    def _set_fitted(self, user_items: sp.csr_matrix, items: Vocabulary | None, module: torch.nn.Module,
                    device: torch.device) -> None:
        """Record what every fitted model knows besides its own parameters (held by ``module``)."""
        if items is not None and len(items) != user_items.shape[1]:
            raise DataError(f"items has {len(items)} IDs for {user_items.shape[1]} item columns")
        self.module_ = module
        self.device_ = device
        self.items_ = items
        # Training popularity (users per item, or value sums without binarize), for users with no
        # known item (export's --fallback popularity) and the Popularity model.
        self.item_popularity_ = torch.from_numpy(item_sums(user_items).astype(np.float32))
        # training users per history length, for sample (a torchrun process's share: summed over every share)
        activity = user_activity(user_items)
        self.user_activity_ = None if activity is None else torch.from_numpy(activity.astype(np.float32))
        self.posterior_mixture_ = self.anomaly_reference_ = None  # _describe_training_users' once trained
        self.metadata_ = {}  # what save writes beside the weights (an iterative model's history, ...)
        self.n_items_ = user_items.shape[1]  # last: what makes the model count as fitted

    def _describe_training_users(self, user_items, positions: np.ndarray | None = None, gather=None,
                                 share: float = 1.0) -> None:
        """Once trained: a Gaussian mixture over the training users' positions in the latent space (what
        ``sample`` draws from) and the quantiles of their anomaly scores (what ``anomaly_scores``' percentile
        reads), from up to ``DESCRIBED_USERS`` of them. None of either where the model has no such thing or where
        its config says not to (``describe_training_users``). ``positions``: the training users' codes where the
        fit already has them (ALS's and BPR's user factors), instead of encoding every user again (BPR's fold-in
        would take minutes). Under torchrun ``user_items`` is the process's own ``share`` of the training users
        and ``gather(value)`` returns every process's value: each process encodes and scores its part of the
        ``DESCRIBED_USERS``, and every process describes them all, as one process would."""
        self.posterior_mixture_ = self.anomaly_reference_ = None
        if not self.config.describe_training_users or (gather is None and user_items.shape[0] < 2):
            return
        seed = getattr(self.config, "seed", 0)
        limit = DESCRIBED_USERS if gather is None else int(np.ceil(DESCRIBED_USERS * share))
        if user_items.shape[0] > limit:
            rows = np.sort(np.random.default_rng(seed).choice(user_items.shape[0], limit, replace=False))
            user_items = user_items[rows]
            positions = None if positions is None else positions[rows]
        encoding, scores = _encoded_and_scored(self, user_items, positions)
        if gather is not None:  # every process meets here, whatever its share (a collective)
            parts = gather((encoding, scores))
            encoding = None if parts[0][0] is None else Encoding(
                np.concatenate([p[0].mean for p in parts]),
                None if parts[0][0].std is None else np.concatenate([p[0].std for p in parts]))
            scores = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        if encoding is not None and len(encoding.mean) >= 2:
            self.posterior_mixture_ = fit_posterior_mixture(encoding, POSTERIOR_COMPONENTS, seed)
            if scores is not None:
                self.anomaly_reference_ = anomaly_reference(scores)

    def _forget_fit(self) -> None:
        """Back to the unfitted state (a fit that failed half-way leaves nothing behind)."""
        for name in [name for name in vars(self) if name.endswith("_") and not name.startswith("__")]:
            delattr(self, name)

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
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
        whole_at_least(1, n=n, batch_size=batch_size)
        if item_chunk is not None:
            whole_at_least(1, item_chunk=item_chunk)
        width = min(n, self.n_items_ if allowed_items is None else len(allowed_items))
        blocks_i = [np.empty((0, width), dtype=np.int64)]
        blocks_s = [np.empty((0, width), dtype=np.float32)]
        for start in range(0, user_items.shape[0], batch_size):
            block = user_items[start : start + batch_size]
            exclude = block if exclude_seen else None
            with torch.no_grad():
                if item_chunk is None or item_chunk >= self.n_items_:
                    idx, val = top_n_from_scores(self._score_block(block), n, exclude, allowed_items)
                else:
                    idx, val = top_n_in_chunks(self._scorer(block), self.n_items_, item_chunk, n, exclude, allowed_items)
            blocks_i.append(idx)
            blocks_s.append(val)
        return np.concatenate(blocks_i), np.concatenate(blocks_s)

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, items=None):
        """implicit's call, in matrix indices: row ``i`` of ``user_items`` is the history of ``userid[i]``, and
        the items returned are column indices (``recommend_df`` takes and returns original IDs).

        Returns (item indices, scores), best first; 1-D for one user, 2-D for an array of users.
        The model folds the history in, so any user with a history can be scored. ``items``
        restricts the candidates to those indices, ``filter_items`` removes those (not both).
        Only items left after filtering are returned: a single user gets fewer than ``N`` when
        fewer are left; a batch is padded with item -1 and score -inf, as implicit does.
        """
        self._check_fitted()
        single = np.isscalar(userid)
        userids = np.atleast_1d(np.asarray(userid))
        whole_at_least(1, N=N)  # implicit's name for top_n's n
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
            if len(given) and (given[0] < 0 or given[-1] >= self.n_items_):
                raise DataError(f"items and filter_items must be item indices in [0, {self.n_items_})")
            allowed = given if items is not None else np.setdiff1d(np.arange(self.n_items_), given)
        ids, scores = self.top_n(user_items, N, exclude_seen=filter_already_liked_items, allowed_items=allowed)
        if single:
            keep = ids[0] >= 0
            return ids[0][keep], scores[0][keep]
        return ids, scores

    def similar_items(self, itemid: int, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """implicit's call, in item indices: the ``N`` item indices most similar to item index ``itemid`` (itself
        first) and their similarities. ``similar_df`` takes and returns original item IDs."""
        raise NotImplementedError(f"{self.name} has no item representation to compare")

    def similar_df(self, items=None, n: int = 10, item_names=None) -> pd.DataFrame:
        """The ``n`` items most similar to each of ``items`` (original item IDs; None: every item the model
        scores, an item-to-item table of the whole catalogue), itself left out.

        Returns columns item, similar_item, rank (1 = most similar), score; with ``item_names`` (a table's
        path, as ``recvae.data.side.read_side_table`` reads it, or a Series ID → name) also item_name and
        similar_item_name. An ID the model does not know is refused, naming it."""
        self._check_fitted()
        whole_at_least(1, n=n)
        if self.items_ is None:
            raise DataError("the model does not know its item IDs (fit it with items=...)")
        catalogue, parts = self.catalogue(), []
        width = 0  # each item's neighbours, itself left out: the same for every block
        if items is None:
            indices = np.arange(len(catalogue))
        else:
            indices = self.items_.index_of(typed_ids(pd.Series(np.atleast_1d(np.asarray(items, dtype=object))),
                                                     self.items_.kind))
        # implicit's batch call, a block of items at a time: at most 2^26 similarities (256 MB) at once
        size = max(1, min(1024, 2**26 // self.n_items_))
        for start in range(0, len(indices), size):
            block = np.asarray(indices[start:start + size], dtype=np.int64)
            found, similarity = self.similar_items(block, N=min(n + 1, self.n_items_))
            # each row's own item to its end (the rest in order), then the first of the others
            width = min(n, found.shape[1] - 1)
            order = np.argsort(found == block[:, None], axis=1, kind="stable")[:, :width]
            parts.append((np.take_along_axis(found, order, axis=1), np.take_along_axis(similarity, order, axis=1)))
        neighbours = np.concatenate([p[0] for p in parts]).ravel() if parts else np.zeros(0, dtype=np.int64)
        frame = pd.DataFrame({
            "item": catalogue.id_of(np.repeat(np.asarray(indices, dtype=np.int64), width)),
            "similar_item": catalogue.id_of(neighbours),
            "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), len(indices)),
            "score": (np.concatenate([p[1] for p in parts]).ravel() if parts else np.zeros(0)).astype(np.float32)})
        names = names_for(catalogue, item_names)
        if names is not None:
            frame["item_name"] = names[catalogue.index_of(frame["item"].to_numpy())]
            frame["similar_item_name"] = names[catalogue.index_of(frame["similar_item"].to_numpy())]
        return frame

    def recommend_df(
        self, history: pd.DataFrame, n: int = 10, include_seen: bool = False, fallback: str | None = None,
        batch_size: int = 1000, item_names=None, user_features=None,
    ) -> pd.DataFrame:
        """Top ``n`` per user from a frame of (user, item[, rating]) rows in original IDs (a rating is the value a
        model fitted with ``binarize=False`` sees, as in training).

        Returns columns user, item, rank (1 = best), score, and name with ``item_names`` (as in ``similar_df``).
        Items the model does not
        know are ignored; a user without a known item gets no row, or popularity with
        ``fallback="popularity"`` (then a ``fallback`` column marks them). Any user with
        a history is scored by fold-in, whether or not it was in training. ``user_features``: a CVAE's users'
        side table (its path; needed by a CVAE, refused by any other model).
        """
        self._check_fitted()
        if self.items_ is None:
            raise DataError("the model does not know its item IDs (fit it with items=...)")
        missing = {"user", "item"} - set(history.columns)
        if missing:
            raise DataError(f"history lacks column(s) {sorted(missing)}; expected user and item")
        if history[["user", "item"]].isna().any().any():
            raise DataError("history has missing user or item IDs")
        options = RecommendOptions(n=n, include_seen=include_seen, fallback=fallback, batch_size=batch_size,
                                   item_names=names_for(self.catalogue(), item_names),
                                   user_side=UserSide.for_model(self, user_features))
        grouped = history.iloc[np.argsort(pd.factorize(history["user"])[0], kind="stable")]  # each user's rows together
        scored = [recommend_block(self, block, options) for block in whole_user_blocks([grouped], batch_size)]
        if not scored:
            scored = [recommend_block(self, grouped, options)]
        stats = ExportStats()
        for _, block_stats in scored:
            stats.add(block_stats)
        for line in stats.left_out(fallback, fallback_option='fallback="popularity"'):
            log.warning("recommend_df: %s", line)
        return pd.DataFrame({k: np.concatenate([b[k] for b, _ in scored]) for k in scored[0][0]})

    # -- the latent space (recvae.models.latent) -------------------------------------------------
    def encode(self, user_items: sp.csr_matrix, batch_size: int = 1000) -> Encoding:
        """Each history's position in the latent space: posterior mean and standard deviation (``Encoding``),
        for any user (fold-in, no refit), computed in blocks of ``batch_size`` users."""
        self._check_fitted()
        return encode_in_blocks(self, self._histories(user_items), batch_size)

    def decode(self, codes, conditions=None) -> np.ndarray:
        """The scores over every item (users x items) that positions in the latent space decode to; a CVAE's
        for users with side features ``conditions`` (one row per code)."""
        self._check_fitted()
        return decode(self, codes, conditions)

    def fitted_item_features(self) -> sp.csr_matrix | None:
        """The items' encoded side features (items x features) the model was fitted with and keeps in its
        weights; None for a model that reads none."""
        self._check_fitted()
        return None

    def item_embeddings(self) -> dict[str, np.ndarray]:
        """The item vectors the model has (items x dimensions): "output", the rows that turn a user's last
        layer into item scores, and "input", the first layer's rows, where the model has them."""
        self._check_fitted()
        return {name: vectors.detach().float().cpu().numpy() for name, vectors in self._item_vectors().items()}

    def recommend_group(self, user_items: sp.csr_matrix, weights=None, N: int = 10,
                        filter_already_liked_items: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """One list for a group (a household): see ``recvae.models.latent.recommend_group``."""
        self._check_fitted()
        return recommend_group(self, self._histories(user_items), weights, N, filter_already_liked_items)

    def anomaly_scores(self, user_items: sp.csr_matrix, batch_size: int = 1000,
                       neighbours: int | None = None) -> AnomalyScores:
        """How unlikely each history is under the model: the negative ELBO per interaction and its parts, and
        with ``neighbours`` how crowded each user's latent neighbourhood is among these users
        (``recvae.models.latent.anomaly_scores``); models with a multinomial likelihood only."""
        self._check_fitted()
        return anomaly_scores(self, self._histories(user_items), batch_size, neighbours)

    def sample(self, n_users: int, seed: int = 0, temperature: float = 1.0, batch_size: int = 1000,
               source: str = "posterior", conditions=None) -> pd.DataFrame:
        """A synthetic log of ``n_users`` users (see ``recvae.models.latent.sample_users``; ``source`` "posterior"
        or "prior"; a CVAE's users' side features ``conditions``, a row per user): columns user, item, items in
        original IDs, the layout ``read_interactions`` gives; the same seed gives the same log."""
        self._check_fitted()
        return pd.concat(list(sample_users(self, n_users, seed, temperature, batch_size, source, conditions)),
                         ignore_index=True)

    def _encode_block(self, user_items: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NoLatentSpaceError(f"{self.name} has no latent space: {self.no_latent_space}")

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        raise NoLatentSpaceError(f"{self.name} has no latent space: {self.no_latent_space}")

    def _history_scorer(self, user_items: sp.csr_matrix):
        """What a model adds to its decoded scores from the histories ``user_items`` themselves, as ``items ->
        scores`` (Mult-VAE's linear path); None: nothing (the decoded scores are the model's)."""
        return None

    def _decode_rows(self, user_items: sp.csr_matrix, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` decoded for the users of ``user_items`` (a row each): a conditional model reads their side
        features there, any other model the codes alone."""
        return self._decode_block(codes)

    def _checked_item_features(self, item_features, user_items):
        """``item_features`` as the model's training takes them (``fit``'s); a model that reads none refuses them."""
        if item_features is not None and "item_feature_width" not in self.get_params():
            raise ParameterError("item_features", "given", f"{self.name} reads none (it has no item_feature_width)")
        return None

    def catalogue(self) -> Vocabulary | None:
        """The items the model scores, in index order, as its outputs write them: ``items_`` without a CVAE's
        user-feature columns (None where the model does not know its item IDs). A CVAE's vocabulary is text, its
        feature columns' names beside the items; its items are typed back as a reader types a log's (integers
        where every ID spells one), so that it writes a log's integer IDs as integers, as any other model does."""
        if self.items_ is None:
            return None
        n_items = self._item_columns(len(self.items_))
        if n_items == len(self.items_):
            return self.items_
        memo = getattr(self, "_catalogue_of", None)  # typed once per vocabulary: every export block asks for it
        if memo is None or memo[0] is not self.items_:
            typed = typed_ids(pd.Series(self.items_.ids[:n_items], dtype=object))
            memo = self._catalogue_of = (self.items_, Vocabulary(typed, self.items_.name))
        return memo[1]

    def _item_columns(self, n_columns: int) -> int:
        """How many of the input's columns are items (a CVAE's last ones are user features)."""
        return n_columns

    def _prior(self) -> Prior:
        """The latent prior ``sample(source="prior")`` draws from: N(0, I) unless the model says otherwise
        (RecVAE's composite prior depends on the history, and is taken as N(0, I) here)."""
        return Prior(require_latent_space(self))

    def _kl_to_prior(self, user_items: sp.csr_matrix, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
        """Per user of ``user_items``, the KL of its posterior N(mean, std²) to the prior (anomaly scores)."""
        return kl_to_prior(mean, std, self._prior().components)

    def _item_vectors(self) -> dict[str, torch.Tensor]:
        raise NoLatentSpaceError(f"{self.name} has no latent space: {self.no_latent_space}")

    # -- persistence ----------------------------------------------------------------------------
    @abstractmethod
    def _new_module(self, n_items: int) -> torch.nn.Module:
        """An unfitted ``module_`` for ``n_items`` items and the config: the shapes ``load`` fills in."""

    def _restored(self) -> None:
        """Called once ``load`` has filled ``module_`` in (RecVAE rebuilds its prior from the encoder)."""

    def _saved_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.module_.state_dict().items() if not k.startswith(self.unsaved_state)}

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write a model directory (see :mod:`recvae.models.serialization`)."""
        self._check_fitted()
        meta = {**self.metadata_, **(metadata or {})}
        tensors = {**self._saved_tensors(), POPULARITY_KEY: self.item_popularity_,
                   **({ACTIVITY_KEY: self.user_activity_} if self.user_activity_ is not None else {})}
        mixture, reference = self.posterior_mixture_, self.anomaly_reference_
        if mixture is not None:
            tensors.update(zip(MIXTURE_KEYS, (torch.from_numpy(np.ascontiguousarray(a)) for a in
                                              (mixture.weights, mixture.means, mixture.scale_tril))))
        if reference is not None:
            tensors[REFERENCE_KEY] = torch.from_numpy(reference)
        return save_model_dir(path, self.name, dataclasses.asdict(self.config), tensors, self.items_, meta)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Recommender:
        """Load a model directory saved by ``save``; ``Recommender.load`` picks the right class. The model
        goes to ``device``, else to its config's device, else RECVAE_DEVICE, else the CPU (never to a GPU
        nobody asked for)."""
        from recvae.models.registry import REGISTRY  # the registry lists every model, so it sits above this module

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
        popularity = tensors.pop(POPULARITY_KEY, None)
        activity = tensors.pop(ACTIVITY_KEY, None)  # None in a model saved before sampling was offered
        mixture = [tensors.pop(key, None) for key in MIXTURE_KEYS]  # None in older models too
        reference = tensors.pop(REFERENCE_KEY, None)
        if popularity is None or popularity.ndim != 1:
            raise ModelFileError(f"{path}: item popularity is missing")
        if items is not None and len(items) != len(popularity):
            raise ModelFileError(f"{path}: {len(items)} item IDs for {len(popularity)} items")
        model = model_class(config)
        model._fill(tensors, popularity, path)
        placed = resolve_device(device or getattr(config, "device", None), prefer_cuda=False)
        model.module_.to(placed).eval()
        model.device_ = placed
        model.items_ = items
        model.metadata_ = manifest.get("metadata", {})
        model.user_activity_ = activity
        model.posterior_mixture_ = (None if mixture[0] is None else
                                    PosteriorMixture(*(t.double().numpy() for t in mixture)))
        model.anomaly_reference_ = None if reference is None else reference.double().numpy()
        model._restored()
        log.info("%s: %s loaded on %s", path, kind, placed)
        return model

    def _fill(self, tensors: dict[str, torch.Tensor], popularity: torch.Tensor, path) -> None:
        """The loaded tensors into a new ``module_`` of the right shapes; refuses any that do not fit."""
        module = self._new_module(len(popularity))
        expected = {k for k in module.state_dict() if not k.startswith(self.unsaved_state)}
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        if missing or unexpected:
            raise ModelFileError(f"{path}: weights do not match the config (missing {missing}, unexpected {unexpected})")
        try:
            module.load_state_dict(tensors, strict=False)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: weights do not match the config ({exc})") from None
        self.module_ = module
        self.item_popularity_ = popularity
        self.n_items_ = len(popularity)

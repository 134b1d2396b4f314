"""BPR matrix factorization (Rendle et al., UAI 2009) trained by implicit.

implicit's BPR has no way to score a user it was not trained on, so recvae folds users in
itself, by the same objective with the item factors frozen: each user's vector starts at
zero and takes ``fold_in_steps`` Adam steps on the BPR loss, one uniformly sampled
negative per positive item and step, plus ``regularization / 2 * |u|^2`` as in training.
The sampling is seeded, so the same history always gets the same recommendations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError
from recvae.models._implicit import binary, import_implicit, single_threaded_blas
from recvae.models.base import Recommender, as_csr
from recvae.split.base import HeldOut


@dataclass(frozen=True)
class BPRConfig:
    """implicit's defaults for training; the fold-in settings are recvae's."""

    factors: int = 100
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 98765
    fold_in_steps: int = 100
    fold_in_learning_rate: float = 0.05

    def __post_init__(self):
        if self.factors < 1 or self.iterations < 1 or self.fold_in_steps < 1:
            raise ValueError("factors, iterations and fold_in_steps must be at least 1")
        if not (self.learning_rate > 0 and self.fold_in_learning_rate > 0) or self.regularization < 0:
            raise ValueError("learning rates must be positive and regularization >= 0")


class BPR(Recommender):
    name = "BPR"
    config_class = BPRConfig

    def fit(self, user_items: sp.csr_matrix, validation: HeldOut | None = None, items: Vocabulary | None = None, **_):
        user_items = as_csr(user_items)
        if user_items.nnz == 0:
            raise DataError("user_items has no interactions to learn from")
        c = self.config
        implicit = import_implicit()
        with single_threaded_blas():
            solver = implicit.cpu.bpr.BayesianPersonalizedRanking(
                factors=c.factors, learning_rate=c.learning_rate, regularization=c.regularization,
                iterations=c.iterations, random_state=c.seed,
            )
            solver.fit(binary(user_items), show_progress=False)
        # implicit appends an item-bias column to the item factors and a constant 1 to the users'.
        factors = torch.from_numpy(np.ascontiguousarray(solver.item_factors))
        self.item_factors_ = factors[:, :-1].contiguous()
        self.item_bias_ = factors[:, -1].contiguous()
        self._set_fitted(user_items, items)
        return self

    def user_factors(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Fold-in by BPR against the frozen item factors (see the module docstring)."""
        self._check_fitted()
        user_items = as_csr(user_items, self._n_items)
        n_users = user_items.shape[0]
        users = torch.zeros(n_users, self.config.factors, requires_grad=True)
        rows = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(user_items.indptr)))
        positives = torch.from_numpy(user_items.indices.astype(np.int64))
        if len(positives) == 0:
            return users.detach()
        # Same seed for every block: a user's factors depend on its history, not on its neighbours.
        generator = torch.Generator().manual_seed(self.config.seed)
        optimizer = torch.optim.Adam([users], lr=self.config.fold_in_learning_rate)
        item_factors, item_bias = self.item_factors_, self.item_bias_
        with torch.enable_grad():
            for _ in range(self.config.fold_in_steps):
                negatives = torch.randint(self._n_items, positives.shape, generator=generator)
                u = users[rows]
                margin = (u * (item_factors[positives] - item_factors[negatives])).sum(1)
                margin = margin + item_bias[positives] - item_bias[negatives]
                loss = torch.nn.functional.softplus(-margin).sum() + 0.5 * self.config.regularization * users.pow(2).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return users.detach()

    def _score_block(self, user_items: sp.csr_matrix) -> torch.Tensor:
        return torch.addmm(self.item_bias_, self.user_factors(user_items), self.item_factors_.T)

    def similar_items(self, itemid: int, N: int = 10):
        self._check_fitted()
        factors = torch.nn.functional.normalize(self.item_factors_, dim=1)
        values, indices = torch.topk(factors @ factors[itemid], min(N, self._n_items))
        return indices.numpy(), values.numpy()

    def _state(self) -> dict[str, torch.Tensor]:
        return {"item_factors": self.item_factors_, "item_bias": self.item_bias_}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.item_factors_ = tensors["item_factors"].float().contiguous()
        self.item_bias_ = tensors["item_bias"].float().contiguous()
        if self.item_factors_.shape[1] != self.config.factors or self.item_bias_.shape != self.item_factors_.shape[:1]:
            raise ValueError("item factors or biases do not match the config")
        self._n_items = self.item_factors_.shape[0]
        self._fitted = True

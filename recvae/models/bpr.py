"""BPR matrix factorization (Rendle et al., UAI 2009) trained by implicit.

implicit's BPR has no way to score a user it was not trained on, so recvae folds users in
itself, by the same objective with the item factors frozen: each user's vector starts at
zero and takes ``fold_in_steps`` Adam steps on the BPR loss, one uniformly sampled
negative per positive item and step, plus ``regularization / 2 * |u|^2`` as in training.
The sampling is seeded and does not depend on the other users scored with it, so the same
history always gets the same recommendations.
"""

from __future__ import annotations


import numpy as np
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.models._implicit import FactorModel, fit_solver, import_implicit, single_threaded_blas
from recvae.models.config import BPRConfig
from recvae.models.nn import LearnedTensors


def bpr_fold_in(
    user_items: sp.csr_matrix, item_factors: torch.Tensor, item_bias: torch.Tensor | None, regularization: float,
    steps: int, learning_rate: float, seed: int,
) -> torch.Tensor:
    """User vectors fitted by the BPR loss against frozen item factors (and biases), one row per history."""
    n_users, n_items = user_items.shape
    users = torch.zeros(n_users, item_factors.shape[1], requires_grad=True)
    counts = np.diff(user_items.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(n_users), counts))
    positives = torch.from_numpy(user_items.indices.astype(np.int64))
    if len(positives) == 0:
        return users.detach()
    # The negative for a user's j-th item at step s is table[j, s], drawn row by row from a fixed seed:
    # the same for every block, so a user's factors depend on its history alone, not on its neighbours
    # (the loss and Adam's updates are separable over users).
    rank = torch.from_numpy(np.arange(len(positives)) - np.repeat(user_items.indptr[:-1], counts))
    table = torch.randint(n_items, (int(counts.max()), steps), generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam([users], lr=learning_rate)
    item_factors = item_factors.detach()
    with torch.enable_grad():
        for step in range(steps):
            negatives = table[rank, step]
            margin = (users[rows] * (item_factors[positives] - item_factors[negatives])).sum(1)
            if item_bias is not None:
                margin = margin + item_bias[positives] - item_bias[negatives]
            loss = torch.nn.functional.softplus(-margin).sum() + 0.5 * regularization * users.pow(2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return users.detach()


class BPR(FactorModel):
    name = "BPR"
    config_class = BPRConfig
    search_space = {"factors": {"low": 16, "high": 256, "log": True},
                    "learning_rate": {"low": 1e-3, "high": 0.3, "log": True},
                    "regularization": {"low": 1e-5, "high": 0.1, "log": True}}

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> BPR:
        """implicit's BPR on ``user_items`` (every stored item a positive); ``validation`` is not used."""
        user_items = self._training_matrix(user_items)
        c = self.config
        implicit = import_implicit()
        with single_threaded_blas():
            solver = implicit.cpu.bpr.BayesianPersonalizedRanking(
                factors=c.factors, learning_rate=c.learning_rate, regularization=c.regularization,
                iterations=c.iterations, random_state=c.seed, num_threads=c.num_threads,
            )
        fit_solver(solver, user_items, self.name, f"learning_rate={c.learning_rate:.3g}, "
                   f"regularization={c.regularization:.3g}, factors={c.factors}")
        # implicit appends an item-bias column to the item factors and a constant 1 to the users'.
        factors = torch.from_numpy(np.ascontiguousarray(solver.item_factors))
        learned = LearnedTensors(item_factors=factors[:, :-1].contiguous(), item_bias=factors[:, -1].contiguous())
        self._set_fitted(user_items, items, learned, torch.device("cpu"))
        self._describe_training_users(user_items, np.asarray(solver.user_factors)[:, :-1])  # less the constant 1
        return self

    def user_factors(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Fold-in by BPR against the frozen item factors (see the module docstring)."""
        self._check_fitted()
        c = self.config
        learned = self.module_
        return bpr_fold_in(self._histories(user_items), learned.item_factors, learned.item_bias, c.regularization,
                           c.fold_in_steps, c.fold_in_learning_rate, c.seed)

    def _item_scorer(self, user_items: sp.csr_matrix):
        users = self.user_factors(user_items)
        learned = self.module_
        return lambda items: torch.addmm(learned.item_bias[items], users, learned.item_factors[items].T)

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.module_.item_bias, codes, self.module_.item_factors.T)

    def _new_module(self, n_items: int) -> LearnedTensors:
        return LearnedTensors(item_factors=torch.zeros(n_items, self.config.factors), item_bias=torch.zeros(n_items))


"""Implicit-feedback ALS (Hu, Koren, Volinsky, ICDM 2008) trained by implicit.

A user outside training is folded in as ALS itself would: the least-squares solve of that
user's factors against the trained item factors (implicit's ``recalculate_user``), so
held-out users are scored without retraining.
"""

from __future__ import annotations


import numpy as np
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.models._implicit import FactorModel, fit_solver, import_implicit, single_threaded_blas
from recvae.models.config import ALSConfig
from recvae.models.nn import LearnedTensors


class ALS(FactorModel):
    name = "ALS"
    config_class = ALSConfig
    # recvae tune's default ranges (recvae.tune.space): around implicit's defaults, log-scaled
    search_space = {"factors": {"low": 16, "high": 512, "log": True},
                    "regularization": {"low": 1e-3, "high": 100.0, "log": True},
                    "alpha": {"low": 0.1, "high": 100.0, "log": True}}

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> ALS:
        """implicit's solver on ``user_items`` (confidence ``1 + alpha * value``); ``validation`` is not used."""
        user_items = self._training_matrix(user_items)
        c = self.config
        implicit = import_implicit()
        with single_threaded_blas():  # implicit checks the BLAS threads when it builds the solver
            solver = implicit.cpu.als.AlternatingLeastSquares(
                factors=c.factors, regularization=c.regularization, alpha=c.alpha, iterations=c.iterations,
                random_state=c.seed, num_threads=c.num_threads,
            )
        fit_solver(solver, user_items, self.name, f"alpha={c.alpha:.3g}, regularization={c.regularization:.3g}, "
                   f"factors={c.factors}")
        factors = torch.from_numpy(np.ascontiguousarray(solver.item_factors))
        self._set_fitted(user_items, items, LearnedTensors(item_factors=factors), torch.device("cpu"))
        self._describe_training_users(user_items, np.asarray(solver.user_factors))
        return self

    def user_factors(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Fold-in: each row's factors solved against the fixed item factors (implicit's ``recalculate_user``
        on a solver holding the fitted item factors; it keeps no other state)."""
        self._check_fitted()
        user_items = self._histories(user_items)
        c = self.config
        implicit = import_implicit()
        with single_threaded_blas():
            solver = implicit.cpu.als.AlternatingLeastSquares(
                factors=c.factors, regularization=c.regularization, alpha=c.alpha, iterations=c.iterations)
            solver.item_factors = self.module_.item_factors.cpu().numpy()
            return torch.from_numpy(solver.recalculate_user(np.arange(user_items.shape[0]), user_items))

    def _item_scorer(self, user_items: sp.csr_matrix):
        users = self.user_factors(user_items)
        item_factors = self.module_.item_factors
        return lambda items: users @ item_factors[items].T

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.module_.item_factors.T

    def _new_module(self, n_items: int) -> LearnedTensors:
        return LearnedTensors(item_factors=torch.zeros(n_items, self.config.factors))


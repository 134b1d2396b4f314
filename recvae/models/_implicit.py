"""What the implicit-backed models share: a clear error when implicit is missing, one BLAS thread, a
solver that diverges named as such, and the base class of a model whose users are factors folded in.

implicit parallelises its solvers itself and warns (rightly: it runs several times slower) when
OpenBLAS also spawns threads inside each of them, so its calls run under a one-thread BLAS limit.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod

import scipy.sparse as sp
import torch

from recvae.errors import TrainingDivergedError
from recvae.models.inputs import cosine_similar_items
from recvae.models.recommender import Recommender


def import_implicit():
    try:
        import implicit.cpu.als
        import implicit.cpu.bpr
    except ImportError as exc:
        raise ImportError(f"this model needs the implicit package ({exc}); pip install implicit") from None
    return implicit


@contextlib.contextmanager
def single_threaded_blas():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fit_solver(solver, user_items, model_name: str, setting: str) -> None:
    """``solver.fit`` under a one-thread BLAS; implicit's NaN check (a learning rate or weight too high) is
    raised as ``TrainingDivergedError`` naming the model and its setting."""
    from implicit.recommender_base import ModelFitError

    with single_threaded_blas():
        try:
            solver.fit(user_items, show_progress=False)
        except ModelFitError as exc:
            raise TrainingDivergedError(f"{model_name} diverged at {setting} ({exc}): lower its learning rate or "
                                        "confidence weight, or raise its regularization") from None


class FactorModel(Recommender):
    """A matrix factorisation: learned item factors (``module_.item_factors``), each user's factors solved by
    ``user_factors`` against them (fold-in), so a user's code is a point without uncertainty."""

    @abstractmethod
    def user_factors(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Each row's factors, solved against the fitted item factors."""

    def similar_items(self, itemid: int, N: int = 10):
        self._check_fitted()
        return cosine_similar_items(self.module_.item_factors, itemid, N)

    def _encode_block(self, user_items: sp.csr_matrix):
        return self.user_factors(user_items), None  # factors, no uncertainty

    def _item_vectors(self) -> dict[str, torch.Tensor]:
        return {"output": self.module_.item_factors}

"""EASE: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

A closed-form item-item model: B = I - P diagMat(1 / diag(P)) with P = (X^T X + lambda I)^-1,
so the diagonal of B is zero. Memory and time grow with items squared (cubed for the
inverse), which suits catalogues up to some tens of thousands of items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.models.base import ModelConfig, Recommender, register
from recvae.models.device import resolve_device


@dataclass(frozen=True)
class EASEConfig(ModelConfig):
    """``l2`` is the paper's lambda (500 on ML-20M); ``device`` as in TrainingConfig."""

    l2: float = 500.0
    device: str | None = None

    def __post_init__(self):
        if not self.l2 > 0:
            raise ValueError("l2 must be positive")


@register
class EASE(Recommender):
    name = "EASE"
    config_class = EASEConfig
    search_space = {"l2": {"low": 1.0, "high": 1e5, "log": True}}

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> EASE:
        """The closed form on ``user_items``; ``validation`` is not used (nothing to stop early)."""
        x = user_items = self._training_matrix(user_items)
        self.device_ = resolve_device(self.config.device)
        gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64)).to(self.device_)
        gram.diagonal().add_(self.config.l2)
        precision = torch.linalg.inv(gram)
        weights = -precision / precision.diagonal()
        weights.diagonal().zero_()
        self.weights_ = weights.float().contiguous()
        self._set_fitted(user_items, items)
        return self

    def _score_block(self, user_items: sp.csr_matrix) -> torch.Tensor:
        return torch.from_numpy(user_items.toarray()).to(self.device_) @ self.weights_

    def similar_items(self, itemid: int, N: int = 10):
        self._check_fitted()
        values, indices = torch.topk(self.weights_[:, itemid], min(N, self._n_items))
        return indices.cpu().numpy(), values.cpu().numpy()

    def _state(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights_}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.device_ = resolve_device(self.config.device)
        self.weights_ = tensors["weights"].to(self.device_).contiguous()
        self._n_items = self.weights_.shape[0]
        self._fitted = True

"""DLAE and EDLAE: Steck, "Autoencoders that don't overfit towards the Identity", NeurIPS 2020.

Training a linear item-item autoencoder with input dropout of rate p is, in expectation, a ridge regression
whose penalty on each item grows with its count: Lambda = lambda + p / (1 - p) diag(X^T X). With
P = (X^T X + diagMat(Lambda))^-1:

- DLAE (dropout linear autoencoder, full rank): B = (X^T X + diagMat(Lambda))^-1 X^T X = I - P diagMat(Lambda).
  Its diagonal is not forced to zero; dropout alone keeps it from the identity.
- EDLAE (emphasised denoising): the dropped-out items' errors emphasised, which in the full-rank case
  yields EASE's zero-diagonal form under the same penalty: B = I - P diagMat(1 / diag(P)). With dropout 0
  it is EASE.

Both share EASE's memory bound (one items x items float32 matrix) and its capacity check.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.models.config import DLAEConfig
from recvae.models.device import resolve_device
from recvae.models.ease import EASE, _weights_from_precision, check_memory, gram_matrix, penalised_inverse
from recvae.models.nn import LearnedTensors
from recvae.models.training.distributed import sum_over_ranks


def dropout_penalty(gram_diagonal: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """Lambda, per item: ``l2`` plus dropout / (1 - dropout) times the item's diagonal of X^T X."""
    return (l2 + dropout / (1.0 - dropout) * np.asarray(gram_diagonal, dtype=np.float64)).astype(np.float32)


def dlae_weights(x: sp.csr_matrix, l2: float, dropout: float, over_ranks: bool = False) -> torch.Tensor:
    """B = I - P diagMat(Lambda), in place of P (C-ordered through P's symmetry, as EASE's). ``over_ranks``:
    under torchrun, where ``x`` is this process's share of the users (as for every function here)."""
    gram = _gram(x, over_ranks)
    penalty = dropout_penalty(np.diag(gram), l2, dropout)
    precision = penalised_inverse(gram, penalty)
    b = precision.T if precision.flags.f_contiguous else precision
    b *= -penalty[None, :]
    b[np.diag_indices(b.shape[0])] += 1.0
    return torch.from_numpy(b)


def edlae_weights(x: sp.csr_matrix, l2: float, dropout: float, over_ranks: bool = False) -> torch.Tensor:
    """B = I - P diagMat(1 / diag(P)) with a zero diagonal: EASE's form under DLAE's penalty."""
    gram = _gram(x, over_ranks)
    return _weights_from_precision(penalised_inverse(gram, dropout_penalty(np.diag(gram), l2, dropout)))


def _gram(x: sp.csr_matrix, over_ranks: bool) -> np.ndarray:
    """X^T X, summed over every process's share of the users where ``over_ranks``."""
    check_memory(x.shape[1])
    gram = gram_matrix(x)
    return sum_over_ranks(gram) if over_ranks else gram


class DLAE(EASE):
    name = "DLAE"
    config_class = DLAEConfig
    search_space = {"l2": {"low": 1.0, "high": 1e4, "log": True}, "dropout": {"low": 0.05, "high": 0.9}}
    _weights = staticmethod(dlae_weights)

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> DLAE:
        """The closed form on ``user_items``; ``validation`` is not used (nothing to stop early)."""
        x = user_items = self._training_matrix(user_items)
        device = resolve_device(self.config.device)
        weights = self._weights(x, self.config.l2, self.config.dropout).to(device)
        self._set_fitted(user_items, items, LearnedTensors(weights=weights), device)
        return self


class EDLAE(DLAE):
    name = "EDLAE"
    _weights = staticmethod(edlae_weights)

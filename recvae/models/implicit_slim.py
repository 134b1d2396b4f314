"""ImplicitSLIM (Shenbin & Nikolenko, ICLR 2024): a closed-form refresh of an autoencoder's item embeddings
from a SLIM-like item-item model, computed without the items x items matrix.

With X the users x items log, G = XᵀX, D = diag(1 / (diag G + λ)), C = (λI + G) D² (λI + G), E the item
embeddings (items x d) and Â = E with the rows of items seen fewer than ``min_count`` times zeroed, the
refreshed embeddings are

    E' = α C Â (I_d + α Âᵀ C Â)⁻¹ Âᵀ E,

the authors' Woodbury form written out. Every product with C is taken through X (two sparse products per
factor λI + G), so a refresh costs O(interactions × d) and never holds an items x items matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recvae.data.shard import UserRows
from recvae.models.training.distributed import sum_over_ranks


def _over_users(array: np.ndarray, over_ranks: bool) -> np.ndarray:
    """A sum over the users, completed over every rank where each holds only its users' rows."""
    return sum_over_ranks(np.ascontiguousarray(array)) if over_ranks else array


def _times_ridge_gram(user_items: sp.csr_matrix, item_rows: np.ndarray, l2: float, over_ranks: bool) -> np.ndarray:
    """(λI + XᵀX) Y for Y of items x d, through X."""
    return l2 * item_rows + _over_users(user_items.T @ (user_items @ item_rows), over_ranks)


def implicit_slim(embeddings: torch.Tensor, user_items: sp.csr_matrix, l2: float, alpha: float,
                  min_count: int = 0, over_ranks: bool = False) -> torch.Tensor:
    """Refreshed ``embeddings`` (items x d, on their device and in their dtype) from ``user_items``;
    ``over_ranks``: under torchrun, where ``user_items`` is this rank's share of the users."""
    x = user_items.astype(np.float64)
    e = embeddings.detach().double().cpu().numpy()
    diagonal = _over_users(np.asarray(x.multiply(x).sum(axis=0)).ravel(), over_ranks)
    users = _over_users(np.asarray((x > 0).sum(axis=0), dtype=np.float64).ravel(), over_ranks)
    a = np.where((users >= min_count)[:, None], e, 0.0)
    scaled = _times_ridge_gram(x, a, l2, over_ranks) / (diagonal + l2)[:, None] ** 2
    c_a = _times_ridge_gram(x, scaled, l2, over_ranks)  # C Â
    inner = np.eye(e.shape[1]) + alpha * (a.T @ c_a)
    refreshed = alpha * c_a @ np.linalg.solve(inner, a.T @ e)
    return torch.from_numpy(refreshed).to(device=embeddings.device, dtype=embeddings.dtype)


class EmbeddingRefresh:
    """ImplicitSLIM in training: before every ``config.implicit_slim_every``-th epoch (epochs k-1, 2k-1, ...
    counted from 0, as the authors' RecVAE code does), each of ``parameters`` (items x d item embeddings)
    is replaced by its refresh from ``user_items`` (under torchrun, a rank's ``UserRows``: the sums over
    users are then completed over the ranks). Before, not after: the epoch's training then fits the rest of
    the model to the new embeddings before it is validated; refreshed after an epoch, every validation
    would read a model whose other layers had never seen them."""

    def __init__(self, parameters: list[torch.Tensor], user_items, config):
        self.parameters = parameters
        self.over_ranks = isinstance(user_items, UserRows)
        self.user_items = user_items.matrix if self.over_ranks else user_items
        self.config = config

    def before_epoch(self, epoch: int) -> None:
        c = self.config
        if c.implicit_slim_every and epoch % c.implicit_slim_every == c.implicit_slim_every - 1:
            with torch.no_grad():
                for parameter in self.parameters:
                    parameter.copy_(implicit_slim(parameter, self.user_items, c.implicit_slim_l2, c.implicit_slim_alpha,
                                                  c.implicit_slim_min_count, self.over_ranks))


class RefreshingStep:
    """A training step that refreshes item embeddings with an ``EmbeddingRefresh`` (or None) before its
    epochs. Mixed in before ``TrainingStep``."""

    refresh: EmbeddingRefresh | None = None

    def start_epoch(self, epoch: int) -> None:
        if self.refresh is not None:
            self.refresh.before_epoch(epoch)

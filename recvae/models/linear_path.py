"""DLAE's closed form as a linear path beside an autoencoder (``LinearPathConfig``): computed on the training
users before the first epoch, kept as the module's ``linear_path`` buffer (saved with the weights, never
trained), and added, times ``linear_weight`` (scaled down for short histories by ``linear_half_length``), to
the scores a history gets. Shared by Mult-VAE, the CVAE and RecVAE."""

from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import nn

from recvae.data.shard import UserRows
from recvae.models.dlae import dlae_weights


class LinearPath:
    """Mixed into a Recommender whose config may hold a ``LinearPathConfig``."""

    def _with_linear_path(self, module: nn.Module, n_items: int) -> nn.Module:
        if getattr(self.config, "linear_weight", 0.0):  # Mult-DAE's config has none
            module.register_buffer("linear_path", torch.zeros(n_items, n_items))
        return module

    def _start_linear_path(self, module: nn.Module, user_items) -> None:
        """DLAE's closed form on the training users, into ``module.linear_path`` where ``_with_linear_path`` gave
        it one; under torchrun, from every process's share of them (``UserRows``)."""
        if not hasattr(module, "linear_path"):
            return
        cfg = self.config
        shared = isinstance(user_items, UserRows)
        x = user_items.matrix if shared else user_items  # the Trainer binarized the rows as fit does
        x = x[:, : self._item_columns(x.shape[1])]  # a CVAE's feature columns have no part in it
        with torch.no_grad():
            module.linear_path.copy_(dlae_weights(x, cfg.linear_l2, cfg.linear_dropout, over_ranks=shared))

    def _plus_path(self, scorer, user_items: sp.csr_matrix):
        """``scorer`` (items -> scores) with the path's scores of these histories added, where there is a path."""
        added = self._history_scorer(user_items)
        return scorer if added is None else lambda items: scorer(items) + added(items)

    def _history_scorer(self, user_items: sp.csr_matrix):
        linear = getattr(self.module_, "linear_path", None)
        if linear is None:
            return None
        n_items, cfg = linear.shape[0], self.config
        histories = torch.from_numpy(user_items[:, :n_items].toarray()).to(self.device_)
        weight = cfg.linear_weight
        if cfg.linear_half_length:
            lengths = (histories != 0).sum(dim=1, keepdim=True).float()
            weight = weight * lengths / (lengths + cfg.linear_half_length)
        columns = torch.arange(user_items.shape[1], device=self.device_)

        def added(items) -> torch.Tensor:
            wanted = columns[items]
            is_item = wanted < n_items  # a CVAE's feature columns get nothing (their scores are -inf)
            if bool(is_item.all()):
                return weight * (histories @ linear[:, wanted])
            out = torch.zeros(histories.shape[0], wanted.numel(), device=histories.device)
            out[:, is_item] = weight * (histories @ linear[:, wanted[is_item]])
            return out
        return added

"""The conditional Mult-VAE (Sohn, Lee & Yan 2015's conditional VAE on Liang et al. 2018's Mult-VAE): the
encoder reads a user's history and side features, q(z | x, c), and the decoder reads the code and the same
features, p(x | z, c), so that a user with features and few items, or none, is still placed.

Its input is a users x (items + features) matrix, each user's encoded side features
(``recvae.data.features``) as the last ``conditions`` columns: every stage that passes histories on
(training batches, torchrun shards, validation, scoring, export) then carries them with no change. Those
columns are never recommended: their scores are -inf.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from recvae.errors import DataError
from recvae.models.config import CVAEConfig
from recvae.models.latent import NoLatentSpaceError
from recvae.models.multvae import MultVAE
from recvae.models.nn import ConditionalAutoEncoder, SparseBatch, normalised_input, split_columns


class CVAE(MultVAE):
    """Mult-VAE conditioned on each user's side features, the input's last ``conditions`` columns."""

    name = "CVAE"
    config_class = CVAEConfig

    def _training_matrix(self, user_items) -> sp.csr_matrix:
        matrix = super()._training_matrix(user_items)
        if not 0 < self.config.conditions < matrix.shape[1]:
            raise DataError(f"CVAE: conditions = {self.config.conditions} for an input of {matrix.shape[1]} columns; "
                            "the input is the items followed by that many feature columns (recvae.data.features)")
        if matrix[:, : matrix.shape[1] - self.config.conditions].nnz == 0:
            raise DataError("user_items has no interactions to learn from (only side features)")
        return matrix

    def _new_module(self, n_columns: int) -> ConditionalAutoEncoder:
        c = self.config
        module = ConditionalAutoEncoder(n_columns - c.conditions, c.conditions, c.hidden_dims, c.latent_dim,
                                        c.activation, c.item_feature_width)
        return self._with_linear_path(module, n_columns - c.conditions)

    def _item_columns(self, n_columns: int) -> int:
        return n_columns - self.config.conditions

    def _posterior(self, user_items: sp.csr_matrix, mean_only: bool):
        items, conditions = split_columns(SparseBatch.from_csr(user_items, self.device_), self.module_.n_items)
        mean, logvar = self.module_.encode_conditioned(items, normalised_input(items), conditions, mean_only=mean_only)
        return mean, logvar, conditions

    def _item_scorer(self, user_items: sp.csr_matrix):
        with torch.no_grad():
            mean, _, conditions = self._posterior(user_items, mean_only=True)
            hidden = self.module_.decode_hidden(torch.cat([mean, conditions], dim=1))
        output, n_items = self.module_.output_layer, self.module_.n_items
        columns = torch.arange(self.n_items_, device=hidden.device)

        def scores(items) -> torch.Tensor:
            wanted = columns[items]
            out = torch.full((hidden.shape[0], wanted.numel()), -torch.inf, device=hidden.device)
            is_item = wanted < n_items
            out[:, is_item] = F.linear(hidden, output.weight[wanted[is_item]], output.bias[wanted[is_item]]).float()
            return out
        return self._plus_path(scores, user_items)

    def _encode_block(self, user_items: sp.csr_matrix):
        mean, logvar, _ = self._posterior(user_items, mean_only=False)
        return mean, torch.exp(0.5 * logvar)

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        raise NoLatentSpaceError("CVAE decodes a code only together with its user's side features, which a code "
                                 "alone does not carry: give them (decode's and sample's conditions), or score the "
                                 "user's (items + features) row")

    def _decode_rows(self, user_items: sp.csr_matrix, codes: torch.Tensor) -> torch.Tensor:
        _, conditions = split_columns(SparseBatch.from_csr(user_items, self.device_), self.module_.n_items)
        return self._decode_conditioned(codes, conditions)

    def _decode_conditioned(self, codes: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Scores over every column of codes decoded with their users' features (-inf at the feature columns)."""
        items = self.module_.decode(torch.cat([codes, conditions], dim=1))
        return torch.cat([items, torch.full((codes.shape[0], self.config.conditions), -torch.inf, device=items.device)], 1)

    def similar_items(self, itemid: int, N: int = 10) -> tuple:
        columns = np.atleast_1d(np.asarray(itemid))
        if (columns >= self.module_.n_items).any():
            raise DataError(f"column {columns[columns >= self.module_.n_items][0]} is a side feature, not an item")
        return super().similar_items(itemid, N)

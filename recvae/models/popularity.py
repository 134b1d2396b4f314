"""Most-popular items: the baseline every recommender must beat."""

from __future__ import annotations

import dataclasses

import scipy.sparse as sp
import torch

from recvae.data.shard import UserRows
from recvae.data.vocab import Vocabulary
from recvae.models.config import PopularityConfig
from recvae.models.nn import LearnedTensors
from recvae.models.recommender import Recommender


class Popularity(Recommender):
    name = "Popularity"
    config_class = PopularityConfig
    no_latent_space = "it gives every user the same ranking"

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> Popularity:
        if not isinstance(user_items, UserRows):
            user_items = self._training_matrix(user_items)
        elif self.config.binarize:  # a torchrun rank's rows carry the whole log's statistics: count users, not values
            user_items = dataclasses.replace(user_items, item_sums=user_items.item_users)
        self._set_fitted(user_items, items, LearnedTensors(), torch.device("cpu"))
        return self

    def _item_scorer(self, user_items: sp.csr_matrix):
        return lambda items: self.item_popularity_[items].repeat(user_items.shape[0], 1)  # a copy: callers mask it in place

    def _new_module(self, n_items: int) -> LearnedTensors:
        return LearnedTensors()  # item_popularity_, which every model saves, is all there is

"""Mult-VAE and Mult-DAE: Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for
Collaborative Filtering", WWW 2018. Defaults are the paper's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError
from recvae.models.base import Recommender, as_csr, cosine_similar_items
from recvae.models.nn import ACTIVATIONS, LIKELIHOODS, AutoEncoder, SparseBatch, normalised_input
from recvae.split.base import HeldOut
from recvae.train.autoencoder import EpochCallback, fit_autoencoder
from recvae.train.config import TrainingConfig
from recvae.train.device import resolve_device
from recvae.train.schedules import BETA_SCHEDULES


@dataclass(frozen=True, kw_only=True)
class _AutoEncoderConfig(TrainingConfig):
    hidden_dims: tuple[int, ...] = (600,)
    latent_dim: int = 200
    dropout: float = 0.5
    activation: str = "tanh"
    likelihood: str = "multinomial"
    l2: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if any(int(d) < 1 for d in self.hidden_dims) or self.latent_dim < 1:
            raise ValueError("layer sizes must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}")
        if self.l2 < 0:
            raise ValueError("l2 must be >= 0")


@dataclass(frozen=True, kw_only=True)
class MultVAEConfig(_AutoEncoderConfig):
    """Mult-VAE: encoder I-600-(200, 200), decoder 200-600-I, tanh, input dropout 0.5,
    beta = min(beta_cap, updates / total_anneal_steps) with cap 0.2 over 200,000 updates.

    ``beta_schedule`` may instead be "constant" (β = cap), "cyclical" (Fu et al. 2019: cycles of
    ``total_anneal_steps`` updates, rising to the cap over each cycle's first half) or "sigmoid"
    (a logistic ramp reaching the cap by ``total_anneal_steps``). ``free_bits`` > 0 floors each
    latent dimension's KL at that many nats (Kingma et al. 2016).
    """

    beta_cap: float = 0.2
    total_anneal_steps: int = 200_000
    beta_schedule: str = "linear"
    free_bits: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.beta_cap < 0 or self.total_anneal_steps < 0:
            raise ValueError("beta_cap and total_anneal_steps must be >= 0")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, not {self.beta_schedule!r}")
        if self.free_bits < 0:
            raise ValueError("free_bits must be >= 0")


@dataclass(frozen=True, kw_only=True)
class MultDAEConfig(_AutoEncoderConfig):
    """Mult-DAE: I-200-I, tanh, input dropout 0.5, L2 penalty 0.01 on the weights
    (added to the batch-mean loss, as in the authors' code)."""

    hidden_dims: tuple[int, ...] = ()
    l2: float = 0.01


class _AutoEncoderRecommender(Recommender):
    variational: bool

    def fit(
        self,
        user_items: sp.csr_matrix,
        validation: HeldOut | None = None,
        items: Vocabulary | None = None,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        callbacks: tuple[EpochCallback, ...] = (),
        progress: bool | None = None,
    ):
        """Train on ``user_items`` (users x items); with ``validation`` keep the best epoch's weights.

        ``checkpoint_dir`` receives a checkpoint after every epoch; ``resume=True``
        continues from it. ``items`` names the columns, for outputs in original IDs.
        """
        user_items = as_csr(user_items)
        if user_items.nnz == 0:
            raise DataError("user_items has no interactions to train on")
        if validation is not None:
            as_csr(validation.fold_in, user_items.shape[1], "validation.fold_in")
        cfg = self.config
        self.device_ = resolve_device(cfg.device)
        self.module_ = AutoEncoder(user_items.shape[1], cfg.hidden_dims, cfg.latent_dim, self.variational, cfg.activation)
        self._set_fitted(user_items, items)  # validation scores the model while it trains

        validate = None
        if validation is not None and len(validation):
            from recvae.evaluate.evaluation import DEFAULT_METRICS, evaluate

            metrics = tuple(dict.fromkeys((*DEFAULT_METRICS, cfg.validation_metric)))
            validate = lambda: evaluate(self, validation, metrics).summary()  # noqa: E731
        try:
            self.history_ = fit_autoencoder(
                self.module_, user_items, cfg, self.device_, validate,
                checkpoint_dir=checkpoint_dir, resume=resume, callbacks=callbacks, progress=progress,
            )
        except BaseException:
            self._fitted = False
            raise
        self.metadata_ = {"history": self.history_}
        return self

    def _score_block(self, user_items: sp.csr_matrix) -> torch.Tensor:
        batch = SparseBatch.from_csr(user_items, self.device_)
        with torch.no_grad():
            mu, _ = self.module_.encode(batch, normalised_input(batch), mean_only=True)
            return self.module_.decode(mu)

    def encode(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Latent means (users x latent_dim) of the given histories."""
        self._check_fitted()
        batch = SparseBatch.from_csr(as_csr(user_items, self._n_items), self.device_)
        with torch.no_grad():
            return self.module_.encode(batch, normalised_input(batch), mean_only=True)[0].cpu()

    def similar_items(self, itemid: int, N: int = 10) -> tuple:
        """Items whose decoder output vectors are closest (cosine) to ``itemid``'s."""
        self._check_fitted()
        return cosine_similar_items(self.module_.decoder[-1].weight, itemid, N)

    def _state(self) -> dict[str, torch.Tensor]:
        return dict(self.module_.state_dict())

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        cfg = self.config
        n_items = tensors["input_weight"].shape[0]
        self.device_ = resolve_device(cfg.device)
        self.module_ = AutoEncoder(n_items, cfg.hidden_dims, cfg.latent_dim, self.variational, cfg.activation)
        self.module_.load_state_dict(tensors)
        self.module_.to(self.device_).eval()
        self._n_items = n_items
        self._fitted = True


class MultVAE(_AutoEncoderRecommender):
    """Variational autoencoder with a multinomial likelihood (Liang et al. 2018)."""

    name = "MultVAE"
    config_class = MultVAEConfig
    variational = True


class MultDAE(_AutoEncoderRecommender):
    """Denoising autoencoder with a multinomial likelihood (Liang et al. 2018)."""

    name = "MultDAE"
    config_class = MultDAEConfig
    variational = False

"""Mult-VAE and Mult-DAE: Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for
Collaborative Filtering", WWW 2018. Defaults are the paper's."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from recvae.data.shard import item_users
from recvae.errors import DataError, ParameterError
from recvae.models.config import MultDAEConfig, MultVAEConfig
from recvae.models.implicit_slim import EmbeddingRefresh, RefreshingStep
from recvae.models.inputs import cosine_similar_items
from recvae.models.iterative import IterativeRecommender
from recvae.models.latent import PRIOR_SAMPLES, Prior, seeded_normal
from recvae.models.linear_path import LinearPath
from recvae.models.nn import (
    AutoEncoder, ConditionalAutoEncoder, HierarchicalAutoEncoder, NegativeSampler, SparseBatch, gaussian_kl,
    hierarchical_autoencoder, input_dropout, make_adam, normalised_input, reconstruction_nll, reparameterise,
    split_columns,
)
from recvae.models.schedules import anneal_steps, beta_at, warn_if_beta_stays_low
from recvae.models.training.step import TrainingStep


def autoencoder_loss(module: AutoEncoder, batch: SparseBatch, config, beta: float, generator: torch.Generator,
                     sampler: NegativeSampler | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one training batch: the negative β-ELBO (Mult-VAE) or the penalised likelihood (Mult-DAE),
    with the batch's sums of its terms.

    With ``free_bits`` δ > 0 the penalised KL is Σ_d max(δ, KL_d), KL_d averaged over the batch
    (Kingma et al. 2016): a dimension below δ nats costs δ whatever it encodes, so β stops
    pushing it to the prior. The reported KL is always the true one.
    """
    conditions = None
    if isinstance(module, ConditionalAutoEncoder):
        batch, conditions = split_columns(batch, module.n_items)
    values = input_dropout(normalised_input(batch), config.dropout, generator)
    if conditions is not None and config.history_dropout > 0:  # these users are seen by their features alone
        hidden = torch.rand(batch.n_rows, generator=generator, device=generator.device).to(values.device) < config.history_dropout
        values = values * ~hidden[batch.rows]
    kl_per_user = None  # the KL estimated from the sample, where it has no closed form
    if isinstance(module, HierarchicalAutoEncoder):
        z, kl_per_user = module.sample_with_kl(batch, values, generator)
    else:
        mu, logvar = (module.encode(batch, values) if conditions is None
                      else module.encode_conditioned(batch, values, conditions))
        z = reparameterise(mu, logvar, generator) if module.variational else mu
        if module.variational and module.pseudo_logits is not None:
            kl_per_user = module.kl_to_prior(z, mu, logvar)
    code = z if conditions is None else torch.cat([z, conditions], dim=1)
    output = module.training_output(config.item_dropout, generator)
    nll = reconstruction_nll(module.decode_hidden(code), output, batch, config, sampler).mean()
    loss = nll
    n = batch.n_rows
    terms = {"users": n}
    if kl_per_user is not None:
        kl = kl_per_user.mean()
        loss = nll + beta * kl
        terms["kl"] = kl.item() * n
    elif module.variational:
        kl_per_dim = gaussian_kl(mu, logvar).mean(dim=0)
        kl = kl_per_dim.sum()
        loss = nll + beta * (kl_per_dim.clamp_min(config.free_bits).sum() if config.free_bits > 0 else kl)
        terms["kl"] = kl.item() * n
    if config.l2 > 0:
        loss = loss + config.l2 * sum(w.pow(2).sum() for w in module.weight_matrices())
    terms.update(loss=loss.item() * n, reconstruction=nll.item() * n)
    return loss, terms


def random_histories(user_items: sp.csr_matrix, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` training users' rows as dense 0/1 rows, drawn without replacement (with, past the users)."""
    users = user_items.shape[0]
    rows = (torch.randperm(users, generator=generator)[:n] if n <= users else
            torch.randint(users, (n,), generator=generator)).numpy()
    return torch.from_numpy((user_items[rows].toarray() > 0).astype("float32"))


class AutoEncoderStep(RefreshingStep, TrainingStep):
    """One Adam update per batch of users."""

    def __init__(self, module: AutoEncoder, config, generator: torch.Generator, sampler: NegativeSampler | None = None,
                 refresh: EmbeddingRefresh | None = None):
        self.module = module
        self.config = config
        self.generator = generator
        self.sampler = sampler
        self.refresh = refresh
        self.optimizer = make_adam(module.parameters(), config.learning_rate)
        self.latent_dim = module.latent_dim if module.variational else None
        self.beta_cap = config.beta_cap if module.variational else None

    def kl_weight(self, updates: int, updates_per_epoch: int) -> float | None:
        if not self.module.variational:
            return None
        c = self.config
        return beta_at(c.beta_schedule, updates, c.beta_cap, anneal_steps(c, updates_per_epoch))

    def batch_loss(self, phase: str, batch: SparseBatch, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        return autoencoder_loss(self.module, batch, self.config, beta, self.generator, self.sampler)

    def posterior(self, batch: SparseBatch):
        if isinstance(self.module, ConditionalAutoEncoder):
            items, conditions = split_columns(batch, self.module.n_items)
            return self.module.encode_conditioned(items, normalised_input(items), conditions)
        return self.module.encode(batch, normalised_input(batch)) if self.module.variational else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}


class _AutoEncoderRecommender(LinearPath, IterativeRecommender):
    variational: bool

    def _checked_item_features(self, item_features, user_items) -> torch.Tensor | None:
        """The decoder adds a learned function of ``item_features`` to its free item vectors, so that an item
        no training user has is scored by them."""
        width = self.config.item_feature_width
        if item_features is None:
            if self.config.item_dropout:
                raise ParameterError("item_dropout", self.config.item_dropout, "drops items' free vectors in favour of "
                                     "their side features: it needs them (fit's item_features, --item-features FILE)")
            if width:
                raise ParameterError("item_features", None, f"item_feature_width = {width}: give fit the items' "
                                     "features (or leave item_feature_width at 0)")
            return None
        if not width:
            raise ParameterError("item_feature_width", 0, "set it to the item features' number of columns to read them")
        matrix = item_features.toarray() if sp.issparse(item_features) else np.asarray(item_features)
        expected = (self._item_columns(user_items.shape[1]), width)
        if matrix.shape != expected:
            raise DataError(f"item_features has shape {matrix.shape}; expected {expected} (items, item_feature_width)")
        if not np.isfinite(matrix.astype(np.float64)).all():
            raise DataError("item_features holds a value that is not a finite number")
        return torch.from_numpy(matrix.astype(np.float32))

    def start_training(self, user_items, device, generator, device_generator, item_features=None) -> AutoEncoderStep:
        cfg = self.config
        if self.variational:
            warn_if_beta_stays_low(cfg, cfg.epochs, math.ceil(user_items.shape[0] / cfg.batch_size))
        module = self._new_module(user_items.shape[1])
        module.reset_parameters(generator)
        self._start_linear_path(module, user_items)
        if module.item_side is not None:
            seen = torch.from_numpy(item_users(user_items)[: module.n_items] > 0).float()  # over every rank's users
            module.item_side.set_items(item_features, seen)
            with torch.no_grad():  # never trained, so a history naming an unseen item gets no noise from it
                for weight in module.item_input_weights():
                    weight[seen == 0] = 0.0
        if module.pseudo_logits is not None:
            module.start_pseudo_inputs(random_histories(user_items, module.pseudo_logits.shape[0], generator))
        module.to(device)
        refresh = (EmbeddingRefresh([module.input_weight, module.output_layer.weight], user_items, cfg)
                   if cfg.implicit_slim_every else None)
        return AutoEncoderStep(module, cfg, device_generator, NegativeSampler.for_config(cfg, user_items, device_generator),
                               refresh)

    def _new_module(self, n_items: int) -> AutoEncoder:
        cfg = self.config
        pseudo_inputs = cfg.pseudo_inputs if getattr(cfg, "prior", "standard") == "vamp" else 0
        if getattr(cfg, "latent_levels", 1) == 2:
            module = hierarchical_autoencoder(n_items, cfg.hidden_dims, cfg.latent_dim, cfg.activation, pseudo_inputs,
                                              cfg.item_feature_width)
        else:
            module = AutoEncoder(n_items, cfg.hidden_dims, cfg.latent_dim, self.variational, cfg.activation,
                                 pseudo_inputs, cfg.item_feature_width)
        return self._with_linear_path(module, n_items)

    def _prior(self) -> Prior:
        module = self.module_
        hierarchical = isinstance(module, HierarchicalAutoEncoder)
        components = None
        if module.pseudo_logits is not None:
            with torch.no_grad():
                components = tuple(t.double().cpu().numpy() for t in module.prior_components())
        return Prior(module.level_dim if hierarchical else module.latent_dim, components,
                     self._lower_level if hierarchical else None)

    def _lower_level(self, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p(z1 | z2) at each row of ``top``: (means, standard deviations)."""
        with torch.no_grad():
            mean, logvar = self.module_.conditional_prior(torch.from_numpy(top).float().to(self.device_))
        return mean.double().cpu().numpy(), torch.exp(0.5 * logvar.double()).cpu().numpy()

    def _kl_to_prior(self, user_items: sp.csr_matrix, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
        if not isinstance(self.module_, HierarchicalAutoEncoder):
            return super()._kl_to_prior(user_items, mean, std)
        batch = SparseBatch.from_csr(user_items, self.device_)
        values, width = normalised_input(batch), self.module_.level_dim
        total = torch.zeros(user_items.shape[0], dtype=torch.float64)
        with torch.no_grad():
            for draw in seeded_normal((PRIOR_SAMPLES, 2, 1, width)):  # one noise for every user: see kl_to_prior
                _, kl = self.module_.sample_with_kl(batch, values, None, tuple(d.float().to(self.device_) for d in draw))
                total += kl.double().cpu()
        return (total / PRIOR_SAMPLES).numpy()

    def _item_scorer(self, user_items: sp.csr_matrix):
        batch = SparseBatch.from_csr(user_items, self.device_)
        with torch.no_grad():
            mu, _ = self.module_.encode(batch, normalised_input(batch), mean_only=True)
            hidden = self.module_.decode_hidden(mu)
        output = self.module_.output_layer
        decoded = lambda items: F.linear(hidden, output.weight[items], output.bias[items]).detach()  # noqa: E731
        return self._plus_path(decoded, user_items)

    def _encode_block(self, user_items: sp.csr_matrix):
        batch = SparseBatch.from_csr(user_items, self.device_)
        mean, logvar = self.module_.encode(batch, normalised_input(batch))
        return mean, None if logvar is None else torch.exp(0.5 * logvar)

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        return self.module_.decode(codes)

    def _item_vectors(self) -> dict[str, torch.Tensor]:
        return {"output": self.module_.output_layer.weight, "input": self.module_.input_weight}

    def fitted_item_features(self) -> sp.csr_matrix | None:
        self._check_fitted()
        side = self.module_.item_side
        return None if side is None else sp.csr_matrix(side.features.detach().cpu().numpy())

    def similar_items(self, itemid: int, N: int = 10) -> tuple:
        """Items whose decoder output vectors are closest (cosine) to ``itemid``'s."""
        self._check_fitted()
        with torch.no_grad():
            return cosine_similar_items(self.module_.output_layer.weight, itemid, N)


class MultVAE(_AutoEncoderRecommender):
    """Variational autoencoder with a multinomial likelihood (Liang et al. 2018)."""

    name = "MultVAE"
    config_class = MultVAEConfig
    # the paper's grid spans these; anneal_epochs lets β reach the searched cap within the epochs
    search_space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                    "dropout": {"low": 0.0, "high": 0.8},
                    "hidden_dims": {"choices": [[600], []]},
                    "beta_cap": {"low": 0.05, "high": 1.0},
                    "anneal_epochs": {"low": 10.0, "high": 200.0}}
    variational = True

    def _identity(self) -> dict:
        # epochs may change on resume, but the default anneal's length follows them: a run extended with
        # more epochs would change β midway, so the length it annealed over must match
        identity = super()._identity()
        c = self.config
        if c.total_anneal_steps is None and c.anneal_epochs is None:
            identity["config"]["anneal_epochs"] = c.anneal_fraction * c.epochs
        return identity


class MultDAE(_AutoEncoderRecommender):
    """Denoising autoencoder with a multinomial likelihood (Liang et al. 2018)."""

    name = "MultDAE"
    config_class = MultDAEConfig
    search_space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                    "dropout": {"low": 0.0, "high": 0.8},
                    "hidden_dims": {"choices": [[600], []]}}
    variational = False

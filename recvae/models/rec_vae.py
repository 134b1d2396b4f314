"""RecVAE: Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko, "RecVAE: a New Variational Autoencoder
for Top-N Recommendations with Implicit Feedback", WSDM 2020. Defaults are the paper's code's.

What differs from Mult-VAE: an encoder of five densely connected layers (each layer's input is its
predecessor's output plus the sum of all earlier outputs) with swish and layer normalisation; a
single linear decoder; a composite prior, the mixture of a standard normal, the posterior of the
encoder as it was after the previous encoder phase, and a wide normal (log-variance 10), weighted
3/20, 3/4, 1/10; a KL weight of ``gamma`` times each user's number of interactions; and
alternating training: ``encoder_epochs`` passes updating the encoder (input dropout 0.5), then the
old-encoder copy is refreshed, then ``decoder_epochs`` passes updating the decoder (no dropout),
each part with its own Adam.
"""

from __future__ import annotations

import copy

import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from recvae.models.config import RecVAEConfig
from recvae.models.device import full_precision
from recvae.models.implicit_slim import EmbeddingRefresh, RefreshingStep
from recvae.models.inputs import cosine_similar_items
from recvae.models.iterative import IterativeRecommender
from recvae.models.linear_path import LinearPath
from recvae.models.training.step import Phase, TrainingStep
from recvae.models.nn import (
    NegativeSampler, SparseBatch, glorot_reset, input_dropout, log_normal_density, make_adam, normalised_input,
    reconstruction_nll, reparameterise,
)

class RecVAEEncoder(nn.Module):
    def __init__(self, n_items: int, hidden: int, latent: int, eps: float):
        super().__init__()
        self.input_weight = nn.Parameter(torch.empty(n_items, hidden))
        self.input_bias = nn.Parameter(torch.zeros(hidden))
        self.dense = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(4))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(5))
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(
        self, batch: SparseBatch, values: torch.Tensor, *, mean_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The first layer on the sparse history: embedding_bag instead of a dense product.
        h = F.embedding_bag(batch.indices, self.input_weight, batch.offsets, mode="sum", per_sample_weights=values)
        outputs = [self.norms[0](F.silu(h + self.input_bias))]
        total = outputs[0]
        for layer, norm in zip(self.dense, self.norms[1:]):
            out = norm(F.silu(layer(outputs[-1]) + total))
            outputs.append(out)
            total = total + out
        return self.mu(outputs[-1]), None if mean_only else self.logvar(outputs[-1])


class RecVAEModule(nn.Module):
    def __init__(self, n_items: int, config: RecVAEConfig):
        super().__init__()
        c = config
        self.encoder = RecVAEEncoder(n_items, c.hidden_dim, c.latent_dim, c.layer_norm_eps)
        self.old_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.decoder = nn.Linear(c.latent_dim, n_items)
        self.register_buffer("log_weights", torch.log(torch.tensor(c.mixture_weights)))
        self.wide_logvar = c.wide_logvar

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weight matrices and zero biases (LayerNorm at its identity)."""
        glorot_reset(self, generator, skip=("old_encoder",))
        self.refresh_prior()

    def refresh_prior(self) -> None:
        self.old_encoder.load_state_dict(self.encoder.state_dict())

    def composite_prior(self, batch: SparseBatch, z: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density of z under the three-part mixture."""
        with torch.no_grad():
            old_mu, old_logvar = self.old_encoder(batch, normalised_input(batch))
        zero = torch.zeros_like(z)
        parts = torch.stack([
            log_normal_density(z, zero, zero),
            log_normal_density(z, old_mu, old_logvar),
            log_normal_density(z, zero, zero + self.wide_logvar),
        ], dim=-1)
        return torch.logsumexp(parts + self.log_weights, dim=-1)


class RecVAEStep(RefreshingStep, TrainingStep):
    """The encoder phase (``encoder_epochs`` passes with input dropout, then the prior's copy of the
    encoder is refreshed) and the decoder phase (``decoder_epochs`` passes without dropout), each
    part with its own Adam; the epoch's record is the encoder phase's."""

    def __init__(self, module: RecVAEModule, config: RecVAEConfig, generator: torch.Generator,
                 sampler: NegativeSampler | None = None, refresh: EmbeddingRefresh | None = None):
        self.module = module
        self.config = config
        self.generator = generator
        self.sampler = sampler
        self.latent_dim = config.latent_dim
        self.phases = (Phase("encoder", config.encoder_epochs), Phase("decoder", config.decoder_epochs, reported=False,
                                                                       every_parameter=False))
        self.encoder_optimizer = make_adam(module.encoder.parameters(), config.learning_rate)
        self.decoder_optimizer = make_adam(module.decoder.parameters(), config.learning_rate)
        self.refresh = refresh

    def batch_loss(self, phase: str, batch: SparseBatch, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        c, module = self.config, self.module
        train_encoder = phase == "encoder"
        values = input_dropout(normalised_input(batch), c.dropout if train_encoder else 0.0, self.generator)
        with torch.set_grad_enabled(train_encoder):
            mu, logvar = module.encoder(batch, values)
            z = reparameterise(mu, logvar, self.generator)
        nll = reconstruction_nll(z, module.decoder, batch, c, self.sampler)
        terms = {"users": batch.n_rows}
        if train_encoder:
            with full_precision(z):  # the densities in float32 under autocast
                z, mu, logvar = z.float(), mu.float(), logvar.float()
                kl = (log_normal_density(z, mu, logvar) - module.composite_prior(batch, z)).sum(dim=1)
            loss = (c.gamma * batch.row_sums * kl + nll).mean()
            terms["kl"] = kl.detach().mean().item() * batch.n_rows
        else:  # the KL term does not depend on the decoder: its gradient there is zero
            loss = nll.mean()
        terms["loss"] = loss.item() * batch.n_rows
        return loss, terms

    def optimizer_for(self, phase: str) -> torch.optim.Optimizer:
        return self.encoder_optimizer if phase == "encoder" else self.decoder_optimizer

    def end_phase(self, phase: str) -> None:
        if phase == "encoder":
            self.module.refresh_prior()

    def posterior(self, batch: SparseBatch):
        return self.module.encoder(batch, normalised_input(batch))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": self.encoder_optimizer, "decoder": self.decoder_optimizer}


class RecVAE(LinearPath, IterativeRecommender):
    """Same interface as Mult-VAE: fit on CSR, fold-in scoring, save / load."""

    name = "RecVAE"
    config_class = RecVAEConfig
    unsaved_state = ("old_encoder.",)  # the prior's copy of the encoder, rebuilt on load
    search_space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                    "gamma": {"low": 1e-3, "high": 0.05, "log": True},
                    "dropout": {"low": 0.2, "high": 0.7},
                    "latent_dim": {"choices": [100, 200, 400]}}

    def start_training(self, user_items, device, generator, device_generator, item_features=None) -> RecVAEStep:
        module = self._new_module(user_items.shape[1])
        module.reset_parameters(generator)
        c = self.config
        self._start_linear_path(module, user_items)
        module.to(device)
        refresh = (EmbeddingRefresh([module.encoder.input_weight, module.decoder.weight], user_items, c)
                   if c.implicit_slim_every else None)
        # The public code draws RecVAE's dropout and noise on the CPU generator, whatever the device.
        return RecVAEStep(module, c, generator, NegativeSampler.for_config(c, user_items, generator), refresh)

    def _new_module(self, n_items: int) -> RecVAEModule:
        return self._with_linear_path(RecVAEModule(n_items, self.config), n_items)

    def _restored(self) -> None:
        self.module_.refresh_prior()

    def _item_scorer(self, user_items: sp.csr_matrix):
        batch = SparseBatch.from_csr(user_items, self.device_)
        with torch.no_grad():
            mu, _ = self.module_.encoder(batch, normalised_input(batch), mean_only=True)
        decoder = self.module_.decoder
        decoded = lambda items: F.linear(mu, decoder.weight[items], decoder.bias[items]).detach()  # noqa: E731
        return self._plus_path(decoded, user_items)

    def similar_items(self, itemid: int, N: int = 10):
        self._check_fitted()
        return cosine_similar_items(self.module_.decoder.weight, itemid, N)

    def _encode_block(self, user_items: sp.csr_matrix):
        batch = SparseBatch.from_csr(user_items, self.device_)
        mean, logvar = self.module_.encoder(batch, normalised_input(batch))
        return mean, torch.exp(0.5 * logvar)

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        return self.module_.decoder(codes)

    def _item_vectors(self) -> dict[str, torch.Tensor]:
        return {"output": self.module_.decoder.weight, "input": self.module_.encoder.input_weight}


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
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError
from recvae.models.base import Recommender, as_csr, cosine_similar_items
from recvae.models.nn import LIKELIHOODS, SparseBatch, negative_log_likelihood, normalised_input
from recvae.split.base import HeldOut
from recvae.train.autoencoder import format_record, make_adam
from recvae.train.config import TrainingConfig
from recvae.train.device import resolve_device
from recvae.train.diagnostics import diagnose, diagnostic_sample, warn_if_collapsed
from recvae.train.early_stopping import BestEpoch

log = logging.getLogger(__name__)
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True, kw_only=True)
class RecVAEConfig(TrainingConfig):
    """The public code's defaults: 50 epochs of 3 encoder and 1 decoder passes, Adam at 5e-4."""

    epochs: int = 50
    learning_rate: float = 5e-4
    hidden_dim: int = 600
    latent_dim: int = 200
    dropout: float = 0.5
    gamma: float = 0.005
    mixture_weights: tuple[float, float, float] = (0.15, 0.75, 0.1)
    wide_logvar: float = 10.0
    encoder_epochs: int = 3
    decoder_epochs: int = 1
    layer_norm_eps: float = 0.1
    likelihood: str = "multinomial"

    def __post_init__(self):
        super().__post_init__()
        if self.hidden_dim < 1 or self.latent_dim < 1:
            raise ValueError("hidden_dim and latent_dim must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")
        if self.gamma <= 0:
            raise ValueError("gamma must be positive")
        if len(self.mixture_weights) != 3 or min(self.mixture_weights) <= 0 or abs(sum(self.mixture_weights) - 1) > 1e-6:
            raise ValueError("mixture_weights must be three positive weights summing to 1")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}")
        if self.encoder_epochs < 1 or self.decoder_epochs < 1:
            raise ValueError("encoder_epochs and decoder_epochs must be at least 1")


def log_normal_density(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar))."""
    return -0.5 * (logvar + LOG_2PI + (x - mu).pow(2) / logvar.exp())


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
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("old_encoder"):
                    continue
                if p.dim() == 2:
                    bound = math.sqrt(6.0 / sum(p.shape))
                    p.uniform_(-bound, bound, generator=generator)
                elif "norms" in name and name.endswith("weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()
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


class RecVAE(Recommender):
    """Same interface as Mult-VAE: fit on CSR, fold-in scoring, save / load."""

    name = "RecVAE"
    config_class = RecVAEConfig

    def fit(self, user_items: sp.csr_matrix, validation: HeldOut | None = None, items: Vocabulary | None = None,
            *, callbacks=(), progress: bool | None = None, checkpoint_dir=None, resume: bool = False):
        if checkpoint_dir is not None or resume:
            raise DataError("RecVAE has no checkpoints yet; train it without checkpoint_dir / resume")
        user_items = as_csr(user_items)
        if user_items.nnz == 0:
            raise DataError("user_items has no interactions to train on")
        c = self.config
        self.device_ = resolve_device(c.device)
        generator = torch.Generator().manual_seed(c.seed)
        self.module_ = RecVAEModule(user_items.shape[1], c)
        self.module_.reset_parameters(generator)
        self.module_.to(self.device_)
        self._set_fitted(user_items, items)
        validate = None
        if validation is not None and len(validation):
            from recvae.evaluate.evaluation import DEFAULT_METRICS, evaluate

            as_csr(validation.fold_in, user_items.shape[1], "validation.fold_in")
            metrics = tuple(dict.fromkeys((*DEFAULT_METRICS, c.validation_metric)))
            validate = lambda: evaluate(self, validation, metrics).summary()  # noqa: E731
        try:
            self.history_ = self._train(user_items, validate, callbacks, generator)
        except BaseException:
            self._fitted = False
            raise
        self.metadata_ = {"history": self.history_}
        return self

    def _pass(self, train, optimizer, train_encoder: bool, generator: torch.Generator) -> tuple[float, float, int]:
        """One pass over the users updating the encoder (with input dropout) or the decoder (without)."""
        c, module = self.config, self.module_
        dropout = c.dropout if train_encoder else 0.0
        order = torch.randperm(train.shape[0], generator=generator).numpy()
        loss_sum = kl_sum = 0.0
        for start in range(0, train.shape[0], c.batch_size):
            batch = SparseBatch.from_csr(train[np.sort(order[start:start + c.batch_size])], self.device_)
            values = normalised_input(batch)
            if dropout > 0:
                keep = torch.rand(values.shape, generator=generator).to(values.device) >= dropout
                values = values * keep / (1.0 - dropout)
            with torch.set_grad_enabled(train_encoder):
                mu, logvar = module.encoder(batch, values)
                eps = torch.randn(mu.shape, generator=generator).to(mu.device)
                z = mu + eps * torch.exp(0.5 * logvar)
            nll = negative_log_likelihood(module.decoder(z), batch, c.likelihood)
            if train_encoder:
                kl = (log_normal_density(z, mu, logvar) - module.composite_prior(batch, z)).sum(dim=1)
                loss = (c.gamma * batch.row_sums * kl + nll).mean()
                kl_sum += kl.detach().mean().item() * batch.n_rows
            else:  # the KL term does not depend on the decoder: its gradient there is zero
                loss = nll.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * batch.n_rows
        return loss_sum, kl_sum, train.shape[0]

    def _train(self, train, validate, callbacks, generator) -> list[dict]:
        c, module = self.config, self.module_
        encoder_opt = make_adam(module.encoder.parameters(), c.learning_rate)
        decoder_opt = make_adam(module.decoder.parameters(), c.learning_rate)
        history, best = [], BestEpoch(c.patience)
        sample = diagnostic_sample(train, c.seed)
        for epoch in range(c.epochs):
            if best.exhausted:
                break
            started = time.perf_counter()
            module.train()
            totals = np.zeros(3)
            for _ in range(c.encoder_epochs):
                totals += self._pass(train, encoder_opt, True, generator)
            module.refresh_prior()
            for _ in range(c.decoder_epochs):
                self._pass(train, decoder_opt, False, generator)
            module.eval()
            record = {"epoch": epoch + 1, "loss": totals[0] / totals[2], "kl": totals[1] / totals[2],
                      "train_seconds": time.perf_counter() - started}
            record.update(diagnose(module.encoder, sample, self.device_))
            if validate is not None:
                scores = validate()
                record.update({f"val_{k}": v for k, v in scores.items()})
                best.update(scores[c.validation_metric], epoch + 1, module)
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            log.info("epoch %d: %s", epoch + 1, format_record(record))
            for callback in callbacks:
                callback(record)
        best.restore(module)
        warn_if_collapsed(history, best.epoch, c.latent_dim)
        module.eval()
        return history

    def _score_block(self, user_items: sp.csr_matrix) -> torch.Tensor:
        batch = SparseBatch.from_csr(user_items, self.device_)
        with torch.no_grad():
            mu, _ = self.module_.encoder(batch, normalised_input(batch), mean_only=True)
            return self.module_.decoder(mu)

    def similar_items(self, itemid: int, N: int = 10):
        self._check_fitted()
        return cosine_similar_items(self.module_.decoder.weight, itemid, N)

    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.module_.state_dict().items() if not k.startswith("old_encoder.")}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        n_items = tensors["decoder.weight"].shape[0]
        self.device_ = resolve_device(self.config.device)
        self.module_ = RecVAEModule(n_items, self.config)
        self.module_.load_state_dict(tensors, strict=False)
        missing = set(self.module_.encoder.state_dict()) - {k.split(".", 1)[1] for k in tensors if k.startswith("encoder.")}
        if missing or "decoder.bias" not in tensors:
            raise KeyError(f"missing weights {sorted(missing) or ['decoder.bias']}")
        self.module_.refresh_prior()
        self.module_.to(self.device_).eval()
        self._n_items = n_items
        self._fitted = True

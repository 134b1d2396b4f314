"""Torch modules and losses of the autoencoders (Liang et al. 2018); no I/O, no training loop."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recvae.data.shard import item_users
from recvae.models.config import LIKELIHOODS
from recvae.models.device import full_precision

# "gated": Kim & Suh (2019)'s gating (a GLU, Dauphin et al. 2017): a layer it follows is twice as wide, its
# first half the values and its second their gates, h = a * sigmoid(b), in place of tanh(a)
ACTIVATION_FUNCTIONS = {"tanh": torch.tanh, "relu": F.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x,
                        "gated": lambda x: F.glu(x, dim=-1)}


def activated_width(width: int, activation: str) -> int:
    """The output width of a layer whose output ``activation`` reads, for ``width`` units after it."""
    return 2 * width if activation == "gated" else width


class SparseBatch:
    """A block of user histories as flat CSR arrays on a device: what the sparse first layer eats."""

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, n_items: int):
        self.offsets = indptr[:-1]
        self.indices = indices
        self.values = values
        self.n_rows = indptr.numel() - 1
        self.n_items = n_items
        self.rows = torch.repeat_interleave(torch.arange(self.n_rows, device=indices.device), indptr.diff())
        self.row_sums = torch.zeros(self.n_rows, device=values.device).index_add_(0, self.rows, values)

    @classmethod
    def from_csr(cls, matrix, device: torch.device) -> SparseBatch:
        return cls(
            torch.from_numpy(matrix.indptr.astype("int64")).to(device),
            torch.from_numpy(matrix.indices.astype("int64")).to(device),
            torch.from_numpy(matrix.data.astype("float32")).to(device),
            matrix.shape[1],
        )


def split_columns(batch: SparseBatch, n_items: int) -> tuple[SparseBatch, torch.Tensor]:
    """A batch whose columns from ``n_items`` on are side features (a conditional model's input): its item
    part as a batch of its own, and the features as a dense block (rows x the other columns)."""
    is_item = batch.indices < n_items
    rows = batch.rows[is_item]
    indptr = torch.zeros(batch.n_rows + 1, dtype=torch.int64, device=rows.device)
    indptr[1:] = torch.bincount(rows, minlength=batch.n_rows).cumsum(0)
    items = SparseBatch(indptr, batch.indices[is_item], batch.values[is_item], n_items)
    conditions = torch.zeros(batch.n_rows, batch.n_items - n_items, device=batch.values.device)
    conditions[batch.rows[~is_item], batch.indices[~is_item] - n_items] = batch.values[~is_item]
    return items, conditions


class LearnedTensors(nn.Module):
    """Named tensors as buffers, so that a closed-form or factor model's state saves, loads and moves to a
    device as a network's does."""

    def __init__(self, **tensors: torch.Tensor):
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor)


class ItemOutput:
    """An output layer given by its rows: ``weight`` (items x hidden) and ``bias`` (items), read as an
    ``nn.Linear``'s are (indexed by item, or called on hidden states for every item's logit)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        self.weight = weight
        self.bias = bias

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)


class ItemSide(nn.Module):
    """Items' side features in the decoder's output layer: an item's output vector (and bias) is its free
    one, kept only for items some training user has (``seen``), plus a learned linear function of its
    features, so that an item known only by its features is scored too. The function's weights start at
    zero: a new model begins as the plain one."""

    def __init__(self, n_items: int, n_features: int, width: int):
        super().__init__()
        self.register_buffer("features", torch.zeros(n_items, n_features))
        self.register_buffer("seen", torch.ones(n_items))
        self.weight = nn.Parameter(torch.zeros(n_features, width))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def set_items(self, features: torch.Tensor, seen: torch.Tensor) -> None:
        """The items' encoded features (items x features) and which items training users have (0/1)."""
        with torch.no_grad():
            self.features.copy_(features)
            self.seen.copy_(seen)
            self.weight.zero_()
            self.bias.zero_()

    def output(self, free: nn.Linear, keep: torch.Tensor | None = None) -> ItemOutput:
        """The output layer of free vectors ``free`` with the features' part added; ``keep`` (0/1 per item)
        drops more free vectors than the unseen items'."""
        mask = self.seen if keep is None else self.seen * keep
        return ItemOutput(free.weight * mask[:, None] + self.features @ self.weight,
                          free.bias * mask + self.features @ self.bias)


class AutoEncoder(nn.Module):
    """Items -> hidden layers -> latent code -> hidden layers -> item logits.

    With ``variational=True`` the encoder's last layer gives mean and log-variance
    of a Gaussian (Mult-VAE); otherwise it gives the code itself, passed through the
    activation (Mult-DAE). The first layer multiplies the sparse input by its weight
    with ``embedding_bag``, so it costs O(interactions), not O(users x items).
    """

    def __init__(self, n_items: int, hidden_dims, latent_dim: int, variational: bool, activation: str,
                 pseudo_inputs: int = 0, item_features: int = 0, decoder_input: int | None = None):
        super().__init__()
        self.n_items = n_items
        self.variational = variational
        self.activation = ACTIVATION_FUNCTIONS[activation]
        enc_dims = [n_items, *hidden_dims, latent_dim * (2 if variational else 1)]
        dec_dims = [decoder_input or latent_dim, *reversed(hidden_dims), n_items]
        # what each layer puts out: wider where the activation reads it (every hidden layer, and a DAE's code)
        enc_out = [activated_width(d, activation) for d in enc_dims[1:-1]]
        enc_out.append(enc_dims[-1] if variational else activated_width(enc_dims[-1], activation))
        dec_out = [activated_width(d, activation) for d in dec_dims[1:-1]] + [n_items]
        self.input_weight = nn.Parameter(torch.empty(n_items, enc_out[0]))
        self.input_bias = nn.Parameter(torch.empty(enc_out[0]))
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc_dims[1:-1], enc_out[1:]))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec_dims[:-1], dec_out))
        self.latent_dim = latent_dim
        # the VampPrior's pseudo-inputs as logits over the items (start_pseudo_inputs sets them), or none
        self.pseudo_logits = nn.Parameter(torch.zeros(pseudo_inputs, n_items)) if pseudo_inputs else None
        self.item_side = ItemSide(n_items, item_features, dec_dims[-2]) if item_features else None

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weights and N(0, 0.001^2) biases, as in the authors' code."""
        weights = self._drawn_weights()
        biases = [self.input_bias] + [layer.bias for layer in [*self.encoder, *self.decoder]]
        with torch.no_grad():
            for w in weights:
                xavier_uniform_(w, generator)
            for b in biases:
                b.normal_(0.0, 0.001, generator=generator)

    def item_input_weights(self) -> list[torch.Tensor]:
        """The first layers' item rows (items x width), each read from a user's history."""
        return [self.input_weight]

    def weight_matrices(self) -> list[torch.Tensor]:
        """What the l2 penalty covers: every weight matrix once, not the biases or the VampPrior's pseudo-inputs
        (inputs the prior reads, not weights)."""
        side = [self.item_side.weight] if self.item_side is not None else []
        return self.item_input_weights() + [layer.weight for layer in [*self.encoder, *self.decoder]] + side

    def _drawn_weights(self) -> list[torch.Tensor]:
        """The weights ``reset_parameters`` draws, in the order it draws them."""
        return [self.input_weight] + [layer.weight for layer in [*self.encoder, *self.decoder]]

    def encode(
        self, batch: SparseBatch, values: torch.Tensor, *, mean_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log-variance) of the code, or (code, None) without ``variational``.

        ``mean_only`` gives (mean, None) and skips the log-variance rows of the last layer
        (scoring never samples): the same values, half of that layer's product.
        """
        h = F.embedding_bag(
            batch.indices, self.input_weight, batch.offsets, mode="sum", per_sample_weights=values
        ) + self.input_bias
        return self._encode_first_layer(h, mean_only)

    def encode_dense(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``encode`` of dense rows over the items (the VampPrior's pseudo-inputs)."""
        return self._encode_first_layer(inputs @ self.input_weight + self.input_bias, False)

    def _encode_first_layer(self, h: torch.Tensor, mean_only: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        layers = [*self.encoder]
        if layers or not self.variational:
            h = self.activation(h)
        for i, layer in enumerate(layers):
            if mean_only and self.variational and i == len(layers) - 1:
                return F.linear(h, layer.weight[: self.latent_dim], layer.bias[: self.latent_dim]), None
            h = layer(h)
            if i < len(layers) - 1 or not self.variational:
                h = self.activation(h)
        if not self.variational:
            return h, None
        return h[:, : self.latent_dim], None if mean_only else h[:, self.latent_dim :]

    def start_pseudo_inputs(self, histories: torch.Tensor) -> None:
        """Start the pseudo-inputs at ``histories`` (dense rows, one per pseudo-input): a posterior of a real
        user each, so the prior starts as a mixture over where users lie (logits ±4: not saturated, so
        every item's weight stays learnable)."""
        with torch.no_grad():
            self.pseudo_logits.copy_(torch.where(histories > 0, 4.0, -6.0))

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The VampPrior's components: the posteriors (mean, log-variance) of the pseudo-inputs, each
        L2-normalised as a history is."""
        inputs = torch.sigmoid(self.pseudo_logits)
        return self.encode_dense(inputs / inputs.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def kl_to_prior(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per user, log q(z | x) - log p(z) at the posterior sample ``z``: the one-sample estimate of the KL
        to the VampPrior that Tomczak & Welling train with."""
        z, mu, logvar = z.float(), mu.float(), logvar.float()
        means, logvars = self.prior_components()
        return log_normal_density(z, mu, logvar).sum(dim=1) - mixture_log_density(z, means.float(), logvars.float())

    @property
    def output_layer(self) -> nn.Linear | ItemOutput:
        """What turns the decoder's last hidden layer into item logits: its last layer, or with item side
        features that layer's free vectors plus the features' part (``ItemSide``)."""
        return self.decoder[-1] if self.item_side is None else self.item_side.output(self.decoder[-1])

    def training_output(self, item_dropout: float, generator: torch.Generator) -> nn.Linear | ItemOutput:
        """``output_layer`` for one update: with item side features, a share ``item_dropout`` of the items lose
        their free vectors (as DropoutNet, Volkovs et al. 2017), so the features' part learns to score an
        item alone, as it must for an item no training user has."""
        if self.item_side is None or item_dropout <= 0:
            return self.output_layer
        keep = torch.rand(self.n_items, generator=generator, device=generator.device) >= item_dropout
        return self.item_side.output(self.decoder[-1], keep.to(self.item_side.seen.device, torch.float32))

    def decode_hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder up to its output layer: what ``output_layer`` turns into item logits."""
        for layer in self.decoder[:-1]:
            z = self.activation(layer(z))
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.decode_hidden(z))


class ConditionalAutoEncoder(AutoEncoder):
    """Mult-VAE conditioned on side features c (Sohn et al. 2015's conditional VAE): q(z | x, c), c added
    to the encoder's first layer through a learned weight, and p(x | z, c), the decoder reading [z, c].
    The features' weights start at zero, so a new model begins as the unconditioned one."""

    def __init__(self, n_items: int, n_conditions: int, hidden_dims, latent_dim: int, activation: str,
                 item_features: int = 0):
        super().__init__(n_items, hidden_dims, latent_dim, True, activation, item_features=item_features,
                         decoder_input=latent_dim + n_conditions)
        self.n_conditions = n_conditions
        self.encoder_conditions = nn.Parameter(torch.zeros(n_conditions, self.input_weight.shape[1]))

    def _drawn_weights(self) -> list[torch.Tensor]:
        # the decoder's first layer drawn over the code's columns only, as Mult-VAE draws it: the same seed
        # starts both models at the same weights
        weights = super()._drawn_weights()
        first = 1 + len(self.encoder)
        weights[first] = self.decoder[0].weight[:, : self.latent_dim]
        return weights

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.encoder_conditions.zero_()
            self.decoder[0].weight[:, self.latent_dim:] = 0.0
        super().reset_parameters(generator)

    def weight_matrices(self) -> list[torch.Tensor]:
        return super().weight_matrices() + [self.encoder_conditions]

    def encode_conditioned(self, batch: SparseBatch, values: torch.Tensor, conditions: torch.Tensor, *,
                           mean_only: bool = False):
        """``encode`` of item histories (``batch``, ``values``) given their users' features."""
        first = F.embedding_bag(batch.indices, self.input_weight, batch.offsets, mode="sum",
                                per_sample_weights=values) + self.input_bias + conditions @ self.encoder_conditions
        return self._encode_first_layer(first, mean_only)


class HierarchicalAutoEncoder(AutoEncoder):
    """Two latent levels (Tomczak & Welling 2018's two-level VAE, as Kim & Suh 2019's H+Vamp): q(z2 | x) from
    the encoder's hidden layers, q(z1 | x, z2) from them and z2, the prior p(z2) (N(0, I), or the VampPrior
    over q(z2 | pseudo-input)) and p(z1 | z2), and the decoder reading [z1, z2]. Without hidden layers every
    map is linear: ``LinearHierarchicalAutoEncoder`` (``hierarchical_autoencoder`` picks by ``hidden_dims``).

    Its code is [z1, z2] (twice ``latent_dim``); ``encode`` gives z1's posterior at z2's mean, so the code's
    mean is what scoring decodes and its variance leaves out what z2's spread adds to z1's."""

    def __init__(self, n_items: int, hidden_dims, latent_dim: int, activation: str, pseudo_inputs: int = 0,
                 item_features: int = 0):
        super().__init__(n_items, hidden_dims, latent_dim, True, activation, pseudo_inputs, item_features,
                         decoder_input=2 * latent_dim)
        self.level_dim = latent_dim
        self._add_levels(hidden_dims, latent_dim, activation)
        self.latent_dim = 2 * latent_dim

    def _add_levels(self, hidden_dims, latent_dim: int, activation: str) -> None:
        """The layers of q(z1 | x, z2) and p(z1 | z2)."""
        if not hidden_dims:
            raise ValueError("HierarchicalAutoEncoder reads hidden layers; without them build the linear levels "
                             "(LinearHierarchicalAutoEncoder, or hierarchical_autoencoder, which picks)")
        width = hidden_dims[-1]
        activated = activated_width(width, activation)  # what a layer the activation reads puts out
        self.top_to_bottom = nn.Linear(latent_dim, activated)  # z2 as q(z1 | x, z2) reads it
        self.bottom_head = nn.Linear(2 * width, 2 * latent_dim)
        self.conditional_prior_layers = nn.ModuleList([nn.Linear(latent_dim, activated),
                                                       nn.Linear(width, 2 * latent_dim)])

    def _level_layers(self) -> list[nn.Linear]:
        return [self.top_to_bottom, self.bottom_head, *self.conditional_prior_layers]

    def reset_parameters(self, generator: torch.Generator) -> None:
        super().reset_parameters(generator)
        with torch.no_grad():
            for layer in self._level_layers():
                xavier_uniform_(layer.weight, generator)
                layer.bias.normal_(0.0, 0.001, generator=generator)

    def weight_matrices(self) -> list[torch.Tensor]:
        return super().weight_matrices() + [layer.weight for layer in self._level_layers()]

    def _trunk(self, first: torch.Tensor) -> torch.Tensor:
        h = self.activation(first)
        for layer in self.encoder[:-1]:
            h = self.activation(layer(h))
        return h

    def _halves(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out[:, : self.level_dim], out[:, self.level_dim :]

    def _top(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z2 | x) from the trunk's output: its mean and log-variance."""
        return self._halves(self.encoder[-1](h))

    def _state(self, batch: SparseBatch, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the levels' posteriors read, the trunk's output first."""
        return (self._trunk(self._first_layer(batch, values)),)

    def _bottom(self, state: tuple[torch.Tensor, ...], z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z1 | x, z2): its mean and log-variance."""
        return self._halves(self.bottom_head(torch.cat([state[0], self.activation(self.top_to_bottom(z2))], dim=1)))

    def conditional_prior(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z1 | z2): its mean and log-variance."""
        *hidden, last = self.conditional_prior_layers
        for layer in hidden:
            z2 = self.activation(layer(z2))
        return self._halves(last(z2))

    def _first_layer(self, batch: SparseBatch, values: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(batch.indices, self.input_weight, batch.offsets, mode="sum",
                               per_sample_weights=values) + self.input_bias

    def encode(self, batch: SparseBatch, values: torch.Tensor, *, mean_only: bool = False):
        state = self._state(batch, values)
        mu2, logvar2 = self._top(state[0])
        mu1, logvar1 = self._bottom(state, mu2)
        mean = torch.cat([mu1, mu2], dim=1)
        return (mean, None) if mean_only else (mean, torch.cat([logvar1, logvar2], dim=1))

    def encode_dense(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z2 | u) of dense rows over the items: the VampPrior's components are over the top level."""
        return self._top(self._trunk(inputs @ self.input_weight + self.input_bias))

    def sample_with_kl(self, batch: SparseBatch, values: torch.Tensor, generator: torch.Generator | None,
                       noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A posterior sample [z1, z2] per user and its one-sample estimate of the KL to the prior,
        log q(z1 | x, z2) + log q(z2 | x) - log p(z1 | z2) - log p(z2). ``noise``: the standard normal draws
        (z2's, z1's) to use instead of the generator's, each broadcast over the users."""
        state = self._state(batch, values)
        mu2, logvar2 = self._top(state[0])
        z2 = reparameterise(mu2, logvar2, generator) if noise is None else mu2 + torch.exp(0.5 * logvar2) * noise[0]
        mu1, logvar1 = self._bottom(state, z2)
        z1 = reparameterise(mu1, logvar1, generator) if noise is None else mu1 + torch.exp(0.5 * logvar1) * noise[1]
        prior_mu1, prior_logvar1 = self.conditional_prior(z2)
        z1, z2 = z1.float(), z2.float()
        log_q = (log_normal_density(z1, mu1.float(), logvar1.float()).sum(dim=1)
                 + log_normal_density(z2, mu2.float(), logvar2.float()).sum(dim=1))
        if self.pseudo_logits is None:
            log_p_top = log_normal_density(z2, torch.zeros_like(z2), torch.zeros_like(z2)).sum(dim=1)
        else:
            means, logvars = self.prior_components()
            log_p_top = mixture_log_density(z2, means.float(), logvars.float())
        log_p = log_normal_density(z1, prior_mu1.float(), prior_logvar1.float()).sum(dim=1) + log_p_top
        return torch.cat([z1, z2], dim=1), log_q - log_p


class LinearHierarchicalAutoEncoder(HierarchicalAutoEncoder):
    """The two levels without hidden layers, every map linear as the encoder and decoder of the Gaussian VAE's
    best ML-1M setting: q(z2 | x) is the first layer, q(z1 | x, z2) a first layer of its own over x (the
    reference code's separate x path) plus a linear map of z2, p(z1 | z2) a linear Gaussian, and the decoder
    linear in [z1, z2]."""

    def _add_levels(self, hidden_dims, latent_dim: int, activation: str) -> None:
        self.bottom_input = nn.Parameter(torch.empty(self.input_weight.shape[0], 2 * latent_dim))
        self.top_to_bottom = nn.Linear(latent_dim, 2 * latent_dim)
        self.conditional_prior_layers = nn.ModuleList([nn.Linear(latent_dim, 2 * latent_dim)])

    def _level_layers(self) -> list[nn.Linear]:
        return [self.top_to_bottom, *self.conditional_prior_layers]

    def reset_parameters(self, generator: torch.Generator) -> None:
        super().reset_parameters(generator)
        with torch.no_grad():
            xavier_uniform_(self.bottom_input, generator)

    def item_input_weights(self) -> list[torch.Tensor]:
        return super().item_input_weights() + [self.bottom_input]

    def _trunk(self, first: torch.Tensor) -> torch.Tensor:
        return first  # the first layer is q(z2 | x) itself

    def _top(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._halves(h)

    def _state(self, batch: SparseBatch, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The first layer's output and x through z1's own first layer."""
        own = F.embedding_bag(batch.indices, self.bottom_input, batch.offsets, mode="sum", per_sample_weights=values)
        return self._first_layer(batch, values), own

    def _bottom(self, state: tuple[torch.Tensor, ...], z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._halves(state[1] + self.top_to_bottom(z2))


def hierarchical_autoencoder(n_items: int, hidden_dims, latent_dim: int, activation: str, pseudo_inputs: int = 0,
                             item_features: int = 0) -> HierarchicalAutoEncoder:
    """The two-level module for ``hidden_dims``: with hidden layers, or linear without them."""
    kind = HierarchicalAutoEncoder if hidden_dims else LinearHierarchicalAutoEncoder
    return kind(n_items, hidden_dims, latent_dim, activation, pseudo_inputs, item_features)


def xavier_uniform_(weight: torch.Tensor, generator: torch.Generator) -> None:
    """Draw a weight matrix in place from U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    bound = math.sqrt(6.0 / sum(weight.shape))
    weight.uniform_(-bound, bound, generator=generator)


def glorot_reset(module: nn.Module, generator: torch.Generator, skip: tuple[str, ...] = ()) -> None:
    """Xavier-uniform weight matrices, zero biases and layer norms at the identity (the Keras defaults
    RecVAE's and VASP's public code start from); parameters under the submodules named in ``skip`` are left."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.split(".")[0] in skip:
                continue
            if p.dim() == 2:
                xavier_uniform_(p, generator)
            elif name.endswith("weight"):  # the only 1-D weights are layer norms' scales
                p.fill_(1.0)
            else:
                p.zero_()


def normalised_input(batch: SparseBatch) -> torch.Tensor:
    """L2-normalise each user's row (the paper normalises before dropout)."""
    sq = torch.zeros(batch.n_rows, device=batch.values.device).index_add_(0, batch.rows, batch.values**2)
    norm = sq.clamp_min(1e-12).sqrt()
    return batch.values / norm[batch.rows]


def negative_log_likelihood(logits: torch.Tensor, batch: SparseBatch, likelihood: str, *,
                            focal_gamma: float = 2.0, focal_alpha: float | None = 0.25) -> torch.Tensor:
    """Per-user negative log-likelihood of the binary history under the decoder's logits.

    All are written so the dense target matrix is never built: the terms
    that touch observed items are gathered at the nonzeros.
    """
    if likelihood == "focal":
        return focal_loss(F.logsigmoid(logits), F.logsigmoid(-logits), batch, focal_gamma, focal_alpha)
    observed = (logits[batch.rows, batch.indices] * batch.values)
    at_nonzeros = torch.zeros(batch.n_rows, device=logits.device, dtype=logits.dtype).index_add_(0, batch.rows, observed)
    if likelihood == "multinomial":
        return batch.row_sums * torch.logsumexp(logits, dim=1) - at_nonzeros
    if likelihood == "logistic":
        return F.softplus(logits).sum(dim=1) - at_nonzeros
    if likelihood == "gaussian":
        sq_values = torch.zeros(batch.n_rows, device=logits.device).index_add_(0, batch.rows, batch.values**2)
        return 0.5 * ((logits**2).sum(dim=1) - 2.0 * at_nonzeros + sq_values)
    raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}")


class NegativeSampler:
    """S negatives per batch, shared by its users, drawn with replacement from a proposal over the items.

    ``draw`` gives the distinct items drawn and each one's log importance weight log(c_j / (S·q_j)), c_j its
    count among the S draws: the logQ correction (Bengio & Senécal 2008; Yi et al. 2019) with repeats summed.
    With S at least the catalogue it gives every item once with weight 1: the sampled softmax is the full one.
    """

    def __init__(self, proposal: torch.Tensor, n: int, generator: torch.Generator):
        self.generator = generator
        self.proposal = (proposal / proposal.sum()).to(generator.device, torch.float32)
        self.n = n
        self.exhaustive = n >= proposal.numel()

    @classmethod
    def for_config(cls, config, user_items, generator: torch.Generator) -> NegativeSampler | None:
        """The sampler ``config.negatives`` asks for over ``user_items``' items, or None for the full softmax."""
        if not config.negatives:
            return None
        if config.negative_proposal == "uniform":
            proposal = torch.ones(user_items.shape[1])
        else:  # + 1: an item without training users can still be drawn
            proposal = torch.from_numpy(item_users(user_items).astype(np.float32)) + 1.0
        return cls(proposal, config.negatives, generator)

    def draw(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.exhaustive:
            items = torch.arange(self.proposal.numel(), device=device)
            return items, torch.zeros(items.numel(), device=device)
        draws = torch.multinomial(self.proposal, self.n, replacement=True, generator=self.generator)
        items, counts = torch.unique(draws, return_counts=True)
        return items.to(device), (torch.log(counts.float()) - torch.log(self.n * self.proposal[items])).to(device)


def sampled_softmax_nll(hidden: torch.Tensor, output: nn.Linear, batch: SparseBatch,
                        negatives: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """Per-user multinomial negative log-likelihood with the log-partition estimated by importance sampling.

    Every user's logits are computed for the batch's items (every user's) and the drawn negatives, so a
    user's partition takes the batch's items exactly and adds, for each drawn item outside them,
    exp(s_j + log_weight_j): given the batch, an unbiased estimate of the rest of the sum. (Taking only the
    user's own items exactly, and another user's item only when drawn, is unbiased too but noisier: on
    ML-1M a 500-user batch's items are most of the catalogue.) Logits are computed once for each distinct
    item (no repeated index, so the gradient is deterministic).
    """
    if batch.indices.numel() == 0:  # users without items have nothing to reconstruct
        return torch.zeros(batch.n_rows, device=hidden.device)
    columns, inverse = torch.unique(torch.cat([batch.indices, negatives]), return_inverse=True)
    own_column, negative_column = inverse[: batch.indices.numel()], inverse[batch.indices.numel():]
    logits = F.linear(hidden, output.weight[columns], output.bias[columns])
    with full_precision(logits):
        return _sampled_nll(logits.float(), batch, columns, own_column, negative_column, log_weights)


def _sampled_nll(logits, batch, columns, own_column, negative_column, log_weights) -> torch.Tensor:
    offset = torch.full((columns.numel(),), -torch.inf, device=logits.device)
    offset[negative_column] = log_weights
    offset[own_column] = 0.0  # a batch item is in every user's partition exactly, drawn or not
    partition = torch.logsumexp(logits + offset, dim=1)
    observed = logits[batch.rows, own_column] * batch.values
    at_nonzeros = torch.zeros(batch.n_rows, device=logits.device, dtype=logits.dtype).index_add_(0, batch.rows, observed)
    return batch.row_sums * partition - at_nonzeros


def focal_loss(log_p: torch.Tensor, log_q: torch.Tensor, batch: SparseBatch, gamma: float,
               alpha: float | None) -> torch.Tensor:
    """Per-user focal loss (Lin et al. 2017) summed over the items, from log p and log(1 - p) of every
    item (users x items); ``batch`` holds the positives, every other item is a negative:
    -α (1-p)^γ log p at a positive, -(1-α) p^γ log(1-p) at a negative (α = None: both weights 1).
    The dense part is the negatives' term of every item; the positives' are corrected at the nonzeros."""
    negative = torch.exp(gamma * log_p) * -log_q if gamma else -log_q
    per_user = negative.sum(dim=1)
    at_p, at_q = log_p[batch.rows, batch.indices], log_q[batch.rows, batch.indices]
    positive = (torch.exp(gamma * at_q) * -at_p if gamma else -at_p)
    negative_there = negative[batch.rows, batch.indices]
    if alpha is not None:
        per_user = (1.0 - alpha) * per_user
        positive, negative_there = alpha * positive, (1.0 - alpha) * negative_there
    return per_user.index_add(0, batch.rows, positive - negative_there)


def reconstruction_nll(hidden: torch.Tensor, output: nn.Linear, batch: SparseBatch, config,
                       sampler: NegativeSampler | None) -> torch.Tensor:
    """Per-user negative log-likelihood of the output layer's logits under ``config``'s likelihood
    (a ``LikelihoodConfig``): sampled when a sampler is given."""
    if sampler is None:
        logits = output(hidden)  # under autocast the product is bf16 / fp16; the loss is float32
        with full_precision(logits):
            return negative_log_likelihood(logits.float(), batch, config.likelihood, focal_gamma=config.focal_gamma,
                                           focal_alpha=config.focal_alpha)
    return sampled_softmax_nll(hidden, output, batch, *sampler.draw(hidden.device))


LOG_2PI = math.log(2 * math.pi)


def log_normal_density(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar))."""
    return -0.5 * (logvar + LOG_2PI + (x - mu).pow(2) / logvar.exp())


def mixture_log_density(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """log p(z) of each row of ``z`` under the equal-weight mixture of the diagonal Gaussians (``means``,
    ``logvars``: components x dimensions). The squares are expanded into matrix products, so no
    rows x components x dimensions tensor is built."""
    precision = torch.exp(-logvars)
    quadratic = (z**2) @ precision.T - 2.0 * z @ (means * precision).T + (means**2 * precision).sum(dim=1)
    per_component = -0.5 * (quadratic + logvars.sum(dim=1) + z.shape[1] * LOG_2PI)
    return torch.logsumexp(per_component, dim=1) - math.log(means.shape[0])


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of every user and latent dimension, in closed form."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (torch.exp(logvar) + mu**2 - 1.0 - logvar)



def make_adam(parameters, learning_rate: float) -> torch.optim.Adam:
    """Adam, fused where torch has the kernel: the unfused update makes ~10 passes over the
    item-sized weights and took a fifth of a CPU epoch on ML-1M; fused it takes one."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, lr=learning_rate)


def input_dropout(values: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Drop each history entry with probability ``rate`` and rescale the rest (inverted dropout).
    The mask is drawn on the generator's device and moved, so a CPU generator serves any device."""
    if rate <= 0:
        return values
    keep = torch.rand(values.shape, generator=generator, device=generator.device).to(values.device) >= rate
    return values * keep / (1.0 - rate)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A sample of N(mu, exp(logvar)) that gradients flow through."""
    eps = torch.randn(mu.shape, generator=generator, device=generator.device).to(mu.device)
    return mu + eps * torch.exp(0.5 * logvar)

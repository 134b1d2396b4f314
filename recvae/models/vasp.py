"""VASP and its two paths: Vančura & Kordík, "Deep Variational Autoencoder with Shallow Parallel Path for
Top-N Recommendation (VASP)", ICANN 2021. Defaults are the authors' public code's for ML-20M.

- FLVAE, the deep path: a variational autoencoder whose encoder (7 layers) and decoder (5 layers) are dense
  layers with swish, layer normalisation and dense residual sums (each layer adds every earlier layer's
  output), decoding to the product of two sigmoids (one from the last decoder layer, one from the code).
- Neural EASE, the shallow path: sigmoid(x W) with an items x items W whose diagonal is held at zero
  (so it cannot copy its input), learned by gradient descent instead of EASE's closed-form inverse.
- VASP: both on the same input, their probabilities multiplied.

All three train with the focal loss and the public code's augmentation: each update splits every user's
history into two random halves and asks each half to predict the other.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from recvae.data.shard import UserRows
from recvae.errors import CapacityError
from recvae.models.config import FLVAEConfig, NeuralEASEConfig, VASPConfig
from recvae.models.dlae import dlae_weights, edlae_weights
from recvae.models.ease import available_memory
from recvae.models.inputs import cosine_similar_items
from recvae.models.iterative import IterativeRecommender
from recvae.models.latent import NoLatentSpaceError
from recvae.models.nn import SparseBatch, focal_loss, gaussian_kl, glorot_reset, reparameterise, xavier_uniform_
from recvae.models.training.step import TrainingStep

# log(1e-7): the probability floor of Keras' binary cross-entropy, which the public code's loss uses; a
# product of sigmoids can round to exactly 1 (or 0) in float32, where log(1 - p) (or log p) is -inf.
_LOG_FLOOR = math.log(1e-7)


SHALLOW_TRAINING_COPIES = 4

# The bias of a neutral deep path's output layers: sigmoid(4) = 0.98 for every item, so the product of its two
# sigmoids scales the shallow path's probabilities by about 0.96 and leaves their order as it is.
NEUTRAL_BIAS = 4.0


def shallow_memory(n_items: int, copies: int = SHALLOW_TRAINING_COPIES) -> int:
    """Bytes of the shallow path's items x items float32 weight and the ``copies`` of it training keeps."""
    return copies * n_items * n_items * 4


def check_shallow_memory(n_items: int, name: str) -> None:
    """Refuse, before allocating, a catalogue whose items x items weight would not fit in training."""
    need, have = shallow_memory(n_items), available_memory()
    if need > have:
        raise CapacityError(
            f"{name} over {n_items:,} items needs about {need / 2**30:.1f} GiB for its shallow path (a {n_items:,} x "
            f"{n_items:,} float32 weight, its gradient and two optimiser moments: 16 bytes per item pair) but "
            f"{have / 2**30:.1f} GiB is available: keep fewer items ({{min_item_interactions}}), or train the deep "
            "path alone (FLVAE), whose memory grows with the catalogue, not its square")


class _ResidualStack(nn.Module):
    """Dense layers with swish and layer normalisation, each fed the previous output plus the sum of all
    earlier outputs (the public code's dense residual connections). ``first`` makes the first layer's
    pre-activation (the encoder's is the sparse input product, computed outside: an identity here)."""

    def __init__(self, first: nn.Module, width: int, layers: int):
        super().__init__()
        self.first = first
        self.first_norm = nn.LayerNorm(width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers - 1))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first_norm(F.silu(self.first(x)))
        total = h
        for layer, norm in zip(self.layers, self.norms):
            h = norm(F.silu(layer(h) + total))
            total = total + h
        return h


class VASPModule(nn.Module):
    """The deep variational path and the shallow item-item path; either may be absent."""

    def __init__(self, n_items: int, config: VASPConfig):
        super().__init__()
        c = config
        self.n_items = n_items
        self.has_deep, self.has_shallow = c.deep, c.shallow
        self.latent_dim = c.latent_dim
        if c.deep:
            self.input_weight = nn.Parameter(torch.empty(n_items, c.hidden_dim))  # the sparse first layer
            self.input_bias = nn.Parameter(torch.empty(c.hidden_dim))
            self.encoder = _ResidualStack(nn.Identity(), c.hidden_dim, c.encoder_layers)
            self.code = nn.Linear(c.hidden_dim, 2 * c.latent_dim)  # mean and log-variance
            self.decoder = _ResidualStack(nn.Linear(c.latent_dim, c.hidden_dim), c.hidden_dim, c.decoder_layers)
            self.from_hidden = nn.Linear(c.hidden_dim, n_items)
            self.from_code = nn.Linear(c.latent_dim, n_items)
        if c.shallow:
            self.item_item = nn.Parameter(torch.empty(n_items, n_items))
        self.calibrated = c.shallow and c.shallow_start != "random"
        self.neutral_deep = c.deep and c.deep_start == "neutral"
        if self.calibrated:  # logits of a closed form's scores, a * (x B) + b
            self.shallow_scale = nn.Parameter(torch.ones(()))
            self.shallow_offset = nn.Parameter(torch.zeros(()))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot-uniform weights and zero biases (Keras' defaults, the public code's); the item-item
        weight's diagonal zero. Each path draws from its own stream forked from ``generator``, so a path
        starts the same whether or not the other exists."""
        deep_seed, shallow_seed = torch.randint(2**62, (2,), generator=generator).tolist()
        if self.has_deep:
            glorot_reset(self, torch.Generator().manual_seed(deep_seed), skip=("item_item", "shallow_scale", "shallow_offset"))
            if self.neutral_deep:  # the deep path starts silent and learns a correction to the shallow one
                with torch.no_grad():
                    for output in (self.from_hidden, self.from_code):
                        output.weight.zero_()
                        output.bias.fill_(NEUTRAL_BIAS)
        if self.has_shallow:
            with torch.no_grad():
                xavier_uniform_(self.item_item, torch.Generator().manual_seed(shallow_seed))
                self.zero_diagonal()

    def zero_diagonal(self) -> None:
        """The constraint the public code applies after every update: no item predicts itself."""
        if self.has_shallow:
            with torch.no_grad():
                self.item_item.diagonal().zero_()

    def encode(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        first = F.embedding_bag(batch.indices, self.input_weight, batch.offsets, mode="sum",
                                per_sample_weights=batch.values) + self.input_bias
        code = self.code(self.encoder(first))
        return code[:, : self.latent_dim], code[:, self.latent_dim :]

    def output_logits(self, batch: SparseBatch, z: torch.Tensor | None, hidden: torch.Tensor | None,
                      items=slice(None)) -> list[torch.Tensor]:
        """The logits of every sigmoid whose product is the output probability, for ``items`` (users x
        items): the deep path's two (from its last decoder layer ``hidden`` and from the code ``z``), the
        shallow path's (from the input ``batch``)."""
        parts = []
        if self.has_deep:
            parts += [F.linear(hidden, self.from_hidden.weight[items], self.from_hidden.bias[items]),
                      F.linear(z, self.from_code.weight[items], self.from_code.bias[items])]
        if self.has_shallow:
            weight = self.item_item if items == slice(None) else self.item_item[:, items]
            shallow = F.embedding_bag(batch.indices, weight, batch.offsets, mode="sum", per_sample_weights=batch.values)
            parts.append(shallow * self.shallow_scale + self.shallow_offset if self.calibrated else shallow)
        return parts


def log_probabilities(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """log p and log(1 - p) of p, the product of the sigmoids of ``parts``, each floored at log 1e-7."""
    parts = [part.float() for part in parts]  # under autocast the products are bf16 / fp16
    log_p = sum(F.logsigmoid(part) for part in parts)
    if len(parts) == 1:
        log_q = F.logsigmoid(-parts[0])
    else:  # log(1 - exp(log_p)), stable on both sides of p = 1/2
        log_q = torch.where(log_p > -math.log(2.0), torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p)))
    return log_p.clamp_min(_LOG_FLOOR), log_q.clamp_min(_LOG_FLOOR)


def masked(batch: SparseBatch, keep: torch.Tensor) -> SparseBatch:
    """The batch's users with only the entries where ``keep`` is true."""
    counts = torch.bincount(batch.rows[keep], minlength=batch.n_rows)
    indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return SparseBatch(indptr, batch.indices[keep], batch.values[keep], batch.n_items)


CALIBRATION_USERS = 1000  # training users whose scores fit the closed form's logit scale and offset


def start_from_closed_form(module: VASPModule, user_items, config: VASPConfig, generator: torch.Generator) -> None:
    """The item-item weight set to EDLAE's closed form on ``user_items`` (EASE's at dropout 0) or DLAE's with its
    diagonal zeroed (``config.shallow_start``), and the scale and offset of its logits fitted by logistic
    regression: each of up to ``CALIBRATION_USERS`` training users' items predicted from a random half of the
    others (the training's augmentation), or from all of them."""
    shared = isinstance(user_items, UserRows)  # under torchrun: Gram matrices summed; rank 0's calibration kept
    user_items = user_items.matrix if shared else user_items
    closed_form = {"edlae": edlae_weights, "dlae": dlae_weights}[config.shallow_start]
    weights = closed_form(user_items, config.shallow_l2, config.shallow_dropout, over_ranks=shared)
    weights.diagonal().zero_()  # DLAE's own weights score only the items a history has; the path holds it at zero
    users = torch.randperm(user_items.shape[0], generator=generator)[:CALIBRATION_USERS].sort().values.numpy()
    targets = torch.from_numpy((user_items[users] != 0).toarray()).double()
    inputs = sp.csr_matrix(user_items[users], dtype=np.float64)
    if config.split_halves:
        inputs.data = inputs.data * (torch.rand(inputs.nnz, generator=generator).numpy() < 0.5)
        inputs.eliminate_zeros()
        targets = targets - torch.from_numpy((inputs != 0).toarray()).double()
    scores = torch.from_numpy(inputs @ weights.double().numpy())
    scale, offset = torch.ones((), dtype=torch.float64, requires_grad=True), torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([scale, offset], max_iter=100, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = F.binary_cross_entropy_with_logits(scores * scale + offset, targets)
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        module.item_item.copy_(weights)
        module.shallow_scale.fill_(scale.item())
        module.shallow_offset.fill_(offset.item())
    module.item_item.requires_grad_(config.shallow_trainable)


class VASPStep(TrainingStep):
    """One Nadam update per batch; the item-item diagonal zeroed after each."""

    def __init__(self, module: VASPModule, config: VASPConfig, generator: torch.Generator):
        self.module = module
        self.config = config
        self.generator = generator
        if config.shallow and config.shallow_learning_rate is not None:
            shallow = [module.item_item]
            rest = [p for p in module.parameters() if p is not module.item_item]
            groups = [group for group in ({"params": rest}, {"params": shallow, "lr": config.shallow_learning_rate})
                      if group["params"]]
        else:
            groups = module.parameters()
        self.optimizer = torch.optim.NAdam(groups, lr=config.learning_rate)
        self.latent_dim = config.latent_dim if config.deep else None

    def batch_loss(self, phase: str, batch: SparseBatch, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        if c.split_halves:  # each half of every history predicts the other
            first = torch.rand(batch.indices.shape, generator=self.generator, device=self.generator.device)
            first = (first < 0.5).to(batch.indices.device)
            pairs = [(masked(batch, first), masked(batch, ~first)), (masked(batch, ~first), masked(batch, first))]
        else:
            pairs = [(batch, batch)]
        focal, kl = 0.0, 0.0
        for inputs, targets in pairs:
            z = None
            if c.deep:
                mu, logvar = self.module.encode(inputs)
                z = reparameterise(mu, logvar, self.generator)
                kl = kl + gaussian_kl(mu, logvar).mean(dim=1)  # per user, averaged over the code as the public code
            hidden = self.module.decoder(z) if c.deep else None
            log_p, log_q = log_probabilities(self.module.output_logits(inputs, z, hidden))
            focal = focal + focal_loss(log_p, log_q, targets, c.focal_gamma, c.focal_alpha)
        focal = focal / len(pairs)
        loss = focal.mean()
        n = batch.n_rows
        terms = {"users": n, "reconstruction": loss.item() * n}
        if c.deep:
            kl = kl / len(pairs)
            loss = loss + c.kl_weight * kl.mean()
            terms["kl"] = kl.mean().item() * n
        if c.shallow and c.l2 > 0:
            loss = loss + c.l2 * self.module.item_item.pow(2).sum()
        terms["loss"] = loss.item() * n
        return loss, terms

    def after_update(self, phase: str) -> None:
        self.module.zero_diagonal()

    def posterior(self, batch: SparseBatch):
        return self.module.encode(batch) if self.config.deep else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"nadam": self.optimizer}


class VASP(IterativeRecommender):
    """Deep variational path and shallow item-item path in parallel (Vančura & Kordík 2021). Scores are
    log-probabilities: the sum of the paths' log-sigmoids, whose order is the product's."""

    name = "VASP"
    config_class = VASPConfig
    no_latent_space = "its deep path is off (deep=False), and the item-item path has no code per user"
    search_space = {"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
                    "hidden_dim": {"choices": [256, 512, 1024, 4096]},
                    "latent_dim": {"choices": [128, 256, 512, 2048]},
                    "kl_weight": {"low": 0.01, "high": 1.0, "log": True},
                    "focal_gamma": {"low": 0.0, "high": 3.0}}

    def start_training(self, user_items, device, generator, device_generator, item_features=None) -> VASPStep:
        if self.config.shallow:
            check_shallow_memory(user_items.shape[1], self.name)
        module = self._new_module(user_items.shape[1])
        module.reset_parameters(generator)
        if module.calibrated:
            start_from_closed_form(module, user_items, self.config, generator)
        module.to(device)
        return VASPStep(module, self.config, device_generator)

    def _new_module(self, n_items: int) -> VASPModule:
        return VASPModule(n_items, self.config)

    def _item_scorer(self, user_items: sp.csr_matrix):
        batch = SparseBatch.from_csr(user_items, self.device_)
        module = self.module_
        with torch.no_grad():
            mu = module.encode(batch)[0] if module.has_deep else None
            hidden = module.decoder(mu) if module.has_deep else None

        def scores(items):
            with torch.no_grad():
                return sum(F.logsigmoid(part) for part in module.output_logits(batch, mu, hidden, items))

        return scores

    def _encode_block(self, user_items: sp.csr_matrix):
        if not self.module_.has_deep:
            return super()._encode_block(user_items)
        mean, logvar = self.module_.encode(SparseBatch.from_csr(user_items, self.device_))
        return mean, torch.exp(0.5 * logvar)

    def _decode_block(self, codes: torch.Tensor) -> torch.Tensor:
        module = self.module_
        if not module.has_deep:
            return super()._decode_block(codes)
        if module.has_shallow:  # its item-item path reads the history, which a position does not hold
            raise NoLatentSpaceError(f"{self.name}'s scores add its item-item path, which reads the history: a "
                                     "position alone does not decode to them (FLVAE's does)")
        hidden = module.decoder(codes)
        return F.logsigmoid(module.from_hidden(hidden)) + F.logsigmoid(module.from_code(codes))

    def _item_vectors(self) -> dict[str, torch.Tensor]:
        if not self.module_.has_deep:
            return super()._item_vectors()
        return {"output": self.module_.from_hidden.weight, "input": self.module_.input_weight}

    def similar_items(self, itemid: int, N: int = 10):
        """Items whose output vectors (the deep path's decoder rows, or the item-item weight's columns) are
        closest in cosine to ``itemid``'s."""
        self._check_fitted()
        module = self.module_
        vectors = module.from_hidden.weight if module.has_deep else module.item_item.T
        return cosine_similar_items(vectors, itemid, N)


class FLVAE(VASP):
    """VASP's deep path alone: a deep VAE with focal loss (the paper's ablation)."""

    name = "FLVAE"
    config_class = FLVAEConfig


class NeuralEASE(VASP):
    """VASP's shallow path alone: EASE's item-item model learned by gradient descent (the paper's ablation),
    in mini-batches and with the focal loss. Memory: the items x items weight and, in training, its
    gradient and Nadam's two moments, 16 bytes per item pair (10k items: 1.5 GiB; 40k: 24 GiB)."""

    name = "NeuralEASE"
    config_class = NeuralEASEConfig
    no_latent_space = "it scores items from items (one items x items weight), with no code per user"
    search_space = {"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
                    "l2": {"low": 0.0, "high": 1.0},
                    "focal_gamma": {"low": 0.0, "high": 3.0}}

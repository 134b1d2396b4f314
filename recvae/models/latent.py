"""The latent space as a contract: each user's position (a posterior mean and, where the model has one, its
standard deviation), the scores a position decodes to, the item vectors, and positions blended for a group.

``Recommender.encode`` / ``decode`` / ``item_embeddings`` / ``recommend_group`` call these with the model's
own ``_encode_block``, ``_decode_block`` and ``_item_vectors``; a model without a latent space (EASE,
popularity, Neural EASE) raises ``NoLatentSpaceError`` saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recvae.errors import DataError, ParameterError, RecvaeError, whole_at_least
from recvae.score.topk import top_n_from_scores
from recvae.models.nn import log_normal_density, mixture_log_density


class NoLatentSpaceError(RecvaeError, NotImplementedError):
    """The model scores without a per-user code: there is nothing to encode, decode or blend."""


@dataclass(frozen=True)
class Encoding:
    """Users' positions in a model's latent space, a row per history: ``mean`` (users x dimensions, float32)
    and ``std``, the posterior's standard deviation per dimension, or None for a code without uncertainty
    (Mult-DAE's, ALS's and BPR's factors)."""

    mean: np.ndarray
    std: np.ndarray | None

    def __len__(self) -> int:
        return len(self.mean)


def encode_in_blocks(model, user_items: sp.csr_matrix, batch_size: int) -> Encoding:
    """``model._encode_block`` over blocks of ``batch_size`` users: memory bounded by the block, not the users."""
    whole_at_least(1, batch_size=batch_size)
    means, stds = [], []
    for start in range(0, user_items.shape[0], batch_size):
        with torch.no_grad():
            mean, std = model._encode_block(user_items[start:start + batch_size])
        means.append(mean.float().cpu().numpy())
        stds.append(None if std is None else std.float().cpu().numpy())
    if not means:  # no users: the model's width still tells the columns
        with torch.no_grad():
            mean, std = model._encode_block(user_items[:0])
        return Encoding(mean.float().cpu().numpy(), None if std is None else std.float().cpu().numpy())
    return Encoding(np.concatenate(means), None if stds[0] is None else np.concatenate(stds))


def require_latent_space(model) -> int:
    """The number of dimensions of the fitted ``model``'s latent space; ``NoLatentSpaceError``, saying why,
    for a model without one (checked before any long work by the commands that need one)."""
    return model.encode(sp.csr_matrix((0, model.n_items_), dtype=np.float32)).mean.shape[1]


def decode(model, codes, conditions=None) -> np.ndarray:
    """The scores (users x items, the model's own scale) that the positions ``codes`` decode to; a conditional
    model's (CVAE's) for users with side features ``conditions`` (a row per code, encoded as in training)."""
    codes = torch.as_tensor(np.asarray(codes, dtype=np.float32), device=model.device_)
    if codes.ndim != 2:
        raise DataError(f"codes must be (users, dimensions), got shape {tuple(codes.shape)}")
    if codes.shape[1] != (width := require_latent_space(model)):
        raise DataError(f"codes have {codes.shape[1]} dimensions; {model.name}'s latent space has {width}")
    with torch.no_grad():
        if conditions is None:
            return model._decode_block(codes).float().cpu().numpy()
        if not getattr(model.config, "conditions", 0):
            raise ParameterError("conditions", "given", f"are read by a CVAE only, not by {model.name}")
        rows = np.asarray(conditions.toarray() if sp.issparse(conditions) else conditions, dtype=np.float32)
        if rows.shape != (codes.shape[0], model.config.conditions):
            raise DataError(f"conditions of shape {rows.shape} for {codes.shape[0]} codes and "
                            f"{model.config.conditions} features")
        return model._decode_conditioned(codes, torch.from_numpy(rows).to(model.device_)).float().cpu().numpy()


def recommend_group(model, user_items: sp.csr_matrix, weights=None, N: int = 10,
                    filter_already_liked_items: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One list for the users of ``user_items`` together (a household): their posterior means averaged with
    ``weights`` (default equal), decoded once; items any of them has are left out unless asked. Returns
    (item indices, scores), best first, as ``recommend`` does for one user."""
    whole_at_least(1, N=N)
    if user_items.shape[0] == 0:
        raise DataError("a group needs at least one user's history")
    weights = np.full(user_items.shape[0], 1.0 / user_items.shape[0]) if weights is None else np.asarray(weights, float)
    if weights.shape != (user_items.shape[0],) or (weights < 0).any() or not weights.sum() > 0:
        raise DataError(f"weights must be one non-negative weight per user ({user_items.shape[0]}), not all zero")
    weights = weights / weights.sum()
    blend = torch.as_tensor((weights @ model.encode(user_items).mean)[None, :], dtype=torch.float32, device=model.device_)
    with torch.no_grad():  # a CVAE decodes with the members' side features averaged by the same weights
        mixed = sp.csr_matrix(np.asarray(weights @ user_items, dtype=np.float32).reshape(1, -1))
        scores = model._decode_rows(mixed, blend)
        added = model._history_scorer(mixed)  # a path that reads the history reads the group's mixed one
        scores = (scores if added is None else scores + added(slice(None))).float().cpu()
    seen = None
    if filter_already_liked_items:
        union = sp.csr_matrix(user_items.sum(axis=0))
        seen = sp.csr_matrix((np.ones(union.nnz, np.float32), union.indices, [0, union.nnz]), shape=(1, union.shape[1]))
    ids, values = top_n_from_scores(scores, N, seen, None)
    keep = ids[0] >= 0
    return ids[0][keep], values[0][keep]


@dataclass(frozen=True)
class AnomalyScores:
    """Per history: ``score``, the negative ELBO per interaction (how unlikely the model finds the history:
    higher is stranger), and its two parts per interaction, ``reconstruction`` (the multinomial's negative
    log-likelihood of the history, decoded from the posterior mean) and ``kl`` (the posterior's KL to the
    prior; 0 for a code without one), ``interactions``, the history's length, and ``percentile``, the share of
    the model's training users that score lower (None for a model that keeps no reference): a threshold such
    as ``percentile >= 0.99`` flags what would be the strangest 1% of the training users.

    ``neighbour_distance`` (asked for with ``neighbours=k``): the mean Euclidean distance from each user's
    posterior mean to its k nearest others' among the users scored together; low is crowded. Profiles
    injected as a group (an attack) are alike, so the model learns them as a mode of their own and their
    ELBO looks ordinary, but their positions crowd together."""

    score: np.ndarray
    reconstruction: np.ndarray
    kl: np.ndarray
    interactions: np.ndarray
    percentile: np.ndarray | None = None
    neighbour_distance: np.ndarray | None = None


def neighbour_distances(points: np.ndarray, neighbours: int) -> np.ndarray:
    """The mean Euclidean distance from each row of ``points`` to its ``neighbours`` nearest other rows
    (scikit-learn's exact search); fewer where there are fewer other rows."""
    from sklearn.neighbors import NearestNeighbors

    whole_at_least(1, neighbours=neighbours)
    k = min(neighbours + 1, len(points))
    if k < 2:
        return np.zeros(len(points))
    distances, _ = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(points)
    return distances[:, 1:].mean(axis=1)  # the first is the point itself (or an exact twin, also at 0)


REFERENCE_LEVELS = 1001  # quantiles of the training users' scores kept with a model (every 0.1%)


def anomaly_reference(scores: np.ndarray) -> np.ndarray:
    """The quantiles of training users' ``scores`` that ``percentile_of`` reads, every 0.1%."""
    return np.quantile(scores, np.linspace(0.0, 1.0, REFERENCE_LEVELS)).astype(np.float64)


def percentile_of(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The share of the reference's users scoring below each of ``scores`` (0 to 1, to within 0.1%)."""
    return np.interp(scores, reference, np.linspace(0.0, 1.0, len(reference)))


PRIOR_SAMPLES = 64  # posterior draws per user in the Monte-Carlo KL to a mixture prior


def seeded_normal(shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal draws from a fixed seed (float64): what a deterministic Monte-Carlo estimate uses."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def kl_to_prior(mean: torch.Tensor, std: torch.Tensor, components) -> np.ndarray:
    """Per user, the KL of N(mean, std²) to the prior: in closed form to N(0, I); to a mixture prior
    (``components``, a ``Prior``'s) the mean over ``PRIOR_SAMPLES`` posterior draws of log q(z) - log p(z).
    Every user's draws share one seeded noise, so a user's score does not depend on who is scored beside it."""
    mean, std = mean.double().cpu(), std.double().cpu()
    if components is None:
        return (0.5 * (mean**2 + std**2 - 1.0 - 2.0 * torch.log(std))).sum(dim=1).numpy()
    means, logvars = (torch.as_tensor(c, dtype=torch.float64) for c in components)
    logvar, total = 2.0 * torch.log(std), torch.zeros(mean.shape[0], dtype=torch.float64)
    for draw in seeded_normal((PRIOR_SAMPLES, mean.shape[1])):
        z = mean + std * draw
        total += log_normal_density(z, mean, logvar).sum(dim=1) - mixture_log_density(z, means, logvars)
    return (total / PRIOR_SAMPLES).numpy()


def anomaly_scores(model, user_items: sp.csr_matrix, batch_size: int, neighbours: int | None = None) -> AnomalyScores:
    """The negative ELBO per interaction of each history, in blocks of ``batch_size`` users. The expectation
    over the posterior is taken at its mean (deterministic, as scoring is), so the score is a single-point
    estimate of the bound. With ``neighbours``, each user's mean distance to that many nearest others in
    the latent space, too (every scored user's position held at once)."""
    from recvae.models.config import LikelihoodConfig

    if not isinstance(model.config, LikelihoodConfig) or model.config.likelihood != "multinomial":
        raise NoLatentSpaceError(f"{model.name} has no multinomial likelihood over histories to score them by")
    whole_at_least(1, batch_size=batch_size)
    parts, positions = [], []
    for start in range(0, user_items.shape[0], batch_size):
        block = user_items[start:start + batch_size]
        with torch.no_grad():
            mean, std = model._encode_block(block)
            log_p = torch.log_softmax(model._decode_rows(block, mean).float(), dim=1).cpu().numpy()
        if neighbours is not None:
            positions.append(mean.float().cpu().numpy())
        width = model._item_columns(block.shape[1])  # a CVAE's side features are read, not reconstructed
        counts, log_p = block.tocsr()[:, :width].astype(np.float64), log_p[:, :width]
        nll = -np.asarray(counts.multiply(log_p).sum(axis=1)).ravel()
        kl = np.zeros(block.shape[0]) if std is None else model._kl_to_prior(block, mean, std)
        parts.append((nll, kl, np.asarray(counts.sum(axis=1)).ravel()))
    nll, kl, n = (np.concatenate([p[i] for p in parts]) if parts else np.empty(0) for i in range(3))
    per = np.maximum(n, 1.0)
    score = (nll + kl) / per
    reference = getattr(model, "anomaly_reference_", None)
    crowding = None if neighbours is None else neighbour_distances(
        np.concatenate(positions) if positions else np.empty((0, 1), np.float32), neighbours)
    return AnomalyScores(score, nll / per, kl / per, n, None if reference is None else percentile_of(score, reference),
                         crowding)


@dataclass(frozen=True)
class PosteriorMixture:
    """A Gaussian mixture over where a model's training users sit in its latent space (the aggregate
    posterior): ``weights`` (components), ``means`` (components x dimensions) and ``scale_tril``, each
    component's covariance as a lower Cholesky factor (components x dimensions x dimensions)."""

    weights: np.ndarray
    means: np.ndarray
    scale_tril: np.ndarray

    def draw(self, stream: np.random.Generator) -> np.ndarray:
        component = stream.choice(len(self.weights), p=self.weights)
        return self.means[component] + self.scale_tril[component] @ stream.standard_normal(self.means.shape[1])


def fit_posterior_mixture(encoding: Encoding, components: int, seed: int) -> PosteriorMixture:
    """The aggregate posterior of the users of ``encoding`` as a mixture of ``components`` full-covariance
    Gaussians (scikit-learn's EM on the posterior means), each covariance widened by the users' mean
    posterior variance, so a draw stands for a posterior sample and not for a posterior mean only."""
    from sklearn.mixture import GaussianMixture

    means = encoding.mean.astype(np.float64)
    components = max(1, min(components, len(means) // 20))  # a component needs users enough for its covariance
    fitted = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(means)
    spread = np.zeros(means.shape[1]) if encoding.std is None else (encoding.std.astype(np.float64) ** 2).mean(axis=0)
    covariances = fitted.covariances_ + np.diag(spread)[None]
    return PosteriorMixture(fitted.weights_ / fitted.weights_.sum(), fitted.means_, np.linalg.cholesky(covariances))


@dataclass(frozen=True)
class Prior:
    """A model's latent prior, as ``sample(source="prior")`` draws from it: over ``width`` dimensions N(0, I),
    or with ``components`` the equal-weight mixture of diagonal Gaussians (means, log-variances: numpy arrays,
    components x width). With ``lower`` the code has a second level below: ``lower(top)`` gives the mean and
    standard deviation of p(lower | top) for each row of top points, and a code is [lower, top]."""

    width: int
    components: tuple[np.ndarray, np.ndarray] | None = None
    lower: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def _draw_top(self, stream: np.random.Generator) -> np.ndarray:
        if self.components is None:
            return stream.standard_normal(self.width)
        means, logvars = self.components
        k = stream.integers(len(means))
        return means[k] + np.exp(0.5 * logvars[k]) * stream.standard_normal(self.width)

    def draw(self, streams: list[np.random.Generator]) -> np.ndarray:
        """One code per stream (each user's own stream, so a user's draw does not depend on the others)."""
        top = np.stack([self._draw_top(stream) for stream in streams])
        if self.lower is None:
            return top
        mean, std = self.lower(top)
        below = mean + std * np.stack([stream.standard_normal(mean.shape[1]) for stream in streams])
        return np.concatenate([below, top], axis=1)


SOURCES = ("posterior", "prior")  # where sample draws its latent points


def _latent_points(model, source: str, mixture, prior: Prior, streams: list, conditions) -> np.ndarray:
    """One latent point per stream: from the model's prior, the training users' mixture, or (a CVAE's users with
    side features ``conditions``) the posterior of a user with those features alone."""
    if source == "prior":
        return prior.draw(streams).astype(np.float32)
    if conditions is None:
        return np.stack([mixture.draw(stream) for stream in streams]).astype(np.float32)
    features = sp.csr_matrix(conditions, dtype=np.float32)
    empty = sp.csr_matrix((features.shape[0], model.n_items_ - features.shape[1]), dtype=np.float32)
    alone = model.encode(sp.hstack([empty, features], format="csr"))
    noise = np.stack([stream.standard_normal(alone.mean.shape[1]) for stream in streams])
    return (alone.mean + alone.std * noise).astype(np.float32)


def sample_users(model, n_users: int, seed: int = 0, temperature: float = 1.0, batch_size: int = 1000,
                 source: str = "posterior", conditions=None):
    """Synthetic users, ``batch_size`` at a time (frames of user, item): each draws a latent point, decodes
    it to scores over the items, draws its number of items from the training users' history lengths, and
    that many distinct items by Gumbel top-k on the scores / ``temperature`` (sampling without replacement
    in proportion to the softmax). ``source``: "posterior" draws the point from the mixture fitted to the
    training users' positions (``PosteriorMixture``), "prior" from the model's prior (N(0, I), or the VampPrior's
    mixture), which a VAE's users need not fill. Users are named "synthetic-1", "synthetic-2", ...
    ``conditions``: a CVAE's users' side features, one row per synthetic user (``recvae.score.recommend.UserSide``'s
    ``draw`` gives the rows of real users of a group): the conditional generation p(x | z, c), the point drawn
    ("posterior") from q(z | c), where the encoder places a user with those features and no items yet, or from
    the prior (which conditions less: a trained CVAE's codes still carry much of what c says)."""
    import pandas as pd

    whole_at_least(1, n_users=n_users, batch_size=batch_size)
    if not temperature > 0:
        raise ParameterError("temperature", temperature, "must be positive")
    if source not in SOURCES:
        raise ParameterError("source", source, f"must be one of {', '.join(SOURCES)}")
    require_latent_space(model)  # before what a model with no space has no reason to keep
    activity = getattr(model, "user_activity_", None)
    mixture = getattr(model, "posterior_mixture_", None)
    if activity is None or (source == "posterior" and mixture is None and conditions is None):
        kept = "history lengths" if activity is None else "positions of its training users"
        why, fix = "saved before this was kept", "fit it again"
        if activity is not None:
            why += ", or with describe_training_users off"
            fix += " with it on, or sample from the prior (source 'prior')"
        raise DataError(f"{model.name}: the model keeps no {kept} to draw from ({why}); {fix}")
    if conditions is not None and conditions.shape[0] != n_users:
        raise DataError(f"conditions has {conditions.shape[0]} rows for {n_users} users")
    prior = model._prior()
    lengths = activity.double().numpy()
    lengths = lengths / lengths.sum()
    for start in range(0, n_users, batch_size):
        users = min(batch_size, n_users - start)
        # each user draws from its own stream (seed, user number): the log does not depend on the blocks
        streams = [np.random.default_rng([seed, start + row]) for row in range(users)]
        block = None if conditions is None else conditions[start:start + users]
        points = _latent_points(model, source, mixture, prior, streams, block)
        counts = np.minimum([stream.choice(len(lengths), p=lengths) for stream in streams],
                            model.n_items_ - getattr(model.config, "conditions", 0))
        keys = decode(model, points, block).astype(np.float64) / temperature
        keys += np.stack([stream.gumbel(size=model.n_items_) for stream in streams])
        top = np.argsort(-keys, axis=1, kind="stable")
        items = np.concatenate([top[row, :counts[row]] for row in range(users)])
        names = np.repeat([f"synthetic-{start + row + 1}" for row in range(users)], counts)
        yield pd.DataFrame({"user": names, "item": model.catalogue().id_of(items) if model.items_ is not None else items})

"""Mult-VAE's VampPrior (Tomczak & Welling 2018): its density, its KL estimate, its draws and its options."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recvae.errors import ParameterError
from recvae.models import MultVAE, Recommender
from recvae.models.latent import Prior, kl_to_prior
from recvae.models.multvae import random_histories
from recvae.models.nn import (AutoEncoder, HierarchicalAutoEncoder, SparseBatch, gaussian_kl, hierarchical_autoencoder,
                              mixture_log_density)


def test_mixture_density_is_torch_distributions_equal_weight_mixture():
    g = torch.Generator().manual_seed(0)
    means, logvars = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) * 0.5
    z = torch.randn(10, 3, generator=g) * 2
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(5)),
        torch.distributions.Independent(torch.distributions.Normal(means, torch.exp(0.5 * logvars)), 1))
    torch.testing.assert_close(mixture_log_density(z, means, logvars), mixture.log_prob(z), rtol=1e-5, atol=1e-5)


def _module_with_one_pseudo_input_repeated() -> AutoEncoder:
    module = AutoEncoder(20, [8], 4, True, "tanh", pseudo_inputs=3)
    module.reset_parameters(torch.Generator().manual_seed(1))
    history = (torch.rand(20, generator=torch.Generator().manual_seed(2)) > 0.6).float()
    module.start_pseudo_inputs(history.repeat(3, 1))  # three equal components: the prior is one Gaussian
    return module


def _gaussian_kl(mu, logvar, prior_mu, prior_logvar) -> float:
    return float(0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu) ** 2) / prior_logvar.exp() - 1).sum())


def test_training_kl_estimate_is_unbiased_against_the_closed_form():
    module = _module_with_one_pseudo_input_repeated()
    with torch.no_grad():
        prior_mu, prior_logvar = (t[0] for t in module.prior_components())
        mu, logvar = prior_mu + 0.7, prior_logvar - 0.5
        z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 4, generator=torch.Generator().manual_seed(3))
        estimate = module.kl_to_prior(z, mu.expand_as(z), logvar.expand_as(z)).mean().item()
    assert estimate == pytest.approx(_gaussian_kl(mu, logvar, prior_mu, prior_logvar), rel=0.02)


def test_scoring_kl_is_deterministic_and_near_the_closed_form():
    module = _module_with_one_pseudo_input_repeated()
    with torch.no_grad():
        means, logvars = module.prior_components()
        mu, std = means[:1] + 0.7, torch.exp(0.5 * logvars[:1]) * 0.8
        first = kl_to_prior(mu, std, (means, logvars))
        beside_another = kl_to_prior(torch.cat([mu, mu + 0.3]), torch.cat([std, std]), (means, logvars))
    assert first[0] == beside_another[0]  # a user's score does not depend on who is scored with it
    assert first[0] == pytest.approx(_gaussian_kl(mu, torch.log(std**2), means[0], logvars[0]), rel=0.3)
    # with no components the prior is N(0, I), in closed form
    zero = kl_to_prior(torch.zeros(1, 4), torch.ones(1, 4), None)
    assert zero[0] == pytest.approx(0.0)


def test_prior_draws_come_from_the_components():
    means = np.array([[0.0, 0.0], [10.0, -10.0]])
    prior = Prior(2, (means, np.full((2, 2), -30.0)))
    draws = prior.draw([np.random.default_rng(seed) for seed in range(200)])
    nearest = np.abs(draws[:, None] - means[None]).max(axis=2).min(axis=1)
    assert nearest.max() < 1e-4 and len({tuple(d.round()) for d in draws}) == 2
    assert Prior(3).draw([np.random.default_rng(0)]).shape == (1, 3)


def test_pseudo_inputs_start_at_training_histories_and_are_learnt(tiny_log):
    rows = random_histories(tiny_log, 5, torch.Generator().manual_seed(0))
    dense = (tiny_log.toarray() > 0).astype("float32")
    assert all((dense == row.numpy()).all(axis=1).any() for row in rows)
    model = MultVAE(epochs=2, batch_size=50, hidden_dims=(16,), latent_dim=4, prior="vamp", pseudo_inputs=5)
    model.fit(tiny_log)
    learnt = torch.sigmoid(model.module_.pseudo_logits.detach())
    assert learnt.shape == (5, tiny_log.shape[1])
    assert not torch.equal(model.module_.pseudo_logits.detach(), torch.where(learnt > 0.5, 4.0, -6.0))
    components = model._prior().components
    assert components[0].shape == (5, 4) and np.isfinite(components[1]).all()
    assert model.sample(4, source="prior")["user"].nunique() == 4
    assert np.isfinite(model.anomaly_scores(tiny_log[:10]).kl).all()


def test_prior_options_are_checked():
    with pytest.raises(ParameterError, match="prior"):
        MultVAE(prior="gaussian-mixture")
    with pytest.raises(ParameterError, match="free_bits"):
        MultVAE(prior="vamp", free_bits=0.1)
    with pytest.raises(ParameterError, match="pseudo_inputs"):
        MultVAE(prior="vamp", pseudo_inputs=0)
    assert MultVAE()._new_module(7).pseudo_logits is None  # the paper's prior keeps no pseudo-inputs


def _hierarchical(prior: str = "standard", hidden_dims=(12,)) -> HierarchicalAutoEncoder:
    module = hierarchical_autoencoder(30, list(hidden_dims), 3, "tanh", pseudo_inputs=4 if prior == "vamp" else 0)
    module.reset_parameters(torch.Generator().manual_seed(4))
    if prior == "vamp":
        module.start_pseudo_inputs((torch.rand(4, 30, generator=torch.Generator().manual_seed(5)) > 0.7).float())
    return module


@pytest.mark.parametrize("hidden_dims", [(12,), ()], ids=["hidden", "linear"])
def test_hierarchical_kl_estimate_matches_its_closed_form_parts(hidden_dims):
    """E[log q(z1|x,z2) - log p(z1|z2)] + KL(q(z2|x) || N(0, I)), each inner KL in closed form, against the
    one-sample estimate training uses, both averaged over many draws of the same user."""
    module = _hierarchical(hidden_dims=hidden_dims)
    history = sp.csr_matrix((np.random.default_rng(6).random((1, 30)) < 0.3).astype("float32"))
    many = sp.vstack([history] * 20_000).tocsr()
    batch = SparseBatch.from_csr(many, torch.device("cpu"))
    values = batch.values / batch.values.pow(2).sum().div(20_000).sqrt()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        z, kl = module.sample_with_kl(batch, values, generator)
        state = module._state(batch, values)
        mu2, logvar2 = module._top(state[0])
        z2 = z[:, 3:]
        mu1, logvar1 = module._bottom(state, z2)
        prior_mu1, prior_logvar1 = module.conditional_prior(z2)
        lower = 0.5 * (prior_logvar1 - logvar1 + (logvar1.exp() + (mu1 - prior_mu1) ** 2) / prior_logvar1.exp() - 1)
        exact = lower.sum(dim=1).mean() + gaussian_kl(mu2[:1], logvar2[:1]).sum()
        # the estimate less its exact mean given each draw of z2: zero on average, within its standard error
        # (the linear levels' p(z1 | z2) has a wide log-variance, so their estimate is the noisier one)
        error = kl - lower.sum(dim=1) - gaussian_kl(mu2[:1], logvar2[:1]).sum()
        standard_error = error.std() / len(error) ** 0.5
    assert abs(error.mean().item()) <= 4 * standard_error.item() and standard_error.item() < 0.03 * exact.item()


@pytest.mark.parametrize("hidden_dims", [(16,), ()], ids=["hidden", "linear"])
def test_hierarchical_model_fits_scores_samples_and_round_trips(tiny_log, tmp_path, hidden_dims):
    model = MultVAE(epochs=2, batch_size=50, hidden_dims=hidden_dims, latent_dim=3, latent_levels=2, prior="vamp",
                    pseudo_inputs=5).fit(tiny_log)
    encoding = model.encode(tiny_log[:7])
    assert encoding.mean.shape == (7, 6) and (encoding.std > 0).all()  # the code is [z1, z2]
    assert np.isfinite(model.score(tiny_log[:7])).all()
    first, second = model.anomaly_scores(tiny_log[:7]).kl, model.anomaly_scores(tiny_log[:3]).kl
    np.testing.assert_allclose(second, first[:3])  # deterministic, and a user's score is its own
    drawn = model.sample(5, source="prior")
    assert drawn["user"].nunique() == 5
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(Recommender.load(tmp_path / "m").score(tiny_log[:7]), model.score(tiny_log[:7]))


def test_prior_draws_a_lower_level_given_the_top():
    prior = Prior(2, None, lambda top: (top * 0 + 5.0, np.full(top.shape, 1e-9)))
    draws = prior.draw([np.random.default_rng(seed) for seed in range(4)])
    assert draws.shape == (4, 4)
    np.testing.assert_allclose(draws[:, :2], 5.0, atol=1e-6)


def test_linear_hierarchical_levels_are_the_direct_linear_maps():
    """Without hidden layers: q(z2 | x) = x W + b, q(z1 | x, z2) = x V + A z2 + a, p(z1 | z2) = C z2 + c."""
    module = _hierarchical(hidden_dims=())
    x = (torch.rand(5, 30, generator=torch.Generator().manual_seed(8)) > 0.6).float()
    batch = SparseBatch.from_csr(sp.csr_matrix(x.numpy()), torch.device("cpu"))
    with torch.no_grad():
        mean, logvar = module.encode(batch, batch.values)
        top = x @ module.input_weight + module.input_bias
        bottom = x @ module.bottom_input + top[:, :3] @ module.top_to_bottom.weight.T + module.top_to_bottom.bias
        prior = module.conditional_prior(mean[:, 3:])
        prior_layer = module.conditional_prior_layers[0]
        torch.testing.assert_close(mean, torch.cat([bottom[:, :3], top[:, :3]], dim=1))
        torch.testing.assert_close(logvar, torch.cat([bottom[:, 3:], top[:, 3:]], dim=1))
        torch.testing.assert_close(torch.cat(prior, dim=1), mean[:, 3:] @ prior_layer.weight.T + prior_layer.bias)
        torch.testing.assert_close(module.decode(mean), mean @ module.decoder[0].weight.T + module.decoder[0].bias)
    assert len(module.encoder) == 0 and len(module.decoder) == 1


def test_hierarchical_options_are_checked():
    with pytest.raises(ParameterError, match="free_bits"):
        MultVAE(latent_levels=2, free_bits=0.5)
    with pytest.raises(ParameterError, match="latent_levels"):
        MultVAE(latent_levels=3)


@pytest.mark.parametrize("module", [
    AutoEncoder(30, [12], 4, True, "tanh", pseudo_inputs=3, item_features=2),
    hierarchical_autoencoder(30, [], 4, "tanh", pseudo_inputs=3, item_features=2),
    hierarchical_autoencoder(30, [12], 4, "tanh", pseudo_inputs=3),
], ids=["flat", "hierarchical-linear", "hierarchical-hidden"])
def test_l2_covers_every_weight_matrix_once(module):
    penalised = module.weight_matrices()
    assert len({id(w) for w in penalised}) == len(penalised)
    matrices = {name for name, p in module.named_parameters() if p.dim() == 2}
    assert {name for name, p in module.named_parameters() if any(p is w for w in penalised)} == matrices - {"pseudo_logits"}

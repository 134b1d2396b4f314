"""The β toolkit: schedules, free bits, posterior diagnostics and collapse warning, auto-β."""

import logging
import math

import numpy as np
import pytest
import torch

from recvae.errors import DataError
from recvae.models import MultVAE, MultVAEConfig
from recvae.models.multvae import autoencoder_loss
from recvae.models.nn import AutoEncoder, SparseBatch
from recvae.models.schedules import beta_at
from recvae.models.training.diagnostics import posterior_diagnostics
from recvae.train import validation_scorer
from recvae.train.auto_beta import auto_beta


@pytest.mark.parametrize("step, expected", [(0, 0.0), (1000, 0.005), (40_000, 0.2), (39_999, 0.199995), (10**6, 0.2)])
def test_linear_is_the_papers_anneal(step, expected):
    assert beta_at("linear", step, 0.2, 200_000) == pytest.approx(expected)


def test_constant_ignores_the_step():
    assert {beta_at("constant", s, 0.3, 1000) for s in (0, 7, 10**6)} == {0.3}


@pytest.mark.parametrize("step, expected", [(0, 0.0), (25, 0.25), (50, 0.5), (75, 0.5), (99, 0.5), (100, 0.0),
                                            (110, 0.1), (150, 0.5), (230, 0.3), (260, 0.5)])
def test_cyclical_ramps_over_half_of_each_cycle_then_holds(step, expected):
    assert beta_at("cyclical", step, 0.5, 100) == pytest.approx(expected)


def test_sigmoid_is_half_way_at_the_midpoint_and_near_the_cap_at_the_end():
    assert beta_at("sigmoid", 500, 0.4, 1000) == pytest.approx(0.2)
    assert beta_at("sigmoid", 0, 0.4, 1000) == pytest.approx(0.4 / (1 + math.exp(5)))
    assert beta_at("sigmoid", 1000, 0.4, 1000) == pytest.approx(0.4 / (1 + math.exp(-5)))
    values = [beta_at("sigmoid", s, 0.4, 1000) for s in range(0, 2001, 50)]
    assert all(a < b for a, b in zip(values, values[1:])) and values[-1] < 0.4


def test_unknown_schedule_and_bad_free_bits_are_refused():
    with pytest.raises(ValueError, match="unknown beta schedule"):
        beta_at("cosine", 1, 0.2, 10)
    with pytest.raises(ValueError, match="beta_schedule='cosine': expected one of"):
        MultVAEConfig(beta_schedule="cosine")
    with pytest.raises(ValueError, match="free_bits"):
        MultVAEConfig(free_bits=-0.1)


def _batch_and_module(small_split, latent=8):
    torch.manual_seed(0)
    module = AutoEncoder(small_split.train.shape[1], (), latent, variational=True, activation="tanh")
    module.reset_parameters(torch.Generator().manual_seed(1))
    return module, SparseBatch.from_csr(small_split.train[:64], torch.device("cpu"))


def test_free_bits_floor_each_dimensions_kl_penalty(small_split):
    module, batch = _batch_and_module(small_split)
    # Each call draws the same noise from a fresh default generator, so the calls differ only in the KL term.
    plain, terms = autoencoder_loss(module, batch, MultVAEConfig(dropout=0.0), 0.5, torch.Generator())
    floor = 1e3  # above every dimension's KL: the penalty is the floor, 0.5 * 1e3 * 8
    floored, floored_terms = autoencoder_loss(module, batch, MultVAEConfig(dropout=0.0, free_bits=floor), 0.5,
                                              torch.Generator())
    nll = terms["reconstruction"] / terms["users"]
    assert floored.item() == pytest.approx(nll + 0.5 * floor * 8, rel=1e-6)
    assert floored_terms["kl"] == pytest.approx(terms["kl"])  # the reported KL stays the true one
    assert plain.item() == pytest.approx(nll + 0.5 * terms["kl"] / terms["users"], rel=1e-6)

    # Below the floor the KL term gives no gradient: the encoder learns from the likelihood alone.
    module.zero_grad()
    floored.backward()
    with_floor = module.input_weight.grad.clone()
    module.zero_grad()
    likelihood_only, _ = autoencoder_loss(module, batch, MultVAEConfig(dropout=0.0), 0.0, torch.Generator())
    likelihood_only.backward()
    torch.testing.assert_close(with_floor, module.input_weight.grad)


def test_free_bits_keep_dimensions_above_the_floor_unchanged(small_split):
    module, batch = _batch_and_module(small_split)
    plain, _ = autoencoder_loss(module, batch, MultVAEConfig(dropout=0.0), 0.5, torch.Generator())
    tiny, _ = autoencoder_loss(module, batch, MultVAEConfig(dropout=0.0, free_bits=1e-9), 0.5, torch.Generator())
    assert tiny.item() == pytest.approx(plain.item(), rel=1e-6)


def test_diagnostics_count_active_units_and_measure_variance_and_kl():
    rng = np.random.default_rng(0)
    mu = torch.zeros(500, 6)
    mu[:, :2] = torch.from_numpy(rng.normal(0, 1.0, (500, 2))).float()  # informative
    mu[:, 2] = torch.from_numpy(rng.normal(0, 0.01, 500)).float()  # variance 1e-4: inactive
    logvar = torch.zeros(500, 6)
    logvar[:, 3] = math.log(0.25)
    found = posterior_diagnostics(mu, logvar)
    assert found["active_units"] == 2
    assert found["posterior_variance"] == pytest.approx((5 + 0.25) / 6)
    kl = found["kl_per_dim"]
    assert kl[4] == 0 and kl[5] == 0  # the prior itself
    assert kl[3] == pytest.approx(0.5 * (0.25 - 1 - math.log(0.25)), rel=1e-4)
    assert kl[0] == pytest.approx(0.5 * float(mu[:, 0].pow(2).mean()), rel=1e-4)


def test_training_records_diagnostics_every_epoch(small_split):
    model = MultVAE(epochs=2, batch_size=200, hidden_dims=(), latent_dim=16).fit(small_split.train, small_split.validation)
    for record in model.history_:
        assert 0 <= record["active_units"] <= 16 and len(record["kl_per_dim"]) == 16
        assert record["posterior_variance"] > 0


def test_a_model_forced_to_collapse_is_reported(small_split, caplog):
    # β = 200 from the first update: matching the prior is worth more than anything the code could say.
    config = dict(epochs=6, batch_size=200, hidden_dims=(), latent_dim=16, learning_rate=3e-3, seed=3)
    with caplog.at_level(logging.WARNING, logger="recvae"):
        collapsed = MultVAE(beta_schedule="constant", beta_cap=200.0, **config).fit(small_split.train, small_split.validation)
    last = collapsed.history_[-1]
    assert last["active_units"] <= 2
    assert max(last["kl_per_dim"]) < 0.05
    assert "posterior collapse" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recvae"):
        healthy = MultVAE(beta_schedule="constant", beta_cap=0.05, **config).fit(small_split.train, small_split.validation)
    assert healthy.history_[-1]["active_units"] >= 8
    assert "posterior collapse" not in caplog.text


def test_auto_beta_anneals_to_one_and_retrains_with_the_peak(small_split):
    config = MultVAEConfig(epochs=8, batch_size=200, hidden_dims=(), learning_rate=3e-3)
    result = auto_beta(config, small_split.train, validation_scorer(small_split.validation, config.validation_metric))
    curve = result.curve
    assert [r["epoch"] for r in curve] == list(range(1, 9))
    per_epoch = math.ceil(small_split.train.shape[0] / 200)
    assert result.total_anneal_steps == 8 * per_epoch
    assert curve[-1]["beta"] == pytest.approx((8 * per_epoch - 1) / (8 * per_epoch))
    assert all(a["beta"] < b["beta"] for a, b in zip(curve, curve[1:]))
    peak = max(curve, key=lambda r: r["ndcg@100"])
    assert (result.beta, result.peak_epoch) == (peak["beta"], peak["epoch"])
    final = result.model.config
    assert (final.beta_cap, final.total_anneal_steps, final.beta_schedule) == (result.beta, result.total_anneal_steps, "linear")
    assert max(r["beta"] for r in result.model.history_) <= result.beta
    assert result.to_json()["curve"] == curve


def test_auto_beta_needs_validation_users(small_split):
    with pytest.raises(DataError, match="validation"):
        auto_beta(MultVAEConfig(epochs=1), small_split.train, None)

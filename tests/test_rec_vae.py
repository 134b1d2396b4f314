"""RecVAE (Shenbin et al. 2020): composite prior, training, interface."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from recvae.evaluate import evaluate
from recvae.models import Popularity, Recommender, RecVAE
from recvae.models.nn import SparseBatch, normalised_input
from recvae.models.rec_vae import RecVAEConfig, RecVAEModule, RecVAEStep, log_normal_density


@pytest.fixture(scope="module")
def fitted(small_split):
    # Narrower than the paper (600/200) so the module fixture takes seconds; the assertions are the same.
    return RecVAE(epochs=6, batch_size=200, learning_rate=2e-3, hidden_dim=128, latent_dim=64).fit(
        small_split.train, small_split.validation)


def test_composite_prior_matches_a_direct_computation(small_split):
    config = RecVAEConfig(hidden_dim=16, latent_dim=4)
    module = RecVAEModule(small_split.n_items, config)
    module.reset_parameters(torch.Generator().manual_seed(0))
    batch = SparseBatch.from_csr(small_split.train[:7], torch.device("cpu"))
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    got = module.composite_prior(batch, z).numpy()
    with torch.no_grad():
        mu, logvar = module.encoder(batch, normalised_input(batch))
        mean_only, no_logvar = module.encoder(batch, normalised_input(batch), mean_only=True)
    assert no_logvar is None and torch.equal(mean_only, mu)  # scoring's path: the same layer, logvar skipped
    w = config.mixture_weights
    direct = np.log(
        w[0] * stats.norm.pdf(z, 0, 1)
        + w[1] * stats.norm.pdf(z, mu.numpy(), np.exp(0.5 * logvar.numpy()))
        + w[2] * stats.norm.pdf(z, 0, math.exp(0.5 * config.wide_logvar))
    )
    assert np.allclose(got, direct, atol=1e-4)


def test_log_normal_density_is_scipys():
    x, mu, logvar = torch.tensor([0.3, -2.0]), torch.tensor([0.1, 1.0]), torch.tensor([0.0, 1.5])
    expected = stats.norm.logpdf(x.numpy(), mu.numpy(), np.exp(0.5 * logvar.numpy()))
    assert np.allclose(log_normal_density(x, mu, logvar).numpy(), expected, atol=1e-6)


def test_recvae_learns_and_beats_popularity(fitted, small_split):
    popularity = evaluate(Popularity().fit(small_split.train), small_split.test).mean("ndcg@100")
    assert evaluate(fitted, small_split.test).mean("ndcg@100") > popularity + 0.1
    assert len(fitted.history_) == 6 and fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]


def test_best_epoch_is_kept(fitted, small_split):
    best = max(r["val_ndcg@100"] for r in fitted.history_)
    assert evaluate(fitted, small_split.validation).mean("ndcg@100") == pytest.approx(best)


def test_the_prior_encoder_changes_only_when_refreshed(small_split):
    config = RecVAEConfig(hidden_dim=16, latent_dim=4, batch_size=300, learning_rate=1e-2)
    module = RecVAEModule(small_split.n_items, config)
    module.reset_parameters(torch.Generator().manual_seed(0))
    step = RecVAEStep(module, config, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in module.old_encoder.state_dict().items()}
    loss, _ = step.batch_loss("encoder", SparseBatch.from_csr(small_split.train[:300], torch.device("cpu")), 0.0)
    step.optimizer_for("encoder").zero_grad()
    loss.backward()
    step.optimizer_for("encoder").step()
    old, new = module.old_encoder.state_dict(), module.encoder.state_dict()
    assert all(torch.equal(before[k], old[k]) for k in old)  # the encoder phase leaves the prior alone
    assert not torch.equal(old["input_weight"], new["input_weight"])
    step.end_phase("encoder")
    assert all(torch.equal(module.old_encoder.state_dict()[k], new[k]) for k in new)


def test_same_seed_same_model(small_split):
    a = RecVAE(epochs=2, batch_size=300, hidden_dim=64, latent_dim=16).fit(small_split.train)
    b = RecVAE(epochs=2, batch_size=300, hidden_dim=64, latent_dim=16).fit(small_split.train)
    history = small_split.test.fold_in[:20]
    assert np.array_equal(a.score(history), b.score(history))


def test_save_load_round_trip(tmp_path, fitted, small_split):
    fitted.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, RecVAE) and loaded.get_params() == fitted.get_params()
    history = small_split.test.fold_in[:30]
    assert np.allclose(loaded.score(history), fitted.score(history), atol=1e-5)
    ids, _ = loaded.recommend(0, history[0], N=5)
    assert len(ids) == 5 and not set(ids) & set(history[0].indices)


@pytest.mark.parametrize("bad", [{"gamma": 0}, {"mixture_weights": (0.5, 0.5, 0.5)}, {"encoder_epochs": 0}, {"likelihood": "poisson"}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        RecVAE(**bad)

"""ImplicitSLIM's refresh of the item embeddings (Shenbin & Nikolenko, ICLR 2024)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recvae.errors import ParameterError
from recvae.models import MultVAE, RecVAE
from recvae.models.config import MultVAEConfig
from recvae.models.implicit_slim import EmbeddingRefresh, implicit_slim


@pytest.fixture
def log():
    rng = np.random.default_rng(0)
    dense = (rng.random((150, 40)) < 0.15).astype(np.float64)
    dense[np.arange(150), rng.integers(0, 40, 150)] = 1.0
    dense[:, 7] = 0.0
    dense[:2, 7] = 1.0  # an item two users saw
    return sp.csr_matrix(dense)


def _direct(embeddings: np.ndarray, x: np.ndarray, l2: float, alpha: float, min_count: int) -> np.ndarray:
    """The refresh with every items x items matrix built."""
    gram = x.T @ x
    ridge = gram + l2 * np.eye(len(gram))
    d = np.diag(1.0 / (np.diag(gram) + l2))
    c = ridge @ d @ d @ ridge
    a = embeddings * ((x > 0).sum(axis=0) >= min_count)[:, None]
    inner = np.eye(embeddings.shape[1]) + alpha * a.T @ c @ a
    return alpha * c @ a @ np.linalg.inv(inner) @ a.T @ embeddings


@pytest.mark.parametrize("l2, alpha, min_count", [(5.0, 0.3, 0), (50.0, 2.0, 3), (0.5, 10.0, 1)])
def test_refresh_equals_the_direct_computation(log, l2, alpha, min_count):
    embeddings = np.random.default_rng(1).standard_normal((40, 6))
    refreshed = implicit_slim(torch.tensor(embeddings, dtype=torch.float64), log, l2, alpha, min_count).numpy()
    np.testing.assert_allclose(refreshed, _direct(embeddings, log.toarray(), l2, alpha, min_count), rtol=1e-8, atol=1e-10)


def test_rare_items_do_not_contribute(log):
    embeddings = torch.randn(40, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    moved = embeddings.clone()
    moved[7] += 100.0  # item 7 has two users: below min_count 3 its embedding is not read
    kept = implicit_slim(embeddings, log, 10.0, 1.0, 3)
    torch.testing.assert_close(implicit_slim(moved, log, 10.0, 1.0, 3), kept)
    assert not torch.allclose(implicit_slim(moved, log, 10.0, 1.0, 0), implicit_slim(embeddings, log, 10.0, 1.0, 0))


def test_refresh_runs_before_every_nth_epoch(log):
    weight = torch.nn.Parameter(torch.randn(40, 4, generator=torch.Generator().manual_seed(3)))
    refresh = EmbeddingRefresh([weight], log, MultVAEConfig(implicit_slim_every=2, implicit_slim_l2=10.0))
    before = weight.detach().clone()
    refresh.before_epoch(0)
    assert torch.equal(weight.detach(), before)
    refresh.before_epoch(1)  # epochs 1, 3, 5, ... from 0, as the authors' code
    torch.testing.assert_close(weight.detach(), implicit_slim(before, log, 10.0, 1.0, 0))


@pytest.mark.parametrize("model_class", [MultVAE, RecVAE])
def test_an_epoch_trains_on_the_refreshed_embeddings_before_it_is_validated(log, model_class, monkeypatch):
    import recvae.models.implicit_slim as module
    events = []
    refresh = module.implicit_slim
    monkeypatch.setattr(module, "implicit_slim", lambda *a, **k: events.append("refresh") or refresh(*a, **k))
    import recvae.models.training.trainer as trainer
    update = trainer._update

    def train(*args):
        events.extend(["train"] if events[-1:] != ["train"] else [])
        return update(*args)
    monkeypatch.setattr(trainer, "_update", train)

    def validate(model):
        events.append("validate")
        return {"ndcg@100": 0.0}
    model = model_class(epochs=2, batch_size=50, latent_dim=4, implicit_slim_every=1, patience=None)
    model.fit(log, validate)
    # two item embeddings refreshed before each epoch, never between an epoch's training and its validation
    assert events == ["refresh", "refresh", "train", "validate"] * 2


@pytest.mark.parametrize("model_class, params", [
    (MultVAE, dict(hidden_dims=(16,), latent_dim=4)),
    (RecVAE, dict(hidden_dim=16, latent_dim=4)),
])
def test_switched_off_or_not_yet_due_it_leaves_the_scores_unchanged(log, model_class, params):
    common = dict(epochs=3, batch_size=50, **params)
    plain = model_class(**common).fit(log).score(log[:20])
    off = model_class(**common, implicit_slim_l2=3.0, implicit_slim_alpha=7.0).fit(log).score(log[:20])
    not_due = model_class(**common, implicit_slim_every=4).fit(log).score(log[:20])
    np.testing.assert_array_equal(off, plain)
    np.testing.assert_array_equal(not_due, plain)
    refreshed = model_class(**common, implicit_slim_every=1).fit(log).score(log[:20])
    assert np.isfinite(refreshed).all() and not np.array_equal(refreshed, plain)


def test_options_are_checked():
    with pytest.raises(ParameterError, match="implicit_slim_l2"):
        MultVAE(implicit_slim_l2=0.0)
    with pytest.raises(ParameterError, match="implicit_slim_every"):
        RecVAE(implicit_slim_every=-1)

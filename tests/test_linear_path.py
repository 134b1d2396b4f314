"""Mult-VAE's closed-form linear path (``linear_weight``): DLAE's item-item weight added to the scores."""

import numpy as np
import pytest
import torch

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.errors import ParameterError
from recvae.models import CVAE, DLAE, MultVAE
from recvae.split import strong_generalization_split

SMALL = dict(epochs=3, batch_size=100, hidden_dims=(16,), latent_dim=4, seed=5)
PATH = dict(linear_weight=1.5, linear_l2=40.0, linear_dropout=0.3)


@pytest.fixture(scope="module")
def split():
    log = generate_log(SyntheticLog(n_users=400, n_items=90, n_groups=4, median_activity=12, seed=2))
    return strong_generalization_split(Interactions.from_frame(preprocess(log)), 40, seed=1)


RECVAE = dict(epochs=2, batch_size=100, hidden_dim=16, latent_dim=4, seed=5)


@pytest.mark.parametrize("name", ["MultVAE", "RecVAE"])
def test_the_path_is_dlaes_closed_form_added_to_the_scores_and_changes_nothing_else(split, name, tmp_path):
    """Without validation every epoch is kept, so the autoencoder trains to the same weights with the path or
    without it: the scores differ by the weight times the history's DLAE scores, and nothing else."""
    from recvae.models import Recommender, RecVAE

    model_class, settings = (MultVAE, SMALL) if name == "MultVAE" else (RecVAE, RECVAE)
    with_path = model_class(**settings, **PATH).fit(split.train, items=split.items)
    plain = model_class(**settings).fit(split.train, items=split.items)
    dlae = DLAE(l2=40.0, dropout=0.3).fit(split.train, items=split.items)
    np.testing.assert_array_equal(with_path.module_.linear_path.numpy(), dlae.module_.weights.numpy())
    history = split.test.fold_in
    np.testing.assert_allclose(with_path.score(history), plain.score(history) + 1.5 * dlae.score(history),
                               rtol=1e-5, atol=1e-5)
    for key, tensor in plain.module_.state_dict().items():
        torch.testing.assert_close(with_path.module_.state_dict()[key], tensor)
    assert "linear_path" not in plain.module_.state_dict()  # weight 0: the paper's model, nothing more saved
    # the latent space is the autoencoder's: positions decode to its scores alone, anomaly scores are its own
    np.testing.assert_allclose(with_path.decode(with_path.encode(history).mean), plain.score(history), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(with_path.anomaly_scores(history).score, plain.anomaly_scores(history).score, rtol=1e-6)
    with_path.save(tmp_path / name)
    np.testing.assert_allclose(Recommender.load(tmp_path / name).score(history), with_path.score(history), rtol=1e-6)


def test_early_stopping_keeps_the_epoch_whose_sum_validates_best(split):
    model = MultVAE(**{**SMALL, "epochs": 4}, **PATH).fit(split.train, split.validation, split.items)
    best = max(model.history_, key=lambda record: record["val_ndcg@100"])
    from recvae.evaluate import evaluate

    assert evaluate(model, split.validation, "ndcg@100").mean("ndcg@100") == pytest.approx(best["val_ndcg@100"], abs=1e-6)


def test_the_conditional_vae_adds_the_path_over_its_items_alone(tmp_path):
    """The CVAE's last columns are each user's features: DLAE's path is computed on the items and adds nothing to
    the feature columns, which stay unrecommended; a user with no items gets the CVAE's list unchanged."""
    import scipy.sparse as sp

    from recvae.models import Recommender

    rng = np.random.default_rng(4)
    items = sp.csr_matrix((rng.random((300, 50)) < 0.15).astype(np.float32))
    features = sp.csr_matrix(np.eye(3, dtype=np.float32)[rng.integers(0, 3, 300)])
    rows = sp.hstack([items, features]).tocsr()
    settings = dict(conditions=3, epochs=3, batch_size=100, hidden_dims=(16,), latent_dim=4, seed=5)
    with_path = CVAE(**settings, **PATH).fit(rows)
    plain = CVAE(**settings).fit(rows)
    dlae = DLAE(l2=40.0, dropout=0.3).fit(items)
    np.testing.assert_array_equal(with_path.module_.linear_path.numpy(), dlae.module_.weights.numpy())
    scores, expected = with_path.score(rows[:20]), plain.score(rows[:20])
    np.testing.assert_allclose(scores[:, :50], expected[:, :50] + 1.5 * dlae.score(items[:20]), rtol=1e-5, atol=1e-5)
    assert np.isneginf(scores[:, 50:]).all()
    new_users = sp.hstack([sp.csr_matrix((3, 50), dtype=np.float32), sp.csr_matrix(np.eye(3, dtype=np.float32))]).tocsr()
    np.testing.assert_allclose(with_path.score(new_users), plain.score(new_users), rtol=1e-6)
    group, _ = with_path.recommend_group(rows[:3], N=5)
    assert len(group) == 5 and group.max() < 50
    with_path.save(tmp_path / "cvae")
    np.testing.assert_allclose(Recommender.load(tmp_path / "cvae").score(rows[:20]), scores, rtol=1e-6)


def test_a_half_length_scales_each_historys_path_by_its_length(split, tmp_path):
    """weight x n / (n + h) for a history of n items: a one-item history gets a small share of the path, a long
    one nearly all of it; saved with the model."""
    from recvae.models import Recommender

    half = 6.0
    ramped = MultVAE(**SMALL, **PATH, linear_half_length=half).fit(split.train, items=split.items)
    plain = MultVAE(**SMALL).fit(split.train, items=split.items)
    dlae = DLAE(l2=40.0, dropout=0.3).fit(split.train, items=split.items)
    history = split.test.fold_in
    lengths = np.diff(history.indptr)[:, None]
    assert lengths.min() < half < lengths.max()
    expected = plain.score(history) + 1.5 * lengths / (lengths + half) * dlae.score(history)
    np.testing.assert_allclose(ramped.score(history), expected, rtol=1e-5, atol=1e-5)
    ramped.save(tmp_path / "ramped")
    np.testing.assert_allclose(Recommender.load(tmp_path / "ramped").score(history), expected, rtol=1e-5, atol=1e-5)


def test_the_path_is_refused_where_it_cannot_be_read():
    with pytest.raises(ParameterError, match="linear_half_length=3.0: scales a linear path"):
        MultVAE(linear_half_length=3.0)
    with pytest.raises(ParameterError, match="linear_dropout=1.0: must lie in"):
        MultVAE(linear_weight=1.0, linear_dropout=1.0)

"""implicit's ALS and BPR behind recvae's interface, with their fold-in."""

import numpy as np
import pytest
import scipy.sparse as sp

from recvae.evaluate import evaluate
from recvae.models import ALS, BPR, Popularity, Recommender
from recvae.models.bpr import bpr_fold_in

implicit = pytest.importorskip("implicit")


@pytest.fixture(scope="module")
def als(small_split):
    return ALS(factors=16, regularization=1.0, iterations=5).fit(small_split.train)


@pytest.fixture(scope="module")
def bpr(small_split):
    return BPR(factors=16, iterations=30, fold_in_steps=50).fit(small_split.train)


def test_als_fold_in_is_the_least_squares_solve(als, small_split):
    # implicit's loss for a user with confidences c (alpha * 1 here) and preference 1 on their items:
    # (YtY + sum (c-1) y y^T + reg I) x = sum c y.  With alpha = 1 that is (YtY + reg I) x = Y_u^T 1.
    history = small_split.test.fold_in[:5]
    y = als.module_.item_factors.double().numpy()
    expected = []
    for row in history:
        a = y.T @ y + als.config.regularization * np.eye(y.shape[1])
        expected.append(np.linalg.solve(a, y[row.indices].sum(axis=0)))
    assert np.allclose(als.user_factors(history).numpy(), np.array(expected), atol=1e-3)


def test_als_recommendations_match_implicits_own(als, small_split):
    history = small_split.test.fold_in[:20]
    ours, _ = als.recommend(np.arange(20), history, N=10)
    solver = implicit.cpu.als.AlternatingLeastSquares(factors=als.config.factors, regularization=als.config.regularization)
    solver.item_factors = als.module_.item_factors.numpy()
    binary = history.copy()
    binary.data[:] = 1.0  # what the model sees with binarize=True (the synthetic log has ratings)
    theirs, _ = solver.recommend(np.arange(20), binary, N=10, recalculate_user=True)
    assert (ours == theirs).mean() > 0.95  # ties may order differently


def test_factorization_models_beat_popularity(als, bpr, small_split):
    popularity = evaluate(Popularity().fit(small_split.train), small_split.test).mean("ndcg@100")
    assert evaluate(als, small_split.test).mean("ndcg@100") > popularity + 0.05
    assert evaluate(bpr, small_split.test).mean("ndcg@100") > popularity + 0.02


def test_bpr_fold_in_does_not_depend_on_the_other_users(bpr, small_split):
    history = small_split.test.fold_in[:40]
    together = bpr.user_factors(history)
    alone = np.vstack([bpr.user_factors(history[i]).numpy() for i in (0, 17, 39)])
    assert np.allclose(together.numpy()[[0, 17, 39]], alone, atol=1e-5)


def test_bpr_fold_in_ranks_the_history_first():
    rng = np.random.default_rng(0)
    items = rng.normal(scale=0.3, size=(50, 8)).astype(np.float32)
    items[[4, 9, 30], 0] += 2.0  # the history shares a direction no other item has
    history = sp.csr_matrix((np.ones(3), ([0, 0, 0], [4, 9, 30])), shape=(1, 50))
    import torch

    user = bpr_fold_in(history, torch.from_numpy(items), None, 0.0, 200, 0.05, seed=1)
    scores = (user @ torch.from_numpy(items).T).numpy()[0]
    assert set(np.argsort(-scores)[:3]) == {4, 9, 30}


@pytest.mark.parametrize("model_name", ["als", "bpr"])
def test_save_load_gives_identical_scores(tmp_path, small_split, model_name, request):
    model = request.getfixturevalue(model_name)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    history = small_split.test.fold_in[:30]
    assert np.allclose(loaded.score(history), model.score(history), atol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="factors"):
        ALS(factors=0)
    with pytest.raises(ValueError, match="learning_rate=0: must be positive"):
        BPR(learning_rate=0)


@pytest.mark.parametrize("model_class", [ALS, BPR])
def test_the_training_users_are_described_from_the_fit_s_own_factors(model_class, small_split, monkeypatch):
    # folding every training user in again (BPR: Adam steps per user) took minutes on ML-1M; the fit has them
    monkeypatch.setattr(model_class, "user_factors", lambda *a: pytest.fail("the training users were folded in again"))
    model = model_class(factors=8, iterations=3, num_threads=1).fit(small_split.train, items=small_split.items)
    assert model.posterior_mixture_.means.shape[1] == 8 and model.anomaly_reference_ is None
    monkeypatch.undo()
    sampled = model.sample(20, seed=1)
    assert sampled["user"].nunique() == 20 and set(sampled["item"]) <= set(small_split.items.ids)

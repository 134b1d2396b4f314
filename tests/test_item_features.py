"""Items' side features in the decoder: an item no training user has is scored by its features."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recvae.errors import DataError, ParameterError
from recvae.models import CVAE, MultDAE, MultVAE, Recommender
from tests.test_cvae import SMALL, grouped_log

COLD = np.array([0, 1, 20, 21, 40, 41])  # two items of each group, left out of training


def genres():
    """One-hot group per item (the grouped log's 3 x 20 items), as a genre column would encode."""
    return np.eye(3, dtype=np.float32)[np.arange(60) // 20]


def without(log: sp.csr_matrix, items: np.ndarray) -> sp.csr_matrix:
    kept = log.tolil(copy=True)
    kept[:, items] = 0
    out = kept.tocsr()
    out.eliminate_zeros()
    return out


@pytest.fixture(scope="module")
def fitted():
    log, groups = grouped_log(seed=2)
    train = without(log, COLD)
    model = MultVAE(item_feature_width=3, item_dropout=0.3, epochs=40, **SMALL).fit(train, item_features=genres())
    return model, train, groups


def test_a_cold_item_of_the_users_group_ranks_above_the_other_groups(fitted):
    model, train, groups = fitted
    scores = model.score(train[:100])[:, COLD]
    assert np.isfinite(scores).all()
    own = scores.reshape(100, 3, 2).mean(axis=2)  # per user, mean score of each group's cold items
    assert (own.argmax(axis=1) == groups[:100]).mean() >= 0.9


def test_a_cold_item_is_similar_to_its_groups_items(fitted):
    model, _, _ = fitted
    ids, _ = model.similar_items(20, N=6)
    assert (ids[1:] // 20 == 1).all(), ids


def test_save_and_load_keep_the_features(fitted, tmp_path):
    model, train, _ = fitted
    loaded = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score(train[:20]), model.score(train[:20]))
    np.testing.assert_array_equal(loaded.fitted_item_features().toarray(), genres())


def test_fitted_item_features_are_none_for_a_model_that_reads_none():
    log, _ = grouped_log(seed=3)
    assert MultVAE(epochs=1, **SMALL).fit(log).fitted_item_features() is None


def test_zero_features_score_as_the_plain_model():
    """Features that are all zero add nothing and learn nothing: the scores are the plain model's."""
    log, _ = grouped_log(seed=3)
    plain = MultVAE(epochs=5, **SMALL).fit(log).score(log[:30])
    zero = MultVAE(item_feature_width=2, epochs=5, **SMALL).fit(log, item_features=np.zeros((60, 2))).score(log[:30])
    np.testing.assert_array_equal(zero, plain)


def test_cvae_and_mult_dae_read_item_features():
    log, groups = grouped_log(seed=4)
    train = without(log, COLD)
    users = sp.csr_matrix(np.eye(3, dtype=np.float32)[groups])
    cvae = CVAE(conditions=3, item_feature_width=3, epochs=5, **SMALL)
    cvae.fit(sp.hstack([train, users]).tocsr(), item_features=genres())
    assert np.isfinite(cvae.score(sp.hstack([train[:5], users[:5]]).tocsr())[:, COLD]).all()
    dae = MultDAE(item_feature_width=3, epochs=5, batch_size=50).fit(train, item_features=sp.csr_matrix(genres()))
    assert np.isfinite(dae.score(train[:5])[:, COLD]).all()


def test_bad_item_features_are_refused_before_training():
    log, _ = grouped_log(seed=5)
    with pytest.raises(ParameterError, match="item_feature_width"):
        MultVAE(epochs=1).fit(log, item_features=genres())
    with pytest.raises(ParameterError, match="give fit the items' features"):
        MultVAE(item_feature_width=3, epochs=1).fit(log)
    with pytest.raises(DataError, match=r"shape \(59, 3\)"):
        MultVAE(item_feature_width=3, epochs=1).fit(log, item_features=genres()[:59])
    nan = genres()
    nan[4, 1] = np.nan
    with pytest.raises(DataError, match="finite"):
        MultVAE(item_feature_width=3, epochs=1).fit(log, item_features=nan)
    with pytest.raises(ParameterError, match="item_dropout"):
        MultVAE(item_dropout=0.2, epochs=1).fit(log)
    with pytest.raises(ParameterError, match="implicit_slim_every"):
        MultVAE(item_feature_width=3, implicit_slim_every=1)


# -- the cold-item protocol ----------------------------------------------------------------------------------

def _split(seed=0):
    from recvae.data import SyntheticLog
    from recvae.pipeline import DataSpec, SplitSpec, prepare_split

    split, _ = prepare_split(DataSpec(synthetic=SyntheticLog(n_users=400, n_items=120, seed=seed)),
                             SplitSpec(heldout_users=40, seed=seed))
    return split


def test_cold_items_never_reach_training_and_nothing_is_lost():
    from recvae.split.conditioned import cold_items

    split = _split()
    cold = cold_items(split, 0.1, seed=7)
    assert len(cold.items) == round(0.1 * np.count_nonzero(np.asarray(split.train.sum(axis=0)).ravel()))
    parts = [cold.split.train, cold.split.validation.fold_in, cold.split.validation.target, cold.split.test.fold_in,
             cold.split.test.target, cold.test.fold_in, cold.validation.fold_in]
    assert all(part[:, cold.items].nnz == 0 for part in parts)
    assert all(part.has_canonical_format for part in parts)  # as the log's split: sorted columns in every row
    assert cold.split.train.nnz + split.train[:, cold.items].nnz == split.train.nnz  # only the cold items' left
    whole = (split.test.fold_in + split.test.target).tocsr()
    rows = np.searchsorted(split.test.users, cold.test.users)
    np.testing.assert_array_equal(split.test.users[rows], cold.test.users)
    assert ((cold.test.fold_in + cold.test.target) != whole[rows]).nnz == 0  # every item kept, none added
    assert set(np.unique(cold.test.target.indices)) <= set(cold.items)
    assert len(cold.test) == np.count_nonzero(np.asarray(whole[:, cold.items].sum(axis=1)).ravel())
    again = cold_items(split, 0.1, seed=7)
    np.testing.assert_array_equal(again.items, cold.items)


def test_content_similarity_ranks_the_users_genre_first():
    from recvae.evaluate import content_similarity

    history = sp.csr_matrix(np.isin(np.arange(60), [2, 3, 4]).astype(np.float32)[None, :])  # group 0's items
    top, _ = content_similarity(genres()).top_n(history, 17)
    assert (top[0] // 20 == 0).all() and not np.isin(top[0], [2, 3, 4]).any()
    features = np.random.default_rng(0).random((60, 4))
    scores = content_similarity(features).scores(history)
    profile = features[[2, 3, 4]].sum(axis=0)
    direct = features @ profile / np.linalg.norm(features, axis=1) / np.linalg.norm(profile)
    np.testing.assert_allclose(scores[0], direct, rtol=1e-10)


def test_evaluation_ranks_the_allowed_items_alone(fitted):
    from recvae.evaluate import evaluate
    from recvae.split import HeldOut

    model, train, groups = fitted
    users = np.arange(20)
    target = sp.csr_matrix((np.ones(20), (users, COLD[2 * groups[:20]])), shape=(20, 60))
    heldout = HeldOut(users, train[:20], target)
    result = evaluate(model, heldout, ("ndcg@2", "recall@2"), allowed_items=COLD)
    top, _ = model.top_n(train[:20], 2, allowed_items=COLD)
    assert np.isin(top, COLD).all()
    assert result.mean("recall@2") >= 0.9  # the user's group's cold item is among its two


def _items_table(path, n_items=120):
    rng = np.random.default_rng(5)
    genres_of = ["Drama|Comedy", "Action", "Comedy", "Horror|Action"]
    lines = ["item,title,genres"] + [f"i{i:05d},Film {i} ({1950 + rng.integers(60)}),{genres_of[rng.integers(4)]}"
                                     for i in range(n_items)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_and_evaluate_run_the_cold_item_protocol(tmp_path):
    from recvae.data import SyntheticLog
    from recvae.pipeline import DataSpec, EvaluateSpec, SplitSpec, TrainSpec, evaluate_saved, train_model
    from recvae.track import TrackingConfig

    items = _items_table(tmp_path / "items.csv")
    data = DataSpec(synthetic=SyntheticLog(n_users=400, n_items=120, seed=4), item_features=str(items))
    spec = TrainSpec(model="MultVAE", params=dict(epochs=2, item_dropout=0.25, **SMALL), data=data,
                     split=SplitSpec(heldout_users=40, cold_items=0.2), out=str(tmp_path / "model"),
                     tracking=TrackingConfig(enabled=False), progress=False)
    trained = train_model(spec, notify=lambda line: None)
    assert trained.model.config.item_feature_width == 4 + 1 + 2  # 3 genres and missing; year and missing
    assert set(trained.cold_items) == {"MultVAE", "content similarity", "random"}
    again = evaluate_saved(EvaluateSpec(str(tmp_path / "model"), tracking=TrackingConfig(enabled=False), examples=0))
    for name, summary in trained.cold_items.items():
        assert again.cold_items[name] == pytest.approx(summary)
    without = dataclasses.replace(data, item_features=None)
    with pytest.raises(ParameterError, match="--item-features"):
        evaluate_saved(EvaluateSpec(str(tmp_path / "model"), data=without, split=spec.split, examples=0,
                                    tracking=TrackingConfig(enabled=False)))
    assert again.results["MultVAE"]["ndcg@100"] == pytest.approx(trained.results["MultVAE"]["ndcg@100"])


def test_item_features_and_cold_items_are_refused_where_not_read(tmp_path):
    from recvae.pipeline import DataSpec, SplitSpec, TrainSpec
    from recvae.tune.command import TuneSpec, tune_model

    items = _items_table(tmp_path / "items.csv")
    with pytest.raises(ParameterError, match="not by EASE"):
        TrainSpec(model="EASE", data=DataSpec(item_features=str(items))).build_model()
    with pytest.raises(ParameterError, match="--item-features"):
        TrainSpec(model="MultVAE", split=SplitSpec(cold_items=0.1)).build_model()
    with pytest.raises(ParameterError, match="--item-features"):
        TrainSpec(model="MultVAE", params={"item_dropout": 0.5}).build_model()
    with pytest.raises(ParameterError, match="protocol strong"):
        SplitSpec(protocol="holdout", cold_items=0.1)
    with pytest.raises(ParameterError, match="recvae tune"):
        tune_model(TuneSpec(model="MultVAE", data=DataSpec(item_features=str(items)), split=SplitSpec(cold_items=0.1),
                            out=str(tmp_path / "t.toml")))


def test_specs_write_the_later_fields_only_when_set():
    """Records of earlier runs (benchmark folders, studies) leave the later fields out, and still match."""
    from recvae.pipeline import DataSpec, SplitSpec

    assert "item_features" not in DataSpec().to_json() and "cold_items" not in SplitSpec().to_json()
    assert SplitSpec(**SplitSpec(cold_items=0.1).to_json()).cold_items == 0.1
    assert DataSpec.from_json(DataSpec(item_features="x.csv").to_json()).item_features == "x.csv"


def test_a_cvae_runs_the_cold_item_protocol_with_its_users_features(tmp_path):
    from recvae.data import SyntheticLog
    from recvae.pipeline import DataSpec, SplitSpec, TrainSpec, train_model
    from recvae.track import TrackingConfig
    from tests.test_cvae import _users_table

    data = DataSpec(synthetic=SyntheticLog(n_users=400, n_items=120, seed=4), item_features=str(_items_table(tmp_path / "i.csv")),
                    user_features=str(_users_table(tmp_path / "u.csv")))
    spec = TrainSpec(model="CVAE", params=dict(epochs=2, **SMALL), data=data, split=SplitSpec(heldout_users=40, cold_items=0.2),
                     out=str(tmp_path / "model"), tracking=TrackingConfig(enabled=False), progress=False)
    trained = train_model(spec, notify=lambda line: None)
    assert trained.model.config.item_feature_width == 7 and trained.model.config.conditions == 7
    assert set(trained.cold_items) == {"CVAE", "content similarity", "random"}
    assert 0 < trained.cold_items["CVAE"]["ndcg@20"] <= 1


@pytest.mark.parametrize("levels", [dict(), dict(latent_levels=2, hidden_dims=[])], ids=["one", "linear-two"])
def test_an_unseen_items_input_rows_stay_zero(levels):
    """An item no training user has is never trained in the first layers, so its rows there are zero: a history
    naming it gets no random weight from it (the two linear levels read x through two first layers)."""
    log, _ = grouped_log(seed=2)
    settings = {**SMALL, **levels}
    model = MultVAE(item_feature_width=3, epochs=2, **settings).fit(without(log, COLD), item_features=genres())
    weights = model.module_.item_input_weights()
    assert len(weights) == (2 if levels else 1)
    for weight in weights:
        assert not weight[COLD].detach().abs().sum() and weight.detach().abs().sum() > 0

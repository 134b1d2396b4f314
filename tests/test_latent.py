"""The latent space as a product: embeddings to Parquet, group recommendations, the latent report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recvae.cli import main
from recvae.data import Interactions, read_interactions
from recvae.models import EASE, MultVAE


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_log_file):
    folder = tmp_path_factory.mktemp("latent")
    model = folder / "model"
    assert main(["train", "--data", str(small_log_file), "--out", str(model), "--epochs", "3", "--hidden-dims", "32",
                 "--latent-dim", "8", "--heldout-users", "30", "-q", "--no-tracking"]) == 0
    return folder, model


def test_embed_writes_every_users_position_in_original_ids_block_by_block(trained, small_log_file):
    folder, model = trained
    users, items = folder / "users.parquet", folder / "items.parquet"
    assert main(["embed", "--model", str(model), "--interactions", str(small_log_file), "--out", str(users),
                 "--items", str(items), "--batch-users", "40", "-q"]) == 0
    assert pq.ParquetFile(users).metadata.num_row_groups > 1  # written block by block, not held whole
    frame = pd.read_parquet(users)
    log = read_interactions(small_log_file)
    assert set(frame["user"]) == set(log["user"]) and frame["user"].is_unique
    loaded = MultVAE.load(model)
    mean = np.stack(frame["mean"].to_numpy())
    # the same positions the Python API gives for the same histories
    some = log[log["user"].isin(frame["user"].iloc[:5])]
    rows = Interactions.from_frame(some[some["item"].isin(loaded.items_.ids)], items=loaded.items_)
    order = [frame.index[frame["user"] == u][0] for u in rows.users.ids]
    np.testing.assert_allclose(loaded.encode(rows.matrix).mean, mean[order], rtol=1e-5, atol=1e-6)
    assert (np.stack(frame["std"].to_numpy()) > 0).all()
    vectors = pd.read_parquet(items)
    assert list(vectors.columns) == ["item", "output", "input"] and len(vectors) == loaded.n_items_


def test_embed_refuses_a_model_without_a_latent_space_and_a_csv_before_reading(trained, small_log_file, tmp_path, capsys):
    folder, _ = trained
    ease = tmp_path / "ease"
    EASE(l2=10.0).fit(Interactions.from_frame(read_interactions(small_log_file)).matrix,
                      items=Interactions.from_frame(read_interactions(small_log_file)).items).save(ease)
    assert main(["embed", "--model", str(ease), "--interactions", str(small_log_file), "--out",
                 str(tmp_path / "u.parquet"), "-q"]) == 2
    assert "EASE has no latent space: it scores items from items" in capsys.readouterr().err
    assert not (tmp_path / "u.parquet").exists()
    assert main(["embed", "--model", str(folder / "model"), "--interactions", "nowhere.csv", "--out",
                 str(tmp_path / "u.csv"), "-q"]) == 2
    assert "u.csv': name a .parquet file" in capsys.readouterr().err  # before the missing log is even looked for


@pytest.fixture(scope="module")
def log_with_side(tmp_path_factory, small_log):
    """The generated log with user attributes (each user's main taste group, and a noise attribute) and item
    genres (the generator's item groups), as side tables."""
    folder = tmp_path_factory.mktemp("side")
    users = small_log["user"].unique()
    pd.DataFrame({"user": users, "segment": [f"s{hash(u) % 3}" for u in users]}).to_csv(folder / "users.csv", index=False)
    items = small_log["item"].unique()
    pd.DataFrame({"item": items, "title": [f"Title {i}" for i in items],
                  "genres": [f"g{int(i[1:]) % 4}|g{int(i[1:]) % 7}" for i in items]}).to_csv(folder / "items.csv", index=False)
    return folder


def _vae(small_split, **settings):
    return MultVAE(epochs=8, batch_size=100, hidden_dims=(), latent_dim=16, patience=None, **settings).fit(
        small_split.train, items=small_split.items)


def test_the_report_writes_every_file_from_the_generated_log_in_seconds(small_split, small_data, log_with_side, tmp_path):
    import time

    from recvae.data.side import read_side_table
    from recvae.latent.report import SideData, latent_report

    model = _vae(small_split)
    side = SideData(read_side_table(log_with_side / "users.csv"), read_side_table(log_with_side / "items.csv"))
    history = small_data.matrix[:, np.isin(small_data.items.ids, small_split.items.ids)]
    started = time.perf_counter()
    numbers = latent_report(model, history, small_data.users, tmp_path / "report", side, title="MultVAE: generated")
    assert time.perf_counter() - started < 60
    for name in ("report.json", "report.html", "dimensions.png", "users.png", "items.png", "traversals.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000, name
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
    assert numbers["attribute_probes"]["segment"]["posterior mean"]["classes"] == 3
    assert set(numbers["genre_neighbourhoods"]["output vectors"]) == {"items", "k", "share", "random"}
    assert len(numbers["traversals"]) == 4 and numbers["traversals"][0]["rising_names"][0].startswith("Title ")


def test_kl_and_active_units_count_what_they_say(small_split):
    import torch

    from recvae.latent import stats

    weak, strong = _vae(small_split, beta_cap=0.2), _vae(small_split, beta_cap=4.0, beta_schedule="constant")
    history = small_split.train[:300]
    weak_code, strong_code = weak.encode(history), strong.encode(history)
    kl = stats.kl_per_dimension(weak_code)
    direct = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(weak_code.mean, dtype=torch.float64), torch.tensor(weak_code.std, dtype=torch.float64)),
        torch.distributions.Normal(0.0, 1.0)).mean(dim=0).numpy()
    np.testing.assert_allclose(kl, direct, rtol=1e-6)
    assert stats.active_units(strong_code).sum() < stats.active_units(weak_code).sum()
    active = stats.active_units(weak_code)
    np.testing.assert_array_equal(active, weak_code.mean.var(axis=0) > 0.01)


def test_models_without_uncertainty_or_without_a_space_give_their_documented_answers(small_split, small_data, tmp_path):
    from recvae.latent.report import latent_report
    from recvae.latent import stats
    from recvae.models import MultDAE, Popularity
    from recvae.models.latent import NoLatentSpaceError

    dae = MultDAE(epochs=2, batch_size=100, latent_dim=8).fit(small_split.train, items=small_split.items)
    code = dae.encode(small_split.train[:50])
    assert code.std is None and stats.kl_per_dimension(code) is None
    history = small_data.matrix[:, np.isin(small_data.items.ids, small_split.items.ids)]
    numbers = latent_report(dae, history, small_data.users, tmp_path / "dae")
    assert numbers["kl_total"] is None and len(numbers["variance_of_mean"]) == 8 and "verdict" in numbers
    for model in (EASE(l2=10.0).fit(small_split.train, items=small_split.items), Popularity().fit(small_split.train)):
        with pytest.raises(NoLatentSpaceError, match=f"{model.name} has no latent space"):
            latent_report(model, history, small_data.users, tmp_path / model.name)
        assert not (tmp_path / model.name).exists()


def test_latent_report_from_the_command_line(trained, small_log_file, log_with_side, tmp_path, capsys):
    _, model = trained
    assert main(["latent-report", "--model", str(model), "--data", str(small_log_file), "--out", str(tmp_path / "r"),
                 "--user-features", str(log_with_side / "users.csv"), "--item-features", str(log_with_side / "items.csv"),
                 "--no-tracking", "-q"]) == 0
    out = capsys.readouterr().out
    assert "segment from the posterior means: accuracy" in out and (tmp_path / "r" / "report.html").exists()


def test_recommend_groups_from_the_command_line(trained, small_log_file, tmp_path, capsys):
    _, model = trained
    log = read_interactions(small_log_file)
    first, second = log["user"].unique()[:2]
    (tmp_path / "groups.txt").write_text(f"alone: {first}\n{first}, {second}\n")
    out = tmp_path / "groups.csv"
    assert main(["recommend", "--model", str(model), "--interactions", str(small_log_file), "--groups",
                 str(tmp_path / "groups.txt"), "--top-n", "5", "--out", str(out), "-q"]) == 0
    lists = pd.read_csv(out)
    assert set(lists["group"].astype(str)) == {"alone", "2"} and len(lists) == 10
    single = tmp_path / "single.csv"
    only = log[log["user"] == first]
    only.to_csv(tmp_path / "first.csv", index=False)
    assert main(["recommend", "--model", str(model), "--interactions", str(tmp_path / "first.csv"), "--top-n", "5",
                 "--out", str(single), "-q"]) == 0
    assert lists[lists["group"] == "alone"]["item"].tolist() == pd.read_csv(single)["item"].tolist()
    (tmp_path / "bad.txt").write_text("ghosts: nobody\n")
    assert main(["recommend", "--model", str(model), "--interactions", str(small_log_file), "--groups",
                 str(tmp_path / "bad.txt"), "--out", str(tmp_path / "bad.csv"), "-q"]) == 2
    assert "group 'ghosts': user 'nobody' has no item the model knows" in capsys.readouterr().err


@pytest.mark.slow
def test_the_report_draws_a_umap_map_when_asked(small_split, small_data, tmp_path):
    pytest.importorskip("umap")
    from recvae.latent.report import latent_report

    history = small_data.matrix[:, np.isin(small_data.items.ids, small_split.items.ids)]
    numbers = latent_report(_vae(small_split), history, small_data.users, tmp_path / "r", max_users=400, umap=True)
    assert (tmp_path / "r" / "users_umap.png").stat().st_size > 1000 and "user_map_umap" in numbers


def test_anomaly_scores_are_the_negative_elbo_and_find_a_planted_profile(small_split):
    import scipy.sparse as sp
    import torch

    from recvae.models import ALS
    from recvae.models.latent import NoLatentSpaceError

    model = MultVAE(epochs=15, batch_size=100, hidden_dims=(32,), latent_dim=8, patience=None).fit(small_split.train)
    history = small_split.train[:200]
    scores = model.anomaly_scores(history, batch_size=64)
    # the bound computed directly: the multinomial's log-likelihood at the posterior mean, the Gaussian KL
    encoding = model.encode(history)
    log_p = torch.log_softmax(torch.from_numpy(model.decode(encoding.mean)).double(), dim=1).numpy()
    counts = (history.toarray() != 0).astype(np.float64)  # the model counts every stored interaction as 1
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(encoding.mean, dtype=torch.float64), torch.tensor(encoding.std, dtype=torch.float64)),
        torch.distributions.Normal(0.0, 1.0)).sum(dim=1).numpy()
    n = counts.sum(axis=1)
    np.testing.assert_allclose(scores.score, (-(counts * log_p).sum(axis=1) + kl) / n, rtol=1e-4)
    np.testing.assert_allclose(scores.kl, kl / n, rtol=1e-4)
    # a profile of random items is stranger than almost every real one
    rng = np.random.default_rng(0)
    planted = rng.choice(history.shape[1], size=30, replace=False)
    fake = sp.csr_matrix((np.ones(30, np.float32), (np.zeros(30, int), planted)), shape=(1, history.shape[1]))
    real = model.anomaly_scores(small_split.train).score
    assert (model.anomaly_scores(fake).score[0] > real).mean() > 0.95
    with pytest.raises(NoLatentSpaceError, match="ALS has no multinomial likelihood"):
        ALS(factors=4, iterations=2).fit(small_split.train).anomaly_scores(history)


def test_profiles_injected_as_a_group_crowd_together_in_the_latent_space(small_split):
    import scipy.sparse as sp

    # eight copies of one profile of 20 popular items: each one ordinary, together a crowd
    popular = np.argsort(-np.bincount(small_split.train.indices, minlength=small_split.train.shape[1]))[:20]
    copies = sp.csr_matrix((np.ones(8 * 20, np.float32), (np.repeat(np.arange(8), 20), np.tile(popular, 8))),
                           shape=(8, small_split.train.shape[1]))
    log = sp.vstack([small_split.train, copies], format="csr")
    model = MultVAE(epochs=5, batch_size=100, hidden_dims=(32,), latent_dim=8).fit(log)
    scores = model.anomaly_scores(log, batch_size=64, neighbours=5)
    assert scores.neighbour_distance.shape == scores.score.shape
    np.testing.assert_allclose(scores.neighbour_distance[-8:], 0.0, atol=1e-5)
    assert scores.neighbour_distance[:-8].min() > 1e-3
    assert model.anomaly_scores(log).neighbour_distance is None


def test_score_users_from_the_command_line(trained, small_log_file, tmp_path):
    from recvae.models import Recommender
    from recvae.models.latent import neighbour_distances

    _, model = trained
    out = tmp_path / "scores.csv"
    assert main(["score-users", "--model", str(model), "--interactions", str(small_log_file), "--out", str(out),
                 "--batch-users", "50", "--neighbours", "5", "-q"]) == 0
    scores = pd.read_csv(out)
    # the neighbour distances of the whole log, written block by block in the users' order
    loaded = Recommender.load(model)
    log = read_interactions(small_log_file)
    histories = Interactions.from_frame(log[log["item"].isin(loaded.items_.ids)], items=loaded.items_)
    expected = pd.Series(neighbour_distances(loaded.encode(histories.matrix).mean, 5), index=histories.users.ids)
    np.testing.assert_allclose(scores["neighbour_distance"], expected[scores["user"]].to_numpy(), rtol=1e-4)
    scores = scores.drop(columns="neighbour_distance")
    assert list(scores.columns) == ["user", "score", "reconstruction", "kl", "interactions", "percentile"]
    assert scores["percentile"].between(0, 1).all() and scores["percentile"].is_monotonic_increasing is not None
    assert set(scores["user"]) == set(read_interactions(small_log_file)["user"])
    np.testing.assert_allclose(scores["score"], scores["reconstruction"] + scores["kl"], rtol=1e-5)


def test_sampled_users_are_valid_repeatable_and_readable(small_split, tmp_path):
    from recvae.models import Recommender

    model = MultVAE(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8).fit(small_split.train, items=small_split.items)
    log = model.sample(250, seed=3, batch_size=100)
    assert log["user"].nunique() == 250 and not log.duplicated(["user", "item"]).any()
    assert set(log["item"]) <= set(small_split.items.ids)
    lengths = log.groupby("user").size().to_numpy()
    trained = np.diff(small_split.train.indptr)
    assert lengths.min() >= trained.min() and lengths.max() <= trained.max()  # drawn from the training lengths
    pd.testing.assert_frame_equal(log, model.sample(250, seed=3, batch_size=50))  # blocks do not change the draw
    assert not log.equals(model.sample(250, seed=4))
    model.save(tmp_path / "m")
    out = tmp_path / "synthetic.parquet"
    assert main(["sample", "--model", str(tmp_path / "m"), "--users", "250", "--seed", "3", "--out", str(out), "-q"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), log, check_dtype=False)
    assert main(["train", "--model", "popularity", "--data", str(out), "--out", str(tmp_path / "p"), "--heldout-users",
                 "20", "--no-tracking", "-q"]) == 0
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.user_activity_ is not None
    pd.testing.assert_frame_equal(loaded.sample(50, seed=1), model.sample(50, seed=1))  # the mixture is kept
    np.testing.assert_array_equal(loaded.anomaly_reference_, model.anomaly_reference_)


def test_a_model_told_not_to_describe_its_users_samples_from_its_prior_and_says_why_not_otherwise(small_split):
    from recvae.errors import DataError

    model = MultVAE(epochs=2, batch_size=100, hidden_dims=(32,), latent_dim=8, describe_training_users=False)
    model.fit(small_split.train, items=small_split.items)
    assert model.posterior_mixture_ is None and model.anomaly_reference_ is None
    with pytest.raises(DataError, match="describe_training_users off"):
        model.sample(10)
    assert model.sample(10, source="prior")["user"].nunique() == 10
    assert model.anomaly_scores(small_split.test.fold_in).percentile is None  # no training users to rank against
    described = MultVAE(epochs=2, batch_size=100, hidden_dims=(32,), latent_dim=8).fit(small_split.train)
    np.testing.assert_array_equal(model.top_n(small_split.test.fold_in, 10), described.top_n(small_split.test.fold_in, 10))


def test_a_model_of_two_disjoint_groups_samples_both_in_their_proportions():
    import scipy.sparse as sp

    # 70% of the users take 8 of items 0-39, the rest 8 of items 40-79: no user crosses over
    rng = np.random.default_rng(0)
    n_users, first = 1000, 700
    rows = np.repeat(np.arange(n_users), 8)
    cols = np.concatenate([rng.choice(40, 8, replace=False) + (0 if user < first else 40) for user in range(n_users)])
    log = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, 80))
    model = MultVAE(epochs=30, batch_size=100, hidden_dims=(32,), latent_dim=4, patience=None, seed=1).fit(log)
    purity, share = {}, {}
    for source in ("posterior", "prior"):
        sampled = model.sample(600, seed=2, source=source)
        in_first = (sampled["item"] < 40).groupby(sampled["user"]).mean()
        purity[source] = ((in_first > 0.75) | (in_first < 0.25)).mean()  # users that keep to one group
        share[source] = (in_first > 0.5).mean()
    assert purity["posterior"] > 0.9 and abs(share["posterior"] - 0.7) < 0.07, (purity, share)
    # the prior reaches the "holes" between the groups: mixed users, and the groups' shares drift (0.62, 0.56 here)
    assert purity["prior"] < purity["posterior"] and abs(share["prior"] - 0.7) > abs(share["posterior"] - 0.7)


def test_anomaly_percentiles_read_the_training_users_scores(small_split):
    model = MultVAE(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8).fit(small_split.train)
    scores = model.anomaly_scores(small_split.train)
    # the training users' own percentiles are spread evenly over [0, 1]: about 1% of them above 0.99
    assert abs((scores.percentile >= 0.99).mean() - 0.01) < 0.005
    np.testing.assert_allclose(np.sort(scores.percentile), np.linspace(0, 1, len(scores.score)), atol=0.01)


def test_the_report_refuses_histories_that_do_not_match_their_users_before_writing(small_split, small_data, tmp_path):
    """50 rows named by every user's ID placed users under the wrong IDs without a word; a COO matrix and
    max_users=0 failed inside (AttributeError, IndexError)."""
    import scipy.sparse as sp

    from recvae.errors import DataError, ParameterError
    from recvae.latent.report import latent_report

    model = _vae(small_split)
    history = small_data.matrix[:, np.isin(small_data.items.ids, small_split.items.ids)]
    out = tmp_path / "report"
    with pytest.raises(DataError, match=f"user_items has 50 rows, and users names {len(small_data.users)}"):
        latent_report(model, history[:50], small_data.users, out)
    with pytest.raises(ParameterError, match="max_users=0: must be at least 1"):
        latent_report(model, history, small_data.users, out, max_users=0)
    with pytest.raises(DataError, match="no row of user_items holds an item"):
        latent_report(model, sp.csr_matrix(history.shape, dtype=np.float32), small_data.users, out)
    assert not out.exists()
    assert latent_report(model, history.tocoo(), small_data.users, out, max_users=50)["users"] == 50

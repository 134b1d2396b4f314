"""The conditional Mult-VAE: side features as the input's last columns, read by encoder and decoder."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recvae.errors import DataError
from recvae.models import CVAE, MultVAE
from recvae.models.nn import AutoEncoder, ConditionalAutoEncoder, SparseBatch, split_columns

SMALL = dict(batch_size=50, hidden_dims=(32,), latent_dim=4)


def grouped_log(n_users=300, n_groups=3, per_group=20, per_user=8, seed=0):
    """Users of three groups, each taking most of its items from its group's twenty."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n_users)
    rows, cols = [], []
    for user, group in enumerate(groups):
        own = rng.choice(np.arange(group * per_group, (group + 1) * per_group), int(per_user * 0.8), replace=False)
        items = np.union1d(own, rng.choice(n_groups * per_group, per_user - len(own), replace=False))
        rows += [user] * len(items)
        cols += list(items)
    log = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_groups * per_group))
    return log, groups


@pytest.fixture(scope="module")
def grouped():
    log, groups = grouped_log()
    features = sp.csr_matrix(np.eye(3, dtype=np.float32)[groups])
    model = CVAE(conditions=3, epochs=30, **SMALL).fit(sp.hstack([log, features]).tocsr())
    return model, log, groups


def test_a_user_with_features_and_no_items_gets_its_groups_items(grouped):
    model, _, _ = grouped
    cold = sp.hstack([sp.csr_matrix((3, 60), dtype=np.float32), sp.csr_matrix(np.eye(3, dtype=np.float32))]).tocsr()
    top, _ = model.top_n(cold, 10)
    for group in range(3):
        assert (top[group] // 20 == group).mean() >= 0.8, top


def test_feature_columns_are_never_recommended(grouped):
    model, log, groups = grouped
    rows = sp.hstack([log[:5], sp.csr_matrix(np.eye(3, dtype=np.float32)[groups[:5]])]).tocsr()
    scores = model.score(rows)
    assert np.isneginf(scores[:, 60:]).all() and np.isfinite(scores[:, :60]).all()
    ids, _ = model.recommend(0, rows[0], N=200, filter_already_liked_items=False)
    assert ids.max() < 60
    with pytest.raises(DataError, match="side feature"):
        model.similar_items(61)


def test_a_constant_feature_ranks_as_mult_vae_does():
    """Same seed, same starting weights: a constant feature only adds a second bias to the first layers."""
    log, _ = grouped_log(seed=1)
    constant = sp.hstack([log, sp.csr_matrix(np.ones((log.shape[0], 1), np.float32))]).tocsr()
    conditioned, _ = CVAE(conditions=1, epochs=10, **SMALL).fit(constant).top_n(constant[:100], 10)
    plain, _ = MultVAE(epochs=10, **SMALL).fit(log).top_n(log[:100], 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(conditioned, plain)])
    assert overlap >= 0.9


def test_conditional_module_starts_where_mult_vae_starts():
    plain = AutoEncoder(30, [8], 4, True, "tanh")
    plain.reset_parameters(torch.Generator().manual_seed(1))
    conditional = ConditionalAutoEncoder(30, 2, [8], 4, "tanh")
    conditional.reset_parameters(torch.Generator().manual_seed(1))
    torch.testing.assert_close(conditional.decoder[0].weight[:, :4], plain.decoder[0].weight)
    assert not conditional.decoder[0].weight[:, 4:].any() and not conditional.encoder_conditions.any()
    torch.testing.assert_close(conditional.output_layer.weight, plain.output_layer.weight)


def test_split_columns_separates_items_from_features():
    rows = sp.csr_matrix(np.array([[1, 0, 1, 0.5, 0], [0, 1, 0, 0, 2.0]], dtype=np.float32))
    items, features = split_columns(SparseBatch.from_csr(rows, torch.device("cpu")), 3)
    assert items.n_items == 3 and items.indices.tolist() == [0, 2, 1] and items.offsets.tolist() == [0, 2]
    np.testing.assert_array_equal(features.numpy(), [[0.5, 0.0], [0.0, 2.0]])


def test_inputs_without_items_or_features_are_refused(grouped):
    _, log, _ = grouped
    with pytest.raises(DataError, match="conditions = 3 for an input of 3 columns"):
        CVAE(conditions=3, epochs=1, **SMALL).fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    with pytest.raises(DataError, match="conditions = 0"):
        CVAE(epochs=1, **SMALL).fit(log)
    with pytest.raises(DataError, match="only side features"):
        CVAE(conditions=2, epochs=1, **SMALL).fit(sp.hstack([sp.csr_matrix((5, 4)), sp.csr_matrix(np.ones((5, 2)))]).tocsr())


def _users_table(path, n_users=6000):
    rng = np.random.default_rng(3)
    lines = ["user,band,age"] + [f"u{u:05d},{'abc'[rng.integers(3)]},{rng.integers(18, 70)}" for u in range(n_users)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_and_evaluate_read_the_users_table(tmp_path):
    from recvae.data import SyntheticLog
    from recvae.pipeline import DataSpec, EvaluateSpec, SplitSpec, TrainSpec, evaluate_saved, train_model
    from recvae.track import TrackingConfig

    users = _users_table(tmp_path / "users.csv")
    data = DataSpec(synthetic=SyntheticLog(n_users=400, n_items=120, seed=4), user_features=str(users))
    spec = TrainSpec(model="CVAE", params=dict(epochs=2, **SMALL), data=data, split=SplitSpec(heldout_users=40),
                     out=str(tmp_path / "model"), tracking=TrackingConfig(enabled=False), progress=False)
    trained = train_model(spec, notify=lambda line: None)
    width = trained.model.config.conditions
    assert width == 5 + 2  # band: a, b, c, other and missing; age: its standardised value and missing
    saved = CVAE.load(tmp_path / "model")
    assert saved.metadata_["user_features"]["columns"][0]["name"] == "band"  # the encoding goes with the model
    again = evaluate_saved(EvaluateSpec(str(tmp_path / "model"), tracking=TrackingConfig(enabled=False), examples=0,
                                        cold_start=(0, 2)))
    assert again.results["CVAE"]["ndcg@100"] == pytest.approx(trained.results["CVAE"]["ndcg@100"])
    assert "Popularity" in trained.results  # the baseline scores the items alone
    from recvae.evaluate import evaluate
    from recvae.split.conditioned import cold_start

    assert set(again.cold_start) == {f"{m}, {n} given" for m in ("CVAE", "Popularity") for n in (0, 2)}
    by_hand = evaluate(saved, cold_start(again.split.test, 2, spec.split.seed, features=width), ("ndcg@100",))
    assert again.cold_start["CVAE, 2 given"]["ndcg@100"] == pytest.approx(by_hand.mean("ndcg@100"))


def test_the_users_table_goes_with_cvae_only(tmp_path):
    from recvae.errors import ParameterError
    from recvae.pipeline import DataSpec, TrainSpec

    users = _users_table(tmp_path / "users.csv")
    with pytest.raises(ParameterError, match="only CVAE"):
        TrainSpec(model="CVAE").build_model()
    with pytest.raises(ParameterError, match="not MultVAE"):
        TrainSpec(model="MultVAE", data=DataSpec(user_features=str(users))).build_model()
    with pytest.raises(DataError, match="no such file"):
        TrainSpec(model="CVAE", data=DataSpec(user_features=str(tmp_path / "absent.csv"))).build_model()


def test_commands_that_read_a_history_file_refuse_a_cvae(grouped):
    import pandas as pd

    from recvae.score.recommend import block_histories

    model, _, _ = grouped
    with pytest.raises(DataError, match="side features beside the items"):
        block_histories(model, pd.DataFrame({"user": ["a"], "item": [3]}))


@pytest.fixture(scope="module")
def saved_cvae(tmp_path_factory):
    """A CVAE trained by the pipeline on a generated log with integer item IDs (as MovieLens has: the CVAE's own
    are text, its feature columns sharing the vocabulary) and a users' table that lacks users u00300 on, and a log
    of three users (the last not in the table)."""
    from recvae.data import SyntheticLog, generate_log
    from recvae.pipeline import DataSpec, SplitSpec, TrainSpec, train_model
    from recvae.track import TrackingConfig

    folder = tmp_path_factory.mktemp("cvae")
    users = _users_table(folder / "users.csv", n_users=300)
    whole = generate_log(SyntheticLog(n_users=400, n_items=120, seed=4))
    whole["item"] = whole["item"].str[1:].astype(int)
    whole.to_csv(folder / "whole.csv", index=False)
    spec = TrainSpec(model="CVAE", params=dict(epochs=2, **SMALL),
                     data=DataSpec(path=str(folder / "whole.csv"), user_features=str(users)),
                     split=SplitSpec(heldout_users=40), out=str(folder / "model"),
                     tracking=TrackingConfig(enabled=False), progress=False)
    train_model(spec, notify=lambda line: None)
    log = whole[whole.user.isin(["u00001", "u00002", "u00350"])]
    log.to_csv(folder / "log.csv", index=False)
    return folder, log, users


def _rows_by_hand(model, log, users, user_ids) -> sp.csr_matrix:
    """The users' (items + features) rows built directly from the encoding the model records."""
    from recvae.data.features import FeatureEncoding
    from recvae.data.side import read_side_table
    from recvae.data.vocab import Vocabulary

    encoding = FeatureEncoding.from_json(model.metadata_["user_features"])
    rows = []
    for user in user_ids:
        items = model.items_.index_of(log[log.user == user].item.astype(str).to_numpy())  # the CVAE's IDs are text
        row = sp.lil_matrix((1, len(model.items_)), dtype=np.float32)
        row[0, items] = 1.0
        row[:, -encoding.width:] = encoding.transform(read_side_table(users), Vocabulary(np.array([user]), "user"),
                                                      some_known=False)
        rows.append(row.tocsr())
    return sp.vstack(rows, format="csr")


def test_recommend_reads_each_users_features_by_id(saved_cvae, tmp_path, caplog):
    import pandas as pd

    from recvae.export.command import RecommendSpec, recommend_log

    folder, log, users = saved_cvae
    model = CVAE.load(folder / "model")
    ask = dict(model=str(folder / "model"), interactions=str(folder / "log.csv"), top_n=5)
    with pytest.raises(DataError, match="--user-features"):
        recommend_log(RecommendSpec(out=str(tmp_path / "no.csv"), **ask))
    result = recommend_log(RecommendSpec(out=str(tmp_path / "top.csv"), user_features=str(users), **ask))
    assert result.stats.users_without_side_row == 1  # u00350, counted once for the whole export
    written = pd.read_csv(tmp_path / "top.csv", dtype={"item": str})
    assert set(written.user) == {"u00001", "u00002", "u00350"} and not written.item.str.startswith("feature:").any()
    # the second has no row in the table: its features are the missing flags
    top, _ = model.top_n(_rows_by_hand(model, log, users, ["u00001", "u00350"]), 5)
    for user, row in zip(("u00001", "u00350"), top):
        assert list(written[written.user == user].item) == list(model.items_.ids[row])
    in_python = model.recommend_df(log, n=5, user_features=users)  # the log's item IDs are numbers, the CVAE's text
    assert list(in_python.item.astype(str)) == list(written.item)
    # written as the log's integers, as any other model writes them (not as the CVAE's text)
    assert in_python.item.dtype == np.int64 and model.catalogue().kind == "int"
    recommend_log(RecommendSpec(out=str(tmp_path / "top.parquet"), user_features=str(users), **ask))
    assert pd.read_parquet(tmp_path / "top.parquet").item.dtype == np.int64
    assert model.similar_df([1], n=2)[["item", "similar_item"]].dtypes.tolist() == [np.int64, np.int64]
    item = int(log.item.iloc[0])
    assert model.similar_df([item], n=3).equals(model.similar_df([str(item)], n=3))
    names = tmp_path / "names.csv"  # the catalogue's names: the feature columns are no items that lack one
    pd.DataFrame({"item": sorted(set(log.item)), "title": "t"}).to_csv(names, index=False)
    with caplog.at_level("WARNING"):
        recommend_log(RecommendSpec(out=str(tmp_path / "named.csv"), user_features=str(users), item_names=str(names), **ask))
    lacking = [r.getMessage() for r in caplog.records if "have no row there" in r.getMessage() and "items" in r.getMessage()]
    assert lacking == [f"{names}: {len(model.catalogue()) - log.item.nunique()} of the model's {len(model.catalogue())} items have no row there"]


def test_embed_and_score_users_read_each_users_features_by_id(saved_cvae, tmp_path):
    import pandas as pd

    from recvae.export.embed import EmbedSpec, ScoreUsersSpec, embed_log, score_users_log

    folder, log, users = saved_cvae
    model = CVAE.load(folder / "model")
    ask = dict(model=str(folder / "model"), interactions=str(folder / "log.csv"))
    with pytest.raises(DataError, match="--user-features"):
        embed_log(EmbedSpec(out=str(tmp_path / "no.parquet"), **ask))
    assert not (tmp_path / "no.parquet").exists()
    embed_log(EmbedSpec(out=str(tmp_path / "e.parquet"), items_out=str(tmp_path / "i.parquet"), user_features=str(users), **ask))
    score_users_log(ScoreUsersSpec(out=str(tmp_path / "s.csv"), user_features=str(users), **ask))
    placed, scored = pd.read_parquet(tmp_path / "e.parquet"), pd.read_csv(tmp_path / "s.csv")
    rows = _rows_by_hand(model, log, users, list(placed.user))
    np.testing.assert_allclose(np.stack(placed["mean"]), model.encode(rows).mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scored.score, model.anomaly_scores(rows).score, rtol=1e-5)
    items = pd.read_parquet(tmp_path / "i.parquet")
    assert len(items) == model.module_.n_items and not items.item.astype(str).str.startswith("feature:").any()


def test_anomaly_scores_reconstruct_the_items_decoded_with_the_users_features(grouped):
    model, log, groups = grouped
    features = np.eye(3, dtype=np.float32)[groups[:6]]
    rows = sp.hstack([log[:6], sp.csr_matrix(features)]).tocsr()
    scores = model.anomaly_scores(rows)
    mean = model.encode(rows).mean
    log_p = torch.log_softmax(torch.from_numpy(model.decode(mean, features)[:, :60]), dim=1).numpy()
    by_hand = -(log[:6].toarray() * log_p).sum(axis=1) / log[:6].sum(axis=1).A1
    np.testing.assert_allclose(scores.reconstruction, by_hand, rtol=1e-5)
    assert (scores.interactions == log[:6].sum(axis=1).A1).all()  # the features are read, not counted


def test_a_group_is_decoded_with_its_members_mean_features(grouped, tmp_path):
    model, log, groups = grouped
    members = np.flatnonzero(groups == 1)[:2].tolist() + np.flatnonzero(groups == 2)[:1].tolist()
    features = np.eye(3, dtype=np.float32)[groups[members]]
    rows = sp.hstack([log[members], sp.csr_matrix(features)]).tocsr()
    ids, scores = model.recommend_group(rows, weights=[1, 1, 2], N=5)
    blend = np.array([0.25, 0.25, 0.5]) @ model.encode(rows).mean
    direct = model.decode(blend[None, :], np.array([[0, 0.5, 0.5]], np.float32))[0]
    direct[np.unique(rows[:, :60].indices)] = -np.inf
    assert list(ids) == list(np.argsort(-direct, kind="stable")[:5])
    np.testing.assert_allclose(scores, direct[ids], rtol=1e-5)


def test_recommend_groups_reads_the_members_features(saved_cvae, tmp_path):
    import pandas as pd

    from recvae.export.command import RecommendSpec, recommend_log

    folder, log, users = saved_cvae
    model = CVAE.load(folder / "model")
    (tmp_path / "groups.txt").write_text("home: u00001, u00350\n")
    ask = dict(model=str(folder / "model"), interactions=str(folder / "log.csv"), top_n=5, groups=str(tmp_path / "groups.txt"))
    with pytest.raises(DataError, match="--user-features"):
        recommend_log(RecommendSpec(out=str(tmp_path / "no.csv"), **ask))
    recommend_log(RecommendSpec(out=str(tmp_path / "g.csv"), user_features=str(users), **ask))
    written = pd.read_csv(tmp_path / "g.csv", dtype={"item": str})
    ids, _ = model.recommend_group(_rows_by_hand(model, log, users, ["u00001", "u00350"]), N=5)
    assert list(written.item) == list(model.items_.ids[ids])


def test_users_sampled_with_a_groups_features_take_that_groups_items(grouped):
    model, _, _ = grouped
    for group in range(3):  # a third of the items are the group's; its real users take 80% there
        log = model.sample(60, seed=group, conditions=np.eye(3, dtype=np.float32)[[group] * 60])
        items = log.item.to_numpy()
        assert items.max() < 60 and (items // 20 == group).mean() >= 0.5
    with pytest.raises(DataError, match="conditions"):
        model.sample(5, conditions=np.ones((4, 3)))
    with pytest.raises(Exception, match="side features"):
        model.sample(5)


def test_sample_draws_a_group_of_the_users_table(tmp_path):
    import pandas as pd

    from recvae.data import SyntheticLog
    from recvae.errors import ParameterError
    from recvae.export.embed import SampleSpec, sample_log
    from recvae.pipeline import DataSpec, SplitSpec, TrainSpec, train_model
    from recvae.track import TrackingConfig

    users = _users_table(tmp_path / "users.csv", n_users=400)
    spec = TrainSpec(model="CVAE", params=dict(epochs=2, **SMALL),
                     data=DataSpec(synthetic=SyntheticLog(n_users=400, n_items=120, seed=4), user_features=str(users)),
                     split=SplitSpec(heldout_users=40), out=str(tmp_path / "model"),
                     tracking=TrackingConfig(enabled=False), progress=False)
    train_model(spec, notify=lambda line: None)
    ask = dict(model=str(tmp_path / "model"), users=30, user_features=str(users))
    rows = sample_log(SampleSpec(out=str(tmp_path / "b.csv"), where=("band=b",), **ask))
    written = pd.read_csv(tmp_path / "b.csv", dtype={"item": str})
    assert len(written) == rows and written.user.nunique() == 30 and not written.item.str.startswith("feature:").any()
    with pytest.raises(ParameterError, match="matches no row"):
        sample_log(SampleSpec(out=str(tmp_path / "z.csv"), where=("band=z",), **ask))
    with pytest.raises(ParameterError, match="COLUMN=VALUE"):
        sample_log(SampleSpec(out=str(tmp_path / "z.csv"), where=("colour=b",), **ask))
    # the realism report sets the log against the real one: the model's items are the catalogue and its features
    from recvae.cli import main

    assert main(["sample", "--model", ask["model"], "--users", "30", "--user-features", str(users), "--out",
                 str(tmp_path / "r.csv"), "--report", str(tmp_path / "report"), "--no-tracking", "-q"]) == 0
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    assert numbers["logs"]["CVAE, sampled"]["users"] == 30


def test_the_latent_report_places_a_cvaes_users_with_their_features(saved_cvae, tmp_path):
    from recvae.latent.command import LatentReportSpec, write_latent_report
    from recvae.latent.stats import kl_per_dimension
    from recvae.track import TrackingConfig

    folder, log, users = saved_cvae
    model = CVAE.load(folder / "model")
    ask = dict(model=str(folder / "model"), data=str(folder / "log.csv"), tracking=TrackingConfig(enabled=False))
    with pytest.raises(DataError, match="--user-features"):
        write_latent_report(LatentReportSpec(out=str(tmp_path / "none"), **ask))
    numbers = write_latent_report(LatentReportSpec(out=str(tmp_path / "report"), user_features=str(users), **ask))
    by_hand = kl_per_dimension(model.encode(_rows_by_hand(model, log, users, sorted(set(log.user)))))
    assert numbers["users"] == 3 and numbers["kl_total"] == pytest.approx(by_hand.sum(), rel=1e-5)
    names = [name for move in numbers["traversals"] for name in move["rising_names"] + move["falling_names"]]
    assert names and not any(str(name).startswith("feature:") for name in names)  # decoded with the mean features


def test_a_users_lookup_costs_the_block_and_counts_the_users_the_table_lacks(saved_cvae, caplog):
    from recvae.data.side import read_side_table
    from recvae.data.vocab import Vocabulary
    from recvae.score.recommend import UserSide

    folder, log, users = saved_cvae
    model = CVAE.load(folder / "model")
    side = UserSide.for_model(model, users)
    asked = Vocabulary(np.array(["u00350", "u00007", "u00299"], dtype=object), "user")
    whole = side.encoding.transform(read_side_table(users), asked, some_known=False)  # the whole table, aligned
    caplog.clear()
    with caplog.at_level("WARNING"):
        looked_up = side.rows(np.array(["u00350", "u00007", "u00299"], dtype=object))
    assert (looked_up != whole).nnz == 0 and not caplog.records  # the caller counts instead of a line per block
    assert side.lacking(np.array(["u00350", "u00007", "u99999"], dtype=object)) == 2


def test_evaluate_encodes_the_users_table_as_the_model_was_trained_to_read_it(saved_cvae, tmp_path):
    from recvae.data.features import FeatureEncoding
    from recvae.data.side import read_side_table
    from recvae.pipeline import DataSpec, EvaluateSpec, SplitSpec, evaluate_saved
    from recvae.track import TrackingConfig

    folder, _, users = saved_cvae
    model = CVAE.load(folder / "model")
    changed = tmp_path / "users.csv"  # a band the training never saw: a new fit would widen the encoding
    lines = users.read_text().splitlines()
    changed.write_text("\n".join([lines[0]] + [line.replace(",a,", ",d,") for line in lines[1:]]) + "\n")
    again = evaluate_saved(EvaluateSpec(str(folder / "model"), data=DataSpec(path=str(folder / "whole.csv"),
                                                                            user_features=str(changed)),
                                        split=SplitSpec(heldout_users=40), tracking=TrackingConfig(enabled=False), examples=0))
    saved = FeatureEncoding.from_json(model.metadata_["user_features"])
    expected = saved.transform(read_side_table(changed), again.split.users)[again.split.test.users]
    width = model.config.conditions
    assert (again.split.test.fold_in[:, -width:] != expected).nnz == 0  # "d" read as the saved encoding's "other"


def test_user_columns_choose_what_the_cvae_reads_and_the_saved_encoding_keeps_it(tmp_path, capsys):
    from recvae.cli import main

    users = _users_table(tmp_path / "users.csv")
    common = ["--model", "cvae", "--user-features", str(users), "--heldout-users", "40", "--epochs", "2",
              "--batch-size", "100", "--no-tracking", "-q"]
    assert main(["train", *common, "--user-columns", "band", "--out", str(tmp_path / "band")]) == 0
    model = CVAE.load(tmp_path / "band")
    assert [c["name"] for c in model.metadata_["user_features"]["columns"]] == ["band"]
    assert model.config.conditions == 5  # a, b, c, other, missing: no age columns
    assert main(["evaluate", "--model", str(tmp_path / "band"), "--no-tracking", "-q"]) == 0
    # evaluate reads the columns from the saved encoding; asking for others is refused, not ignored
    assert main(["evaluate", "--model", str(tmp_path / "band"), "--user-columns", "band,age", "--no-tracking", "-q"]) == 2
    assert "--user-columns 'band,age': is read only with --data" in capsys.readouterr().err
    from recvae.pipeline import DataSpec, EvaluateSpec, SplitSpec, evaluate_saved

    recorded = model.metadata_["data"]
    asked = DataSpec.from_json({**recorded, "user_columns": ["band", "age"]})
    with pytest.raises(ValueError, match="differs from the columns the model was trained on \\(band\\)"):
        evaluate_saved(EvaluateSpec(str(tmp_path / "band"), data=asked, split=SplitSpec(**model.metadata_["split"])))
    # a misspelt column is refused before the log is read, naming the table and its columns
    assert main(["train", *common, "--user-columns", "band,agee", "--out", str(tmp_path / "x")]) == 2
    assert f"{users}: no column 'agee'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="give the table"):
        DataSpec(user_columns=("band",))
    assert DataSpec.from_json(DataSpec(user_features="u.csv", user_columns=["band"]).to_json()).user_columns == ("band",)
    assert "user_columns" not in DataSpec().to_json()

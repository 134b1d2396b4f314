import numpy as np
import pandas as pd
import pytest

from recvae.data.readers import iter_interactions
from recvae.errors import DataError
from recvae.export import export as export_module
from recvae.export import export_recommendations
from recvae.models import MultVAE, Recommender


@pytest.fixture(scope="module")
def model(small_split):
    return MultVAE(epochs=3, batch_size=200).fit(small_split.train, small_split.validation, small_split.items)


@pytest.fixture(scope="module")
def log_path(small_log, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "log.csv"
    small_log[["user", "item"]].to_csv(path, index=False)
    return path


def export(model, path, out, **kwargs):
    kwargs.setdefault("progress", False)
    return export_recommendations(model, path, out, **kwargs)


def test_exported_rows_equal_the_api(tmp_path, model, log_path, small_log):
    out = tmp_path / "recs.parquet"
    stats = export(model, log_path, out, n=10, users_per_block=97)
    rows = pd.read_parquet(out)
    assert stats.rows == len(rows) and stats.users_with_rows == rows["user"].nunique()
    assert list(rows.columns) == ["user", "item", "rank", "score"]
    api = model.recommend_df(small_log[["user", "item"]], n=10)
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), api.reset_index(drop=True), check_dtype=False)
    # and the implicit-style call gives the same items for one user, by index
    user = small_log["user"].iloc[0]
    items = small_log.loc[small_log["user"] == user, "item"]
    history = np.zeros((1, len(model.items_)), dtype=np.float32)
    history[0, model.items_.index_of(items.to_numpy(), missing="ignore")] = 1
    import scipy.sparse as sp

    ids, _ = model.recommend(0, sp.csr_matrix(history), N=10)
    assert model.items_.id_of(ids).tolist() == rows.loc[rows["user"] == user, "item"].tolist()


def test_seen_items_never_appear_unless_asked(tmp_path, model, log_path, small_log):
    out = tmp_path / "recs.csv"
    export(model, log_path, out, n=20)
    rows = pd.read_csv(out)
    seen = set(zip(small_log["user"], small_log["item"]))
    assert not any(pair in seen for pair in zip(rows["user"], rows["item"]))
    assert rows.groupby("user")["rank"].apply(lambda r: r.tolist() == list(range(1, 21))).all()
    export(model, log_path, out, n=20, include_seen=True)
    assert any(pair in seen for pair in zip(*pd.read_csv(out)[["user", "item"]].T.to_numpy()))


def test_integer_ids_round_trip(tmp_path, small_split):
    frame = pd.DataFrame({"user": [10, 10, 20, 20, 30], "item": [7, 8, 8, 9, 7]})
    from recvae.data import Interactions

    data = Interactions.from_frame(frame)
    model = MultVAE(epochs=1, hidden_dims=(), latent_dim=4).fit(data.matrix, items=data.items)
    path = tmp_path / "log.tsv"
    frame.to_csv(path, sep="\t", index=False, header=False)
    export(model, path, tmp_path / "out.parquet", n=2)
    rows = pd.read_parquet(tmp_path / "out.parquet")
    assert rows["user"].dtype == np.int64 and set(rows["item"]) <= {7, 8, 9}
    assert set(rows.loc[rows["user"] == 10, "item"]) == {9}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_users_integer_in_one_chunk_and_text_in_the_next_are_text_and_whole(tmp_path, model, small_log, monkeypatch,
                                                                             suffix):
    from functools import partial

    from recvae.export import stream

    # a chunk types its IDs alone: users 0..39 are integers in the first chunks, text beside "u40".. later, and
    # a user's rows cross the seam; read whole, the column is text (the Spark engine types it so too)
    rows = small_log[["user", "item"]].copy()
    number = pd.Series(pd.factorize(rows["user"])[0], index=rows.index)
    rows = rows.loc[number < 60].assign(user=number.astype(str).where(number < 40, "u" + number.astype(str)))
    path = tmp_path / "log.csv"
    rows.to_csv(path, index=False)
    monkeypatch.setattr(export_module, "iter_user_blocks", partial(stream.iter_user_blocks, chunk_rows=16))
    expected = model.recommend_df(rows, n=5).reset_index(drop=True)
    for grouped in (True, False):
        export(model, path, tmp_path / f"r{suffix}", n=5, users_per_block=7, grouped=grouped)
        read = pd.read_parquet if suffix == ".parquet" else partial(pd.read_csv, dtype={"user": str})
        written = read(tmp_path / f"r{suffix}").sort_values(["user", "rank"], key=None).reset_index(drop=True)
        assert pd.api.types.is_string_dtype(written["user"]) and written["user"].nunique() == 60
        pd.testing.assert_frame_equal(written, expected.sort_values(["user", "rank"]).reset_index(drop=True),
                                      check_dtype=False, rtol=1e-5)
    assert not list(tmp_path.glob(".r*"))  # no temporary file left


def test_allow_and_deny_lists(tmp_path, model, log_path):
    allowed = model.items_.ids[:30]
    (tmp_path / "allow.txt").write_text("\n".join(map(str, allowed)) + "\nnot-an-item\n")
    (tmp_path / "deny.txt").write_text("\n".join(map(str, allowed[:10])) + "\n")
    stats = export(model, log_path, tmp_path / "r.parquet", n=5, allow=tmp_path / "allow.txt", deny=tmp_path / "deny.txt")
    items = set(pd.read_parquet(tmp_path / "r.parquet")["item"])
    assert items <= set(allowed[10:]) and stats.unknown_filter_items == 1


def test_a_score_memory_budget_scores_in_item_chunks_and_writes_the_same_rows(tmp_path, model, log_path, monkeypatch):
    from recvae.models import recommender as base

    whole = export(model, log_path, tmp_path / "whole.parquet", n=20, users_per_block=100, fallback="popularity")
    chunks = []
    real = base.top_n_in_chunks
    monkeypatch.setattr(base, "top_n_in_chunks", lambda *a: chunks.append(a[2]) or real(*a))
    budget = 100 * 50 * 12 / 2**20  # 100 users x 50 items of 12 bytes
    chunked = export(model, log_path, tmp_path / "chunked.parquet", n=20, users_per_block=100, fallback="popularity",
                     score_memory_mb=budget)
    assert chunks and set(chunks) == {50} and chunked == whole
    a, b = pd.read_parquet(tmp_path / "whole.parquet"), pd.read_parquet(tmp_path / "chunked.parquet")
    pd.testing.assert_frame_equal(a[["user", "rank", "fallback"]], b[["user", "rank", "fallback"]])
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-6)
    assert (a["item"] == b["item"]).mean() > 0.99  # items beside a near-tie may swap by rounding


def test_unknown_items_and_users_without_known_items(tmp_path, model):
    known = model.items_.ids[:3]
    log = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": [known[0], "mystery", "mystery", known[1]]})
    log.to_csv(tmp_path / "h.csv", index=False)
    stats = export(model, tmp_path / "h.csv", tmp_path / "r.csv", n=4)
    rows = pd.read_csv(tmp_path / "r.csv")
    assert set(rows["user"]) == {"a", "c"}
    assert stats.unknown_item_interactions == 2 and stats.users_without_known_items == 1
    stats = export(model, tmp_path / "h.csv", tmp_path / "r.csv", n=4, fallback="popularity")
    rows = pd.read_csv(tmp_path / "r.csv")
    assert rows.loc[rows["user"] == "b", "fallback"].all() and not rows.loc[rows["user"] != "b", "fallback"].any()
    top = model.items_.ids[np.argsort(-model.item_popularity_.numpy(), kind="stable")[:4]]
    assert set(rows.loc[rows["user"] == "b", "item"]) == set(top)


def test_interrupted_export_leaves_no_file(tmp_path, model, log_path, monkeypatch):
    out = tmp_path / "recs.parquet"
    calls = []
    real = export_module.recommend_block

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "recommend_block", flaky)
    with pytest.raises(KeyboardInterrupt):
        export(model, log_path, out, n=5, users_per_block=100)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    out.write_text("previous export")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        export(model, log_path, out, n=5, users_per_block=100)
    assert out.read_text() == "previous export"


def test_shards_together_equal_the_whole(tmp_path, model, log_path):
    export(model, log_path, tmp_path / "all.parquet", n=5)
    whole = pd.read_parquet(tmp_path / "all.parquet")
    parts = []
    for i in range(3):
        stats = export(model, log_path, tmp_path / f"part{i}.parquet", n=5, shard=(i, 3))
        parts.append(pd.read_parquet(tmp_path / f"part{i}.parquet"))
        assert stats.users + stats.users_in_other_shards == whole["user"].nunique()
    users = [set(p["user"]) for p in parts]
    assert all(users) and not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    key = ["user", "rank"]
    merged = pd.concat(parts).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, whole.sort_values(key).reset_index(drop=True))


def test_ungrouped_log_is_refused_then_grouped_in_memory(tmp_path, model, small_log):
    shuffled = small_log[["user", "item"]].sample(frac=1.0, random_state=0)
    shuffled.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match="appears again after other users"):
        export(model, tmp_path / "s.csv", tmp_path / "r.parquet", n=5)
    assert not (tmp_path / "r.parquet").exists()
    export(model, tmp_path / "s.csv", tmp_path / "r.parquet", n=5, grouped=False)
    assert pd.read_parquet(tmp_path / "r.parquet")["user"].nunique() == small_log["user"].nunique()


def test_chunked_reading_names_the_right_line(tmp_path):
    lines = [f"{u},{i}" for u in range(50) for i in range(3)]
    lines[100] = "7,8,9"
    lines[130] = ",5"
    (tmp_path / "log.csv").write_text("user,item\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 102: expected 2 fields"):
        list(iter_interactions(tmp_path / "log.csv", chunk_rows=16))
    chunks = list(iter_interactions(tmp_path / "log.csv", chunk_rows=16, skip_bad_lines=True))
    assert sum(c.attrs["skipped_lines"] for c in chunks) == 2 and sum(map(len, chunks)) == 148
    with pytest.raises(DataError, match=r"line 132: empty or missing user ID"):
        lines[100] = "7,8"
        (tmp_path / "log.csv").write_text("user,item\n" + "\n".join(lines) + "\n")
        list(iter_interactions(tmp_path / "log.csv", chunk_rows=16))


def test_cli_recommend_prints_a_summary(tmp_path, model, log_path, capsys):
    from recvae.cli import main

    model.save(tmp_path / "m")
    assert main(["recommend", "--model", str(tmp_path / "m"), "--interactions", str(log_path), "--out",
                 str(tmp_path / "r.csv"), "--top-n", "3", "--shard", "1/2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "rows for" in printed and "shard 1/2" in printed
    assert main(["recommend", "--model", str(tmp_path / "m"), "--interactions", str(log_path), "--out",
                 str(tmp_path / "r.xlsx")]) == 2
    assert "unknown output format" in capsys.readouterr().err


def test_a_user_returning_many_chunks_later_is_refused(tmp_path):
    from recvae.export.stream import iter_user_blocks

    users = np.repeat(np.arange(300), 3)
    pd.DataFrame({"user": users, "item": users % 11}).to_csv(tmp_path / "grouped.csv", index=False)
    blocks = list(iter_user_blocks(tmp_path / "grouped.csv", users_per_block=7, chunk_rows=16))
    assert np.array_equal(np.concatenate([b[0]["user"].to_numpy() for b in blocks]), users)
    returning = np.r_[users, 5]  # user 5 comes back about fifty chunks after its own rows
    pd.DataFrame({"user": returning, "item": returning % 11}).to_csv(tmp_path / "returning.csv", index=False)
    with pytest.raises(DataError, match="user 5 appears again"):
        list(iter_user_blocks(tmp_path / "returning.csv", users_per_block=7, chunk_rows=16))
    # and when it comes back in a chunk of text IDs (user 5 is then "5")
    text = [str(u) if u < 200 else f"x{u}" for u in users] + ["5"]
    pd.DataFrame({"user": text, "item": 1}).to_csv(tmp_path / "returning.csv", index=False)
    with pytest.raises(DataError, match="user '5' appears again"):
        list(iter_user_blocks(tmp_path / "returning.csv", users_per_block=7, chunk_rows=16))


def test_recommend_keeps_the_ratings_the_model_was_trained_on(tmp_path, capsys):
    from recvae.cli import main

    log = tmp_path / "log.csv"
    assert main(["generate", "--out", str(log), "--users", "300", "--items", "80"]) == 0
    model_dir = tmp_path / "m"
    assert main(["train", "--data", str(log), "--min-rating", "4", "--out", str(model_dir), "--epochs", "1",
                 "--heldout-users", "30", "-q", "--no-tracking"]) == 0
    capsys.readouterr()
    common = ["recommend", "--model", str(model_dir), "--interactions", str(log), "--top-n", "5", "-q", "--include-seen"]
    assert main(common + ["--out", str(tmp_path / "default.csv")]) == 0
    assert "rated >= 4 (as in training)" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "all.csv"), "--min-rating", "none"]) == 0
    frame = pd.read_csv(log)
    expected = Recommender.load(model_dir).recommend_df(frame.loc[frame["rating"] >= 4, ["user", "item"]], n=5,
                                                        include_seen=True)
    got = pd.read_csv(tmp_path / "default.csv")
    assert got["item"].astype(str).tolist() == expected["item"].astype(str).tolist()
    assert not pd.read_csv(tmp_path / "all.csv").equals(got)  # low ratings folded in change the recommendations
    assert main(common + ["--out", str(tmp_path / "x.csv"), "--min-rating", "high"]) == 2
    assert "--min-rating 'high'" in capsys.readouterr().err


def test_recommend_df_says_what_it_left_out(model, small_log, caplog):
    """The CLI prints what an export ignored; the Python call logs the same sentences rather than drop rows
    unnoticed."""
    known = small_log["item"].iloc[0]
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": [known, "no such item", "nor this"]})
    with caplog.at_level("WARNING", logger="recvae.models.recommender"):
        rows = model.recommend_df(frame, n=3)
    assert set(rows["user"]) == {"a"}
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "ignored 2 of 3 interactions" in said and "1 users had no known item" in said
    assert 'fallback="popularity"' in said
    from recvae.errors import ParameterError

    with pytest.raises(ParameterError, match="include_seen='no': must be true or false"):
        model.recommend_df(frame, n=3, include_seen="no")  # a string is true: it would show the seen items


def test_export_recommendations_refuses_its_reading_options_by_name_before_reading(tmp_path, model, log_path, small_log):
    """Each of these failed mid-export with Python's words ("slice step cannot be zero", a comparison of a float
    and a str) or, for a table in memory, os's "expected str, bytes or os.PathLike"."""
    from recvae.errors import ParameterError

    out = tmp_path / "recs.parquet"
    for options, words in (({"shard": (2, 2)}, r"shard=\(2, 2\): expected \(i, n\) with 0 <= i < n"),
                           ({"users_per_block": 0}, "users_per_block=0: must be at least 1"),
                           ({"min_rating": "4"}, "min_rating='4': must be a number")):
        with pytest.raises(ParameterError, match=words):
            export(model, log_path, out, **options)
    with pytest.raises(TypeError, match="path of a log file, not a DataFrame .*model.recommend_df"):
        export(model, small_log, out)
    assert not out.exists()
    stats = export(model, str(log_path), out, shard=[0, 2], min_rating=None)  # a list as a pair, as TOML gives
    assert stats.users_in_other_shards > 0 and out.exists()


def test_the_export_and_report_specs_check_their_settings_kinds_and_take_paths(tmp_path):
    from pathlib import Path

    from recvae.errors import ParameterError, kind_problem
    from recvae.export.command import RecommendSpec
    from recvae.export.embed import EmbedSpec, SampleSpec, ScoreUsersSpec
    from recvae.export.similar import SimilarSpec
    from recvae.generative.command import RealismSpec
    from recvae.latent.command import LatentReportSpec
    from recvae.track.tracking import TrackingConfig
    from recvae.tune.command import TuneSpec

    for build, words in ((lambda: RecommendSpec("m", "log.csv", "r.parquet", top_n="5"), "top_n='5': must be a whole"),
                         (lambda: RecommendSpec("m", "log.csv", "r.parquet", grouped="false"), "grouped='false': must be true"),
                         (lambda: RecommendSpec("m", "log.csv", "r.parquet", min_rating=[4]), r"min_rating=\[4\]: must be a number"),
                         (lambda: RecommendSpec("m", "log.csv", "r.parquet", score_memory="5"), "score_memory='5': must be a number"),
                         (lambda: EmbedSpec("m", "log.csv", "e.parquet", batch_users=1.5), "batch_users=1.5: must be a whole"),
                         (lambda: EmbedSpec("m", "log.csv", "e.parquet", min_rating="x"), "min_rating='x': expected a number or 'none'"),
                         (lambda: ScoreUsersSpec("m", "log.csv", "s.csv", neighbours="3"), "neighbours='3': must be a whole"),
                         (lambda: SampleSpec("m", "s.csv", users=10, where="gender=F"), "where='gender=F': must be a sequence of texts"),
                         (lambda: SimilarSpec("m", items="12"), "items='12': must be a sequence of texts or whole numbers"),
                         (lambda: LatentReportSpec("m", "log.csv", "rep", umap="no"), "umap='no': must be true or false"),
                         (lambda: LatentReportSpec("m", "log.csv", "rep", min_rating="x"), "min_rating='x': expected a number"),
                         (lambda: RealismSpec("m", "s.csv", "rep", l2="5"), "l2='5': must be a number"),
                         (lambda: TuneSpec(out=5), "out=5: must be text"),
                         (lambda: TrackingConfig(enabled="no"), "enabled='no': must be true or false")):
        with pytest.raises(ParameterError, match=words):
            build()
    spec = RecommendSpec(Path("m"), tmp_path / "log.csv", tmp_path / "r.parquet", min_rating="4")
    assert (spec.model, spec.out, spec.min_rating) == ("m", str(tmp_path / "r.parquet"), "4")
    assert SimilarSpec("m", items=[1, "2"]).items == (1, "2") and SampleSpec("m", "s.csv", 5, where=["a=b"]).where == ("a=b",)
    # a union takes what any of its kinds takes, and names the first kind's problem
    assert kind_problem(float | str | None, "none") is None and kind_problem(float | str | None, 4) is None
    assert kind_problem(float | str | None, True) == "must be a number"
    assert kind_problem(tuple[float, float], (1.0,)) == "must be a sequence of 2 numbers"

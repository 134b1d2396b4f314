"""Batch export through Spark equals the single-machine export, row for row."""

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest

from recvae.export import export_recommendations
from recvae.models import MultVAE
from recvae.score.recommend import whole_user_blocks


def test_frames_cut_inside_a_user_give_blocks_of_whole_users():
    users = np.repeat(np.arange(9), [3, 1, 4, 2, 2, 5, 1, 1, 3])
    frame = pd.DataFrame({"user": users, "item": np.arange(len(users))})
    frames = [frame.iloc[a:b] for a, b in [(0, 2), (2, 2), (2, 9), (9, 10), (10, 22)]]  # cuts inside users 0, 2, 5
    blocks = list(whole_user_blocks(iter(frames), users_per_block=2))
    assert pd.concat(blocks, ignore_index=True).equals(frame)
    for block in blocks:
        assert block["user"].nunique() <= 2
    seen = [set(b["user"]) for b in blocks]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])  # no user in two blocks


needs_spark = pytest.mark.skipif(importlib.util.find_spec("pyspark") is None or shutil.which("java") is None,
                                 reason="needs pyspark (pip install recvae[spark]) and Java")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("recvae-test")
               .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false").getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="module")
def exported(small_split, small_log, tmp_path_factory):
    """A saved model, a log with unknown items and a user who has only those, and its single-machine export."""
    folder = tmp_path_factory.mktemp("spark")
    model = MultVAE(epochs=2, batch_size=200).fit(small_split.train, small_split.validation, small_split.items)
    model.save(folder / "model")
    log = small_log[["user", "item"]].head(4000)
    extra = pd.DataFrame({"user": ["only-unknown", "only-unknown", log["user"].iloc[0]],
                          "item": ["no-such-item", "nor-this", "no-such-item"]})
    log = pd.concat([log, extra], ignore_index=True).sort_values("user", kind="stable", ignore_index=True)
    log.to_csv(folder / "log.csv", index=False)
    export_recommendations(model, folder / "log.csv", folder / "local.parquet", n=10, fallback="popularity",
                           users_per_block=50, progress=False)
    return folder, log, pd.read_parquet(folder / "local.parquet")


def _same_rows(spark_rows: pd.DataFrame, local: pd.DataFrame) -> None:
    key = ["user", "rank"]
    a = spark_rows.sort_values(key, ignore_index=True)
    b = local.assign(user=local["user"].astype(str)).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a[key + ["fallback"]], b[key + ["fallback"]], check_dtype=False)
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-6)
    # a block of other users may round a product differently in the last place: only near-ties may swap
    differ = a["item"] != b["item"]
    assert differ.mean() < 0.01


@needs_spark
@pytest.mark.slow
def test_spark_export_equals_the_single_machine_export(spark, exported):
    from recvae.export.spark import recommend_spark

    folder, log, local = exported
    result = recommend_spark(spark.createDataFrame(log), str(folder / "model"), n=10, fallback="popularity",
                             users_per_block=7, partitions=3).toPandas()
    _same_rows(result, local)
    assert result.loc[result["user"] == "only-unknown", "fallback"].all()
    assert set(result["user"]) == set(log["user"])


@needs_spark
@pytest.mark.slow
def test_recommend_engine_spark_writes_the_same_parquet_and_says_what_it_left_out(spark, exported, tmp_path, capsys):
    from recvae.cli import main

    folder, _, local = exported
    out = tmp_path / "recs.parquet"
    deny = tmp_path / "deny.txt"  # an ID the model does not know: ignored, and said so
    deny.write_text("no-such-id\n")
    ask = ["recommend", "--model", str(folder / "model"), "--interactions", str(folder / "log.csv"), "--top-n", "10",
           "--fallback", "popularity", "--deny", str(deny), "-q"]
    assert main(ask + ["--engine", "spark", "--master", "local[2]", "--out", str(out),
                       "--score-memory", "0.001"]) == 0  # item chunks on the workers
    _same_rows(pd.read_parquet(out), local)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("recs.parquet", "deny.txt")]  # the staging is gone
    assert spark.conf.get("spark.ui.showConsoleProgress") == "false"  # -q: no progress bar from Spark either
    said = capsys.readouterr().out.splitlines()
    assert main(ask + ["--out", str(tmp_path / "local.parquet")]) == 0
    # the counts the local engine reports (unknown items, users without one, the deny list's unknown ID)
    local_said = capsys.readouterr().out.splitlines()
    assert said[1:] == local_said[1:] and len(said) == 4, said
    assert said[0].startswith(f"wrote {len(local)} rows for {local['user'].nunique()} users to {out} through Spark")


@needs_spark
@pytest.mark.slow
def test_embed_and_score_users_through_spark_write_the_local_engines_rows(spark, exported, tmp_path, capsys):
    from recvae.cli import main

    folder, log, _ = exported
    ask = ["--model", str(folder / "model"), "--interactions", str(folder / "log.csv"), "--batch-users", "7", "-q"]
    spark_ask = ["--engine", "spark", "--master", "local[2]"]
    for command, key in (("embed", "mean"), ("score-users", "score")):
        assert main([command, *ask, "--out", str(tmp_path / f"{command}.parquet")]) == 0
        local_said = capsys.readouterr().out.splitlines()
        assert main([command, *ask, *spark_ask, "--out", str(tmp_path / f"{command}-spark.parquet")]) == 0
        said = capsys.readouterr().out.splitlines()
        # the user with only unknown items has no row, on both engines, and both say so
        assert said[1:] == local_said[1:] and said[1].startswith("1 users had no item the model knows"), said
        local = pd.read_parquet(tmp_path / f"{command}.parquet")
        rows = pd.read_parquet(tmp_path / f"{command}-spark.parquet")
        rows = rows.sort_values("user", ignore_index=True)
        local = local.assign(user=local["user"].astype(str)).sort_values("user", ignore_index=True)
        assert list(rows.columns) == list(local.columns) and rows["user"].tolist() == local["user"].tolist()
        assert "only-unknown" not in set(rows["user"]) and len(rows) == log["user"].nunique() - 1
        for column in rows.columns[1:]:  # a percentile reads a steep stretch of the quantiles: 1e-6 there is 1e-5
            np.testing.assert_allclose(np.stack(rows[column]).astype(float), np.stack(local[column]).astype(float),
                                       rtol=1e-5, atol=1e-4 if column == "percentile" else 1e-6, err_msg=column)
        assert key in rows and ("percentile" in rows) == (command == "score-users")
    # the neighbours need every position at once: refused before Spark starts, naming the flags
    out = tmp_path / "near.parquet"
    assert main(["score-users", *ask, *spark_ask, "--neighbours", "3", "--out", str(out)]) == 2
    assert "--neighbours 3" in capsys.readouterr().err and not out.exists()


@needs_spark
@pytest.mark.slow
def test_quiet_spark_prints_results_only(exported, tmp_path):
    """Under -q a Spark started by the command logs errors only, and pyspark's FutureWarnings are not shown (a
    fresh process: the tests' own session would be taken as it is)."""
    import os
    import subprocess
    import sys

    folder, _, _ = exported
    done = subprocess.run([sys.executable, "-m", "recvae", "-q", "embed", "--engine", "spark", "--master", "local[1]",
                           "--model", str(folder / "model"), "--data", str(folder / "log.csv"),
                           "--out", str(tmp_path / "e.parquet")], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "LOG4J_CONFIGURATION_FILE"})
    assert done.returncode == 0, done.stderr
    # the JVM's own notice of its incubator modules is printed before any configuration is read
    assert [line for line in done.stderr.splitlines() if "incubator modules" not in line] == [], done.stderr
    assert done.stdout.startswith("wrote ") and (tmp_path / "e.parquet").is_dir()


def test_a_failed_spark_write_is_one_line_naming_the_output(tmp_path, monkeypatch):
    from recvae.errors import DataError
    from recvae.export import spark as spark_export
    from recvae.io import WriteError

    class Failing:
        class write:
            @staticmethod
            def parquet(path):
                raise RuntimeError("py4j.protocol.Py4JJavaError: An error occurred\n"
                                   "java.io.IOException: No space left on device")

    with pytest.raises(WriteError, match="out.parquet: the output could not be written .*No space left"):
        spark_export._write(Failing, tmp_path / "staging", tmp_path / "out.parquet")

    class Broken(Failing):
        class write:
            @staticmethod
            def parquet(path):
                raise RuntimeError("org.apache.spark.SparkException: Job aborted.\nPythonException: DataError: bad IDs")

    with pytest.raises(DataError, match="out.parquet: the Spark export failed \\(PythonException: DataError: bad IDs\\)"):
        spark_export._write(Broken, tmp_path / "staging", tmp_path / "out.parquet")


@needs_spark
@pytest.mark.slow
def test_spark_reads_a_cvaes_users_features_as_the_local_export_does(spark, tmp_path, capsys):
    from recvae.cli import main
    from recvae.data import SyntheticLog, generate_log
    from recvae.pipeline import DataSpec, SplitSpec, TrainSpec, train_model
    from recvae.track import TrackingConfig

    rng = np.random.default_rng(3)
    users = tmp_path / "users.csv"  # users u00250 on have no row: they get the missing features
    users.write_text("user,band\n" + "".join(f"u{u:05d},{'abc'[rng.integers(3)]}\n" for u in range(250)))
    synthetic = SyntheticLog(n_users=300, n_items=80, seed=4)
    train_model(TrainSpec(model="CVAE", params=dict(epochs=2, batch_size=50, hidden_dims=(16,), latent_dim=4),
                          data=DataSpec(synthetic=synthetic, user_features=str(users)), split=SplitSpec(heldout_users=30),
                          out=str(tmp_path / "model"), tracking=TrackingConfig(enabled=False), progress=False),
                notify=lambda line: None)
    log = generate_log(synthetic)[["user", "item"]]
    log = log[log.user >= "u00200"]
    log.to_csv(tmp_path / "log.csv", index=False)
    ask = ["recommend", "--model", str(tmp_path / "model"), "--interactions", str(tmp_path / "log.csv"), "--top-n", "10", "-q"]
    assert main(ask + ["--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / "no.parquet")]) != 0
    assert "--user-features" in capsys.readouterr().err and not (tmp_path / "no.parquet").exists()
    assert main(ask + ["--user-features", str(users), "--out", str(tmp_path / "local.parquet")]) == 0
    assert main(ask + ["--user-features", str(users), "--engine", "spark", "--master", "local[2]",
                       "--out", str(tmp_path / "spark.parquet")]) == 0
    local = pd.read_parquet(tmp_path / "local.parquet").assign(fallback=False)
    _same_rows(pd.read_parquet(tmp_path / "spark.parquet").assign(fallback=False), local)
    assert set(local.user) == set(log.user)


@needs_spark
@pytest.mark.slow
@pytest.mark.parametrize("layout", ["movielens-csv", "dat-no-header", "parquet", "utf16-tsv"])
def test_spark_finds_the_columns_and_delimiter_as_the_local_reader_does(spark, exported, tmp_path, layout, capsys):
    from recvae.cli import main

    folder, log, _ = exported
    log = log.assign(stars=np.where(np.arange(len(log)) % 3, 4.0, 2.0), when=0)  # --min-rating 3 drops a third
    if layout == "movielens-csv":  # MovieLens' own header names, gzipped, columns in another order
        path = tmp_path / "ratings.csv.gz"
        log.rename(columns={"user": "userId", "item": "movieId", "stars": "rating", "when": "timestamp"})[
            ["timestamp", "movieId", "userId", "rating"]].to_csv(path, index=False)
    elif layout == "utf16-tsv":  # found by its BOM; Spark's line reader leaves a byte on each line's last field
        path = tmp_path / "ratings.tsv"
        log.rename(columns={"stars": "rating"})[["rating", "user", "item"]].to_csv(path, sep="\t", index=False,
                                                                                  encoding="utf-16")
    elif layout == "parquet":
        path = tmp_path / "ratings.parquet"
        log.rename(columns={"user": "customer_id", "item": "product_id", "stars": "rating"}).to_parquet(path)
    else:  # ML-1M's ratings.dat: "::" and no header
        path = tmp_path / "ratings.dat"
        path.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in log[["user", "item", "stars", "when"]].itertuples(index=False)))
    ask = ["recommend", "--model", str(folder / "model"), "--interactions", str(path), "--top-n", "10",
           "--fallback", "popularity", "--min-rating", "3", "-q"]
    assert main(ask + ["--out", str(tmp_path / "local.parquet")]) == 0
    assert main(ask + ["--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / "spark.parquet")]) == 0
    _same_rows(pd.read_parquet(tmp_path / "spark.parquet"), pd.read_parquet(tmp_path / "local.parquet"))
    capsys.readouterr()
    assert main(ask + ["--engine", "spark", "--user", "customer", "--out", str(tmp_path / "no.parquet")]) != 0
    said = capsys.readouterr().err  # the local reader's words, before Spark starts
    assert str(path) in said and ("no column 'customer' for user" in said or "user column 'customer' named, but the "
                                  "file has no header" in said)
    unrated = tmp_path / "unrated.csv"
    log[["user", "item"]].to_csv(unrated, index=False)
    assert main([*ask, "--engine", "spark", "--interactions", str(unrated), "--out", str(tmp_path / "no.parquet")]) != 0
    assert f"{unrated} has no rating column" in capsys.readouterr().err
    assert not (tmp_path / "no.parquet").exists()


@needs_spark
def test_spark_refuses_what_it_would_read_otherwise_than_the_local_reader_before_starting(exported, tmp_path, capsys):
    from recvae.cli import main

    folder, log, _ = exported
    spaced = tmp_path / "log.txt"  # runs of spaces: one delimiter to the local reader, several to Spark's
    spaced.write_text("".join(f"{u}   {i}\n" for u, i in log[["user", "item"]].itertuples(index=False)))
    ask = ["recommend", "--model", str(folder / "model"), "--top-n", "5", "--engine", "spark", "-q",
           "--out", str(tmp_path / "no.parquet")]
    assert main([*ask, "--interactions", str(spaced)]) != 0
    assert f"{spaced}: a log delimited by spaces" in capsys.readouterr().err
    assert main([*ask, "--interactions", str(spaced), "--encoding", "no-such-codec"]) != 0
    assert "not a text encoding Python knows" in capsys.readouterr().err
    latin = tmp_path / "log.csv"
    latin.write_bytes("user,item\n".encode() + "".join(f"{u},{i}\n" for u, i in log[["user", "item"]].itertuples(index=False)).encode("cp1252"))
    assert main([*ask, "--interactions", str(latin), "--encoding", "cp1252"]) != 0
    assert "Spark's CSV reader takes iso-8859-1, us-ascii, utf-16" in capsys.readouterr().err
    assert not (tmp_path / "no.parquet").exists()


@needs_spark
@pytest.mark.slow
def test_spark_stops_at_an_undecodable_or_missing_id_where_the_local_reader_names_the_line(spark, exported,
                                                                                            tmp_path, capsys):
    from recvae.cli import main

    folder, log, _ = exported
    # UTF-8 with its last line in latin-1, past the first line's read (which would refuse it before Spark starts): Spark's
    # reader puts U+FFFD there and goes on
    path = tmp_path / "log.csv"
    lines = [f"{u},{i}\n".encode() for u, i in log[["user", "item"]].itertuples(index=False)]
    item = log["item"].iloc[0]
    path.write_bytes(b"user,item\n" + b"".join(lines) + f"Zoë,{item}\n".encode() + f"José,{item}\n".encode("latin-1"))
    ask = ["recommend", "--model", str(folder / "model"), "--interactions", str(path), "--top-n", "5", "--fallback",
           "popularity", "-q"]
    assert main([*ask, "--out", str(tmp_path / "local.parquet")]) != 0
    assert f"{path}: line {len(lines) + 3} is not valid utf-8 (byte 0xe9" in capsys.readouterr().err
    assert main([*ask, "--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / "spark.parquet")]) != 0
    said = capsys.readouterr().err
    assert f"{path}: the user ID 'Jos\ufffd' holds U+FFFD" in said and "Zoë" not in said
    assert not (tmp_path / "spark.parquet").exists() and not list(tmp_path.glob(".spark.parquet.*"))
    fixed = tmp_path / "fixed.csv"  # the same log with the line in UTF-8: Zoë and José are users like any other
    fixed.write_bytes(path.read_bytes().replace("José".encode("latin-1"), "José".encode()))
    ask[4] = str(fixed)
    assert main([*ask, "--out", str(tmp_path / "local.parquet")]) == 0
    assert main([*ask, "--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / "spark.parquet")]) == 0
    _same_rows(pd.read_parquet(tmp_path / "spark.parquet"), pd.read_parquet(tmp_path / "local.parquet"))
    missing = tmp_path / "missing.csv"  # a last row whose user is blank: the local reader names the line
    missing.write_bytes(fixed.read_bytes() + f"  ,{item}\n".encode())
    ask[4] = str(missing)
    capsys.readouterr()
    assert main([*ask, "--overwrite", "--out", str(tmp_path / "local.parquet")]) != 0
    assert f"{missing}: line {len(lines) + 4}: empty or missing user ID" in capsys.readouterr().err
    assert main([*ask, "--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / "gone.parquet")]) != 0
    assert f"{missing}: a row has no user ID (an empty or blank field)" in capsys.readouterr().err
    assert not (tmp_path / "gone.parquet").exists()


@needs_spark
@pytest.mark.slow
def test_spark_types_the_ids_as_the_local_reader_does_zero_padded_ids_staying_text(spark, tmp_path, capsys):
    from recvae.cli import main
    from recvae.data import SyntheticLog, generate_log

    log = generate_log(SyntheticLog(n_users=300, n_items=80, n_groups=4, median_activity=15, seed=2, string_ids=False))
    padded = log.assign(user=log["user"].map("{:05d}".format), item=log["item"].map("{:03d}".format))
    for name, frame in (("padded", padded), ("integer", log)):
        path = tmp_path / f"{name}.csv"
        frame[["user", "item"]].to_csv(path, index=False)
        assert main(["train", "--data", str(path), "--out", str(tmp_path / name), "--epochs", "2", "--no-tracking",
                     "-q"]) == 0
    # the integer model's users again, one row spelling its item with a leading zero: text to the local reader,
    # so an item the model does not know (Spark's cast would have read 18)
    spelled = tmp_path / "spelled.csv"
    rows = log[["user", "item"]].astype(str)
    rows.loc[(log["item"] == 18).to_numpy().nonzero()[0][0], "item"] = "018"
    # and one spelling its item as a spreadsheet does: item 7 to both engines, whatever else shares its chunk
    rows.loc[(log["item"] == 7).to_numpy().nonzero()[0][0], "item"] = "7.0"
    rows.to_csv(spelled, index=False)
    capsys.readouterr()
    for model, data in (("padded", tmp_path / "padded.csv"), ("integer", spelled)):
        ask = ["recommend", "--model", str(tmp_path / model), "--interactions", str(data), "--top-n", "5",
               "--fallback", "popularity", "-q"]
        assert main([*ask, "--out", str(tmp_path / f"{model}-local.parquet")]) == 0
        assert main([*ask, "--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / f"{model}-spark.parquet")]) == 0
        local, remote = (pd.read_parquet(tmp_path / f"{model}-{engine}.parquet") for engine in ("local", "spark"))
        assert pd.api.types.is_integer_dtype(remote["user"]) == pd.api.types.is_integer_dtype(local["user"])
        assert not remote["fallback"].any()  # every user's items known, as to the local reader
        _same_rows(remote.assign(user=remote["user"].astype(str)), local)
    assert set(remote["user"]) == set(log["user"]) and "00000" in set(pd.read_parquet(tmp_path / "padded-spark.parquet")["user"])
    # a row without its user among integer users: typing them reads the log before the export (and meets the row)
    rows.loc[5, "user"] = ""
    rows.to_csv(spelled, index=False)
    capsys.readouterr()
    assert main([*ask, "--engine", "spark", "--master", "local[2]", "--out", str(tmp_path / "gone.parquet")]) != 0
    said = capsys.readouterr().err
    assert f"{spelled}: a row has no user ID (an empty or blank field)" in said and "Traceback" not in said


def test_the_python_calls_refuse_what_a_worker_would_fail_on_before_any_job(exported):
    """A pandas table failed on its missing .schema, a block of 0 users inside a Python worker mid-job, a text
    partition count in Spark's analyser, and allow="ids.txt" was read as the characters' items (leaving none)."""
    from types import SimpleNamespace

    from recvae.errors import ParameterError
    from recvae.export.spark import recommend_spark, user_rows_spark

    folder, log, _ = exported
    model = str(folder / "model")
    with pytest.raises(TypeError, match="histories must be a Spark DataFrame, not a pandas.*spark.createDataFrame"):
        recommend_spark(log, model)
    histories = SimpleNamespace(mapInPandas=None, columns=["user", "item"])  # stands for a Spark DataFrame
    for options, words in (({"users_per_block": 0}, "users_per_block=0: must be at least 1"),
                           ({"partitions": "2"}, "partitions='2': must be a whole number"),
                           ({"partitions": 0}, "partitions=0: must be at least 1"),
                           ({"allow": "ids.txt"}, "allow='ids.txt': expected a list of item IDs"),
                           ({"deny": "1,2"}, "deny='1,2': expected a list of item IDs")):
        with pytest.raises(ParameterError, match=words):
            recommend_spark(histories, model, **options)
    with pytest.raises(ParameterError, match="users_per_block=0"):
        user_rows_spark(histories, model, "embed", users_per_block=0)

"""MLflow tracking against a real `mlflow server` on 127.0.0.1 with a SQLite store."""

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.slow  # real servers / RecBole / whole benchmarks: `pytest -m "not slow"` skips them

from recvae.cli import main  # noqa: E402
from recvae.models import Recommender  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), cwd=root,
    )
    try:
        _wait_for(uri + "/health", proc, root / "server.log", seconds=120)
        yield uri
    finally:
        _stop(proc)


def _wait_for(url: str, proc, log, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("server did not start: " + log.read_text()[-2000:])
            time.sleep(0.5)


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "log.csv"
    assert main(["generate", "--out", str(path), "--users", "500", "--items", "150"]) == 0
    return path


def test_train_run_is_tracked_with_metrics_artifacts_and_pyfunc(server, log_file, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--data", str(log_file), "--out", str(out), "--epochs", "3", "--batch-size", "100",
                 "--heldout-users", "50", "--quiet", "--tracking-uri", server, "--experiment", "tracking-test"]) == 0
    assert "MLflow run" in capsys.readouterr().out
    client = mlflow.tracking.MlflowClient(server)
    experiment = client.get_experiment_by_name("tracking-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    for key in ("loss", "kl", "beta", "reconstruction", "val_ndcg_at_100", "val_recall_at_20", "active_units",
                "posterior_variance"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3], key
    for key in ("test_ndcg_at_100", "test_ndcg_at_100_se", "test_recall_at_20", "popularity_test_ndcg_at_100"):
        assert key in run.data.metrics
    assert run.data.params["config.latent_dim"] == "200"
    assert len(run.data.tags["dataset.fingerprint"]) == 16 and run.data.tags["split.seed"] == "98765"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "plots", "results", "recvae_model", "kl_per_dim.json"} <= artifacts
    assert {"plots/training_curves.png", "plots/metrics_at_k.png", "plots/posterior_diagnostics.png"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")}

    mlflow.set_tracking_uri(server)
    pyfunc = mlflow.pyfunc.load_model(run.data.tags["recvae.model_uri"])
    histories = pd.read_csv(log_file)[["user", "item"]].head(400)
    expected = Recommender.load(out).recommend_df(histories, n=10)
    got = pyfunc.predict(histories)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    three = pyfunc.predict(histories, params={"n": 3})  # the signature declares n and include_seen
    pd.testing.assert_frame_equal(three.reset_index(drop=True),
                                  Recommender.load(out).recommend_df(histories, n=3).reset_index(drop=True))
    assert [p.name for p in pyfunc.metadata.get_params_schema().params] == ["n", "include_seen"]
    # the environment a server builds for it: recvae and what it runs on, torch among them, pinned
    needs = Path(mlflow.pyfunc.get_model_dependencies(run.data.tags["recvae.model_uri"])).read_text().split()
    assert {f"torch=={torch.__version__.split('+')[0]}", f"recvae=={importlib.metadata.version('recvae')}",
            f"mlflow=={mlflow.__version__}"} <= set(needs), needs
    assert not any(name.startswith(("pyspark", "recbole")) for name in needs)  # optional extras stay out


def test_logged_model_serves_the_same_top_n(server, log_file, tmp_path):
    """`mlflow models serve` on 127.0.0.1: POSTed histories get recommend_df's rows, params included."""
    out = tmp_path / "model"
    assert main(["train", "--data", str(log_file), "--out", str(out), "--epochs", "2", "--batch-size", "100",
                 "--heldout-users", "50", "--quiet", "--tracking-uri", server, "--experiment", "serving-test"]) == 0
    client = mlflow.tracking.MlflowClient(server)
    (run,) = client.search_runs([client.get_experiment_by_name("serving-test").experiment_id])
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", run.data.tags["recvae.model_uri"], "--env-manager",
         "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": server},
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", proc, log)
        histories = pd.read_csv(log_file)[["user", "item"]].head(200)
        body = {"dataframe_split": {"columns": ["user", "item"], "data": histories.values.tolist()}, "params": {"n": 3}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        _stop(proc)
    expected = Recommender.load(out).recommend_df(histories, n=3)
    assert len(served) == len(expected) == 3 * histories["user"].nunique()
    assert served["user"].astype(str).tolist() == expected["user"].astype(str).tolist()
    assert served["item"].tolist() == expected["item"].tolist() and served["rank"].tolist() == expected["rank"].tolist()
    np.testing.assert_allclose(served["score"].to_numpy(dtype=float), expected["score"].to_numpy(dtype=float), rtol=1e-5)


def test_unreachable_server_fails_before_training(log_file, tmp_path, capsys):
    out = tmp_path / "model"
    started = time.time()
    code = main(["train", "--data", str(log_file), "--out", str(out), "--epochs", "50", "--quiet",
                 "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    assert code == 2 and "unreachable" in capsys.readouterr().err
    assert not out.exists() and time.time() - started < 30


def test_no_tracking_writes_no_store(log_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(log_file), "--out", "m", "--epochs", "1", "--quiet", "--no-tracking"]) == 0
    assert not (tmp_path / "mlflow.db").exists()


def test_auto_beta_curve_is_tracked(server, log_file, tmp_path):
    assert main(["train", "--data", str(log_file), "--out", str(tmp_path / "m"), "--epochs", "3", "--batch-size", "100",
                 "--heldout-users", "50", "--auto-beta", "--quiet", "--tracking-uri", server, "--experiment", "auto-beta"]) == 0
    client = mlflow.tracking.MlflowClient(server)
    (run,) = client.search_runs([client.get_experiment_by_name("auto-beta").experiment_id])
    mlflow.set_tracking_uri(server)
    chosen = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/auto_beta.json")
    assert run.data.metrics["auto_beta"] == pytest.approx(chosen["beta"]) and len(chosen["curve"]) == 3
    assert "plots/auto_beta.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}


def test_every_trial_of_a_search_is_a_child_run(server, log_file, tmp_path):
    out = tmp_path / "tuned.toml"
    assert main(["tune", "--model", "multdae", "--trials", "3", "--epochs", "3", "--batch-size", "100", "--data",
                 str(log_file), "--heldout-users", "50", "--out", str(out), "-q", "--tracking-uri", server,
                 "--experiment", "tune"]) == 0
    client = mlflow.tracking.MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name("tune").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["trial.number"]) for r in trials) == [0, 1, 2]
    assert all(r.data.tags["trial.state"] in ("complete", "pruned") and "params.learning_rate" in r.data.params
               and r.info.status == "FINISHED" for r in trials)
    curve = client.get_metric_history(trials[0].info.run_id, "val_ndcg_at_100")
    assert [m.step for m in curve] == [1, 2, 3]  # the per-epoch validation curve
    assert "tuned" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_metric_names_from_any_model_name_are_valid_and_distinct():
    from mlflow.utils.validation import _validate_metric_name

    from recvae.track.tracking import metric_key

    names = ["x/../y.ndcg@100", "x_2f_.ndcg@100", "Pop/A.recall@20", "Pop_A.recall@20", "../etc.ndcg@100", "a..b.loss"]
    keys = [metric_key(n) for n in names]
    assert len(set(keys)) == len(keys) and metric_key("val_ndcg@100") == "val_ndcg_at_100"
    for key in keys:
        _validate_metric_name(key)  # raises on a name MLflow would take for a path


def test_a_source_tree_that_was_not_installed_leaves_the_requirements_to_mlflow(monkeypatch):
    from recvae.track.tracking import pyfunc_requirements

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    assert pyfunc_requirements()[0] == f"recvae=={importlib.metadata.version('recvae')}"
    monkeypatch.setattr(importlib.metadata, "requires", not_installed)
    assert pyfunc_requirements() is None  # MLflow infers them, as before recvae gave its own

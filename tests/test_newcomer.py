"""What a newcomer meets first (#21): progress outside a terminal, flags anywhere, --version, --threads,
warnings that fire only when their advice applies."""

import json
import logging
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recvae.cli import main
from recvae.models import MultVAE, MultVAEConfig
from recvae.models.schedules import anneal_steps, beta_at, warn_if_beta_stays_low
from recvae.models.training.diagnostics import warn_if_collapsed
from recvae.train.auto_beta import warn_if_peak_at_edge


@pytest.fixture
def log_file(small_log_file):
    return small_log_file


def test_training_outside_a_terminal_prints_one_line_per_epoch(log_file, tmp_path, capsys):
    assert main(["train", "--data", str(log_file), "--out", str(tmp_path / "m"), "--epochs", "3",
                 "--heldout-users", "30", "--no-tracking"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "validation ndcg@100" in lines[0] and "best" in lines[0] and lines[0].endswith(" s")


def test_quiet_and_verbose_work_after_the_subcommand(log_file, tmp_path, capsys):
    assert main(["train", "-q", "--data", str(log_file), "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--heldout-users", "30", "--no-tracking"]) == 0
    assert "epoch 1/2" not in capsys.readouterr().err
    assert main(["-q", "generate", "--out", str(tmp_path / "g.csv"), "--users", "20", "--items", "10"]) == 0
    assert main(["generate", "-v", "--out", str(tmp_path / "g.csv"), "--users", "20", "--items", "10"]) == 0


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == "recvae 0.1.0"


def test_threads_limit_torch_and_blas(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    from recvae.cli import THREAD_VARIABLES

    for name in THREAD_VARIABLES:  # what --threads sets is undone after the test
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "generate", "--out", str(tmp_path / "g.csv"), "--users", "20", "--items", "10"]) == 0
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    finally:
        torch.set_num_threads(before)
    assert main(["generate", "--threads", "0", "--out", str(tmp_path / "g.csv")]) == 2


def test_threads_limit_the_blas_and_openmp_pools_loaded_after_the_flag(tmp_path):
    # as the command line runs: scipy.linalg's own OpenBLAS (EASE's solve, the posterior mixture) and
    # scikit-learn's OpenMP load after --threads is read
    probe = ("import sys; from recvae.cli import main; "
             f"main(['--threads', '1', 'generate', '--out', {str(tmp_path / 'g.csv')!r}, '--users', '20', '--items', '10']); "
             "import scipy.linalg, sklearn.mixture; from threadpoolctl import threadpool_info; "
             "import json; print(json.dumps([(p['prefix'], p['num_threads']) for p in threadpool_info()]))")
    from recvae.cli import THREAD_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    printed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    pools = json.loads(printed.strip().splitlines()[-1])
    assert any(prefix == "libscipy_openblas" for prefix, _ in pools)
    assert all(threads == 1 for _, threads in pools), pools


def test_train_help_shows_each_models_real_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "maximum training epochs (MultVAE 200; CVAE 200; MultDAE 200; RecVAE 50; VASP 90; FLVAE 90; NeuralEASE 90)" in text
    assert text.count("drop users with fewer interactions (default: 5)") == 1 and "(default 5)" not in text


@pytest.mark.parametrize("command", ["recommend", "embed", "score-users"])
def test_a_switch_help_says_no_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "group it in memory" in text and "(default: True)" not in text  # --ungrouped stores False when given


def test_an_empty_list_default_is_not_shown(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume then finishes what is missing)" in text and "(default: ())" not in text


def test_collapse_warning_waits_for_beta_to_near_its_cap(caplog):
    early = [{"epoch": 1, "active_units": 10, "beta": 3.5e-5}]
    with caplog.at_level(logging.INFO):
        assert not warn_if_collapsed(early, 1, 200, beta_cap=0.2)
    assert "posterior collapse" not in caplog.text
    late = [{"epoch": 9, "active_units": 10, "beta": 0.2}]
    assert warn_if_collapsed(late, 1, 200, beta_cap=0.2)
    assert "10 of 200" in caplog.text and "β 0.2 (cap 0.2)" in caplog.text


def test_the_default_anneal_reaches_its_cap_and_a_users_own_length_that_cannot_is_reported(caplog, small_split):
    for epochs, per_epoch in ((200, 10), (3, 1), (50, 2000)):  # ML-1M, a smoke run, ML-20M-sized
        config = MultVAEConfig(epochs=epochs)
        assert not warn_if_beta_stays_low(config, epochs=epochs, updates_per_epoch=per_epoch)
        betas = [beta_at("linear", u, 0.2, anneal_steps(config, per_epoch)) for u in range(epochs * per_epoch + 1)]
        assert betas[math.ceil(0.8 * epochs * per_epoch)] == pytest.approx(0.2) and betas[per_epoch // 2] < 0.2
    # a real run: β grows over the epochs and the last one trains at the cap
    with caplog.at_level(logging.WARNING):
        model = MultVAE(epochs=5, batch_size=50, hidden_dims=(32,), latent_dim=8, patience=None).fit(small_split.train)
    assert "β will reach only" not in caplog.text
    betas = [epoch["beta"] for epoch in model.history_]
    assert betas[0] < betas[2] < betas[-1] == pytest.approx(0.2)
    paper = MultVAEConfig(total_anneal_steps=200_000)  # the paper's, sized for ML-20M
    with caplog.at_level(logging.WARNING):
        assert warn_if_beta_stays_low(paper, epochs=200, updates_per_epoch=10)  # ML-1M: 10 updates an epoch
    assert "reach only 0.01 of its cap 0.2" in caplog.text and "total_anneal_steps=10000" in caplog.text
    assert not warn_if_beta_stays_low(MultVAEConfig(total_anneal_steps=1000), epochs=200, updates_per_epoch=10)
    assert not warn_if_beta_stays_low(MultVAEConfig(anneal_epochs=50), epochs=200, updates_per_epoch=10)
    assert not warn_if_beta_stays_low(MultVAEConfig(beta_schedule="constant"), epochs=1, updates_per_epoch=1)


def test_auto_beta_warns_when_its_peak_is_at_the_edge_of_the_anneal(caplog):
    curve = [{"epoch": e, "beta": e / 10, "ndcg@100": 0.1 * e} for e in range(1, 10)]
    with caplog.at_level(logging.WARNING):
        assert warn_if_peak_at_edge(curve[-1], curve, "ndcg@100")
    assert "last epoch" in caplog.text and "beta_cap" in caplog.text
    assert not warn_if_peak_at_edge(curve[4], curve, "ndcg@100")


def test_mlflow_info_lines_stay_out_of_the_terminal(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "log.csv"
    assert main(["generate", "--out", str(log), "--users", "200", "--items", "60"]) == 0
    env = {k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_LOGGING_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "recvae", "train", "--model", "popularity", "--data", str(log),
                           "--heldout-users", "20", "-q"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "INFO mlflow" not in done.stderr and "Creating initial MLflow database tables" not in done.stderr
    assert "input example was not provided" not in done.stderr.lower() and "Warning" not in done.stderr
    # the figures lie in the model folder, named, with the way to the run in MLflow's UI
    plot = tmp_path / "models" / "recvae-model" / "plots" / "metrics_at_k.png"
    assert plot.exists() and f"plot: {plot.relative_to(tmp_path)}" in done.stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in done.stdout and "#/experiments/" in done.stdout


def test_plots_label_every_axis_name_their_run_and_keep_legends_off_the_curves():
    from recvae.track.plots import metric_curves_figure, training_curves_figure

    dae_history = [{"epoch": e, "loss": 10.0 - e, "val_ndcg@100": 0.1 * e, "val_ndcg@100_se": 0.01} for e in (1, 2, 3)]
    figure = training_curves_figure(dae_history, "MultDAE: tiny, split seed 7")
    assert len(figure.axes) == 2  # no empty KL and β panels for a model without them
    assert figure._suptitle.get_text() == "MultDAE: tiny, split seed 7"
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes)
    vae_history = [{**r, "kl": 1.0, "beta": 0.1 * r["epoch"]} for r in dae_history]
    assert len(training_curves_figure(vae_history).axes) == 4

    curves = {name: {"recall": np.linspace(0.1, 0.5, 20), "ndcg": np.linspace(0.1, 0.3, 20)} for name in ("A", "B", "C")}
    figure = metric_curves_figure(curves, "tiny: test users, split seed 7")
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes)
    legend = figure.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["A", "B", "C"]
    assert legend.get_bbox_to_anchor().x0 > figure.axes[-1].get_window_extent().x1  # right of the curves
    lines = figure.axes[0].get_lines()  # identical curves stay distinguishable by style, not colour alone
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 3

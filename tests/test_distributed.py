"""Data-parallel training under torchrun (CPU, gloo): two ranks train the model one process trains."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # every test starts torchrun

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
import numpy as np
import torch
torch.set_num_threads(1)
from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.train import validation_scorer
from recvae.models import MultDAE, MultVAE, NeuralEASE
from recvae.split import strong_generalization_split
from recvae.train import Trainer
from recvae.models.training.distributed import launched_world

# several models in one launch: starting torch, recvae and the ranks is most of each run's time
out, names, epochs, checkpoints = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]


def split_for(name):
    # with item features, a catalogue wide enough that some items have users on one rank only
    synthetic = SyntheticLog(n_users=700, n_items=1500 if name == "dae-items" else 120, n_groups=5, median_activity=15, seed=11)
    if "--sharded" in sys.argv:  # each rank reads and holds only its own users' rows
        from recvae.pipeline import DataSpec, SplitSpec, prepare_split
        from recvae.models.training.distributed import join_world
        world = join_world(torch.device("cpu")) if launched_world().size > 1 else None
        split, _ = prepare_split(DataSpec(synthetic=synthetic), SplitSpec(heldout_users=80, seed=3), world)
        assert world is None or split.train.matrix.shape[0] < split.train.shape[0]
        return split
    return strong_generalization_split(Interactions.from_frame(preprocess(generate_log(synthetic))), 80, seed=3)


def model_for(name):
    settings = dict(epochs=epochs, batch_size=101, latent_dim=16, patience=None)
    # Mult-DAE without dropout draws no noise: two ranks must then reproduce the single process
    if name == "dae":
        return MultDAE(dropout=0.0, **settings)
    if name == "dae-implicit-slim":  # the refresh's sums over users taken over both ranks' shares
        return MultDAE(dropout=0.0, implicit_slim_every=2, implicit_slim_l2=20.0, **settings)
    if name == "dae-items":  # item side features: which items any rank's users have decides who keeps a free vector
        return MultDAE(dropout=0.0, item_feature_width=3, **settings)
    if name == "ease":  # Neural EASE without its random halves: no noise either, and a diagonal to keep at zero
        return NeuralEASE(split_halves=False, learning_rate=1e-2, **{k: v for k, v in settings.items() if k != "latent_dim"})
    if name == "ease-held":  # VASP's item-item path held at EDLAE's closed form, from the ranks' summed Gram matrices
        return NeuralEASE(shallow_start="edlae", shallow_l2=30.0, shallow_dropout=0.3, shallow_trainable=False,
                          **{k: v for k, v in settings.items() if k != "latent_dim"})
    if name == "vae-dlae":  # DLAE's path: X^T X summed over the ranks' shares before its closed form
        return MultVAE(hidden_dims=(32,), anneal_epochs=2.0, linear_weight=1.0, linear_l2=30.0, linear_dropout=0.3,
                       **settings)
    return MultVAE(hidden_dims=(32,), anneal_epochs=2.0, **settings)


results = {}
for name in names:
    split, model = split_for(name), model_for(name)
    stop = (lambda record: record["epoch"] == 2,) if "--stop-at-2" in sys.argv else ()  # rank 0's callback decides
    trainer = Trainer(checkpoint_dir=None if checkpoints == "-" else checkpoints, resume="--resume" in sys.argv,
                      callbacks=stop, progress=False)
    features = np.random.default_rng(0).random((split.train.shape[1], 3)) if name == "dae-items" else None
    model.fit(split.train, validation_scorer(split.validation, "ndcg@100"), trainer=trainer, item_features=features)
    results[name] = {"loss": [r["loss"] for r in model.history_], "ndcg": [r["val_ndcg@100"] for r in model.history_],
                     "weights": (model.module_.item_item if name.startswith("ease") else model.module_.input_weight).detach().double().flatten().tolist(),
                     # what sample and the anomaly percentiles read: the whole log's lengths, the users' positions
                     "activity": model.user_activity_.tolist(), "users": split.train.shape[0],
                     "reference": None if model.anomaly_reference_ is None else np.asarray(model.anomaly_reference_).tolist(),
                     "linear_path": model.module_.linear_path.double().flatten().tolist() if name == "vae-dlae" else None,
                     "described": [model.posterior_mixture_ is not None,
                                                                              model.anomaly_reference_ is not None]}
if launched_world().main:
    with open(out, "w") as f:
        json.dump(results, f)
"""


def _run(tmp_path, ranks: int, names: str, epochs: int, checkpoints="-", *flags) -> dict:
    """Each of the comma-separated ``names``' models trained in one launch of ``ranks`` processes: name → its
    losses, validation NDCG and first weights."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"result-{ranks}-{names}-{epochs}-{len(flags)}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else [sys.executable]
    done = subprocess.run([*launcher, str(script), str(out), names, str(epochs), str(checkpoints), *flags],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("names, flags", [("dae,ease,dae-implicit-slim", ()),
                                          ("dae,dae-implicit-slim,dae-items,vae-dlae,ease-held", ("--sharded",))])
def test_two_ranks_reproduce_one_process_where_nothing_random_differs(tmp_path, names, flags):
    ones = _run(tmp_path, 1, names, 4, "-", *flags)
    twos = _run(tmp_path, 2, names, 4, "-", *flags)
    for name in names.split(","):
        one, two = ones[name], twos[name]
        if name in ("vae-dlae", "ease-held"):  # noise or calibration users differ by rank; the closed forms may not
            path = "linear_path" if name == "vae-dlae" else "weights"
            assert np.abs(one[path]).max() > 0.01
            np.testing.assert_allclose(two[path], one[path], rtol=0, atol=1e-5)
            continue
        # the same updates; only the order of float sums differs (the all-reduce adds the two ranks' halves)
        np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(two["ndcg"], one["ndcg"], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(two["weights"], one["weights"], rtol=0, atol=1e-6, err_msg=name)
        assert two["activity"] == one["activity"] and sum(one["activity"]) == one["users"], name
        if name != "ease":  # the processes describe their users together: the same users' score quantiles
            assert two["described"] == one["described"] == [True, True], name
            np.testing.assert_allclose(two["reference"], one["reference"], rtol=1e-5, atol=1e-5, err_msg=name)
        if name == "ease":
            n = int(round(len(two["weights"]) ** 0.5))
            assert not np.asarray(two["weights"]).reshape(n, n).diagonal().any()


def test_a_callback_on_rank_0_that_returns_true_ends_every_ranks_training(tmp_path):
    """Rank 0 alone runs the callbacks; a rank that went on alone would wait in its next collective for good."""
    stopped = _run(tmp_path, 2, "dae", 5, "-", "--stop-at-2")["dae"]
    alone = _run(tmp_path, 1, "dae", 5, "-", "--stop-at-2")["dae"]
    assert len(stopped["loss"]) == len(alone["loss"]) == 2
    np.testing.assert_allclose(stopped["weights"], alone["weights"], rtol=1e-5, atol=1e-6)


def test_a_resumed_two_rank_run_reaches_the_uninterrupted_weights(tmp_path):
    whole = _run(tmp_path, 2, "vae", 4)["vae"]
    _run(tmp_path, 2, "vae", 2, tmp_path / "checkpoints")
    resumed = _run(tmp_path, 2, "vae", 4, tmp_path / "checkpoints", "--resume")["vae"]
    assert resumed["loss"] == whole["loss"] and resumed["weights"] == whole["weights"]
    # one process may take over a distributed run's checkpoint
    single = _run(tmp_path, 1, "vae", 5, tmp_path / "checkpoints", "--resume")["vae"]
    assert len(single["loss"]) == 5 and single["loss"][:4] == whole["loss"] and np.isfinite(single["weights"]).all()


def _torchrun_train(folder: Path, *flags: str, monitor_seconds: float | None = None) -> subprocess.Popen:
    """``torchrun --nproc-per-node 2 -m recvae train FLAGS`` in ``folder``, one thread a rank; ``monitor_seconds``:
    how often torchrun's agent looks at its ranks (its own default where None)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    monitor = [] if monitor_seconds is None else [f"--monitor-interval={monitor_seconds}"]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             *monitor, "-m", "recvae", "train", *flags], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=folder)


def test_torchrun_recvae_train_saves_and_reports_once(tmp_path):
    from recvae.cli import main

    log = tmp_path / "log.csv"
    assert main(["generate", "--out", str(log), "--users", "400", "--items", "80"]) == 0
    # a KL weight this large collapses the posterior: the warning, as the rest of the output, comes once
    done = _torchrun_train(tmp_path, "--model", "multvae", "--data", str(log), "--heldout-users", "40", "--epochs", "3",
                           "--batch-size", "64", "--beta-schedule", "constant", "--beta-cap", "200",
                           "--linear-weight", "1.5", "--linear-l2", "30", "--linear-dropout", "0.3",
                           "--out", str(tmp_path / "model"), "--no-tracking")
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-3000:]
    assert out.count("model saved to") == 1 and (tmp_path / "model" / "model.json").exists()
    assert err.count("user = column") == 1, err[-3000:]  # what the reader found, said by rank 0 alone
    assert err.count("posterior collapse") == 1, err[-3000:]
    assert "deprecated" not in err, err[-3000:]  # DDP's options as this torch names them (forward_sync_buffers)
    metadata = json.loads((tmp_path / "model" / "model.json").read_text())["metadata"]
    assert len(metadata["history"]) == 3
    # each rank held only its users' rows; one process rebuilds the same split and scores the same test users
    assert metadata["split_fingerprint"] is None
    from recvae.pipeline import EvaluateSpec, evaluate_saved
    from recvae.track import TrackingConfig

    again = evaluate_saved(EvaluateSpec(str(tmp_path / "model"), tracking=TrackingConfig(enabled=False)))
    assert again.results["MultVAE"] == pytest.approx(metadata["test_metrics"], abs=1e-6)
    # DLAE's path, from the ranks' shares of the users, is the one process's closed form on the whole split
    from recvae.models import DLAE, MultVAE
    from recvae.pipeline import DataSpec, SplitSpec, prepare_split

    split, _ = prepare_split(DataSpec(path=str(log)), SplitSpec(heldout_users=40))
    np.testing.assert_allclose(MultVAE.load(tmp_path / "model").module_.linear_path.numpy(),
                               DLAE(l2=30.0, dropout=0.3).fit(split.train).module_.weights.numpy(), rtol=0, atol=1e-5)


def test_a_killed_rank_leaves_one_line_naming_it_and_the_command_that_resumes(tmp_path):
    import time

    import psutil

    from recvae.cli import main

    log = tmp_path / "log.csv"
    assert main(["generate", "--out", str(log), "--users", "2000", "--items", "150"]) == 0
    # torchrun's agent stops the surviving rank once it sees one die; on a loaded machine it could do so before
    # rank 0 reaches its next collective and says what happened, so it looks every 10 s here, not every 0.1 s
    run = _torchrun_train(tmp_path, "--model", "multdae", "--data", str(log), "--epochs", "500", "--patience", "none",
                          "--batch-size", "50", "--checkpoint-dir", "ck", "--out", "model", "--no-tracking", "-q",
                          monitor_seconds=10)
    try:
        deadline = time.time() + 300
        while not (tmp_path / "ck" / "checkpoint.safetensors").exists() and time.time() < deadline:
            time.sleep(0.5)
        rank_1 = [p for p in psutil.Process(run.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
        assert rank_1, "no rank 1 to kill"
        rank_1[0].kill()
        _, err = run.communicate(timeout=300)
    finally:
        run.kill()
    ours = [line for line in err.splitlines() if line.startswith("recvae: error")]
    assert len(ours) == 1 and "rank 0: another process of this 2-process run stopped" in ours[0], err[-3000:]
    assert ours[0].endswith("--checkpoint-dir ck --out model --no-tracking -q --resume")
    assert "[rank0]: Traceback" not in err  # torchrun's own summary names the killed rank and its signal


def test_torchrun_trains_a_cvae_whose_ranks_read_the_users_and_items_tables_with_cold_items(tmp_path):
    from recvae.cli import main
    from recvae.models import CVAE
    from recvae.pipeline import EvaluateSpec, evaluate_saved
    from recvae.track import TrackingConfig

    log, users, items = tmp_path / "log.csv", tmp_path / "users.csv", tmp_path / "items.csv"
    assert main(["generate", "--out", str(log), "--users", "400", "--items", "80"]) == 0
    users.write_text("user,band,age\n" + "".join(f"u{u:05d},{'abc'[u % 3]},{18 + u % 50}\n" for u in range(400)))
    items.write_text("item,genres\n" + "".join(f"i{i:05d},{['Drama|Comedy', 'Action'][i % 2]}\n" for i in range(80)))
    done = _torchrun_train(tmp_path, "--model", "cvae", "--data", str(log), "--user-features", str(users),
                           "--item-features", str(items), "--cold-items", "0.2", "--heldout-users", "40", "--epochs", "3",
                           "--batch-size", "64", "--linear-weight", "0.5", "--out", str(tmp_path / "model"),
                           "--no-tracking")
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-3000:]
    metadata = json.loads((tmp_path / "model" / "model.json").read_text())["metadata"]
    assert metadata["user_features"]["columns"][0]["name"] == "band"
    module = CVAE.load(tmp_path / "model").module_
    assert module.item_side.features.shape[1] == 3 + 1  # Drama, Comedy, Action, missing
    # DLAE's path over the items alone, from both ranks' users (the scores below check it as one process reads it)
    assert module.linear_path.shape == (module.n_items, module.n_items) and module.linear_path.abs().max() > 0.01
    # one process rebuilds the split, encodes the table as the ranks did, and scores the same test users alike
    again = evaluate_saved(EvaluateSpec(str(tmp_path / "model"), tracking=TrackingConfig(enabled=False)))
    assert again.results["CVAE"] == pytest.approx(metadata["test_metrics"], abs=1e-6)
    # the ranks made the items cold that one process makes cold: the cold-item table is reproduced too
    assert set(again.cold_items) == set(metadata["cold_item_metrics"]) == {"CVAE", "content similarity", "random"}
    for name, summary in again.cold_items.items():
        assert summary == pytest.approx(metadata["cold_item_metrics"][name], abs=1e-6)


FAILING_DESCRIPTION = """
import os, sys
import recvae.models.recommender as recommender
described = recommender._encoded_and_scored
def fail_on_rank_1(*args, **kwargs):
    if os.environ["RANK"] == "1":
        raise MemoryError("rank 1 ran out of memory")
    return described(*args, **kwargs)
recommender._encoded_and_scored = fail_on_rank_1
from recvae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_rank_lost_after_the_epochs_leaves_the_other_one_line_not_a_traceback(tmp_path):
    """Two machines' agents (two torchrun launches meeting at one rendezvous), as on a cluster: one agent's rank
    fails while the ranks describe the training users together, and the other rank, left in the gather,
    says so in one line (on one machine torchrun's agent would stop it before it spoke)."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    script = tmp_path / "fail.py"
    script.write_text(FAILING_DESCRIPTION)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                                "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=lost",
                                str(script), "train", "--epochs", "1", "--heldout-users", "100", "--out",
                                f"model-{agent}", "--no-tracking", "-q"],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for agent in range(2)]
    try:
        err = "".join(agent.communicate(timeout=300)[1] for agent in agents)
    finally:
        for agent in agents:
            agent.kill()
    ours = [line for line in err.splitlines() if line.startswith("recvae: error")]
    assert "rank 1 ran out of memory" in err, err[-3000:]
    assert len(ours) == 1, err[-3000:]
    assert ours[0].startswith("recvae: error: rank 0: another process of this 2-process run stopped (Connection "
                              "closed by peer"), ours[0]
    assert "[rank0]: Traceback" not in err

"""Training killed at any instant resumes to the weights of an uninterrupted run (#17); SIGTERM unwinds cleanly."""

import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from recvae.models.training.checkpoint import CHECKPOINT

pytestmark = pytest.mark.slow  # subprocesses killed and resumed

SCRIPT = textwrap.dedent('''
    import hashlib, sys
    import torch
    import recvae
    from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
    from recvae.models import MultVAE
    from recvae.train import Trainer
    torch.set_num_threads(1)
    log = generate_log(SyntheticLog(n_users=600, n_items=150, n_groups=4, median_activity=15, seed=3))
    train = Interactions.from_frame(preprocess(log)).matrix
    checkpoints, resume, out = sys.argv[1] if sys.argv[1] != "-" else None, sys.argv[2] == "resume", sys.argv[3]
    if len(sys.argv) > 4:  # stall the first checkpoint write half-way, so the test can kill it there
        import pathlib, time
        import recvae.models.training.checkpoint as checkpoint
        real_save = checkpoint.save_file
        def half_written(tensors, path, metadata):
            real_save(tensors, path, metadata=metadata)
            size = pathlib.Path(path).stat().st_size
            with open(path, "r+b") as handle:
                handle.truncate(size // 2)
            pathlib.Path(sys.argv[4]).write_text(path)
            time.sleep(60)
        checkpoint.save_file = half_written
    model = MultVAE(epochs=12, batch_size=25, hidden_dims=(64,), latent_dim=16, total_anneal_steps=100, patience=None)
    model.fit(train, trainer=Trainer(checkpoint_dir=checkpoints, resume=resume, progress=False))
    digest = hashlib.sha256()
    for key, value in sorted(model.module_.state_dict().items()):
        digest.update(key.encode()); digest.update(value.numpy().tobytes())
    open(out, "w").write(digest.hexdigest())
''')


def _run(tmp_path, *args):
    return subprocess.Popen([sys.executable, str(tmp_path / "train.py"), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    return path.exists()


@pytest.fixture
def uninterrupted(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = _run(tmp_path, "-", "fresh", tmp_path / "straight.txt")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return (tmp_path / "straight.txt").read_text()


def test_sigkill_at_random_instants_always_resumes_to_the_same_weights(tmp_path, uninterrupted):
    rng = random.Random(17)
    checkpoints = tmp_path / "ckpt"
    kills = 0
    for _ in range(3):  # kill, resume, kill again: at a random instant after the first checkpoint exists
        proc = _run(tmp_path, checkpoints, "resume", tmp_path / "resumed.txt")
        _wait_for(checkpoints / CHECKPOINT, proc)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    proc = _run(tmp_path, checkpoints, "resume", tmp_path / "resumed.txt")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills >= 1
    assert (tmp_path / "resumed.txt").read_text() == uninterrupted
    assert [p.name for p in checkpoints.iterdir()] == [CHECKPOINT]  # no temporary left behind


def test_sigkill_during_the_checkpoint_write_resumes_to_the_same_weights(tmp_path, uninterrupted):
    checkpoints = tmp_path / "ckpt"
    proc = _run(tmp_path, checkpoints, "resume", tmp_path / "resumed.txt", tmp_path / "writing")
    assert _wait_for(tmp_path / "writing", proc), proc.stderr.read()
    half = (tmp_path / "writing").read_text()
    assert (tmp_path / "ckpt" / half.split("/")[-1]).exists()  # a half-written temporary file at the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (checkpoints / CHECKPOINT).exists()  # the half-written first checkpoint never took its name
    proc = _run(tmp_path, checkpoints, "resume", tmp_path / "resumed.txt")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert (tmp_path / "resumed.txt").read_text() == uninterrupted
    assert [p.name for p in checkpoints.iterdir()] == [CHECKPOINT]


def test_sigkill_during_an_export_leaves_no_file_and_the_next_export_no_temporary(tmp_path):
    log, model, out = tmp_path / "log.csv", tmp_path / "model", tmp_path / "out" / "recs.csv"
    cli = [sys.executable, "-m", "recvae"]
    subprocess.run([*cli, "generate", "--out", str(log), "--users", "20000", "--items", "400"], check=True, capture_output=True)
    subprocess.run([*cli, "train", "--model", "popularity", "--data", str(log), "--out", str(model), "-q", "--no-tracking"],
                   check=True, capture_output=True)
    out.parent.mkdir()
    export = [*cli, "recommend", "--model", str(model), "--interactions", str(log), "--out", str(out),
              "--batch-users", "50", "-q"]
    rng, kills = random.Random(3), 0
    for _ in range(5):
        proc = subprocess.Popen(export, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not list(out.parent.glob(".recs.csv.*.tmp")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if kills:
            break
        out.unlink()
    assert kills == 1
    assert not out.exists()  # a killed export leaves nothing under the target's name...
    assert list(out.parent.glob(".recs.csv.*.tmp"))  # ...only its temporary file, which the next export removes
    assert subprocess.run(export, capture_output=True).returncode == 0
    assert out.exists() and [p.name for p in out.parent.iterdir()] == ["recs.csv"]


def test_sigterm_ends_a_cli_run_as_interrupted(tmp_path):
    log = tmp_path / "log.csv"
    subprocess.run([sys.executable, "-m", "recvae", "generate", "--out", str(log), "--users", "400", "--items", "100"],
                   check=True, capture_output=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "recvae", "train", "--data", str(log), "--out", str(tmp_path / "m"), "--epochs", "500",
         "--patience", "none", "--batch-size", "20", "--checkpoint-dir", str(tmp_path / "c"), "--no-tracking", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "c" / CHECKPOINT, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted (resume with --resume)" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists() and [p.name for p in (tmp_path / "c").iterdir()] == [CHECKPOINT]

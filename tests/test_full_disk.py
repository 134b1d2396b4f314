"""A full disk at every write recvae makes: the error names the target the user knows and the cause, no partial
target is left, and what was trained is kept where it can be saved again or resumed. The disk is filled by
injecting the error the real writer raises there (safetensors raises its own error type, not OSError)."""

import re

import numpy as np
import pytest
from safetensors import SafetensorError

from recvae.cli import main
from recvae.io import WriteError
from recvae.models import MultDAE, Recommender, Trainer

FULL = "No space left on device (os error 28)"


def test_a_full_disk_at_the_model_save_keeps_the_trained_model(small_log_file, tmp_path, monkeypatch, capsys):
    import recvae.models.serialization as serialization

    real = serialization.save_file

    def full_disk(tensors, filename, *args, **kwargs):
        if "recvae-unsaved-" not in filename:
            raise SafetensorError(FULL)
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(serialization, "save_file", full_disk)
    out = tmp_path / "m"
    assert main(["train", "--model", "multdae", "--epochs", "2", "--batch-size", "100", "--data", str(small_log_file),
                 "--out", str(out), "--heldout-users", "30", "-q", "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: the model directory could not be written ({FULL})" in err and "kept in" in err
    assert not out.exists() and not list(tmp_path.glob(".m*"))  # no partial target, no temporary left
    assert Recommender.load(err.split("kept in ")[1].strip()).name == "MultDAE"


def test_a_full_disk_at_a_checkpoint_names_it_and_the_last_one_resumes(small_split, tmp_path, monkeypatch):
    import recvae.models.training.checkpoint as checkpoint

    real, calls = checkpoint.save_file, []

    def full_on_the_second(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 2:
            raise SafetensorError(FULL)
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", full_on_the_second)
    params = dict(epochs=3, batch_size=200, patience=None)
    with pytest.raises(WriteError, match=re.escape(f"checkpoint.safetensors: the checkpoint could not be written ({FULL})")):
        MultDAE(**params).fit(small_split.train, trainer=Trainer(checkpoint_dir=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # epoch 1's, whole
    monkeypatch.setattr(checkpoint, "save_file", real)
    resumed = MultDAE(**params).fit(small_split.train, trainer=Trainer(checkpoint_dir=tmp_path, resume=True))
    straight = MultDAE(**params).fit(small_split.train)
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3]
    np.testing.assert_array_equal(resumed.score(small_split.test.fold_in[:5]), straight.score(small_split.test.fold_in[:5]))


def test_a_full_disk_during_an_export_names_the_output_and_leaves_nothing(small_log_file, tmp_path, monkeypatch, capsys):
    import pyarrow.parquet as pq

    model = tmp_path / "model"
    assert main(["train", "--model", "popularity", "--data", str(small_log_file), "--out", str(model), "--heldout-users", "30",
                 "-q", "--no-tracking"]) == 0

    def full_disk(self, table, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    out = tmp_path / "recs.parquet"
    capsys.readouterr()
    assert main(["recommend", "--model", str(model), "--interactions", str(small_log_file), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: the output could not be written (No space left on device)" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".recs")]

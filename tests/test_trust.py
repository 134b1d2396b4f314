"""Results a user can trust (#17): tampered model files, escaping paths, checks before long work."""

import json
import os

import pytest

from recvae.cli import main
from recvae.errors import ModelFileError
from recvae.models import Popularity, Recommender
from recvae.models.serialization import manifest_digest


@pytest.fixture
def saved(tmp_path, small_split):
    return Popularity().fit(small_split.train, items=small_split.items).save(tmp_path / "model")


def _edit(path, change):
    manifest = json.loads((path / "model.json").read_text())
    change(manifest)
    (path / "model.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change", [
    lambda m: m["config"].update(binarize=False),
    lambda m: m["metadata"].update(note="edited"),
    lambda m: m.update(model="MultVAE"),
])
def test_any_edit_of_model_json_is_refused_naming_the_file(saved, change):
    _edit(saved, change)
    with pytest.raises(ModelFileError, match=r"model.json: contents differ from what was saved \(edited\)"):
        Recommender.load(saved)


@pytest.mark.parametrize("entry", ["../outside.bin", "/etc/passwd", "sub/weights.safetensors", ".."])
def test_file_entries_must_stay_in_the_directory(saved, entry, tmp_path):
    (tmp_path / "outside.bin").write_bytes(b"x")

    def escape(manifest):
        manifest["files"][entry] = "0" * 64
        manifest["manifest_sha256"] = manifest_digest(manifest)  # as one who edits it would

    _edit(saved, escape)
    with pytest.raises(ModelFileError, match="is not a file name inside the model directory"):
        Recommender.load(saved)


def test_a_linked_file_is_refused(saved, tmp_path):
    real = tmp_path / "elsewhere.json"
    os.replace(saved / "items.json", real)
    os.symlink(real, saved / "items.json")
    with pytest.raises(ModelFileError, match="items.json: is a symbolic link"):
        Recommender.load(saved)


def test_weights_must_be_listed(saved):
    def drop(manifest):
        manifest["files"].pop("weights.safetensors")
        manifest["manifest_sha256"] = manifest_digest(manifest)  # as one who edits it would

    _edit(saved, drop)
    with pytest.raises(ModelFileError, match="'files' must list weights.safetensors"):
        Recommender.load(saved)


@pytest.fixture
def log_file(small_log_file):
    return small_log_file


def test_evaluate_refuses_another_split_of_the_training_data(log_file, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "--model", "popularity", "--data", str(log_file), "--split-seed", "5", "--heldout-users", "30",
                 "--out", str(out), "-q", "--no-tracking"]) == 0
    assert main(["evaluate", "--model", str(out), "--no-tracking"]) == 0  # the recorded split: fine
    assert main(["evaluate", "--model", str(out), "--data", str(log_file), "--no-tracking"]) == 2  # default seed
    err = capsys.readouterr().err
    assert "is not the one the model was trained on" in err and "'seed': 5" in err and "--split-seed" in err
    assert main(["evaluate", "--model", str(out), "--data", str(log_file), "--split-seed", "5", "--heldout-users", "30",
                 "--no-tracking"]) == 0


def test_unwritable_outputs_fail_before_any_training(log_file, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root): permissions cannot be tested")
        assert main(["train", "--data", str(log_file), "--out", str(locked / "m"), "-q", "--no-tracking"]) == 2
        err = capsys.readouterr().err
        assert f"{locked}: not writable" in err and "Traceback" not in err
    finally:
        locked.chmod(0o700)


def test_a_file_in_the_way_of_the_output_fails_before_any_training(log_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["train", "--data", str(log_file), "--out", str(blocker / "m"), "--epochs", "50", "-q", "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert f"{blocker}: is a file, not a folder" in err and "epoch" not in err


def test_a_failed_save_keeps_the_trained_model(log_file, tmp_path, monkeypatch, capsys):
    import recvae.models.recommender as base

    real = base.save_model_dir

    def full_disk(path, *args, **kwargs):
        if "recvae-unsaved-" not in str(path):
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(base, "save_model_dir", full_disk)
    assert main(["train", "--model", "popularity", "--data", str(log_file), "--out", str(tmp_path / "m"),
                 "--heldout-users", "30", "-q", "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the trained model is kept in" in err
    kept = err.split("kept in ")[1].strip()
    assert Recommender.load(kept).name == "Popularity"


def test_options_are_checked_before_the_data_is_read(tmp_path, capsys):
    missing = str(tmp_path / "no-such-log.csv")  # reading it would fail: the option must fail first
    for args, words in (
        (["train", "--data", missing, "--metrics", "ndcg@x"], "unknown metric 'ndcg@x'"),
        (["train", "--data", missing, "--model", "ease", "--device", "cuda:0"], "CUDA is not available"),
        (["recommend", "--model", missing, "--interactions", missing, "--out", str(tmp_path / "r.csv"),
          "--batch-users", "0"], "--batch-users 0"),
    ):
        if "cuda" in " ".join(args) and __import__("torch").cuda.is_available():
            continue
        assert main([*args, "-q", "--no-tracking"] if args[0] == "train" else args) == 2
        err = capsys.readouterr().err
        assert words in err and "no such file" not in err


def test_a_killed_exports_temporary_file_is_removed_by_the_next_export(tmp_path, small_split):
    import subprocess
    import sys

    from recvae.export.writer import AtomicRecommendationWriter

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".recs.csv.{dead.stdout.strip()}.tmp"
    orphan.write_text("half an export")
    AtomicRecommendationWriter(tmp_path / "recs.csv")
    assert not orphan.exists()


def test_latin1_is_refused_naming_the_line_and_read_with_encoding(tmp_path):
    from recvae.data import read_interactions
    from recvae.errors import DataError

    path = tmp_path / "log.csv"
    path.write_bytes("user,item\nana,caf\u00e9\nb\u00f8rge,tea\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2 is not valid utf-8 \(byte 0xe9 at column 8\); set encoding to the file's, e.g. latin-1"):
        read_interactions(path)
    frame = read_interactions(path, encoding="latin-1")
    assert frame["item"].tolist() == ["caf\u00e9", "tea"] and frame["user"].tolist() == ["ana", "b\u00f8rge"]


def test_utf16_is_read_by_its_byte_order_mark(tmp_path):
    from recvae.data import read_interactions

    path = tmp_path / "log.tsv"
    path.write_bytes("user\titem\nana\tcaf\u00e9\n".encode("utf-16"))
    assert read_interactions(path)["item"].tolist() == ["caf\u00e9"]


def test_ids_written_as_1_and_1_0_are_one_user(tmp_path, caplog):
    from recvae.data import read_interactions

    path = tmp_path / "log.csv"
    path.write_text("user,item\n1,5\n1.0,6\n2,5\n")
    frame = read_interactions(path)
    assert frame["user"].tolist() == [1, 1, 2] and frame["user"].dtype.kind == "i"
    assert "read as the integers they spell" in caplog.text


def test_negative_ratings_are_counted_and_said(caplog):
    import pandas as pd

    from recvae.data import Preprocessing, preprocess

    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "rating": [-1.0, 4.0, -2.0, 5.0, 3.0]})
    kept = preprocess(frame, Preprocessing(min_user_interactions=0), "ratings.csv")
    assert len(kept) == 5 and "ratings.csv: 2 rows have a rating below zero; they count as interactions" in caplog.text
    dropped = preprocess(frame, Preprocessing(min_user_interactions=0, min_rating=0), "ratings.csv")
    assert len(dropped) == 3 and "min_rating=0 drops them" in caplog.text

"""Results a user can trust (#17): tampered model files, escaping paths, checks before long work."""

import json
import os

import pytest

from recvae.cli import main
from recvae.errors import ModelFileError
from recvae.models import Popularity, Recommender


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
        del manifest["manifest_sha256"]

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
        del manifest["manifest_sha256"]

    _edit(saved, drop)
    with pytest.raises(ModelFileError, match="'files' must list weights.safetensors"):
        Recommender.load(saved)


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "log.csv"
    assert main(["generate", "--out", str(path), "--users", "300", "--items", "80"]) == 0
    return path


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

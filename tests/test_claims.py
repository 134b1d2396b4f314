"""Every output recvae writes (model directory, export file, Spark output folder) is claimed before the work
starts: an existing target is refused unless overwrite, and so is a target another live run is writing."""

import os
import subprocess
import sys

import pytest

from recvae.cli import main
from recvae.io import claimed

TINY = ["--epochs", "1", "--batch-size", "100", "--heldout-users", "30", "-q", "--no-tracking"]


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    target = tmp_path / "recs.csv"
    target.write_text("mine\n")
    with pytest.raises(FileExistsError, match="recs.csv: exists, and the output replaces nothing unasked"):
        with claimed(target, "the output"):
            pass
    with claimed(target, "the output", overwrite=True):
        pass
    folder = tmp_path / "out"
    folder.mkdir()
    with claimed(folder, "the output", directory=True):  # an empty folder holds nothing to lose
        pass
    (folder / "notes.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match="out: exists"):
        with claimed(folder, "the output", directory=True):
            pass
    with pytest.raises(ValueError, match="is a file; the output is written as a folder"):
        with claimed(target, "the output", directory=True, overwrite=True):
            pass
    assert target.read_text() == "mine\n" and (folder / "notes.txt").read_text() == "the user's"


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    target = tmp_path / "model"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom recvae.io import claimed\n"
        f"with claimed({str(target)!r}, 'the model directory', directory=True):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=f"another recvae run \\(process {holder.pid}\\) is writing it"):
            with claimed(target, "the model directory", directory=True):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claimed(target, "the model directory", directory=True):  # the dead run's lock is taken over
        assert (tmp_path / ".model.recvae-lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".model.recvae-lock").exists()


def test_train_and_recommend_refuse_an_existing_output_before_any_work(tmp_path, capsys, small_log_file):
    log = small_log_file
    model = tmp_path / "model"
    assert main(["train", "--data", str(log), "--out", str(model), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(log), "--out", str(model), *TINY]) == 2
    err = capsys.readouterr().err
    assert "model: exists" in err and "--overwrite" in err
    out = tmp_path / "recs.csv"
    out.write_text("the user's\n")
    recommend = ["recommend", "--model", str(model), "--interactions", str(log), "--out", str(out), "-q"]
    assert main(recommend) == 2
    err = capsys.readouterr().err
    assert "recs.csv: exists" in err and "--overwrite" in err and out.read_text() == "the user's\n"
    assert main([*recommend, "--overwrite"]) == 0 and out.read_text().startswith('"user","item","rank","score"')

import json
import subprocess
import sys

import pytest

from recvae.cli import main

TINY = ["--epochs", "3", "--batch-size", "100", "--heldout-users", "60", "--quiet", "--no-tracking"]


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "log.csv"
    assert main(["generate", "--out", str(path), "--users", "600", "--items", "200"]) == 0
    return path


def test_train_prints_metrics_beside_popularity_and_saves(tmp_path, log_file, capsys):
    out = tmp_path / "model"
    assert main(["train", "--data", str(log_file), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "recall@20" in printed and "ndcg@100" in printed
    assert "MultVAE" in printed and "Popularity" in printed
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["model"] == "MultVAE" and len(manifest["metadata"]["history"]) == 3

    assert main(["evaluate", "--model", str(out), "--baseline", "--no-tracking"]) == 0
    again = capsys.readouterr().out
    # the evaluation rebuilds the same split, so it prints the same test metrics
    vae_line = next(line for line in printed.splitlines() if line.startswith("MultVAE"))
    assert vae_line in again


def test_presplit_files_are_scored_by_the_lightgcn_recall_unless_told(tmp_path, log_file, capsys):
    import pandas as pd

    log = pd.read_csv(log_file)
    test = log.groupby("user").sample(frac=0.2, random_state=0)
    log.drop(test.index).to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    args = ["train", "--model", "ease", "--data", str(tmp_path / "train.csv"), "--test-data", str(tmp_path / "test.csv"),
            "--quiet", "--no-tracking"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model"))
    assert header.split()[1:] == ["recall_full@20", "ndcg@20"]
    assert main(args + ["--out", str(tmp_path / "b"), "--metrics", "recall@20, recall_full@20"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model"))
    assert header.split()[1:] == ["recall@20", "recall_full@20"]


def test_train_multdae_with_checkpoints_and_resume(tmp_path, log_file, capsys):
    ckpt = tmp_path / "ckpt"
    args = ["train", "--model", "multdae", "--data", str(log_file), "--out", str(tmp_path / "m"), "--checkpoint-dir", str(ckpt), *TINY]
    assert main(args) == 0
    assert (ckpt / "checkpoint.safetensors").exists()
    assert main(args + ["--resume"]) == 2  # the model directory exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--resume", "--overwrite"]) == 0
    assert "MultDAE" in capsys.readouterr().out


def test_train_with_auto_beta_saves_the_chosen_beta(tmp_path, log_file, capsys):
    out = tmp_path / "model"
    assert main(["train", "--data", str(log_file), "--out", str(out), "--auto-beta", "--hidden-dims", "",
                 "--beta-schedule", "linear", *TINY]) == 0
    assert "auto-β:" in capsys.readouterr().err
    manifest = json.loads((out / "model.json").read_text())
    chosen = manifest["metadata"]["auto_beta"]
    assert len(chosen["curve"]) == 3 and manifest["config"]["beta_cap"] == chosen["beta"]
    assert main(["train", "--model", "multdae", "--data", str(log_file), "--auto-beta", *TINY]) == 2
    assert "--auto-beta: chooses Mult-VAE's beta cap" in capsys.readouterr().err
    assert main(["train", "--data", str(log_file), "--auto-beta", "--beta-cap", "0.1", *TINY]) == 2


def test_train_recvae_from_the_command_line(tmp_path, log_file, capsys):
    out = tmp_path / "recvae"
    assert main(["train", "--model", "recvae", "--data", str(log_file), "--out", str(out),
                 "--mixture-weights", "0.2,0.7,0.1", "--learning-rate", "0.002", *TINY]) == 0
    assert "RecVAE" in capsys.readouterr().out
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["model"] == "RecVAE" and manifest["config"]["mixture_weights"] == [0.2, 0.7, 0.1]
    assert len(manifest["metadata"]["history"]) == 3 and "active_units" in manifest["metadata"]["history"][0]
    assert main(["evaluate", "--model", str(out), "--no-tracking"]) == 0
    resumable = ["train", "--model", "recvae", "--data", str(log_file), "--checkpoint-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "r2"), *TINY]
    assert main(resumable) == 0 and main(resumable + ["--resume", "--overwrite"]) == 0
    assert main(["train", "--model", "ease", "--data", str(log_file), "--checkpoint-dir", str(tmp_path / "c"),
                 "--quiet", "--no-tracking"]) == 2
    assert "EASE does not train by epochs" in capsys.readouterr().err


def test_bad_input_gives_one_clear_line_and_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,4,5\n")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "m"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "recvae: error:" in err and "bad.csv: line 2" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_unknown_hyperparameter_for_model_and_resume_without_dir(tmp_path, log_file, capsys):
    assert main(["train", "--model", "multvae", "--data", str(log_file), "--resume", *TINY]) == 2
    assert "--resume: needs --checkpoint-dir" in capsys.readouterr().err
    assert main(["train", "--data", str(log_file), "--dropout", "2", *TINY]) == 2
    assert "--dropout 2: must lie in [0, 1)" in capsys.readouterr().err
    assert main(["train", "--model", "multdae", "--data", str(log_file), "--beta-cap", "0.3", *TINY]) == 2
    assert "MultDAE has no hyperparameter(s) ['beta_cap']" in capsys.readouterr().err


def test_evaluate_refuses_a_damaged_model(tmp_path, capsys):
    (tmp_path / "model.json").write_text("{")
    assert main(["evaluate", "--model", str(tmp_path), "--no-tracking"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_help_is_reachable_from_the_console_script():
    result = subprocess.run([sys.executable, "-m", "recvae", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in ("--data", "--min-rating", "--protocol", "--beta-cap", "--latent-dim", "--resume"):
        assert flag in result.stdout


def test_a_flag_given_as_none_is_applied_not_dropped(tmp_path, log_file):
    out = tmp_path / "model"
    assert main(["train", "--data", str(log_file), "--out", str(out), *TINY, "--patience", "none"]) == 0
    config = json.loads((out / "model.json").read_text())["config"]
    assert config["patience"] is None and config["epochs"] == 3


def test_a_setting_is_named_as_python_spells_it_and_as_the_flag_on_the_command_line(tmp_path, log_file, capsys):
    from recvae.errors import ParameterError
    from recvae.models import MultVAE

    with pytest.raises(ParameterError) as caught:
        MultVAE(batch_size=0, epochs=3)
    assert str(caught.value) == "batch_size=0: must be at least 1"
    assert caught.value.spoken({"batch_size": "--batch-size"}) == "--batch-size 0: must be at least 1"
    assert main(["train", "--data", str(log_file), "--out", str(tmp_path / "m"), *TINY, "--batch-size", "0"]) == 2
    assert "recvae: error: --batch-size 0: must be at least 1" in capsys.readouterr().err
    # a setting the message speaks of beside the offending one is named the same way
    assert main(["train", "--data", str(log_file), "--out", str(tmp_path / "m"), "--negatives", "5", "--likelihood", "gaussian", *TINY]) == 2
    assert "--negatives 5: the sampled softmax needs --likelihood multinomial" in capsys.readouterr().err


def test_a_typo_or_an_abbreviation_is_refused_with_the_commands_usage_and_the_flag_meant(capsys):
    for typed in ("--epohcs", "--epoch"):  # argparse would take --epoch for --epochs
        with pytest.raises(SystemExit) as stopped:
            main(["train", typed, "20", "--no-tracking"])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert "usage: recvae train" in err and f"unrecognized arguments: {typed} 20 (did you mean --epochs?)" in err
    # one word of a flag: the flag it is a word of, not one spelled alike (difflib offered --deny for --n)
    with pytest.raises(SystemExit):
        main(["recommend", "--model", "m", "--data", "d.csv", "--out", "o.csv", "--n", "10"])
    assert "unrecognized arguments: --n 10 (did you mean --top-n?)" in capsys.readouterr().err


def test_the_help_needs_no_torch_and_every_flag_has_its_words_and_choices():
    probe = ("import sys, recvae.cli; parser = recvae.cli.build_parser(); "
             "print('torch' in sys.modules, 'recvae.models.multvae' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
    import dataclasses

    from recvae.models import REGISTRY
    from recvae.models.config import FIELD_CHOICES, FIELD_HELP, MODEL_CONFIGS
    from recvae.models.nn import ACTIVATION_FUNCTIONS

    assert {n: c.config_class for n, c in REGISTRY.items() if n != "RecBole"} == dict(MODEL_CONFIGS)
    fields = {f.name for config in MODEL_CONFIGS.values() for f in dataclasses.fields(config)}
    assert fields == set(FIELD_HELP)
    assert set(FIELD_CHOICES["activation"]) == set(ACTIVATION_FUNCTIONS)
    text = subprocess.run([sys.executable, "-m", "recvae", "train", "--help"], capture_output=True, text=True).stdout
    assert "one of multinomial, gaussian, logistic, focal" in " ".join(text.split())
    top = " ".join(subprocess.run([sys.executable, "-m", "recvae", "--help"], capture_output=True, text=True).stdout.split())
    assert all(name in top for name in MODEL_CONFIGS)


def test_an_interrupted_torchrun_run_prints_the_command_that_resumes_it_once(monkeypatch, capsys):
    import recvae.cli as cli

    def stopped(args):
        raise KeyboardInterrupt  # what torchrun's SIGTERM to a rank becomes

    monkeypatch.setattr(cli, "cmd_train", stopped)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    flags = ["train", "--checkpoint-dir", "ck", "--out", "m"]
    for rank, said in (("0", "interrupted: torchrun --nproc-per-node 2 -m recvae train --checkpoint-dir ck --out m --resume\n"),
                       ("1", "")):
        monkeypatch.setenv("RANK", rank)
        assert cli.main(flags) == 130
        assert capsys.readouterr().err == said


def test_under_torchrun_a_bad_setting_is_said_by_rank_0_alone_and_a_data_error_by_every_rank(monkeypatch, capsys):
    """Every rank parses the same command line, so every rank printed the same complaint about it; a file missing
    on one machine only is heard from that machine's ranks."""
    import recvae.cli as cli
    from recvae.errors import DataError

    def missing(args):
        raise DataError("log.csv: no such file")

    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, said in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as stopped:
            cli.main(["train", "--epochs", "x"])
        assert stopped.value.code == 2 and ("invalid parse value: 'x'" in capsys.readouterr().err) == said
        assert cli.main(["train", "--epochs", "0", "--out", "m"]) == 2
        assert ("--epochs 0: must be at least 1" in capsys.readouterr().err) == said
    monkeypatch.setattr(cli, "cmd_train", missing)
    assert cli.main(["train", "--out", "m"]) == 2  # rank 1's own file
    assert "recvae: error: log.csv: no such file" in capsys.readouterr().err


def test_every_command_that_reads_histories_takes_them_by_data_and_by_interactions():
    from recvae.cli import build_parser

    parser = build_parser()
    for command in ("recommend", "embed", "score-users", "latent-report"):
        for flag in ("--data", "--interactions"):
            args = parser.parse_args([command, "--model", "m", flag, "log.csv", "--out", "o"])
            assert (args.data if command == "latent-report" else args.interactions) == "log.csv", (command, flag)


def test_under_torchrun_only_train_runs_and_rank_0_alone_says_so(tmp_path, monkeypatch, capsys):
    """Each torchrun process would run a whole tune (two studies writing one database and one file) or export."""
    out = tmp_path / "tuned.toml"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, said in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        assert main(["tune", "--model", "multvae", "--trials", "2", "--out", str(out), "--no-tracking"]) == 2
        err = capsys.readouterr().err
        assert ("only 'train' runs" in err and "run 'recvae tune' without torchrun" in err) == said, err
        assert not out.exists() and not (tmp_path / "tuned.db").exists()
    assert main(["embed", "--model", "m", "--data", "d.csv", "--out", str(tmp_path / "e.parquet")]) == 2
    monkeypatch.setenv("RANK", "0")
    assert main(["embed", "--model", "m", "--data", "d.csv", "--out", str(tmp_path / "e.parquet")]) == 2
    assert "--engine spark spreads it over a cluster" in capsys.readouterr().err


def test_skip_bad_lines_is_refused_with_the_spark_engine_which_would_not_apply_it(tmp_path, capsys):
    for command in ("recommend", "embed", "score-users"):
        out = tmp_path / f"{command}.parquet"
        assert main([command, "--model", "m", "--data", "d.csv", "--out", str(out), "--engine", "spark",
                     "--skip-bad-lines"]) == 2
        assert "--skip-bad-lines: is the local engine's" in capsys.readouterr().err and not out.exists()

"""Hyperparameter search (#18): Optuna studies that find the optimum, prune, resume, and feed `recvae train`."""

import json
import re

import numpy as np
import pytest

from recvae.cli import main
from recvae.errors import DataError
from recvae.evaluate import evaluate
from recvae.models import EASE, MultDAE
from recvae.tune import SearchConfig, merge_studies, parse_space, run_study, sqlite_url


def _ease_study(split, tmp_path, trials, name="s", resume=True, seed=0):
    space = parse_space({"l2": {"low": 1.0, "high": 1e5, "log": True}}, EASE.config_class, "test")
    return run_study(lambda p: EASE(**p), space, {}, split.train, split.validation, "ndcg@100",
                     SearchConfig(trials=trials, seed=seed), sqlite_url(tmp_path / "studies.db"), name, resume=resume)


def test_a_seeded_study_finds_the_optimum_a_dense_grid_finds(small_split, tmp_path):
    grid = {l2: evaluate(EASE(l2=l2).fit(small_split.train), small_split.validation, ("ndcg@100",)).mean("ndcg@100")
            for l2 in np.logspace(0, 5, 26)}
    result = _ease_study(small_split, tmp_path, trials=15)
    assert result.best_score >= 0.995 * max(grid.values())
    assert result.budget_used == 15 and result.model is not None and result.model.config.l2 == result.best_params["l2"]
    again = _ease_study(small_split, tmp_path, trials=15, name="again")  # same seed, same search
    assert again.best_params == result.best_params


def test_a_study_starts_from_the_configured_setting_where_the_space_holds_it(small_split, tmp_path):
    from recvae.models import MultVAE
    from recvae.tune.study import starting_setting

    result = _ease_study(small_split, tmp_path, trials=3)
    first = min(result.trials, key=lambda t: t["number"])
    assert first["params"] == {"l2": EASE.config_class().l2}  # 500, the default, before any sampled value
    assert result.best_score >= first["value"]
    space = parse_space({"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}, "hidden_dims": [[600], []],
                         "anneal_epochs": {"low": 10.0, "high": 200.0}, "beta_cap": {"low": 0.3, "high": 1.0}},
                        MultVAE.config_class, "test")
    # the paper's learning rate and layers; no default anneal_epochs, and the default cap 0.2 lies outside
    assert starting_setting(lambda p: MultVAE(**p), space, {"likelihood": "gaussian"}) == \
        {"learning_rate": 1e-3, "hidden_dims": "[600]"}
    assert starting_setting(lambda p: MultVAE(**p), space, {"hidden_dims": ()})["hidden_dims"] == "[]"


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruning_stops_trials_that_are_clearly_worse(small_split, tmp_path, pruner):
    space = parse_space({"learning_rate": {"low": 1e-7, "high": 1e-2, "log": True}}, MultDAE.config_class, "test")
    fixed = {"epochs": 10, "batch_size": 200, "hidden_dims": (), "patience": None}
    result = run_study(lambda p: MultDAE(**p), space, fixed, small_split.train, small_split.validation, "ndcg@100",
                       SearchConfig(trials=10, seed=1, pruner=pruner), sqlite_url(tmp_path / "s.db"), "prune")
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert pruned, result.trials
    for trial in pruned:
        assert trial["epochs"] < 10 and trial["last"] < result.best_score
    assert result.best_params["learning_rate"] > max(t["params"]["learning_rate"] for t in pruned)


def test_a_killed_study_resumes_without_repeating_its_trials(small_split, tmp_path):
    import optuna

    first = _ease_study(small_split, tmp_path, trials=3)
    study = optuna.load_study(study_name="s", storage=sqlite_url(tmp_path / "studies.db"))
    study.ask()  # a trial a killed process left RUNNING
    resumed = _ease_study(small_split, tmp_path, trials=6)
    assert resumed.budget_used == 6 and resumed.trials[:3] == first.trials
    assert len({t["number"] for t in resumed.trials}) == 6
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=sqlite_url(tmp_path / "studies.db")).trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 6
    fresh = _ease_study(small_split, tmp_path, trials=2, resume=False)  # without resume: started over
    assert fresh.budget_used == 2


def test_a_resumed_study_draws_settings_it_has_not_tried(small_split, tmp_path):
    """A resumed process's sampler is seeded by the trials so far: seeded as the first process's was, it drew the
    first process's random settings again while the sampler was still drawing at random (session 25's RecVAE study)."""
    first = _ease_study(small_split, tmp_path, trials=2)  # the default, then one random draw
    resumed = _ease_study(small_split, tmp_path, trials=9)  # still drawing at random on its first trial
    assert resumed.trials[:2] == first.trials
    assert len({t["params"]["l2"] for t in resumed.trials}) == 9


def test_a_resumed_study_gets_only_the_seconds_its_finished_trials_left(small_split, tmp_path):
    """Optuna's timeout counts from each call: a study resumed after an interruption must not get its whole
    time budget again, or a slow model stopped once would be searched longer than one never stopped."""
    import optuna

    space = parse_space({"l2": {"low": 1.0, "high": 1e5, "log": True}}, EASE.config_class, "test")

    def study(trials, timeout):
        return run_study(lambda p: EASE(**p), space, {}, small_split.train, small_split.validation, "ndcg@100",
                         SearchConfig(trials=trials, seed=0, timeout=timeout), sqlite_url(tmp_path / "studies.db"), "s")

    study(3, None)
    trials = optuna.load_study(study_name="s", storage=sqlite_url(tmp_path / "studies.db")).trials
    spent = sum(t.user_attrs["seconds"] for t in trials)
    assert study(6, spent * 0.99).budget_used == 3  # its time is spent: no more trials, the best of three stands
    assert study(6, spent + 1e4).budget_used == 6


def test_merging_takes_the_studies_another_copy_continued_and_refuses_two_that_parted(small_split, tmp_path):
    """Two processes resume copies of one database and continue different studies: a merge takes each
    study's longer run (a RUNNING trial one killed copy left equals the FAIL the other marked), copies a
    study one side lacks, and refuses a study whose trials parted, writing nothing."""
    import shutil

    import optuna

    base, ours, theirs, other = (tmp_path / n for n in ("base", "ours", "theirs", "other"))
    base.mkdir()
    _ease_study(small_split, base, trials=2)
    optuna.load_study(study_name="s", storage=sqlite_url(base / "studies.db")).ask()  # killed in its third trial
    for copy in (ours, theirs):
        shutil.copytree(base, copy)
    continued = _ease_study(small_split, theirs, trials=4)  # marks the RUNNING trial failed, runs two more
    _ease_study(small_split, theirs, trials=2, name="t")
    _ease_study(small_split, ours, trials=2, name="u")

    mine, yours = sqlite_url(ours / "studies.db"), sqlite_url(theirs / "studies.db")
    assert merge_studies([yours, sqlite_url(base / "studies.db")], mine) == {"s": "extended", "t": "copied"}
    merged = _ease_study(small_split, ours, trials=4)  # nothing left to run: the same trials as the longer copy
    assert merged.trials == continued.trials
    assert sorted(optuna.get_all_study_names(sqlite_url(ours / "studies.db"))) == ["s", "t", "u"]
    assert merge_studies([sqlite_url(base / "studies.db")], mine) == {"s": "kept"}

    other.mkdir()
    _ease_study(small_split, other, trials=3, seed=5)  # the same name, another search
    fresh = tmp_path / "fresh"
    shutil.copytree(base, fresh)
    before = (fresh / "studies.db").read_bytes()
    with pytest.raises(DataError, match="study 's' parted from the one in"):  # refused whole: "t" not taken either
        merge_studies([yours, sqlite_url(other / "studies.db")], sqlite_url(fresh / "studies.db"))
    assert (fresh / "studies.db").read_bytes() == before


def test_a_setting_that_diverges_fails_its_trial_and_the_study_goes_on(small_split, tmp_path):
    """implicit's BPR raises on NaN factors (it ended a whole ML-1M benchmark once): the trial is recorded as
    diverged, counts towards the budget, is not run again on resume, and the best setting still wins."""
    import optuna

    from recvae.errors import TrainingDivergedError
    from recvae.models._implicit import fit_solver

    class NaNSolver:
        def fit(self, user_items, show_progress=False):
            from implicit.recommender_base import ModelFitError
            raise ModelFitError("NaN encountered in factors")

    with pytest.raises(TrainingDivergedError, match="BPR diverged at learning_rate=9"):
        fit_solver(NaNSolver(), small_split.train, "BPR", "learning_rate=9")

    class Diverging(EASE):  # l2 above 1e3 stands for a setting that diverges
        def fit(self, user_items, validation=None, items=None):
            if self.config.l2 > 1e3:
                raise TrainingDivergedError(f"EASE diverged at l2={self.config.l2}")
            return super().fit(user_items, validation, items)

    space = parse_space({"l2": {"low": 1.0, "high": 1e5, "log": True}}, EASE.config_class, "test")
    storage = sqlite_url(tmp_path / "studies.db")

    def study(trials):
        return run_study(lambda p: Diverging(**p), space, {}, small_split.train, small_split.validation, "ndcg@100",
                         SearchConfig(trials=trials, seed=0), storage, "d", resume=True)

    result = study(8)
    diverged = [t for t in result.trials if t["state"] == "diverged"]
    assert diverged and all(t["params"]["l2"] > 1e3 and t["value"] is None for t in diverged)
    assert result.budget_used == 8 and result.best_params["l2"] <= 1e3
    again = study(8)  # resumed: nothing left to run, the diverged trials included
    assert again.trials == result.trials
    assert len(optuna.load_study(study_name="d", storage=storage).trials) == 8


@pytest.mark.parametrize("raw, words", [
    ({"l2": {"low": 10.0, "high": 10.0}}, "empty range"),
    ({"l2": {"low": 0.0, "high": 10.0, "log": True}}, "a log scale needs low > 0"),
    ({"lambda": [1.0]}, "are not hyperparameters of the model"),
    ({"l2": {"choices": []}}, "choices must be a non-empty list"),
    ({"l2": {"low": "a", "high": 3}}, "low and high must both be numbers"),
    ({"l2": {"lo": 1, "high": 3}}, "unknown field(s) ['lo']"),
])
def test_bad_search_spaces_are_refused_naming_the_key(raw, words):
    with pytest.raises(DataError, match="search key") as info:
        parse_space(raw, EASE.config_class, "bench.toml: model 'EASE'")
    assert words in str(info.value) and "bench.toml: model 'EASE'" in str(info.value)


def test_tune_writes_flags_that_train_config_trains_the_same_model_from(tmp_path, small_log_file, capsys):
    out = tmp_path / "tuned.toml"
    common = ["--data", str(small_log_file), "--heldout-users", "30", "--no-tracking", "-q"]
    assert main(["tune", "--model", "ease", "--trials", "4", "--out", str(out), *common]) == 0
    assert "best validation ndcg@100" in capsys.readouterr().out
    import tomllib

    written = tomllib.loads(out.read_text())
    assert written["model"] == "ease" and written["heldout-users"] == 30 and set(written["params"]) == {"l2"}
    assert main(["train", "--config", str(out), "--out", str(tmp_path / "a"), "--no-tracking", "-q"]) == 0
    l2 = written["params"]["l2"]
    assert main(["train", "--model", "ease", "--l2", str(l2), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (json.loads((tmp_path / d / "model.json").read_text()) for d in "ab")
    assert a["config"] == b["config"] and a["files"] == b["files"]  # the same weights, byte for byte
    assert a["metadata"]["split_fingerprint"] == b["metadata"]["split_fingerprint"]
    # a flag given beside --config wins
    assert main(["train", "--config", str(out), "--l2", "7", "--out", str(tmp_path / "c"), "--no-tracking", "-q"]) == 0
    assert json.loads((tmp_path / "c" / "model.json").read_text())["config"]["l2"] == 7.0


@pytest.mark.parametrize("text, words", [
    ('model = "ease"\nl2 = 3.0\n', "'l2' is not a recvae train option (hyperparameters go under [params]"),
    ('model = "ease"\n[params]\nheldout-users = 3\n', "'[params] heldout-users' is not a model hyperparameter"),
    ('model = "svd"\n', "model = 'svd': expected one of"),
    ("model = \n", "not valid TOML"),
])
def test_a_bad_config_file_is_one_line_naming_the_key(tmp_path, capsys, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "m"), "--no-tracking", "-q"]) == 2
    err = capsys.readouterr().err
    assert words in err and str(path) in err and not (tmp_path / "m").exists()


SEARCH_BENCHMARK = """
dataset = "tiny-search"
seeds = 2
metrics = ["ndcg@50", "recall@20"]
[data.synthetic]
n_users = 500
n_items = 120
n_groups = 4
median_activity = 20
seed = 3
[split]
heldout_users = 60
[search]
trials = 3
seeds = "SEEDS"
[[models]]
name = "EASE"
model = "EASE"
search = { l2 = { low = 1.0, high = 1e4, log = true } }
[[models]]
name = "DAE"
model = "MultDAE"
params = { epochs = 4, batch_size = 100 }
grid = { dropout = [0.2, 0.5] }
[[models]]
name = "Popularity"
model = "Popularity"
"""


@pytest.mark.parametrize("seeds", ["first", "every"])
def test_a_benchmark_gives_every_model_the_same_trial_budget(tmp_path, seeds):
    from recvae.benchmark import benchmark, load_benchmark

    path = tmp_path / "b.toml"
    path.write_text(SEARCH_BENCHMARK.replace("SEEDS", seeds))
    result, folder = benchmark(load_benchmark(path), tmp_path / "out", progress=False)
    first, second = result.config.split_seeds()
    ease = {r.seed: r for r in result.runs_of("EASE")}
    dae = {r.seed: r for r in result.runs_of("DAE")}
    assert len(ease[first].tuning) == 3 and len(dae[first].tuning) == 2  # a grid of two tries each once
    assert all(t["state"] == "complete" for t in ease[first].tuning)
    if seeds == "first":  # later seeds fit the first seed's choice once
        assert ease[second].tuning == [] and ease[second].params == ease[first].params
    else:
        assert len(ease[second].tuning) == 3
    text = (folder / "results.md").read_text()
    assert "| trials |" in text and ("on the first split seed" if seeds == "first" else "on every split seed") in text
    assert (folder / "studies.db").exists() and (folder / "search_EASE.png").exists()
    assert (folder / "search.png").stat().st_size > 10_000  # every model: best so far against trials and seconds
    row = next(line for line in text.splitlines() if line.startswith("| EASE |"))
    assert "| 3 |" in row and "chosen: l2=" in row


def test_a_study_of_another_search_is_not_resumed_into(small_split, tmp_path):
    _ease_study(small_split, tmp_path, trials=2)
    space = parse_space({"l2": {"low": 1.0, "high": 10.0}}, EASE.config_class, "test")
    with pytest.raises(DataError, match="study 's' was run with other space"):
        run_study(lambda p: EASE(**p), space, {}, small_split.train, small_split.validation, "ndcg@100",
                  SearchConfig(trials=2, seed=0), sqlite_url(tmp_path / "studies.db"), "s")


def test_a_hyperparameter_set_to_none_survives_the_settings_file(tmp_path):
    from recvae.tune.command import read_train_config, write_train_config

    path = write_train_config(tmp_path / "s.toml", "MultVAE", {"patience": None, "hidden_dims": (600,)}, {"epochs": None})
    options, params = read_train_config(path)
    assert options == {"model": "multvae"} and params == {"patience": None, "hidden-dims": (600,)}


@pytest.mark.parametrize("space, words", [
    ({"dropout": {"choices": [0.5, 1.5]}}, "search key 'dropout': the value 1.5 is not valid (dropout=1.5: must lie in [0, 1))"),
    ({"learning_rate": {"low": -1.0, "high": 1e-2}}, "search key 'learning_rate': the value -1.0 is not valid"),
    ({"activation": ["tanh", "sigmoidish"]}, "search key 'activation': the value 'sigmoidish' is not valid"),
])
def test_every_value_of_a_search_space_is_checked_before_the_first_trial(space, words):
    from recvae.errors import DataError
    from recvae.models import MultVAEConfig
    from recvae.tune import parse_space

    with pytest.raises(DataError, match=re.escape(words)):
        parse_space(space, MultVAEConfig, "search space of MultVAE")


def test_a_damaged_study_database_is_one_line_naming_it(tmp_path, small_log_file, capsys):
    damaged = tmp_path / "study.db"
    damaged.write_text("not a database")
    assert main(["tune", "--model", "ease", "--data", str(small_log_file), "--trials", "2", "--storage",
                 f"sqlite:///{damaged}", "--out", str(tmp_path / "t.toml"), "--no-tracking", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: the study database cannot be used (file is not a database)" in err and "Traceback" not in err


def test_tune_searches_a_cvae_on_the_users_table_and_train_reads_the_result(tmp_path):
    import tomllib

    from recvae.errors import ParameterError
    from recvae.pipeline import DataSpec
    from recvae.tune.command import TuneSpec, tune_model

    rng = np.random.default_rng(3)
    table = tmp_path / "users.csv"
    table.write_text("user,band\n" + "".join(f"u{u:05d},{'abc'[rng.integers(3)]}\n" for u in range(6000)))
    for spec in (TuneSpec(model="MultVAE", data=DataSpec(user_features=str(table)), out=str(tmp_path / "t.toml")),
                 TuneSpec(model="CVAE", out=str(tmp_path / "t.toml"))):
        with pytest.raises(ParameterError, match="only CVAE"):
            tune_model(spec)
    out = tmp_path / "tuned.toml"
    common = ["--user-features", str(table), "--heldout-users", "50", "--no-tracking", "-q"]
    assert main(["tune", "--model", "cvae", "--trials", "2", "--epochs", "2", "--out", str(out), *common]) == 0
    written = tomllib.loads(out.read_text())
    assert written["params"]["conditions"] == 3 + 2 and written["user-features"] == str(table)  # a, b, c, other, missing
    assert main(["train", "--config", str(out), "--out", str(tmp_path / "m"), "--no-tracking", "-q"]) == 0


def test_tune_reads_the_items_table_in_every_trial_and_train_reads_the_result(tmp_path, monkeypatch):
    import tomllib

    from recvae.errors import ParameterError
    from recvae.pipeline import DataSpec
    from recvae.train import fit_model
    from recvae.tune import study
    from recvae.tune.command import TuneSpec, tune_model

    rng = np.random.default_rng(5)
    items, users = tmp_path / "items.csv", tmp_path / "users.csv"
    items.write_text("item,genres\n" + "".join(f"i{i:05d},{['Drama|Comedy', 'Action', 'Horror'][rng.integers(3)]}\n"
                                               for i in range(3000)))
    users.write_text("user,band\n" + "".join(f"u{u:05d},{'ab'[rng.integers(2)]}\n" for u in range(6000)))
    with pytest.raises(ParameterError, match="not by EASE"):
        tune_model(TuneSpec(model="EASE", data=DataSpec(item_features=str(items)), out=str(tmp_path / "t.toml")))
    with pytest.raises(ParameterError, match="leave it out of the search"):
        tune_model(TuneSpec(model="MultVAE", data=DataSpec(item_features=str(items)), out=str(tmp_path / "t.toml"),
                            space={"item_feature_width": {"low": 1, "high": 4}}))
    fitted = []
    def recording(model, *args, **kwargs):
        fitted.append(kwargs["item_features"])
        fit_model(model, *args, **kwargs)
        assert model.posterior_mixture_ is None and model.anomaly_reference_ is None  # a trial is thrown away
        return model

    monkeypatch.setattr(study, "fit_model", recording)
    out = tmp_path / "tuned.toml"
    common = ["--item-features", str(items), "--user-features", str(users), "--heldout-users", "50", "--no-tracking", "-q"]
    assert main(["tune", "--model", "cvae", "--trials", "2", "--epochs", "2", "--out", str(out), *common]) == 0
    assert len(fitted) == 2 and all(f is not None and f.shape[1] == 3 + 2 for f in fitted)  # the genres and missing
    written = tomllib.loads(out.read_text())
    assert written["params"]["item-feature-width"] == 3 + 2 and written["item-features"] == str(items)
    assert written["params"]["conditions"] == 2 + 2  # a, b, other, missing: the items' width did not take the users'
    assert main(["train", "--config", str(out), "--out", str(tmp_path / "m"), "--no-tracking", "-q"]) == 0
    from recvae.models import Recommender

    trained = Recommender.load(tmp_path / "m")  # what train saves is described, though the trials were not
    assert trained.posterior_mixture_ is not None and trained.config.describe_training_users

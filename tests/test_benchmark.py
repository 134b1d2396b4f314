"""The benchmark harness: config files, statistics, tuning on validation, reports, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recvae.benchmark import (
    BenchmarkConfig,
    ModelSpec,
    benchmark,
    confidence_interval,
    holm,
    load_benchmark,
    paired_over_seeds,
)
from recvae.cli import main
from recvae.errors import DataError
from recvae.evaluate import evaluate
from recvae.models import EASE
from recvae.pipeline import DataSpec, SplitSpec, prepare_split

TINY_DATA = """
[data.synthetic]
n_users = 700
n_items = 150
n_groups = 5
median_activity = 25
seed = 3
"""

BENCHMARK = f"""
dataset = "tiny"
seeds = 2
metrics = ["ndcg@50", "recall@20"]
{TINY_DATA}
[split]
protocol = "strong"
heldout_users = 80

[[models]]
name = "EASE"
model = "EASE"
grid = {{ l2 = [1.0, 30.0, 3000.0] }}

[[models]]
name = "VAE"
model = "MultVAE"
params = {{ epochs = 3, batch_size = 100, hidden_dims = [] }}

[[models]]
name = "VAE-auto"
model = "MultVAE"
auto_beta = true
params = {{ epochs = 3, batch_size = 100, hidden_dims = [] }}

[[models]]
name = "Popularity"
model = "Popularity"
"""

pytestmark = pytest.mark.slow  # real servers / RecBole / whole benchmarks: `pytest -m "not slow"` skips them



def write(tmp_path, text, name="bench.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_confidence_interval_is_students_t():
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3))
    assert np.isnan(confidence_interval([0.4])[1])


def test_paired_over_seeds_takes_the_seed_as_unit_and_holm():
    rng = np.random.default_rng(0)
    base = [rng.uniform(size=400) for _ in range(3)]
    same = paired_over_seeds(base, base)
    assert same["mean"] == 0.0 and same["p"] == 1.0 and same["seeds"] == 3 and same["pairs"] == 1200
    # each seed's model is better or worse by its own luck: 1200 pooled users would call a +0.01 mean
    # certain, three seeds cannot
    shifts = [0.04, -0.03, 0.02]
    noisy = [b + s + rng.normal(0, 0.01, 400) for b, s in zip(base, shifts)]
    result = paired_over_seeds(noisy, base)
    pooled = stats.ttest_1samp(np.concatenate([n - b for n, b in zip(noisy, base)]), 0.0).pvalue
    assert pooled < 1e-6 and result["p"] > 0.3
    assert result["per_seed"] == pytest.approx(shifts, abs=0.003)
    assert result["mean"] == pytest.approx(np.mean(result["per_seed"]))
    assert result["ci"] == pytest.approx(confidence_interval(result["per_seed"])[1])
    assert "per-seed" in result["test"]
    one = paired_over_seeds([base[0] + 0.05 + rng.normal(0, 0.01, 400)], [base[0]])
    assert one["seeds"] == 1 and one["p"] < 1e-10 and "one seed" in one["test"]
    with_nan = paired_over_seeds([np.r_[base[0], np.nan]], [np.r_[base[0], 1.0]])
    assert with_nan["pairs"] == 400
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_model_spec_grid_is_every_combination():
    spec = ModelSpec("ALS", "ALS", params={"iterations": 3}, grid={"factors": [8, 16], "alpha": [1.0, 2.0]})
    assert len(spec.candidates()) == 4
    assert {"iterations": 3, "factors": 16, "alpha": 1.0} in spec.candidates()
    with pytest.raises(DataError, match="non-empty list"):
        ModelSpec("x", "EASE", grid={"l2": 3.0})
    with pytest.raises(DataError, match="both fixed and in the grid"):
        ModelSpec("x", "EASE", params={"l2": 1.0}, grid={"l2": [3.0]})


def test_none_in_a_benchmark_file_is_none_where_the_field_takes_it(tmp_path):
    # TOML has no null: focal_alpha = "none" means no class weighting (plain binary cross-entropy)
    text = ("dataset = 'x'\n[[models]]\nmodel = 'VASP'\nparams = { focal_alpha = 'none', focal_gamma = 0.0 }\n"
            "[[models]]\nmodel = 'FLVAE'\ngrid = { focal_alpha = ['None', 0.25] }\n"
            "[[models]]\nmodel = 'EASE'\nparams = { name = 'none' }\n")
    vasp, flvae, ease = load_benchmark(write(tmp_path, text)).models
    assert vasp.params == {"focal_alpha": None, "focal_gamma": 0.0}
    assert [c["focal_alpha"] for c in flvae.candidates()] == [None, 0.25]
    assert ease.params == {"name": "none"}  # not a config field that takes None: left as written


def test_a_search_that_gives_models_unequal_budgets_must_say_why(tmp_path):
    text = ("dataset = 'x'\n[search]\ntrials = 5\n[[models]]\nmodel = 'EASE'\nsearch = { l2 = { low = 1.0, high = 1e4 } }\n"
            "[[models]]\nmodel = 'ALS'\nparams = { factors = 64 }\n[[models]]\nmodel = 'Popularity'\n")
    with pytest.raises(DataError, match=r"model 'ALS' keeps one hand-chosen setting \(1 fit\) where \[search\] gives "
                                        r"the others 5 trials"):
        load_benchmark(write(tmp_path, text))  # Popularity, with nothing to tune, needs no reason
    said = load_benchmark(write(tmp_path, text.replace("factors = 64 }\n", "factors = 64 }\nwhy = 'the paper'\n")))
    assert said.models[1].why == "the paper"
    assert load_benchmark(write(tmp_path, text.replace("params = { factors = 64 }", "grid = { factors = [8, 16] }")))


@pytest.mark.parametrize("text, message", [
    ("dataset = 'x'\n[[models]]\nmodel = 'EASE'\nbogus = 1\n", "model entry 1"),
    ("dataset = 'x'\ncolour = 'red'\n", "unknown field"),
    ("dataset = 'x'\n[split]\nheldout = 3\n", r"unknown \[split\]"),
    ("dataset = = 'x'", "not valid TOML"),
    ("dataset = 'x'\n", "lists no models"),
    ("dataset = 'x'\nmetrics = ['auc@3']\n[[models]]\nmodel = 'EASE'\n", "unknown metric"),
    ("dataset = 'x'\n[[models]]\nmodel = 'EASE'\nauto_beta = true\n", "MultVAE only"),
    ("dataset = 'x'\n[[models]]\nmodel = 'MultVAE'\nauto_beta = true\nparams = { beta_cap = 0.3 }\n", "auto_beta chooses"),
    ("dataset = 'x'\n[[models]]\nmodel = 'MultVAE'\nauto_beta = 'yes'\n", "true or false"),
])
def test_bad_benchmark_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_benchmark(write(tmp_path, text))


def test_missing_file_and_unknown_selection(tmp_path):
    with pytest.raises(DataError, match="no such benchmark file"):
        load_benchmark(tmp_path / "nope.toml")
    config = load_benchmark(write(tmp_path, BENCHMARK))
    with pytest.raises(DataError, match="unknown model"):
        config.select(["EASE", "SVD"])
    with pytest.raises(TypeError, match="config must be a BenchmarkConfig, not str .*load_benchmark"):
        benchmark(str(tmp_path / "bench.toml"), out=tmp_path / "out")  # was "'str' object has no attribute 'dataset'"
    assert not (tmp_path / "out").exists()


def test_unknown_model_or_bad_hyperparameter_fails_before_training(tmp_path):
    config = load_benchmark(write(tmp_path, BENCHMARK.replace('model = "EASE"', 'model = "EAZE"')))
    with pytest.raises(DataError, match="unknown model 'EAZE'"):
        benchmark(config, tmp_path / "out", progress=False)
    config = load_benchmark(write(tmp_path, BENCHMARK.replace("epochs = 3", "epochs = 0")))
    with pytest.raises(DataError, match="bad hyperparameters"):
        benchmark(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "tiny").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    config = load_benchmark(write(tmp, BENCHMARK))
    result, folder = benchmark(config, tmp / "results", progress=False, command="pytest")
    return config, result, folder


def test_every_model_runs_on_every_seed(finished):
    config, result, _ = finished
    assert [(r.name, r.seed) for r in result.runs] == [
        (m.name, s) for s in config.split_seeds() for m in config.models
    ]
    assert config.split_seeds() == [98765, 98766]


def test_grid_point_is_chosen_on_validation_and_test_is_scored_with_it(finished):
    config, result, _ = finished
    for run in result.runs_of("EASE"):
        scores = [t[f"val_{config.selection_metric}"] for t in run.tuning]
        assert len(scores) == 3
        assert run.params == run.tuning[int(np.argmax(scores))]["params"]
        # the test figure is what the chosen setting gives on that seed's split, computed independently
        split, _ = prepare_split(config.data, SplitSpec(protocol="strong", heldout_users=80, seed=run.seed))
        again = evaluate(EASE(**run.params).fit(split.train), split.test, ("ndcg@50",))
        assert run.summary["ndcg@50"] == pytest.approx(again.mean("ndcg@50"))
        assert np.allclose(run.per_user["ndcg@50"], again.per_user["ndcg@50"], equal_nan=True)


def test_report_files_hold_the_same_numbers(finished):
    config, result, folder = finished
    for name in ("results.md", "results.csv", "runs.csv", "results.json", "metrics_at_k.png", "training_VAE.png"):
        assert (folder / name).stat().st_size > 0, name
    payload = json.loads((folder / "results.json").read_text())
    assert payload["command"] == "pytest" and payload["environment"]["packages"]["torch"]
    ease = next(r for r in payload["summary"] if r["model"] == "EASE")
    values = [r.summary["ndcg@50"] for r in result.runs_of("EASE")]
    assert ease["ndcg@50"] == pytest.approx(np.mean(values))
    assert ease["ndcg@50_ci95"] == pytest.approx(confidence_interval(values)[1])
    assert len(payload["curves"]["EASE"]["ndcg"]) == 100
    best = payload["paired"]["best"]
    assert best not in payload["paired"]["models"]
    assert set(payload["paired"]["models"]) == {"EASE", "VAE", "VAE-auto", "Popularity"} - {best}
    some = next(iter(payload["paired"]["models"].values()))["ndcg@50"]
    assert some["seeds"] == 2 and len(some["per_seed"]) == 2 and "per-seed" in some["test"]
    text = (folder / "results.md").read_text()
    assert "Popularity" in text and "the unit is the seed" in text and "over the 2 split seeds" in text
    assert "Recall@K divides a user's hits in the top K by min(K, test items)" in text
    table = pd.read_csv(folder / "results.csv").set_index("model")
    choices = json.loads(table.loc["EASE", "choices"])  # JSON once, not JSON inside JSON
    assert sum(len(c["seeds"]) for c in choices) == 2 and all(isinstance(c["params"]["l2"], float) for c in choices)
    assert json.loads(table.loc["EASE", "params"]) == choices[0]["params"]
    assert table.loc["EASE", "tuned"] and not table.loc["VAE", "tuned"] and table.loc["VAE-auto", "tuned"]
    rows = {}
    for line in text.splitlines():  # the results table comes first, the paired table after it
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert "| chosen: l2=" in rows["EASE"] and "| fixed: " in rows["VAE"] and "| fixed: -" in rows["Popularity"]


def test_popularity_is_clearly_beaten(finished):
    _, result, _ = finished
    pop = np.mean([r.summary["ndcg@50"] for r in result.runs_of("Popularity")])
    assert np.mean([r.summary["ndcg@50"] for r in result.runs_of("EASE")]) > pop + 0.05


def test_missing_recbole_is_one_line_not_a_failure(tmp_path, monkeypatch):
    import recvae.models.recbole as adapter

    monkeypatch.setattr(adapter, "recbole_missing", lambda: "RecBole is not installed (test)")
    text = BENCHMARK.replace("seeds = 2", "seeds = 1") + '\n[[models]]\nname = "RB"\nmodel = "recbole:MultiVAE"\n'
    config = load_benchmark(write(tmp_path, text)).select(["Popularity", "RB"])
    result, folder = benchmark(config, tmp_path / "out", progress=False)
    assert result.skipped == {"RB": "RecBole is not installed (test)"}
    assert result.model_names == ["Popularity"]
    assert "Not run: RB (RecBole is not installed (test))" in (folder / "results.md").read_text()


def test_auto_beta_model_is_tested_with_the_beta_it_chose(finished):
    config, result, folder = finished
    for run in result.runs_of("VAE-auto"):
        chosen = run.auto_beta
        peak = max(chosen["curve"], key=lambda r: r[config.selection_metric])
        assert chosen["beta"] == peak["beta"] and run.params["beta_cap"] == chosen["beta"]
        assert run.params["total_anneal_steps"] == chosen["total_anneal_steps"]
        assert max(r["beta"] for r in run.history) <= chosen["beta"]
    assert all(r.auto_beta is None for r in result.runs_of("VAE"))
    assert (folder / "auto_beta_VAE-auto.png").stat().st_size > 0
    assert (folder / "diagnostics_VAE.png").stat().st_size > 0
    text = (folder / "results.md").read_text()
    assert "## Auto-β: VAE-auto" in text and f"| 98765 | {result.runs_of('VAE-auto')[0].auto_beta['beta']:.3f} |" in text
    saved = json.loads((folder / "results.json").read_text())["runs"]
    assert [r["auto_beta"]["beta"] for r in saved if r["model"] == "VAE-auto"] == [r.auto_beta["beta"] for r in result.runs_of("VAE-auto")]
    assert all("kl_per_dim" not in h and "active_units" in h for r in saved if r["model"] == "VAE" for h in r["history"])


def test_presplit_benchmarks_default_to_the_lightgcn_recall_and_select_by_the_first_metric(tmp_path):
    from recvae.evaluate import PRESPLIT_METRICS

    text = 'dataset = "p"\n[data]\npath = "{0}"\ntest_path = "{0}"\n[split]\nprotocol = "presplit"\n[[models]]\nmodel = "EASE"\n'
    (tmp_path / "log.csv").write_text("user,item\n1,2\n")
    config = load_benchmark(write(tmp_path, text.format(tmp_path / "log.csv")))
    assert config.metrics == PRESPLIT_METRICS == ("recall_full@20", "ndcg@20")
    assert config.selection_metric == "recall_full@20"
    strong = load_benchmark(write(tmp_path, BENCHMARK.replace('metrics = ["ndcg@50", "recall@20"]\n', "")))
    assert strong.metrics == ("ndcg@100", "recall@20", "recall@50") and strong.selection_metric == "ndcg@100"
    with pytest.raises(DataError, match="metrics must be a non-empty list"):
        load_benchmark(write(tmp_path, BENCHMARK.replace('metrics = ["ndcg@50", "recall@20"]', "metrics = []")))


def test_presplit_protocol_tunes_on_users_carved_from_training(tmp_path):
    from recvae.data import SyntheticLog, generate_log

    log = generate_log(SyntheticLog(n_users=300, n_items=80, seed=5))
    train = log.sample(frac=0.8, random_state=0)
    test = log.drop(train.index)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    config = BenchmarkConfig(
        dataset="pre", seeds=1, metrics=("recall@20", "ndcg@20"), selection_metric="ndcg@20",
        data=DataSpec(path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv")),
        split=SplitSpec(protocol="presplit"),
        models=(ModelSpec("EASE", "EASE", grid={"l2": [10.0, 100.0]}),
                ModelSpec("VAE", "MultVAE", params={"epochs": 4, "batch_size": 50})),
    )
    result, folder = benchmark(config, tmp_path / "out", progress=False)
    ease, vae = result.runs
    assert len(ease.tuning) == 2 and ease.params in [t["params"] for t in ease.tuning]
    assert 1 <= len(vae.history) <= 4  # the refit on all training users keeps the epoch validation chose
    assert (folder / "results.md").exists()


def test_cli_benchmark(tmp_path, capsys):
    path = write(tmp_path, BENCHMARK)
    out = tmp_path / "results"
    assert main(["benchmark", str(path), "--seeds", "1", "--models", "EASE,Popularity", "--out", str(out),
                 "--no-tracking", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| EASE |" in printed and "Paired comparison" in printed
    assert json.loads((out / "tiny" / "results.json").read_text())["config"]["seeds"] == 1
    one = (out / "tiny" / "results.md").read_text()
    assert "split seed 98765." in one and "One split seed: no interval" in one and "1 split seeds" not in one
    assert "over the test users of one seed" in one
    assert main(["benchmark", str(path), "--models", "SVD", "--no-tracking"]) == 2
    assert "unknown model" in capsys.readouterr().err
    report = (out / "tiny" / "results.md").read_text()
    again = ["benchmark", str(path), "--seeds", "1", "--models", "Popularity", "--out", str(out), "--no-tracking", "-q"]
    assert main(again) == 2  # an existing report is not overwritten without --force, and nothing ran
    assert "--force" in capsys.readouterr().err and (out / "tiny" / "results.md").read_text() == report
    assert main(again + ["--force"]) == 0 and "| EASE |" not in (out / "tiny" / "results.md").read_text()


def test_benchmark_writes_outside_the_source_tree_by_default(tmp_path, monkeypatch):
    from recvae.benchmark import DEFAULT_OUT
    from recvae.cli import build_parser

    args = build_parser().parse_args(["benchmark", "x.toml"])
    assert args.out == DEFAULT_OUT == "benchmark-results" and not args.out.startswith("evaluation")


def test_a_missing_data_file_is_named_with_its_key_and_the_way_out(tmp_path):
    path = write(tmp_path, BENCHMARK.replace("[data.synthetic]", '[data]\npath = "nowhere/ratings.csv"\n\n[data.synthetic]'))
    with pytest.raises(DataError, match=r"nowhere/ratings.csv: no such file \(\[data\] path in .*\(data_path=PATH\).*recvae download"):
        load_benchmark(path)


def test_models_pick_their_epoch_by_the_benchmarks_selection_metric(small_split):
    from recvae.benchmark.runner import _fit, build_model

    spec = ModelSpec("VAE", "MultVAE", params={"epochs": 2, "batch_size": 200, "hidden_dims": []})
    model = build_model(spec, spec.params, "ndcg@20")
    assert model.config.validation_metric == "ndcg@20"
    _fit(model, small_split.train, small_split.validation, lambda record: None)
    assert all("val_ndcg@20" in record for record in model.history_)  # what the refit's epoch count is read from
    assert build_model(spec, {**spec.params, "validation_metric": "recall@50"}, "ndcg@20").config.validation_metric == "recall@50"
    assert build_model(ModelSpec("E", "EASE"), {}, "ndcg@20").get_params()["l2"] == 500.0  # no epochs: untouched


@pytest.mark.parametrize("field, value, words", [
    ("dataset", '"../../x"', "dataset '../../x': the results folder's name"),
    ("dataset", '"a/b"', "use letters, digits"),
    ("seeds", '"three"', "seeds must be a whole number"),
    ("seeds", "0", "seeds must be a whole number"),
])
def test_bad_top_level_fields_are_refused_naming_the_file(tmp_path, field, value, words):
    text = "\n".join(line for line in BENCHMARK.splitlines() if not line.startswith(f"{field} ="))
    path = write(tmp_path, f"{field} = {value}\n" + text)
    with pytest.raises(DataError, match=str(path)) as error:
        load_benchmark(path)
    assert words in str(error.value)


def test_a_killed_benchmark_leaves_its_report_and_resumes_without_repeating_runs(tmp_path, monkeypatch):
    import recvae.benchmark.runner as runner

    config = load_benchmark(write(tmp_path, BENCHMARK)).select(["EASE", "Popularity"])
    real, calls = runner.run_model, []

    def dies_on_the_third(spec, split, seed, *args, **kwargs):
        calls.append((spec.name, seed))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, split, seed, *args, **kwargs)

    monkeypatch.setattr(runner, "run_model", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        benchmark(config, tmp_path / "out", progress=False)
    partial = (tmp_path / "out" / "tiny" / "results.md").read_text()
    assert partial.startswith("**Partial: 2 of 4 (model, seed) runs finished") and "| EASE |" in partial
    with pytest.raises(DataError, match="resume=True to finish it"):
        benchmark(config, tmp_path / "out", progress=False)

    calls.clear()
    monkeypatch.setattr(runner, "run_model", lambda spec, split, seed, *a, **k: calls.append((spec.name, seed)) or real(
        spec, split, seed, *a, **k))
    resumed, _ = benchmark(config, tmp_path / "out", progress=False, resume=True)
    first_seed = config.split_seeds()[0]
    assert (("EASE", first_seed) not in calls and ("Popularity", first_seed) not in calls and len(calls) == 2)
    fresh, _ = benchmark(config, tmp_path / "fresh", progress=False)
    assert [(r.name, r.seed, r.summary) for r in resumed.runs] == [(r.name, r.seed, r.summary) for r in fresh.runs]
    assert not (tmp_path / "out" / "tiny" / "results.md").read_text().startswith("**Partial")


NAMED = """dataset = "tiny"
seeds = 1
[data.synthetic]
n_users = 150
n_items = 40
[split]
heldout_users = 15
[[models]]
name = "Pop/A"
model = "Popularity"
[[models]]
name = "Pop_A"
model = "Popularity"
[[models]]
name = "EASE 1.5"
model = "EASE"
params = { l2 = 1.5 }
[[models]]
name = "EASE 1.9"
model = "EASE"
params = { l2 = 1900.0 }
[[models]]
name = "x/../y"
model = "Popularity"
"""


def test_model_names_become_distinct_file_names_and_resume_finds_each(tmp_path):
    from recvae.io import file_stem

    config = load_benchmark(write(tmp_path, NAMED))
    result, _ = benchmark(config, tmp_path / "out", progress=False)
    runs = sorted(p.name for p in (tmp_path / "out" / "tiny" / "runs").glob("*.json") if p.name != "benchmark.json")
    assert len(runs) == 5 and all("/" not in r and r.count(".") == 1 for r in runs)
    assert len({file_stem(n) for n in ("Pop/A", "Pop_A", "EASE 1.5", "EASE 1.9", "x/../y")}) == 5
    resumed, _ = benchmark(config, tmp_path / "out", progress=False, resume=True)
    assert {r.name: r.summary for r in resumed.runs} == {r.name: r.summary for r in result.runs}
    by_name = {r.name: r.params for r in resumed.runs}
    assert by_name["EASE 1.5"]["l2"] == 1.5 and by_name["EASE 1.9"]["l2"] == 1900.0


def test_a_resumed_run_runs_an_entry_again_whose_settings_changed(tmp_path, caplog):
    config = load_benchmark(write(tmp_path, NAMED))
    first, _ = benchmark(config, tmp_path / "out", progress=False)
    changed = load_benchmark(write(tmp_path, NAMED.replace("l2 = 1900.0", "l2 = 30.0"), "changed.toml"))
    with caplog.at_level("WARNING"):
        resumed, _ = benchmark(changed, tmp_path / "out", progress=False, resume=True)
    assert "entries changed since their runs, run again: EASE 1.9" in caplog.text
    by_name, before = {r.name: r for r in resumed.runs}, {r.name: r for r in first.runs}
    assert by_name["EASE 1.9"].params["l2"] == 30.0 and by_name["EASE 1.9"].summary != before["EASE 1.9"].summary
    fresh, _ = benchmark(changed, tmp_path / "fresh", progress=False)
    assert {r.name: r.summary for r in resumed.runs} == {r.name: r.summary for r in fresh.runs}
    caplog.clear()  # a second resume keeps the new entry's runs: the record is the file as it is now
    again, _ = benchmark(changed, tmp_path / "out", progress=False, resume=True)
    assert "run again" not in caplog.text and {r.name: r.summary for r in again.runs} == {r.name: r.summary for r in fresh.runs}


def test_a_larger_search_budget_continues_the_studies_it_cut_short_and_keeps_the_others(tmp_path, caplog):
    """A resume under more trials or seconds continues, from their database, the studies that ended before the
    new budget and runs those entries again; an entry whose study already had its budget keeps its runs; a
    smaller budget, or another search, is refused as another config."""
    import optuna

    from recvae.tune import sqlite_url

    text = SEARCHED.replace("trials = 3", "trials = 2\ntimeout = 600") + """
[[models]]
name = "EASE-grid"
model = "EASE"
search = { l2 = [10.0, 1000.0] }
"""
    config = load_benchmark(write(tmp_path, text))
    first, folder = benchmark(config, tmp_path / "out", progress=False)
    kept = {p.name: p.read_text() for p in (folder / "runs").glob("*.json") if p.name.startswith(("EASE-grid", "Popularity"))}
    name = f"tiny/EASE/seed {config.split_seeds()[0]}"
    before = [t.params for t in optuna.load_study(study_name=name, storage=sqlite_url(folder / "studies.db")).trials]
    more = load_benchmark(write(tmp_path, text.replace("trials = 2\ntimeout = 600", "trials = 4\ntimeout = 900"),
                                "more.toml"))
    with caplog.at_level("WARNING"):
        resumed, _ = benchmark(more, tmp_path / "out", progress=False, resume=True)
    assert "search budget grew (2 trials or 600 s → 4 trials or 900 s)" in caplog.text
    assert "their entries run again: EASE\n" in caplog.text + "\n"
    after = [t.params for t in optuna.load_study(study_name=name, storage=sqlite_url(folder / "studies.db")).trials]
    assert len(before) == 2 and len(after) == 4 and after[:2] == before  # continued, not started over
    by_seed = {(r.name, r.seed): r for r in resumed.runs}
    assert len(by_seed[("EASE", config.split_seeds()[0])].tuning) == 4 and len(resumed.runs) == 6
    assert {p.name: p.read_text() for p in (folder / "runs").glob("*.json") if p.name.startswith(("EASE-grid", "Popularity"))} == kept
    assert len(kept) == 4 and json.loads((folder / "runs" / "benchmark.json").read_text())["search"]["timeout"] == 900
    # a resume of a subset: an entry left out whose study was cut short loses its runs (they would stand under a
    # budget they did not have); a left-out grid that had all its settings, and popularity (no study), keep theirs
    benchmark(config, tmp_path / "sub", progress=False)
    benchmark(more.select(["Popularity"]), tmp_path / "sub", progress=False, resume=True)
    left = sorted(p.name.split("_seed")[0] for p in (tmp_path / "sub" / "tiny" / "runs").glob("*.json"))
    assert left == ["EASE-grid", "EASE-grid", "Popularity", "Popularity", "benchmark.json"]
    # more trials under the same seconds: a study whose trials took its seconds runs none, so its entry keeps its runs
    benchmark(config, tmp_path / "spent", progress=False)
    spent = tmp_path / "spent" / "tiny" / "runs"
    for path in spent.glob("EASE_seed*.json"):
        fields = json.loads(path.read_text())
        path.write_text(json.dumps({**fields, "tuning": [{**t, "seconds": 300.0} for t in fields["tuning"]]}))
    kept = {p.name: p.read_text() for p in spent.glob("*.json") if p.name != "benchmark.json"}
    caplog.clear()
    with caplog.at_level("WARNING"):
        benchmark(load_benchmark(write(tmp_path, text.replace("trials = 2", "trials = 4"), "trials.toml")),
                  tmp_path / "spent", progress=False, resume=True)
    assert "their entries run again: none" in caplog.text
    assert {p.name: p.read_text() for p in spent.glob("*.json") if p.name != "benchmark.json"} == kept
    for smaller in ("trials = 3\ntimeout = 900", "trials = 4\ntimeout = 60", "trials = 4\ntimeout = 900\npruner = 'none'"):
        with pytest.raises(DataError, match="another benchmark config"):
            benchmark(load_benchmark(write(tmp_path, text.replace("trials = 2\ntimeout = 600", smaller), "less.toml")),
                      tmp_path / "out", progress=False, resume=True)


def test_names_that_differ_only_in_case_are_refused_before_any_work(tmp_path):
    text = NAMED.replace('name = "Pop_A"', 'name = "pop/a"')
    with pytest.raises(DataError, match="'Pop/A' and 'pop/a' differ only in case"):
        load_benchmark(write(tmp_path, text))


def test_a_cvae_reads_the_users_table_and_the_others_do_not(tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user,band\n" + "".join(f"u{u:05d},{'abc'[u % 3]}\n" for u in range(700)))
    text = BENCHMARK.replace("[data.synthetic]", f"[data]\nuser_features = {str(users)!r}\n\n[data.synthetic]")
    text = text.split("[[models]]")[0] + """
[[models]]
name = "CVAE"
model = "CVAE"
params = { epochs = 3, batch_size = 100, hidden_dims = [] }

[[models]]
name = "Popularity"
model = "Popularity"
"""
    config = load_benchmark(write(tmp_path, text))
    result, _ = benchmark(config, tmp_path / "out", progress=False)
    cvae = [r for r in result.runs if r.name == "CVAE"]
    assert len(cvae) == 2 and all(r.params["conditions"] == 5 for r in cvae)  # a, b, c, other, missing
    assert all(np.isfinite(r.summary["ndcg@50"]) for r in result.runs)
    with pytest.raises(DataError, match="users' side table"):
        load_benchmark(write(tmp_path, text.replace(f"user_features = {str(users)!r}", ""), "no-table.toml"))
    with pytest.raises(DataError, match="leave it out"):
        load_benchmark(write(tmp_path, text.replace("hidden_dims = [] }", "hidden_dims = [], conditions = 5 }"),
                             "fixed.toml"))


def test_a_resumed_run_may_name_a_users_table_for_added_cvae_entries_but_not_replace_one(tmp_path):
    import json

    plain = NAMED.split("[[models]]")[0] + '[[models]]\nname = "Popularity"\nmodel = "Popularity"\n'
    benchmark(load_benchmark(write(tmp_path, plain)), tmp_path / "out", progress=False)
    identity = tmp_path / "out" / "tiny" / "runs" / "benchmark.json"
    recorded = json.loads(identity.read_text())
    recorded["data"].pop("user_features")  # as written before the field existed
    identity.write_text(json.dumps(recorded))
    tables = []
    for name in ("users.csv", "other.csv"):
        tables.append(tmp_path / name)
        tables[-1].write_text("user,band\n" + "".join(f"u{u:05d},{'ab'[u % 2]}\n" for u in range(150)))
    added = plain.replace("[data.synthetic]", f"[data]\nuser_features = {str(tables[0])!r}\n[data.synthetic]") + (
        '[[models]]\nname = "CVAE"\nmodel = "CVAE"\nparams = { epochs = 2, batch_size = 50, hidden_dims = [] }\n')
    resumed, _ = benchmark(load_benchmark(write(tmp_path, added)), tmp_path / "out", progress=False, resume=True)
    assert [r.name for r in resumed.runs] == ["Popularity", "CVAE"]
    recorded = json.loads(identity.read_text())
    recorded["data"]["user_features"] = str(tables[0])  # a table named once may not be replaced
    identity.write_text(json.dumps(recorded))
    with pytest.raises(DataError, match="another benchmark config"):
        benchmark(load_benchmark(write(tmp_path, added.replace(str(tables[0]), str(tables[1])))), tmp_path / "out",
                  progress=False, resume=True)


def _items_table(folder):
    """The synthetic log's 150 items with one or two of four genres each."""
    items = folder / "items.csv"
    items.write_text("item,genres\n" + "".join(f"i{i:05d},{['Drama|Comedy', 'Action', 'Horror'][i % 3]}\n"
                                               for i in range(150)))
    return items


def test_entries_that_ask_read_the_items_table_in_every_fit_and_the_others_do_not(tmp_path, monkeypatch):
    from recvae.benchmark import runner
    from recvae.train import fit_model

    items = _items_table(tmp_path)
    head = BENCHMARK.split("[[models]]")[0]
    text = head.replace("[data.synthetic]", f"[data]\nitem_features = {str(items)!r}\n\n[data.synthetic]") + """
[search]
trials = 2

[[models]]
name = "VAE-items"
model = "MultVAE"
item_features = true
params = { epochs = 2, batch_size = 100, hidden_dims = [] }
search = { dropout = { low = 0.2, high = 0.6 } }

[[models]]
name = "VAE"
model = "MultVAE"
params = { epochs = 2, batch_size = 100, hidden_dims = [] }
search = { dropout = { low = 0.2, high = 0.6 } }
"""
    fits = []

    def recording(model, *args, item_features=None, **kwargs):
        fits.append(None if item_features is None else item_features.shape)
        return fit_model(model, *args, item_features=item_features, **kwargs)

    monkeypatch.setattr(runner, "fit_model", recording)
    monkeypatch.setattr("recvae.tune.study.fit_model", recording)
    result, _ = benchmark(load_benchmark(write(tmp_path, text)), tmp_path / "out", progress=False)
    widths = {(r.name, r.seed): r.params.get("item_feature_width") for r in result.runs}
    assert sorted(set(widths.values()), key=str) == [4 + 1, None]  # four genres and "missing"
    assert all((width is None) == (name == "VAE") for (name, _), width in widths.items())
    # per seed and entry: 2 trials on the first seed, its choice fitted once on the second; only VAE-items read it
    assert sorted(fits, key=str) == [(150, 5)] * 3 + [None] * 3 and len(result.runs) == 4
    refused = {'item_features = true\nparams = { epochs = 2,': ("item_features = true\nparams = { item_feature_width = 5,",
                                                                "leave it out"),
               'model = "MultVAE"\nitem_features = true': ('model = "EASE"\nitem_features = true', "not 'EASE'"),
               f"item_features = {str(items)!r}": ("", "name the items' side table"),
               "item_features = true\n": ("", "read by no model")}
    for (old, (new, words)), name in zip(refused.items(), "abcd"):
        with pytest.raises(DataError, match=words):
            load_benchmark(write(tmp_path, text.replace(old, new), f"{name}.toml"))


SEARCHED = BENCHMARK.split("[[models]]")[0] + """
[search]
trials = 3

[[models]]
name = "EASE"
model = "EASE"
search = { l2 = { low = 1.0, high = 1e4, log = true } }

[[models]]
name = "Popularity"
model = "Popularity"
"""


def test_parallel_model_subsets_merge_into_the_report_one_process_writes(tmp_path, monkeypatch, capsys):
    """Two processes run --models subsets of one file into two folders; --merge takes their runs and studies
    into a third without fitting anything, and its report and studies equal one process's run of the whole."""
    import shutil

    import optuna

    import recvae.benchmark.runner as runner
    from recvae.tune import sqlite_url

    path = write(tmp_path, SEARCHED)
    config = load_benchmark(path)
    whole, _ = benchmark(config, tmp_path / "whole", progress=False)
    benchmark(config.select(["EASE"]), tmp_path / "a", progress=False)
    benchmark(config.select(["Popularity"]), tmp_path / "b", progress=False)

    real = runner.run_model
    monkeypatch.setattr(runner, "run_model", lambda *a, **k: pytest.fail("a merge fitted a model"))
    one, folder = benchmark(config, tmp_path / "c", progress=False, merge=[tmp_path / "a"])
    assert [r.name for r in one.runs] == ["EASE", "EASE"]
    assert (folder / "results.md").read_text().startswith("**Partial: 2 of 4 (model, seed) runs")
    assert main(["benchmark", str(path), "--out", str(tmp_path / "c"), "--merge", str(tmp_path / "b" / "tiny"),
                 "--no-tracking", "-q"]) == 0  # a folder given as itself or as its --out
    assert not (folder / "results.md").read_text().startswith("**Partial")
    capsys.readouterr()
    merged, _ = benchmark(config, tmp_path / "c", progress=False, resume=True)  # nothing left to run
    assert [(r.name, r.seed, r.summary, r.params) for r in merged.runs] == [
        (r.name, r.seed, r.summary, r.params) for r in whole.runs]
    trials = {}
    for where in ("whole", "c"):
        storage = sqlite_url(tmp_path / where / "tiny" / "studies.db")
        trials[where] = {name: [(t.params, t.value) for t in optuna.load_study(study_name=name, storage=storage).trials]
                         for name in optuna.get_all_study_names(storage)}
    assert trials["c"] == trials["whole"] and len(trials["c"]) == 1

    monkeypatch.setattr(runner, "run_model", real)
    shutil.copytree(tmp_path / "b", tmp_path / "b2")
    altered = next((tmp_path / "b2" / "tiny" / "runs").glob("Popularity_seed*.json"))
    fields = json.loads(altered.read_text())
    fields["summary"]["ndcg@50"] += 0.01
    altered.write_text(json.dumps(fields))
    before = {p.name: p.read_bytes() for p in (folder / "runs").iterdir()}
    for sources, words in (([tmp_path / "b2"], "differs from the run in"), ([tmp_path / "c"], "is the output folder itself"),
                           ([tmp_path / "nowhere"], "no finished runs of tiny there")):
        with pytest.raises(DataError, match=words):
            benchmark(config, tmp_path / "c", progress=False, merge=sources)
    assert {p.name: p.read_bytes() for p in (folder / "runs").iterdir()} == before


def test_a_second_sampler_seed_searches_the_same_studies_along_another_path(tmp_path):
    text = ("dataset = 'x'\n[search]\ntrials = 5\nseed = 1\n[[models]]\nmodel = 'EASE'\n"
            "search = { l2 = { low = 1.0, high = 1e4 } }\n")
    assert load_benchmark(write(tmp_path, text)).search.seed == 1
    assert load_benchmark(write(tmp_path, text), sampler_seed=7).search.seed == 7
    with pytest.raises(DataError, match="no \\[search\\]"):
        load_benchmark(write(tmp_path, "dataset = 'x'\n[[models]]\nmodel = 'EASE'\n", "plain.toml"), sampler_seed=7)


def test_split_cold_items_ranks_the_cold_items_as_recvae_train_does_with_the_content_baseline(tmp_path):
    """``[split] cold_items``: every entry trains without the cold items and its test users rank them (a CVAE
    reading its users' features); the content baseline and chance once a seed; the numbers are those of the
    cold-item protocol run by hand on the same split."""
    from recvae.evaluate import evaluate_cold_items
    from recvae.data.features import encode_item_table
    from recvae.split.conditioned import cold_items

    items, users = _items_table(tmp_path), tmp_path / "users.csv"
    users.write_text("user,band\n" + "".join(f"u{u:05d},{'abc'[u % 3]}\n" for u in range(700)))
    head = BENCHMARK.split("[[models]]")[0].replace(
        "[data.synthetic]", f"[data]\nitem_features = {str(items)!r}\nuser_features = {str(users)!r}\n\n[data.synthetic]")
    text = head.replace('heldout_users = 80', 'heldout_users = 80\ncold_items = 0.2') + """
[[models]]
name = "EASE"
model = "EASE"
params = { l2 = 30.0 }

[[models]]
name = "VAE-items"
model = "MultVAE"
item_features = true
params = { epochs = 2, batch_size = 100, hidden_dims = [] }

[[models]]
name = "CVAE-items"
model = "CVAE"
item_features = true
params = { epochs = 2, batch_size = 100, hidden_dims = [] }
"""
    config = load_benchmark(write(tmp_path, text))
    result, folder = benchmark(config, tmp_path / "out", progress=False)
    assert all(set(r.cold_items) == {"ndcg@20", "ndcg@20_se", "recall@20", "recall@20_se"} for r in result.runs)
    seed = config.split_seeds()[0]
    split, _ = prepare_split(config.data, SplitSpec(protocol="strong", heldout_users=80, seed=seed))
    cold = cold_items(split, 0.2, seed)
    features, _ = encode_item_table(str(items), split.items)
    by_hand = evaluate_cold_items(EASE(l2=30.0).fit(cold.split.train), cold, features, seed=seed)
    ease = next(r for r in result.runs if r.name == "EASE" and r.seed == seed)
    assert ease.cold_items == pytest.approx(by_hand["EASE"].summary())
    for name in ("content similarity", "random"):
        assert result.cold_baselines[seed][name] == pytest.approx(by_hand[name].summary())
    # the warm table is the cold split's: EASE's test users score on their warm items
    assert ease.summary == pytest.approx(evaluate(EASE(l2=30.0).fit(cold.split.train), cold.split.test,
                                                  config.metrics).summary())
    report = (folder / "results.md").read_text()
    assert "Cold items: 20% of the items" in report and "| content similarity |" in report
    payload = json.loads((folder / "results.json").read_text())
    assert set(payload["cold_items"]["summary"]) == {"EASE", "VAE-items", "CVAE-items", "content similarity", "random"}
    with pytest.raises(DataError, match=r"\[data\] item_features"):
        no_table = text.replace(f"item_features = {str(items)!r}\n", "").replace("item_features = true\n", "")
        load_benchmark(write(tmp_path, no_table, "no-items.toml"))

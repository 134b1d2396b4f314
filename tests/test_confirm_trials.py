"""scripts/confirm_trials.py: each search's best trials fitted on every seed, and what choosing among them gives."""

import importlib.util
import json
from pathlib import Path

import pytest

from recvae.cli import main as recvae

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "confirm_trials.py"
spec = importlib.util.spec_from_file_location("confirm_trials", SCRIPT)
confirm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confirm)


def _rows(search: str, values: dict[int, list[tuple[float, float]]]) -> list[dict]:
    """Rows of one search: rank -> [(validation, test) per seed]."""
    return [{"search": search, "rank": rank, "seed": seed, "val": val, "test": test}
            for rank, fits in values.items() for seed, (val, test) in enumerate(fits)]


def test_choosing_among_the_top_trials_per_seed_and_pooled():
    rows = _rows("first", {1: [(0.50, 0.40), (0.30, 0.30)], 2: [(0.45, 0.45), (0.40, 0.35)]})
    k1, k2 = confirm.choices(rows, "first", [0, 1], top=2)
    assert k1["per_seed"] == [0.40, 0.30] and k1["pooled"] == [0.40, 0.30]
    assert k2["per_seed"] == [0.40, 0.35]  # seed 0 keeps rank 1 (0.50 > 0.45), seed 1 takes rank 2 (0.40 > 0.30)
    assert k2["pooled_rank"] == 2 and k2["pooled"] == [0.45, 0.35]  # validation means 0.40 against 0.425


def test_top_trials_leave_out_pruned_and_failed_ones_and_rank_by_validation():
    tuning = [{"params": {"a": 1}, "val_ndcg@100": 0.3, "state": "complete"},
              {"params": {"a": 2}, "val_ndcg@100": 0.5, "state": "pruned"},
              {"params": {"a": 3}, "val_ndcg@100": None, "state": "fail"},
              {"params": {"a": 4}, "val_ndcg@100": 0.4, "state": "complete"}]
    results = {"dataset": "toy", "splits": {"7": {}, "8": {}},
               "runs": [{"model": "M", "seed": 8, "tuning": []}, {"model": "M", "seed": 7, "tuning": tuning}]}
    assert [t["params"]["a"] for t in confirm.top_trials(results, "M", 3)] == [4, 1]
    with pytest.raises(SystemExit, match="no run of 'N'"):
        confirm.top_trials(results, "N", 3)


def test_the_benchmark_fits_are_reused_only_for_the_same_setting_with_a_history():
    run = {"model": "M", "seed": 1, "params": '{"a": 1}', "ndcg@100": 0.4, "fit_seconds": 2.0,  # as results.json has it
           "history": [{"val_ndcg@100": 0.41}, {"val_ndcg@100": 0.45}, {}]}
    results = {"runs": [run]}
    assert confirm.benchmark_fits(results, "M", {"a": 1}) == {1: {"val": 0.45, "test": 0.4, "seconds": 2.0, "from": "benchmark"}}
    assert confirm.benchmark_fits(results, "M", {"a": 2}) is None
    assert confirm.benchmark_fits({"runs": [{**run, "history": []}]}, "M", {"a": 1}) is None


def test_two_searches_of_a_small_benchmark_are_confirmed_and_continued(tmp_path, small_log_file, capsys):
    bench = tmp_path / "toy.toml"
    bench.write_text(f'''dataset = "toy"
seeds = 2
[search]
trials = 4
[data]
path = "{small_log_file}"
[split]
protocol = "strong"
heldout_users = 40
[[models]]
name = "EASE"
model = "EASE"
search = {{ l2 = {{ low = 1.0, high = 1e4, log = true }} }}
''')
    for seed, folder in ((1, "first"), (2, "second")):
        assert recvae(["benchmark", str(bench), "--sampler-seed", str(seed), "--out", str(tmp_path / folder),
                       "--no-tracking", "-q"]) == 0
    out = tmp_path / "confirmation"
    argv = [str(bench), str(tmp_path / "first" / "toy"), str(tmp_path / "second" / "toy"), "--model", "EASE",
            "--top", "2", "--out", str(out)]
    assert confirm.main(argv) == 0
    rows = json.loads((out / "EASE.json").read_text())["rows"]
    assert len(rows) == 2 * 2 * 2  # searches x trials x seeds
    first = json.loads((tmp_path / "first" / "toy" / "results.json").read_text())
    chosen = {r["seed"]: r["ndcg@100"] for r in first["runs"]}
    assert {r["seed"]: r["test"] for r in rows if r["search"] == "first" and r["rank"] == 1} == pytest.approx(chosen)
    table = (out / "EASE.md").read_text()
    assert "| 1 | " in table and "| 2 | " in table and "Command: `python scripts/confirm_trials.py" in table
    capsys.readouterr()
    assert confirm.main(argv) == 0  # every row kept: nothing fitted again
    assert "validation" not in capsys.readouterr().out.split("# EASE")[0]

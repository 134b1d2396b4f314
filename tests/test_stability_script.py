"""scripts/stability.py: each model's test mean under two searches, against the first run's half-width."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stability.py"
spec = importlib.util.spec_from_file_location("stability", SCRIPT)
stability = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stability)


def _results(folder: Path, sampler_seed: int, rows: dict[str, float], trials: int = 20,
             budget: tuple[int, float | None] = (20, None)) -> Path:
    folder.mkdir(parents=True)
    summary = [{"model": model, "ndcg@100": value, "ndcg@100_ci95": 0.01, "trials": trials}
               for model, value in rows.items()]
    search = {"seed": sampler_seed, "trials": budget[0], "timeout": budget[1]}
    (folder / "results.json").write_text(json.dumps({"dataset": "toy", "config": {"search": search}, "summary": summary}))
    return folder


def test_second_searches_in_several_folders_make_one_table(tmp_path):
    first = _results(tmp_path / "first", 1, {"A": 0.40, "B": 0.30, "C": 0.20})
    fast = _results(tmp_path / "fast", 2, {"A": 0.405})
    slow = _results(tmp_path / "slow", 2, {"B": 0.32, "D": 0.1})  # D has no first search: left out
    assert stability.main([str(first), str(fast), str(slow)]) == 0
    text = (fast / "stability.md").read_text()
    assert "| A | 20 / 20 | 0.4000 | 0.4050 | +0.0050 | 0.0100 | yes |" in text
    assert "| B | 20 / 20 | 0.3000 | 0.3200 | +0.0200 | 0.0100 | **no** |" in text
    assert "| C |" not in text and "| D |" not in text
    assert f"python scripts/stability.py {first} {fast} {slow}" in text


def test_a_search_with_fewer_trials_says_so_and_yields_to_a_longer_one(tmp_path):
    first = _results(tmp_path / "first", 1, {"A": 0.40, "B": 0.30})
    short = _results(tmp_path / "short", 2, {"A": 0.45, "B": 0.305}, trials=4)
    longer = _results(tmp_path / "longer", 2, {"A": 0.405})  # A searched again to 20 trials
    assert stability.main([str(first), str(short), str(longer)]) == 0
    text = (short / "stability.md").read_text()
    assert "| A | 20 / 20 | 0.4000 | 0.4050 | +0.0050 | 0.0100 | yes |" in text
    assert "0.4500" not in text
    assert "| B | 20 / 4 | 0.3000 | 0.3050 | +0.0050 | 0.0100 | yes (unequal trials) |" in text


def test_searches_that_ran_out_of_the_same_seconds_had_one_budget(tmp_path):
    first = _results(tmp_path / "first", 1, {"A": 0.40}, trials=95, budget=(5000, 802.0))
    second = _results(tmp_path / "second", 2, {"A": 0.41}, trials=102, budget=(5000, 802.0))
    assert stability.main([str(first), str(second)]) == 0
    assert "| A | 95 / 102 | 0.4000 | 0.4100 | +0.0100 | 0.0100 | yes |" in (second / "stability.md").read_text()
    # under other seconds, or where a search reached its trial cap, the counts measure unequal budgets
    for name, budget in (("shorter", (5000, 400.0)), ("capped", (102, 802.0))):
        other = _results(tmp_path / name, 2, {"A": 0.41}, trials=102, budget=budget)
        assert stability.main([str(first), str(other)]) == 0
        assert "| A | 95 / 102 | 0.4000 | 0.4100 | +0.0100 | 0.0100 | yes (unequal trials) |" in (other / "stability.md").read_text()


def test_a_model_searched_again_twice_is_refused(tmp_path):
    first = _results(tmp_path / "first", 1, {"A": 0.40})
    one, two = _results(tmp_path / "one", 2, {"A": 0.41}), _results(tmp_path / "two", 2, {"A": 0.42})
    with pytest.raises(SystemExit):
        stability.main([str(first), str(one), str(two)])
    assert not (one / "stability.md").exists()


def test_a_second_search_with_the_first_sampler_seed_is_refused(tmp_path):
    first = _results(tmp_path / "first", 1, {"A": 0.40})
    again = _results(tmp_path / "again", 1, {"A": 0.40})
    with pytest.raises(SystemExit):
        stability.main([str(first), str(again)])
    assert not (again / "stability.md").exists()


def test_the_validation_difference_reads_each_seeds_kept_epoch(tmp_path):
    first = _results(tmp_path / "first", 1, {"A": 0.40, "B": 0.30})
    second = _results(tmp_path / "second", 2, {"A": 0.41, "B": 0.305})
    for folder, values in ((first, (0.50, 0.40)), (second, (0.52, 0.44))):
        payload = json.loads((folder / "results.json").read_text())
        payload["runs"] = [{"model": "A", "seed": seed, "history": [{"val_ndcg@100": v - 0.1}, {"val_ndcg@100": v}, {}]}
                           for seed, v in enumerate(values)] + [{"model": "B", "seed": 0, "history": []}]
        (folder / "results.json").write_text(json.dumps(payload))
    assert stability.validation_mean(json.loads((first / "results.json").read_text()), "A", "ndcg@100") == pytest.approx(0.45)
    assert stability.main([str(first), str(second)]) == 0
    text = (second / "stability.md").read_text()
    assert "| A | 20 / 20 | 0.4000 | 0.4100 | +0.0100 | 0.0100 | yes | +0.0300 |" in text
    assert "| B | 20 / 20 | 0.3000 | 0.3050 | +0.0050 | 0.0100 | yes | - |" in text

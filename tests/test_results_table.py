"""scripts/results_table.py: the short table evaluation/README.md quotes, from a benchmark's results.json."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results_table.py"
spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)


def _row(model, ndcg, trials, pruned=0):
    return {"model": model, "ndcg@100": ndcg, "ndcg@100_ci95": 0.01, "recall@20": ndcg - 0.1, "recall@20_ci95": 0.02,
            "trials": trials, "pruned": pruned, "fit_seconds": 12.4, "seeds": 2}


def test_rows_run_best_first_with_the_first_seeds_search_seconds_and_the_paired_difference():
    results = {
        "splits": {"7": "second", "5": "first"},
        "summary": [_row("VAE", 0.40, 20, pruned=3), _row("EASE", 0.45, 20)],
        "runs": [{"model": "VAE", "seed": 5, "tuning": [{"seconds": 10.0}, {"seconds": 20.0}]},
                 {"model": "VAE", "seed": 7, "tuning": [{"seconds": 500.0}]},  # not the first seed: not counted
                 {"model": "EASE", "seed": 5, "tuning": [{"seconds": 1.0}, {"seconds": None}]}],
        "paired": {"best": "EASE", "models": {"VAE": {"ndcg@100": {"mean": -0.05, "p_holm": 0.0123}}}},
    }
    lines = results_table.table(results).splitlines()
    assert lines[0].startswith("| model | NDCG@100 |") and "vs EASE" in lines[0]
    assert lines[2] == "| EASE | 0.4500 ± 0.0100 | 0.3500 ± 0.0200 | 20 | 1 | 12 | - | 2 |"
    assert lines[3] == "| VAE | 0.4000 ± 0.0100 | 0.3000 ± 0.0200 | 20 (3 pruned) | 30 | 12 | -0.0500 (p_holm 0.012) | 2 |"

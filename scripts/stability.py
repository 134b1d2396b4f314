"""Did a model's benchmark result move when its study was searched again with another sampler seed?

    recvae benchmark evaluation/benchmarks/ml-latest-small.toml --sampler-seed 2 --out evaluation/stability ...
    python scripts/stability.py evaluation/results/ml-latest-small evaluation/stability/ml-latest-small

reads the folders' results.json and writes stability.md beside the first second-search folder: for every model
in the first and a second, each search's trials, the test mean under each search, their difference, the first
run's 95% half-width over split seeds, and whether the difference stays within it (issue #36: "no model should
move by more than its 95% half-width"). A row whose two searches ran different numbers of trials compares
unequal budgets, and says so, unless both ran out of the same seconds before their trial caps (a budget of
seconds buys each search what it buys). The second searches may lie in several folders (models searched again in separate
runs); a model in two of them is taken from the one whose search ran more trials (a search continued under a
larger budget), and refused where both ran as many.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recvae.models.training import kept_epoch


def stability_table(first: dict, seconds: list[dict], metric: str) -> list[str]:
    """Markdown rows comparing the first result's per-model summaries on ``metric`` with the second searches'."""
    before = {row["model"]: row for row in first["summary"]}
    first_budget = first["config"]["search"]
    rows = ["| model | trials (first / second) | first search | second search | difference | first's 95% half-width "
            "| within | validation difference |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row, second in _second_searches(seconds).values():
        old = before.get(row["model"])
        if old is None or f"{metric}_ci95" not in old:
            continue
        change, half_width = row[metric] - old[metric], old[f"{metric}_ci95"]
        trials = (old.get("trials"), row.get("trials"))
        unequal = "" if _same_budget(trials, first_budget, second["config"]["search"]) else " (unequal trials)"
        rows.append(f"| {row['model']} | {_count(trials[0])} / {_count(trials[1])} | {old[metric]:.4f} | "
                    f"{row[metric]:.4f} | {change:+.4f} | {half_width:.4f} | "
                    f"{'yes' if abs(change) <= half_width else '**no**'}{unequal} | "
                    f"{_difference(validation_mean(first, row['model'], metric), validation_mean(second, row['model'], metric))} |")
    return rows


def validation_mean(results: dict, model: str, metric: str) -> float | None:
    """The mean over split seeds of the chosen setting's validation ``metric`` at its kept epoch (each seed's own
    validation users, read from the runs' epoch histories); None where a run kept no history (the closed forms,
    ALS, BPR)."""
    values = []
    for run in results.get("runs", []):
        if run["model"] != model:
            continue
        kept = kept_epoch(run.get("history"), metric)
        if kept is None:
            return None
        values.append(kept[f"val_{metric}"])
    return sum(values) / len(values) if values else None


def _difference(before: float | None, after: float | None) -> str:
    return "-" if before is None or after is None else f"{after - before:+.4f}"


def _second_searches(seconds: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Each model's second-search row and its folder's results; of a model in several folders, the row whose
    search ran more trials."""
    chosen: dict[str, tuple[dict, dict]] = {}
    for second in seconds:
        for row in second["summary"]:
            held = chosen.get(row["model"])
            if held is not None and _trials(held[0]) == _trials(row):
                raise ValueError(f"{row['model']} is in more than one second search with as many trials: give each "
                                 "model once")
            if held is None or _trials(row) > _trials(held[0]):
                chosen[row["model"]] = (row, second)
    return chosen


def _same_budget(trials: tuple, first: dict, second: dict) -> bool:
    """Whether two searches had one budget: as many trials, or the same seconds, spent by both before their caps."""
    if trials[0] == trials[1]:
        return True
    timeout = first.get("timeout")
    return (timeout is not None and second.get("timeout") == timeout and None not in trials
            and trials[0] < first["trials"] and trials[1] < second["trials"])


def _trials(row: dict) -> int:
    return row.get("trials") or 0


def _count(trials) -> str:
    return "-" if trials is None else str(trials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="the benchmark's results folder (its own sampler seed)")
    parser.add_argument("second", type=Path, nargs="+",
                        help="the same benchmark searched with another sampler seed (one folder or several)")
    parser.add_argument("--metric", default="ndcg@100")
    args = parser.parse_args(argv)
    first = json.loads((args.first / "results.json").read_text())
    seconds = [json.loads((folder / "results.json").read_text()) for folder in args.second]
    for folder, second in zip(args.second, seconds):
        if second["config"]["search"]["seed"] == first["config"]["search"]["seed"]:
            parser.error(f"{folder}: searched with the first's sampler seed ({first['config']['search']['seed']}), "
                         "so it is the same search: rerun it with --sampler-seed")
    try:
        rows = stability_table(first, seconds, args.metric)
    except ValueError as error:
        parser.error(str(error))
    seeds = sorted({r["config"]["search"]["seed"] for r in seconds})
    folders = ", ".join(str(folder) for folder in args.second)
    lines = [f"# Stability of {first['dataset']}: the studies searched again", "",
             f"Test {args.metric} (mean over split seeds) with the sampler seeded {first['config']['search']['seed']} "
             f"({args.first}) and {', '.join(map(str, seeds))} ({folders}); the same split seeds and search spaces, "
             "each search's trials (pruned ones count) given beside its result. Validation difference: the same "
             "difference on the validation users, each seed's chosen fit scored on its own seed's (mean over seeds, "
             "at the kept epoch; '-' for models without an epoch history): whether validation users beyond the "
             "first seed's, on which the studies ran, would have told the two choices apart.", "", *rows, "",
             f"Command: `python scripts/stability.py {args.first} {' '.join(map(str, args.second))}`", ""]
    out = args.second[0] / "stability.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

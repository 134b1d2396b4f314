"""Did a model's benchmark result move when its study was searched again with another sampler seed?

    recvae benchmark evaluation/benchmarks/ml-latest-small.toml --sampler-seed 2 --out evaluation/stability ...
    python scripts/stability.py evaluation/results/ml-latest-small evaluation/stability/ml-latest-small

reads both folders' results.json and writes stability.md beside the second: for every model in both, the
test mean under each search, their difference, the first run's 95% half-width over split seeds, and whether
the difference stays within it (issue #36: "no model should move by more than its 95% half-width").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def stability_table(first: dict, second: dict, metric: str) -> list[str]:
    """Markdown rows comparing the two results' per-model summaries on ``metric``."""
    before = {row["model"]: row for row in first["summary"]}
    rows = ["| model | first search | second search | difference | first's 95% half-width | within |",
            "| --- | --- | --- | --- | --- | --- |"]
    for row in second["summary"]:
        old = before.get(row["model"])
        if old is None or f"{metric}_ci95" not in old:
            continue
        change, half_width = row[metric] - old[metric], old[f"{metric}_ci95"]
        rows.append(f"| {row['model']} | {old[metric]:.4f} | {row[metric]:.4f} | {change:+.4f} | {half_width:.4f} | "
                    f"{'yes' if abs(change) <= half_width else '**no**'} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="the benchmark's results folder (its own sampler seed)")
    parser.add_argument("second", type=Path, help="the same benchmark searched with another sampler seed")
    parser.add_argument("--metric", default="ndcg@100")
    args = parser.parse_args(argv)
    first, second = (json.loads((folder / "results.json").read_text()) for folder in (args.first, args.second))
    seeds = [r["config"]["search"]["seed"] for r in (first, second)]
    lines = [f"# Stability of {second['dataset']}: the studies searched again", "",
             f"Test {args.metric} (mean over split seeds) with the sampler seeded {seeds[0]} ({args.first}) and "
             f"{seeds[1]} ({args.second}); the same split seeds, trial budget and search spaces.", "",
             *stability_table(first, second, args.metric), "",
             f"Command: `python scripts/stability.py {args.first} {args.second}`", ""]
    out = args.second / "stability.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

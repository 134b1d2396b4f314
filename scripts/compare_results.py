"""Compare two models from two benchmark results on the same split seeds, paired over seeds.

    python scripts/compare_results.py evaluation/results/ml-1m-cvae-columns-study CVAE-gender-age \\
        evaluation/results/ml-1m MultVAE

A benchmark file's report compares its own models; a model measured in another file (a study of its own, a
variant) is compared here with one of the main file's. Both results must come from the same log, protocol
and split seeds (the splits' summaries are checked to be equal): each seed's test users are then the same
users, and the per-seed mean difference is the unit of ``recvae.benchmark.statistics.paired_over_seeds``.
Prints the difference per metric with its 95% interval and p, and each seed's difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recvae.benchmark.statistics import paired_over_seeds
from recvae.errors import DataError


def runs_by_seed(result: dict, model: str, where: str) -> dict[int, dict]:
    """The model's run (its per-seed test means) under each split seed."""
    runs = {run["seed"]: run for run in result["runs"] if run["model"] == model}
    if not runs:
        names = sorted({run["model"] for run in result["runs"]})
        raise DataError(f"{where}: no model {model!r} (it has {', '.join(names)})")
    return runs


def compare(first: dict, first_model: str, second: dict, second_model: str, metrics: list[str],
            where=("first", "second")) -> list[dict]:
    """Per metric, ``first_model`` minus ``second_model`` paired over the split seeds both results have."""
    a, b = runs_by_seed(first, first_model, where[0]), runs_by_seed(second, second_model, where[1])
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise DataError(f"{where[0]} and {where[1]} share no split seed ({sorted(a)} and {sorted(b)})")
    for seed in seeds:
        if first["splits"].get(str(seed)) != second["splits"].get(str(seed)):
            raise DataError(f"seed {seed} splits differently in {where[0]} ({first['splits'].get(str(seed))}) and "
                            f"{where[1]} ({second['splits'].get(str(seed))}): not the same test users")
    rows = []
    for metric in metrics:
        paired = paired_over_seeds([[a[s][metric]] for s in seeds], [[b[s][metric]] for s in seeds])
        rows.append({"metric": metric, "first": sum(a[s][metric] for s in seeds) / len(seeds),
                     "second": sum(b[s][metric] for s in seeds) / len(seeds), **paired, "split_seeds": seeds})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="a benchmark's results folder (holding results.json)")
    parser.add_argument("first_model")
    parser.add_argument("second", type=Path)
    parser.add_argument("second_model")
    parser.add_argument("--metrics", default="ndcg@100,recall@20,recall@50")
    args = parser.parse_args(argv)
    results = []
    for folder in (args.first, args.second):
        path = folder / "results.json"
        if not path.is_file():
            parser.error(f"{path}: no such file (give a folder a benchmark wrote)")
        results.append(json.loads(path.read_text()))
    try:
        rows = compare(results[0], args.first_model, results[1], args.second_model, args.metrics.split(","),
                       where=(str(args.first), str(args.second)))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.first_model} ({args.first}) minus {args.second_model} ({args.second}), split seeds "
          f"{rows[0]['split_seeds']}:")
    for row in rows:
        seeds = ", ".join(f"{d:+.4f}" for d in row["per_seed"])
        print(f"  {row['metric']}: {row['first']:.4f} vs {row['second']:.4f}, {row['mean']:+.4f} ± {row['ci']:.4f} "
              f"(p {row['p']:.3g}; {row['test']}); per seed {seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

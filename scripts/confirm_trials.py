"""Would two searches of one model have agreed had each confirmed its best few trials on every seed's validation users?

    python scripts/confirm_trials.py evaluation/benchmarks/ml-1m.toml evaluation/results/ml-1m \\
        evaluation/stability/ml-1m --model ALS --top 3 --out evaluation/stability/ml-1m/confirmation

A benchmark's study runs on the first split seed's validation users (600 on ML-1M) and its best trial is fitted
and tested on every seed; issue #36's stability check searches again with another sampler seed and asks that the
test mean move by less than its 95% half-width. This script takes each search's ``--top`` trials by that
validation value (from each folder's results.json, the first seed's tuning record), fits every one of them on
every split seed (early-stopped on the seed's validation users, as the benchmark's refits are) and records
validation and test NDCG@100. The chosen trial's fits are the benchmark's own where its runs kept their epoch
history (validation read from it); the others are fitted here. It then says what each search would have tested at
had it chosen among its top k trials (k = 1 .. top) by

- each seed's own validation users (the seed's choice scored on the seed's test users), or
- the validation mean over every seed (one choice for all seeds; a seed's test users may be another seed's
  validation users, so this choice has seen some of them),

and whether the two searches then agree within the first's half-width. Rows are kept in ``OUT/MODEL.json`` as
they are fitted, so a stopped run continues where it stopped; ``OUT/MODEL.md`` holds the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from recvae.benchmark.config import load_benchmark
from recvae.benchmark.statistics import confidence_interval
from recvae.benchmark.runner import build_model
from recvae.evaluate import evaluate
from recvae.models import Trainer
from recvae.models.training import kept_epoch
from recvae.pipeline import prepare_split
from recvae.train import fit_model

METRIC = "ndcg@100"


def top_trials(results: dict, model: str, top: int) -> list[dict]:
    """The model's ``top`` finished trials on the first split seed, best validation first."""
    first = min(int(seed) for seed in results["splits"])
    run = next((r for r in results["runs"] if r["model"] == model and r["seed"] == first), None)
    if run is None:
        raise SystemExit(f"{results['dataset']}: no run of {model!r} on the first seed {first}")
    finished = [t for t in run["tuning"] if t.get(f"val_{METRIC}") is not None and t.get("state", "complete") == "complete"]
    return sorted(finished, key=lambda t: -t[f"val_{METRIC}"])[:top]


def benchmark_fits(results: dict, model: str, params: dict) -> dict[int, dict] | None:
    """The benchmark's own per-seed fits of ``params`` (validation from their epoch history), or None where a run
    chose another setting or kept no history."""
    fits = {}
    for run in results["runs"]:
        if run["model"] != model:
            continue
        kept = kept_epoch(run.get("history"), METRIC)
        setting = json.loads(run["params"]) if isinstance(run["params"], str) else run["params"]  # results.json: a JSON string
        if setting != params or kept is None:
            return None
        fits[run["seed"]] = {"val": kept[f"val_{METRIC}"], "test": run[METRIC], "seconds": run["fit_seconds"], "from": "benchmark"}
    return fits


def choices(rows: list[dict], search: str, seeds: list[int], top: int) -> list[dict]:
    """Test means had the search chosen among its k best trials (k = 1 .. top), per seed and pooled."""
    ranked = sorted({r["rank"] for r in rows if r["search"] == search})
    fit = {(r["rank"], r["seed"]): r for r in rows if r["search"] == search}
    out = []
    for k in range(1, min(top, len(ranked)) + 1):
        candidates = ranked[:k]
        per_seed = [fit[(max(candidates, key=lambda c: fit[(c, s)]["val"]), s)]["test"] for s in seeds]
        pooled = max(candidates, key=lambda c: np.mean([fit[(c, s)]["val"] for s in seeds]))
        out.append({"k": k, "per_seed": per_seed, "pooled": [fit[(pooled, s)]["test"] for s in seeds],
                    "pooled_rank": pooled})
    return out


def half_width(values: list[float]) -> float:
    return confidence_interval(values)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", type=Path, help="the benchmark file both searches ran")
    parser.add_argument("first", type=Path, help="the first search's results folder")
    parser.add_argument("second", type=Path, help="the second search's results folder (another sampler seed)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--top", type=int, default=3, help="trials of each search to confirm (default 3)")
    parser.add_argument("--out", type=Path, required=True, help="a folder for MODEL.json and MODEL.md")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")
    config = load_benchmark(args.benchmark)
    spec = next((m for m in config.models if m.name == args.model), None)
    if spec is None:
        parser.error(f"{args.benchmark}: no model {args.model!r}")
    results = {"first": json.loads((args.first / "results.json").read_text()),
               "second": json.loads((args.second / "results.json").read_text())}
    seeds = config.split_seeds()
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / f"{args.model}.json"
    rows = json.loads(store.read_text())["rows"] if store.exists() else []
    done = {(r["search"], r["rank"], r["seed"]) for r in rows}
    plan = []
    for search, result in results.items():
        for rank, trial in enumerate(top_trials(result, args.model, args.top), start=1):
            reused = benchmark_fits(result, args.model, trial["params"]) if rank == 1 else None
            for seed in seeds:
                key = (search, rank, seed)
                if key in done:
                    continue
                base = {"search": search, "rank": rank, "seed": seed, "params": trial["params"],
                        "study_value": trial[f"val_{METRIC}"]}
                if reused is not None and seed in reused:
                    rows.append({**base, **reused[seed]})
                else:
                    plan.append(base)
    for seed in seeds:
        todo = [p for p in plan if p["seed"] == seed]
        if not todo:
            continue
        split, _ = prepare_split(config.data, dataclasses.replace(config.split, seed=seed))
        for item in todo:
            started = time.perf_counter()
            model = build_model(spec, item["params"], config.selection_metric)
            fit_model(model, split.train, split.validation, trainer=Trainer(progress=False))
            rows.append({**item, "val": evaluate(model, split.validation, (METRIC,)).mean(METRIC),
                         "test": evaluate(model, split.test, (METRIC,)).mean(METRIC),
                         "seconds": time.perf_counter() - started, "from": "here"})
            print(f"{args.model} {item['search']} #{item['rank']} seed {seed}: validation {rows[-1]['val']:.4f}, "
                  f"test {rows[-1]['test']:.4f} ({rows[-1]['seconds']:.0f} s)", flush=True)
            store.write_text(json.dumps({"rows": rows}, indent=1))
    store.write_text(json.dumps({"rows": rows}, indent=1))
    first, second = choices(rows, "first", seeds, args.top), choices(rows, "second", seeds, args.top)
    lines = [f"# {args.model}: each search's best {args.top} trials confirmed on every seed", "",
             f"Test {METRIC}, mean over split seeds {seeds[0]}..{seeds[-1]}, had each search chosen among its k best "
             f"trials on the first seed ({args.first}: the first search; {args.second}: the second), by each seed's own "
             "validation users or by the validation mean over the seeds (which has seen some of a seed's test users "
             "as another seed's validation users). k = 1 is what the benchmark did. Within: the difference against "
             f"the benchmark's 95% half-width for the first search, {half_width(first[0]['per_seed']):.4f} (issue #36's "
             "criterion); a choice among k trials has a half-width of its own, given beside it.", "",
             "| k | per seed: first (half-width) | second | difference | within | pooled: first (half-width) | second "
             "| difference | within |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    benchmark_width = half_width(first[0]["per_seed"])
    for a, b in zip(first, second):
        cells = []
        for way in ("per_seed", "pooled"):
            change = np.mean(b[way]) - np.mean(a[way])
            cells.append(f"{np.mean(a[way]):.4f} ({half_width(a[way]):.4f}) | {np.mean(b[way]):.4f} | {change:+.4f} | "
                         f"{'yes' if abs(change) <= benchmark_width else '**no**'}")
        lines.append(f"| {a['k']} | {cells[0]} | {cells[1]} |")
    lines += ["", "Each trial on every seed (validation mean, test mean; the first seed's validation is the study's):", "",
              "| search | rank | first seed's validation | validation mean | test mean | setting |",
              "| --- | --- | --- | --- | --- | --- |"]
    for search in ("first", "second"):
        for rank in sorted({r["rank"] for r in rows if r["search"] == search}):
            mine = [r for r in rows if r["search"] == search and r["rank"] == rank]
            lines.append(f"| {search} | {rank} | {mine[0]['study_value']:.4f} | {np.mean([r['val'] for r in mine]):.4f} | "
                         f"{np.mean([r['test'] for r in mine]):.4f} | {json.dumps(mine[0]['params'], sort_keys=True)} |")
    command = " ".join(["python scripts/confirm_trials.py", *sys.argv[1:]] if argv is None else
                       ["python scripts/confirm_trials.py", *argv])
    lines += ["", f"Command: `{command}`", ""]
    (args.out / f"{args.model}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

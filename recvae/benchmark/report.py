"""Tables, statistics and plots of a benchmark, written under ``<out>/<dataset>/``."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from recvae.environment import describe
from recvae.evaluate import COLD_ITEM_METRICS
from recvae.benchmark.runner import BenchmarkResult
from recvae.benchmark.statistics import confidence_interval, holm, paired_over_seeds
from recvae.io import file_stem, write_atomic_bytes, write_atomic_json
from recvae.score.metrics import DEFINITIONS
from recvae.track.plots import (auto_beta_figure, auto_beta_peak, diagnostics_figure, metric_curves_figure,
                                search_budget_figure, search_figure, training_curves_figure, write_figures)


def _label(metric: str) -> str:
    kind, _, k = metric.partition("@")
    return {"ndcg": "NDCG", "recall": "Recall", "recall_full": "Recall_full"}.get(kind, kind) + "@" + k


def summarize(result: BenchmarkResult) -> list[dict]:
    """One row per model: mean and 95% half-interval over seeds of each metric, mean seconds, and the
    hyperparameters: ``params`` the most frequent setting, ``choices`` every setting with its seeds
    (one entry, and ``tuned`` False, for a model with nothing to choose)."""
    specs = {m.name: m for m in result.config.models}
    rows = []
    for name in result.model_names:
        runs = result.runs_of(name)
        row = {"model": name, "seeds": len(runs)}
        for metric in result.config.metrics:
            row[metric], row[f"{metric}_ci95"] = confidence_interval([r.summary[metric] for r in runs])
        for key in ("train_seconds", "fit_seconds", "score_seconds"):
            row[key] = float(np.mean([getattr(r, key) for r in runs]))
        spec = specs.get(name)
        row["tuned"] = bool(spec is not None and (spec.grid or spec.auto_beta or spec.search))
        seeds_of = defaultdict(list)  # one entry per distinct setting, in first-seen order
        for run in runs:
            seeds_of[json.dumps(run.params, sort_keys=True)].append(run.seed)
        choices = sorted(seeds_of.items(), key=lambda kv: -len(kv[1]))  # stable: ties keep first-seen order
        row["params"] = json.loads(choices[0][0])
        row["trials"] = max(len(r.tuning) for r in runs)  # settings tried on a tuned seed
        row["pruned"] = max(sum(t.get("state") == "pruned" for t in r.tuning) for r in runs)
        row["choices"] = [{"params": json.loads(k), "seeds": sorted(seeds)} for k, seeds in choices]
        rows.append(row)
    return rows


def paired_comparisons(result: BenchmarkResult, rows: list[dict]) -> dict:
    """Every model against the best (by the first metric) on the same test users of the seeds both ran,
    by ``paired_over_seeds`` (the seed is the unit), Holm-adjusted over the models per metric."""
    first = result.config.metrics[0]
    best = max(rows, key=lambda r: r[first])["model"]
    out = {"best": best, "metric_order": list(result.config.metrics), "models": {}}
    others = [r["model"] for r in rows if r["model"] != best]

    def per_seed(name, metric, seeds):
        by_seed = {r.seed: r for r in result.runs_of(name)}
        return [by_seed[s].per_user[metric] for s in seeds]

    def common(name):  # a partial report may hold more seeds of one model than of another
        return sorted({r.seed for r in result.runs_of(name)} & {r.seed for r in result.runs_of(best)})

    for metric in result.config.metrics:
        diffs = {name: paired_over_seeds(per_seed(name, metric, common(name)), per_seed(best, metric, common(name)))
                 for name in others}
        adjusted = holm([d["p"] for d in diffs.values()]) if diffs else []
        for (name, d), p in zip(diffs.items(), adjusted):
            out["models"].setdefault(name, {})[metric] = {**d, "p_holm": p}
    return out


def _cell(mean: float, half: float, signed: bool = False) -> str:
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return f"{text} ± {half:.4f}" if not math.isnan(half) else text


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def markdown(result: BenchmarkResult, rows, paired, env: dict, command: str) -> str:
    config = result.config
    lines = [f"# {config.dataset}: benchmark", ""]
    if config.description:
        lines += [config.description.strip(), ""]
    lines += (_results_section(result, rows) + _paired_section(paired, config.metrics) + _cold_items_section(result)
              + _auto_beta_sections(result))
    for name, reason in result.skipped.items():
        lines += [f"Not run: {name} ({reason}).", ""]
    lines += [f"Machine: {describe(env)}.", "", f"Command: `{command}`", ""]
    return "\n".join(lines)


def _results_section(result: BenchmarkResult, rows) -> list[str]:
    """The protocol in words, the table of test metrics over seeds, and what its columns mean."""
    config = result.config
    metrics = config.metrics
    seeds = config.split_seeds()
    seed_text = f"split seed {seeds[0]}" if len(seeds) == 1 else f"split seeds {seeds[0]}..{seeds[-1]} ({len(seeds)})"
    heldout = config.split.heldout_users
    lines = [
        f"Data: `{config.data.describe()}`. Protocol: {config.split.protocol}"
        + (f", {heldout} validation + {heldout} test users" if heldout else "")
        + f", {seed_text}. Hyperparameters are chosen per seed on the "
        f"validation users by {_label(config.selection_metric)}; test users are scored once.",
        "",
        f"First seed's split: {result.splits.get(seeds[0], '-')}.",
        "",
        "| model | " + " | ".join(_label(m) for m in metrics) + " | trials | train s | fit s | score s | setting |",
        "| --- " * (len(metrics) + 6) + "|",
    ]
    for row in sorted(rows, key=lambda r: -r[metrics[0]]):
        cells = [_cell(row[m], row[f"{m}_ci95"]) for m in metrics]
        setting = ("chosen: " if row["tuned"] else "fixed: ") + _params_text(row["params"])
        if len(row["choices"]) > 1:
            setting += f" ({len(row['choices'][0]['seeds'])} of {row['seeds']} seeds)"
        trials = f"{row['trials']}" + (f" ({row['pruned']} pruned)" if row["pruned"] else "")
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {trials}"
                     + f" | {row['train_seconds']:.1f} | {row['fit_seconds']:.1f} | {row['score_seconds']:.1f} | {setting} |")
    if config.search is None:
        tuning = ("Trials: the settings of the model's grid, each fitted on every seed (a model without a grid has "
                  "one, fixed). ")
    else:
        where = (f"on the first split seed ({seeds[0]}) only; its choice is fitted and tested on every seed"
                 if config.search.seeds == "first" else "on every split seed")
        tuning = (f"Trials: an Optuna study of at most {config.search.trials} trials per model (TPE sampler seeded "
                  f"{config.search.seed}; a space of fewer settings tries each once; pruner: {config.search.pruner}), "
                  f"{where}. ")
    interval = (f"± is the half-width of the 95% Student-t interval over the {len(seeds)} split seeds."
                if len(seeds) > 1 else "One split seed: no interval over seeds (run more seeds for one).")
    kinds = dict.fromkeys(m.partition("@")[0] for m in (*metrics, config.selection_metric))
    return lines + [
        "",
        tuning + interval + " train s: every fit the model needed on one seed, its trials included (mean over seeds); fit s: the "
        "chosen setting's fit alone; score s: ranking the test users and computing the metrics and curves. "
        "Setting: 'fixed' when the benchmark file leaves nothing to choose, else the choice made most often over "
        "the seeds (every seed's choice is in results.json).",
        "",
        "Metrics: " + "; ".join(DEFINITIONS[k] for k in kinds if k in DEFINITIONS) + ".",
        "",
    ]


def cold_item_summary(result: BenchmarkResult) -> dict[str, dict]:
    """With ``[split] cold_items``: each model's and each baseline's cold-item metrics, mean and 95% half-width
    over the seeds it ran, best first; empty without the protocol."""
    per_name = defaultdict(list)
    for run in result.runs:
        if run.cold_items is not None:
            per_name[run.name].append(run.cold_items)
    for _, baselines in sorted(result.cold_baselines.items()):
        for name, summary in baselines.items():
            per_name[name].append(summary)
    table = {name: {"seeds": len(summaries), **{f"{m}{suffix}": value for m in COLD_ITEM_METRICS for suffix, value in
                                                zip(("", "_ci95"), confidence_interval([x[m] for x in summaries]))}}
             for name, summaries in per_name.items()}
    return dict(sorted(table.items(), key=lambda kv: -kv[1][COLD_ITEM_METRICS[0]]))


def _cold_items_section(result: BenchmarkResult) -> list[str]:
    table = cold_item_summary(result)
    if not table:
        return []
    lines = [f"Cold items: {result.config.split.cold_items:.0%} of the items (drawn on each split seed among those "
             "training users have) are left out of training and of the held-out users' parts; each test user who has "
             "one of them ranks the cold items alone from their warm items (the models fitted as above). Baselines: "
             "the items' content (cosine of an item's features with the sum of the user's items' features) and "
             "chance. Mean ± the 95% half-width over seeds:", "",
             "| model | " + " | ".join(_label(m) for m in COLD_ITEM_METRICS) + " | seeds |",
             "| --- " * (len(COLD_ITEM_METRICS) + 2) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[m], row[f"{m}_ci95"]) for m in COLD_ITEM_METRICS)
                     + f" | {row['seeds']} |")
    return lines + [""]


def _paired_section(paired: dict, metrics) -> list[str]:
    if not paired["models"]:
        return []
    tests = {d["test"] for by_metric in paired["models"].values() for d in by_metric.values()}
    lines = [
        f"## Paired comparison with the best model ({paired['best']})",
        "",
        "Difference model − best on the same test users; with several seeds the unit is the seed (users recur "
        "across seeds and share each seed's fitted model, so they are not independent): mean over seeds of the "
        "per-seed mean difference, its 95% t interval, and the p of a one-sample t-test of the per-seed means, "
        "Holm-adjusted over the models. Test used: " + "; ".join(sorted(tests)) + ".",
        "",
        "| model | " + " | ".join(f"Δ {_label(m)} | p" for m in metrics) + " |",
        "| --- " * (2 * len(metrics) + 1) + "|",
    ]
    for name, by_metric in paired["models"].items():
        cells = []
        for m in metrics:
            d = by_metric[m]
            cells += [_cell(d["mean"], d["ci"], signed=True), f"{d['p_holm']:.2g}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _auto_beta_sections(result: BenchmarkResult) -> list[str]:
    lines = []
    for name in result.model_names:
        chosen = [(r.seed, r.auto_beta) for r in result.runs_of(name) if r.auto_beta]
        if not chosen:
            continue
        lines += [
            f"## Auto-β: {name}",
            "",
            "Per seed, one run anneals β linearly from 0 to 1 over all its epochs (validated every epoch); the β of "
            f"its best validation {_label(result.config.selection_metric)} becomes the cap of the model that is "
            f"tested (plot: auto_beta_{file_stem(name)}.png).",
            "",
            "| seed | chosen β | at epoch | validation at the peak |",
            "| --- | --- | --- | --- |",
        ]
        for seed, a in chosen:
            peak = auto_beta_peak(a)
            lines.append(f"| {seed} | {a['beta']:.3f} | {a['peak_epoch']} of {len(a['curve'])} | {peak[a['metric']]:.4f} |")
        lines.append("")
    return lines


def _write_figures(result: BenchmarkResult, folder: Path, curves: dict) -> list[str]:
    """The PNGs of a finished benchmark (metrics against K; per model its first seed's training curves and
    posterior diagnostics, and its auto-β curves); returns their file names."""
    figures = {}

    def save_figure(filename: str, figure) -> None:
        figures[filename] = figure

    dataset = result.config.dataset
    if result.runs:
        seeds = sorted({r.seed for r in result.runs})
        over = f"split seed {seeds[0]}" if len(seeds) == 1 else f"mean over split seeds {seeds[0]}..{seeds[-1]}"
        save_figure("metrics_at_k.png", metric_curves_figure(
            {name: {k: np.asarray(v) for k, v in c.items()} for name, c in curves.items()}, f"{dataset}: test users, {over}"))
    studies = {name: next(r.tuning for r in result.runs_of(name) if any("state" in t for t in r.tuning))
               for name in result.model_names if any(any("state" in t for t in r.tuning) for r in result.runs_of(name))}
    if studies:
        save_figure("search.png", search_budget_figure(studies, result.config.selection_metric,
                                                       f"every model's search: {dataset} (the first seed studied)"))
    for name in result.model_names:
        first = result.runs_of(name)[0]
        title = f"{name}: {dataset}, split seed {first.seed}"
        if first.history:
            save_figure(f"training_{file_stem(name)}.png", training_curves_figure(first.history, title))
        if first.history and "kl_per_dim" in first.history[0]:
            save_figure(f"diagnostics_{file_stem(name)}.png", diagnostics_figure(first.history, title))
        chosen = {f"seed {r.seed}": r.auto_beta for r in result.runs_of(name) if r.auto_beta}
        if chosen:
            save_figure(f"auto_beta_{file_stem(name)}.png", auto_beta_figure(chosen, f"auto-β of {name}: {dataset}"))
        studied = {f"seed {r.seed}": r.tuning for r in result.runs_of(name) if any("state" in t for t in r.tuning)}
        if studied:
            save_figure(f"search_{file_stem(name)}.png", search_figure(
                studied, result.config.selection_metric, f"search of {name}: {dataset}"))
    return [path.name for path in write_figures(folder, figures)]


def write_report(result: BenchmarkResult, out: str | Path, env: dict, command: str, tracker=None,
                 partial: bool = False) -> Path:
    """Write results.{md,csv,json}, runs.csv and the PNG plots; return the folder. A ``partial`` report
    (written while the benchmark runs) says how many runs it holds and has no plots yet."""
    folder = Path(out) / result.config.dataset
    folder.mkdir(parents=True, exist_ok=True)
    rows = summarize(result)
    paired = paired_comparisons(result, rows) if rows else {"best": None, "models": {}}
    metrics = result.config.metrics
    runs = [{"model": r.name, "seed": r.seed, **{m: r.summary[m] for m in metrics},
             **{f"{m}_se": r.summary[f"{m}_se"] for m in metrics}, "train_seconds": r.train_seconds,
             "fit_seconds": r.fit_seconds, "score_seconds": r.score_seconds, "epochs": len(r.history),
             "params": json.dumps(r.params, sort_keys=True)} for r in result.runs]
    # one JSON value per cell: the most frequent setting, and every setting with the seeds that chose it
    table = pd.DataFrame([{**r, "params": json.dumps(r["params"], sort_keys=True),
                           "choices": json.dumps(r["choices"], sort_keys=True)} for r in rows])
    write_atomic_bytes(folder / "results.csv", table.to_csv(index=False).encode())
    write_atomic_bytes(folder / "runs.csv", pd.DataFrame(runs).to_csv(index=False).encode())
    payload = {
        "dataset": result.config.dataset, "command": command, "environment": env, "config": result.config.to_json(),
        "splits": {str(k): v for k, v in result.splits.items()}, "skipped": result.skipped, "summary": rows,
        "paired": paired,
        # KL per dimension per epoch would make this file tens of MB; MLflow keeps it (kl_per_dim.json)
        "runs": [{**run, "tuning": r.tuning, "auto_beta": r.auto_beta,
                  **({"cold_items": r.cold_items} if r.cold_items is not None else {}),
                  "history": [{k: v for k, v in h.items() if k != "kl_per_dim"} for h in r.history]}
                 for run, r in zip(runs, result.runs)],
        "curves": {name: {k: np.mean([r.curves[k] for r in result.runs_of(name)], axis=0).tolist() for k in ("recall", "ndcg")}
                   for name in result.model_names},
    }
    if result.cold_baselines:
        payload["cold_items"] = {"summary": cold_item_summary(result),
                                 "baselines": {str(k): v for k, v in result.cold_baselines.items()}}
    write_atomic_json(folder / "results.json", payload)
    text = markdown(result, rows, paired, env, command)
    if partial:
        text = (f"**Partial: {len(result.runs)} of {result.expected_runs} (model, seed) runs finished so far; the benchmark "
                "is running or was stopped (rerun with --resume to finish it).**\n\n" + text)
    write_atomic_bytes(folder / "results.md", text.encode())
    if partial:
        return folder
    files = ["results.md", "results.csv", "runs.csv", "results.json"] + _write_figures(result, folder, payload["curves"])
    if tracker is not None:
        for filename in files:
            tracker.log_artifact(folder / filename, "results")
        if paired.get("best"):
            tracker.log_metrics({f"{row['model']}.{m}": row[m] for row in rows for m in metrics})
    return folder

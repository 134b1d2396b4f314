"""Cold-start items on MovieLens: Mult-VAE reading the items' genres and year against the items' content alone.

    python scripts/cold_items.py --dataset ml-1m [--data ../shared/data/ml-1m] [--out evaluation/cold-items/ml-1m]
    python scripts/cold_items.py --dataset ml-latest-small [--out evaluation/cold-items/ml-latest-small]

Splits are the benchmark files' (ml-1m.toml: 600 + 600 held-out users; ml-latest-small.toml: ratings of 3.5
and more, 60 + 60), split seeds 98765... Per seed, 10% of the items some training user has are made cold
(``recvae.split.conditioned.cold_items``): every interaction with them leaves training and the held-out
users' parts, and each test user with at least one of them ranks the cold items alone from all of their
warm items. Item features: ``movies.dat`` / ``movies.csv`` genres and the year in the title
(``recvae.data.features.encode_item_table``).

Rankers of the cold items: Mult-VAE with the item features in its decoder (``item_feature_width``; its
``item_dropout`` chosen among 0, 0.25 and 0.5 on the first seed's validation users' cold items), plain
Mult-VAE (no features: what a model without them does with a new item), the content-only baseline (cosine of
the item's features with the sum of the user's items' features) and chance. Both Mult-VAEs use the dataset's
Mult-VAE study's best setting (below) and pick their epoch on the warm validation users; their warm NDCG@100
on the test users' warm items is reported beside, to show what the features cost there. Logged to MLflow (one
run). Writes results.json, cold_items.png and table.md under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from recvae.benchmark.statistics import confidence_interval, paired_over_seeds
from recvae.data.features import encode_item_table
from recvae.data.interactions import Preprocessing
from recvae.environment import describe, environment, write_script_results
from recvae.evaluate import COLD_ITEM_METRICS, evaluate, evaluate_cold_items
from recvae.models import MultVAE
from recvae.pipeline import DataSpec, SplitSpec, prepare_split
from recvae.split.conditioned import cold_items
from recvae.track.plots import pyplot
from recvae.track.tracking import TrackingConfig, start_tracking

# Each dataset's files, preprocessing and held-out users (its benchmark file's), and the best trial of its
# Mult-VAE study in the benchmark rerun of issue #36 (first seed's validation NDCG@100 0.4670 and 0.3889).
DATASETS = {
    "ml-1m": dict(log="user_movie_pairs.tsv.gz", items="movies.dat.gz", preprocessing=Preprocessing(), heldout=600,
                  setting=dict(learning_rate=0.006448, dropout=0.3958, hidden_dims=(), beta_cap=0.4387,
                               anneal_epochs=165.06)),
    "ml-latest-small": dict(log="ratings.csv.gz", items="movies.csv.gz", preprocessing=Preprocessing(min_rating=3.5),
                            heldout=60, setting=dict(learning_rate=0.009815, dropout=0.3959, hidden_dims=(),
                                                     beta_cap=0.8063, anneal_epochs=155.82)),
}
ITEM_DROPOUTS = (0.0, 0.25, 0.5)
SPLIT_SEED = 98765
WITH_FEATURES, PLAIN = "Mult-VAE + item features", "Mult-VAE (no features)"


def prepared(dataset: dict, data: Path, seed: int, share: float):
    split, _ = prepare_split(DataSpec(path=str(data / dataset["log"]), preprocessing=dataset["preprocessing"]),
                             SplitSpec(heldout_users=dataset["heldout"], seed=seed))
    features, encoding = encode_item_table(data / dataset["items"], split.items)
    return cold_items(split, share, seed), features, encoding


def fitted(cold, features, setting: dict, item_dropout: float | None) -> MultVAE:
    part = cold.split
    if item_dropout is None:
        return MultVAE(**setting).fit(part.train, part.validation, part.items)
    return MultVAE(**setting, item_feature_width=features.shape[1], item_dropout=item_dropout).fit(
        part.train, part.validation, part.items, item_features=features)


def chosen_item_dropout(cold, features, setting: dict) -> tuple[float, dict, MultVAE]:
    """The item dropout whose model ranks the validation users' cold items best (NDCG@20), every value's
    figure, and the chosen model."""
    tried, models = {}, {}
    for rate in ITEM_DROPOUTS:
        models[rate] = fitted(cold, features, setting, rate)
        tried[rate] = evaluate(models[rate], cold.validation, COLD_ITEM_METRICS, allowed_items=cold.items).mean("ndcg@20")
        print(f"item_dropout {rate}: validation cold-item NDCG@20 {tried[rate]:.4f}", flush=True)
    best = max(tried, key=tried.get)
    return best, tried, models[best]


def one_seed(cold, features, setting: dict, item_dropout: float, model: MultVAE | None, seed: int) -> tuple[dict, dict]:
    model = model or fitted(cold, features, setting, item_dropout)
    plain = fitted(cold, features, setting, None)
    results = evaluate_cold_items(model, cold, features, seed=seed)
    results[WITH_FEATURES] = results.pop(model.name)
    results[PLAIN] = evaluate(plain, cold.test, COLD_ITEM_METRICS, allowed_items=cold.items)
    row = {name: {m: result.mean(m) for m in COLD_ITEM_METRICS} for name, result in results.items()}
    per_user = {name: {m: result.per_user[m].tolist() for m in COLD_ITEM_METRICS} for name, result in results.items()}
    warm = {name: evaluate(m, cold.split.test, ("ndcg@100",)).mean("ndcg@100") for name, m in ((WITH_FEATURES, model), (PLAIN, plain))}
    return {"cold": row, "warm ndcg@100": warm, "cold items": len(cold.items), "users": len(cold.test)}, per_user


def summarise(by_seed: list[dict], per_user: list[dict]) -> tuple[dict, dict]:
    names = list(by_seed[0]["cold"])
    summary = {name: {m: confidence_interval([s["cold"][name][m] for s in by_seed]) for m in COLD_ITEM_METRICS}
               for name in names}
    summary["warm ndcg@100"] = {name: confidence_interval([s["warm ndcg@100"][name] for s in by_seed])
                                for name in (WITH_FEATURES, PLAIN)}
    paired = {name: {m: paired_over_seeds([u[WITH_FEATURES][m] for u in per_user], [u[name][m] for u in per_user])
                     for m in COLD_ITEM_METRICS} for name in names if name != WITH_FEATURES}
    return summary, paired


def figure(summary: dict, title: str):
    plt = pyplot()
    names = [n for n in summary if n != "warm ndcg@100"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric in zip(axes, COLD_ITEM_METRICS):
        means = [summary[n][metric][0] for n in names]
        halves = [summary[n][metric][1] for n in names]
        axis.barh(names, means, xerr=halves, capsize=3, color=["C0", "C1", "C2", "C7"][: len(names)])
        axis.set_xlabel("test " + {"ndcg@20": "NDCG@20", "recall@20": "Recall@20"}[metric] + " over the cold items")
        axis.invert_yaxis()
        axis.grid(alpha=0.3, axis="x")
    fig.suptitle(f"{title} cold-start items (10% of the items, unseen in training): mean over split seeds, 95% interval")
    fig.tight_layout()
    return fig


def table(summary: dict, paired: dict) -> str:
    lines = ["| ranker of the cold items | NDCG@20 | Recall@20 |", "|---|---|---|"]
    for name, values in summary.items():
        if name != "warm ndcg@100":
            lines.append(f"| {name} | " + " | ".join(f"{values[m][0]:.4f} ± {values[m][1]:.4f}" for m in COLD_ITEM_METRICS) + " |")
    lines += ["", f"| {WITH_FEATURES} minus | NDCG@20 (p) | Recall@20 (p) |", "|---|---|---|"]
    for name, values in paired.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]['mean']:+.4f} ± {values[m]['ci']:.4f} ({values[m]['p']:.3f})"
                                               for m in COLD_ITEM_METRICS) + " |")
    lines += ["", "| warm items, test NDCG@100 | mean ± 95% |", "|---|---|"]
    lines += [f"| {name} | {v[0]:.4f} ± {v[1]:.4f} |" for name, v in summary["warm ndcg@100"].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ml-1m")
    parser.add_argument("--data", default=None, help="default: ../shared/data/<dataset>")
    parser.add_argument("--out", default=None, help="default: evaluation/cold-items/<dataset>")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: the config's)")
    args = parser.parse_args(argv)
    dataset = DATASETS[args.dataset]
    setting = dataset["setting"] if args.epochs is None else {**dataset["setting"], "epochs": args.epochs}
    data = Path(args.data or f"../shared/data/{args.dataset}")
    out = Path(args.out or f"evaluation/cold-items/{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with start_tracking(TrackingConfig(), f"cold-items-{args.dataset}") as tracker:
        tracker.log_params({"data": str(data), "seeds": args.seeds, "share": args.share, "setting": json.dumps(setting)})
        by_seed, per_user, item_dropout, tried, model = [], [], None, {}, None
        for seed in range(SPLIT_SEED, SPLIT_SEED + args.seeds):
            cold, features, encoding = prepared(dataset, data, seed, args.share)
            if item_dropout is None:
                item_dropout, tried, model = chosen_item_dropout(cold, features, setting)
                tracker.log_params({"item_dropout": item_dropout, "features": json.dumps(encoding.names())})
            row, users = one_seed(cold, features, setting, item_dropout, model, seed)
            model = None
            by_seed.append(row)
            per_user.append(users)
            print(f"seed {seed}: {json.dumps(row)}", flush=True)
        summary, paired = summarise(by_seed, per_user)
        tracker.log_metrics({f"{n.replace(' ', '_')}.{m}": v[0] for n, values in summary.items() for m, v in values.items()})
        figure(summary, args.dataset).savefig(out / "cold_items.png", dpi=120)
        (out / "table.md").write_text(table(summary, paired) + "\n")
        write_script_results(out / "results.json", "scripts/cold_items.py", argv, started, {
            "setting": setting, "item_dropout": item_dropout, "item_dropout_validation_ndcg@20": tried,
            "by_seed": by_seed, "summary": summary, "paired": paired})
        tracker.log_artifact(out, "cold-items")
    print((out / "table.md").read_text())
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

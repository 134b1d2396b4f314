"""How far any ranking of new users' items from users.dat's columns alone can rise above popularity in group.

    python scripts/cold_start_ceiling.py [--data ../shared/data/ml-1m] [--out evaluation/cold-start/ml-1m-ceiling]

Issue #37 asks the CVAE to beat, for a new user with no items, popularity within the user's gender and age band.
With those two columns the CVAE can at best learn that ranking; the other columns (occupation, zip code) are all
it could add. This measures what they are worth to estimators far simpler than a VAE, on the splits of
``cold_start_ml1m.py`` (ml-1m.toml's, 0 items given, every test item the target):

- popularity in group: the baseline, items ranked by their count among the training users of the user's
  (gender, age band);
- the same times a column's lift: log p(item | gender, age) + α (log p(item | value) − log p(item)) for the
  user's value of the column (occupation; the zip code's first digit, a US region), counts smoothed by one;
- popularity in the (gender, age, occupation) cell, shrunk towards the (gender, age) group by m pseudo-users.

α and m are chosen per split seed on its validation users (0 items given, as the test users), from a grid that
includes the baseline (α = 0; m large). Writes results.json and table.md under --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recvae.benchmark.statistics import confidence_interval, paired_over_seeds
from recvae.data.side import aligned, read_side_table
from recvae.environment import describe, environment, write_script_results
from recvae.pipeline import DataSpec, SplitSpec, prepare_split
from recvae.score.metrics import ndcg_at_k, recall_at_k
from recvae.score.topk import top_n_from_scores
from recvae.split.conditioned import cold_start

SPLIT_SEED = 98765
ALPHAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
SHRINKAGE = (0.3, 1.0, 3.0, 10.0, 1e9)  # pseudo-users of the group per user of the cell; 1e9: the group itself
METRICS = ("ndcg@100", "recall@20")


def per_user(scores: np.ndarray, heldout) -> dict[str, np.ndarray]:
    top, _ = top_n_from_scores(torch.tensor(scores, dtype=torch.float32), 100, heldout.fold_in)
    return {"ndcg@100": ndcg_at_k(top, heldout.target, 100), "recall@20": recall_at_k(top, heldout.target, 20)}


def key(table, columns, split) -> np.ndarray:
    """Each user's values of ``columns``, joined, in the split's user order."""
    return aligned(table[list(columns)].astype(str).agg("/".join, axis=1), split.users, "users.dat", missing="?")


def counts_by(train, train_keys: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(train[train_keys == k].sum(axis=0), dtype=np.float64).ravel() for k in np.unique(train_keys)}


def log_share(counts: np.ndarray) -> np.ndarray:
    return np.log((counts + 1.0) / (counts.sum() + len(counts)))


class Estimators:
    """Every estimator's scores for held-out users, from one split's training users."""

    def __init__(self, table, split):
        self.train, self.total = split.train, np.asarray(split.train.sum(axis=0), dtype=np.float64).ravel()
        self.keys = {name: key(table, columns, split) for name, columns in
                     {"group": ("gender", "age"), "occupation": ("occupation",), "region": ("zip1",),
                      "cell": ("gender", "age", "occupation")}.items()}
        rows = split.train_users
        self.counts = {name: counts_by(split.train, keys[rows]) for name, keys in self.keys.items()}

    def _of(self, name: str, users: np.ndarray) -> np.ndarray:
        return np.stack([self.counts[name].get(k, self.total) for k in self.keys[name][users]])

    def group(self, users):
        return self._of("group", users)

    def lift(self, users, columns: tuple[str, ...], alpha: float):
        score = np.log(self.group(users) + 1.0)
        for column in columns:
            score += alpha * (np.apply_along_axis(log_share, 1, self._of(column, users)) - log_share(self.total))
        return score

    def shrunk(self, users, m: float):
        group, cell = self.group(users), self._of("cell", users)
        group_share = group / group.sum(axis=1, keepdims=True)
        return cell + m * cell.sum(axis=1, keepdims=True).clip(min=1.0) * group_share


def one_seed(data: Path, table, seed: int) -> dict:
    split, _ = prepare_split(DataSpec(path=str(data / "user_movie_pairs.tsv.gz")), SplitSpec(heldout_users=600, seed=seed))
    valid, test = cold_start(split.validation, 0, seed), cold_start(split.test, 0, seed)
    model = Estimators(table, split)
    families = {"occupation lift": lambda u, a: model.lift(u, ("occupation",), a),
                "region lift": lambda u, a: model.lift(u, ("region",), a),
                "occupation and region lift": lambda u, a: model.lift(u, ("occupation", "region"), a),
                "cell shrunk to group": model.shrunk}
    result = {"popularity in group": {"setting": None, **_scored(model.group(test.users), test)}}
    for name, scores in families.items():
        grid = SHRINKAGE if name == "cell shrunk to group" else ALPHAS
        chosen = max(grid, key=lambda v: per_user(scores(valid.users, v), valid)["ndcg@100"].mean())
        result[name] = {"setting": chosen, **_scored(scores(test.users, chosen), test)}
    return result


def _scored(scores: np.ndarray, heldout) -> dict:
    return {m: values.tolist() for m, values in per_user(scores, heldout).items()}


def table(by_seed: list[dict]) -> str:
    lines = ["| estimator | NDCG@100 | Recall@20 | minus popularity in group: NDCG@100 (p) | Recall@20 (p) | chosen per seed |",
             "|---|---|---|---|---|---|"]
    for name in by_seed[0]:
        means = {m: confidence_interval([np.mean(s[name][m]) for s in by_seed]) for m in METRICS}
        diffs = {m: paired_over_seeds([s[name][m] for s in by_seed], [s["popularity in group"][m] for s in by_seed])
                 for m in METRICS}
        cells = [f"{means[m][0]:.4f} ± {means[m][1]:.4f}" for m in METRICS]
        cells += [f"{diffs[m]['mean']:+.4f} ± {diffs[m]['ci']:.4f} ({diffs[m]['p']:.3f})" for m in METRICS]
        chosen = ", ".join("-" if s[name]["setting"] is None else f"{s[name]['setting']:g}" for s in by_seed)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {chosen} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="evaluation/cold-start/ml-1m-ceiling")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    users = read_side_table(data / "users.dat.gz")
    users["zip1"] = users["zip"].str[:1]
    by_seed = []
    for seed in range(SPLIT_SEED, SPLIT_SEED + args.seeds):
        by_seed.append(one_seed(data, users, seed))
        print(f"seed {seed}: " + ", ".join(f"{n} {np.mean(r['ndcg@100']):.4f}" for n, r in by_seed[-1].items()), flush=True)
    (out / "table.md").write_text(table(by_seed) + "\n")
    write_script_results(out / "results.json", "scripts/cold_start_ceiling.py", argv, started, {
        "by_seed": [{n: {"setting": r["setting"], **{m: float(np.mean(r[m])) for m in METRICS}} for n, r in s.items()}
                    for s in by_seed]})
    print((out / "table.md").read_text())
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

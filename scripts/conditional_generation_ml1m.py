"""Conditional generation on MovieLens 1M: synthetic users of one age band, drawn from the conditional VAE, set
against the real users of that band by the genres they watch.

    python scripts/conditional_generation_ml1m.py [--data ../shared/data/ml-1m] [--out evaluation/synthetic/ml-1m-conditional]

Per split seed (ml-1m.toml's strong split, 600 + 600 held-out users, seeds 98765...), a CVAE is trained on
the training users with users.dat's gender, age band, occupation and zip code (the cold-start users' setting:
ml-1m.toml's Mult-VAE study's best trial, history dropout 0.5). For each of the 7 age bands, 1000 synthetic
users are drawn (``Recommender.sample`` with ``conditions``): each takes the features of a training user of
that band drawn at random, a latent point from where the encoder places a user with those features and no
items, and items decoded from [point, features]. Their genre mix (each interaction's genres, a film of k genres
counting 1/k to each) is compared with the band's real training users' by total variation distance (TV), beside
two references: the same model's users drawn with the features of training users of any band (what the model
generates unconditioned), and the real users of all bands. Writes results.json, table.md and
genre_shift.png under --out; logged to MLflow (one run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from recvae.benchmark.statistics import confidence_interval
from recvae.data.features import fit_features
from recvae.data.side import item_genres, read_side_table
from recvae.environment import describe, environment, write_script_results
from recvae.models import CVAE
from recvae.pipeline import DataSpec, SplitSpec, prepare_split
from recvae.score.recommend import UserSide
from recvae.split.conditioned import with_user_features
from recvae.track.plots import pyplot
from recvae.track.tracking import TrackingConfig, start_tracking

SETTING = dict(learning_rate=0.006448, dropout=0.3958, hidden_dims=(), beta_cap=0.4387, anneal_epochs=165.06)
HISTORY_DROPOUT = 0.5
FEATURES = ("gender", "age", "occupation", "zip")
BANDS = ("1", "18", "25", "35", "45", "50", "56")  # users.dat's age codes: under 18, 18-24, ..., 56+
SYNTHETIC_USERS = 1000
SPLIT_SEED = 98765


def genre_mix(items: np.ndarray, genres: list[set], names: list[str]) -> np.ndarray:
    """Share of each genre in the interactions with ``items`` (item indices), a film of k genres 1/k each."""
    column = {g: i for i, g in enumerate(names)}
    mix = np.zeros(len(names))
    for item in items:
        for g in genres[item]:
            mix[column[g]] += 1.0 / len(genres[item])
    return mix / mix.sum()


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def one_seed(data: Path, seed: int, setting: dict) -> dict:
    split, _ = prepare_split(DataSpec(path=str(data / "user_movie_pairs.tsv.gz")), SplitSpec(heldout_users=600, seed=seed))
    table = read_side_table(data / "users.dat.gz")
    train_users = split.users.subset(split.train_users)
    encoding = fit_features(table, train_users, columns=FEATURES)
    conditioned = with_user_features(split, encoding.transform(table, split.users), encoding.names())
    model = CVAE(conditions=encoding.width, history_dropout=HISTORY_DROPOUT, **setting).fit(
        conditioned.train, conditioned.validation, conditioned.items)
    genres = item_genres(read_side_table(data / "movies.dat.gz"), split.items)
    names = sorted(set().union(*genres))
    training = table.loc[table.index.isin([str(u) for u in train_users.ids])]
    side = UserSide(training, encoding)  # features of training users only
    band_of = training["age"].astype(str).str.strip()
    user_rows = {str(u): row for row, u in enumerate(train_users.ids)}
    real_all = genre_mix(split.train.indices, genres, names)
    anyone = model.sample(SYNTHETIC_USERS, seed=seed, conditions=side.draw(SYNTHETIC_USERS, (), seed))
    synthetic_all = genre_mix(model.catalogue().index_of(anyone.item.to_numpy()), genres, names)
    bands = {}
    for band in BANDS:
        rows = [user_rows[u] for u in band_of.index[band_of == band]]
        real = genre_mix(split.train[rows].indices, genres, names)
        drawn = model.sample(SYNTHETIC_USERS, seed=seed, conditions=side.draw(SYNTHETIC_USERS, (f"age={band}",), seed))
        synthetic = genre_mix(model.catalogue().index_of(drawn.item.to_numpy()), genres, names)
        bands[band] = {"real users": len(rows), "tv conditioned": total_variation(synthetic, real),
                       "tv unconditioned": total_variation(synthetic_all, real), "tv all real users": total_variation(real_all, real),
                       "real": real.tolist(), "synthetic": synthetic.tolist()}
    return {"genres": names, "real_all": real_all.tolist(), "synthetic_all": synthetic_all.tolist(), "bands": bands}


def summarise(by_seed: list[dict]) -> dict:
    out = {}
    for band in BANDS:
        out[band] = {k: confidence_interval([s["bands"][band][k] for s in by_seed])
                     for k in ("tv conditioned", "tv unconditioned", "tv all real users")}
        out[band]["real users"] = by_seed[0]["bands"][band]["real users"]
    return out


def figure(first: dict):
    """Each band's genre shares against all users': the real band's shift and the conditioned synthetic one's."""
    plt = pyplot()
    names = first["genres"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    real_shift = np.array([np.array(first["bands"][b]["real"]) - first["real_all"] for b in BANDS])
    synthetic_shift = np.array([np.array(first["bands"][b]["synthetic"]) - first["synthetic_all"] for b in BANDS])
    limit = float(np.abs(np.concatenate([real_shift, synthetic_shift])).max())
    for axis, shift, title in ((axes[0], real_shift, "real users of the band"),
                               (axes[1], synthetic_shift, "CVAE's synthetic users of the band")):
        image = axis.imshow(shift.T, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        axis.set_xticks(range(len(BANDS)), ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"])
        axis.set_yticks(range(len(names)), names, fontsize=8)
        axis.set_xlabel("age band")
        axis.set_title(f"{title}:\ngenre share minus all users' (same source)")
    fig.colorbar(image, ax=axes, label="difference in genre share")
    fig.suptitle("ML-1M, first split seed: how each age band's genre mix departs from everyone's", y=1.03)
    return fig


def table(summary: dict) -> str:
    lines = ["| age band | real training users | TV, conditioned CVAE | TV, unconditioned CVAE | TV, all real users |",
             "|---|---|---|---|---|"]
    for band in BANDS:
        s = summary[band]
        lines.append(f"| {band} | {s['real users']} | " + " | ".join(
            f"{s[k][0]:.4f} ± {s[k][1]:.4f}" for k in ("tv conditioned", "tv unconditioned", "tv all real users")) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="evaluation/synthetic/ml-1m-conditional")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: the config's)")
    args = parser.parse_args(argv)
    setting = SETTING if args.epochs is None else {**SETTING, "epochs": args.epochs}
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with start_tracking(TrackingConfig(), "conditional-generation-ml-1m") as tracker:
        tracker.log_params({"data": str(data), "seeds": args.seeds, "setting": json.dumps(setting),
                            "history_dropout": HISTORY_DROPOUT, "synthetic_users": SYNTHETIC_USERS})
        by_seed = []
        for seed in range(SPLIT_SEED, SPLIT_SEED + args.seeds):
            by_seed.append(one_seed(data, seed, setting))
            print(f"seed {seed}: " + json.dumps({b: {k: round(v, 4) for k, v in r.items() if k.startswith("tv")}
                                                 for b, r in by_seed[-1]["bands"].items()}), flush=True)
        summary = summarise(by_seed)
        tracker.log_metrics({f"age_{b}.{k.replace(' ', '_')}": v[0] for b, s in summary.items()
                             for k, v in s.items() if k.startswith("tv")})
        figure(by_seed[0]).savefig(out / "genre_shift.png", dpi=120, bbox_inches="tight")
        (out / "table.md").write_text(table(summary) + "\n")
        write_script_results(out / "results.json", "scripts/conditional_generation_ml1m.py", argv, started, {
            "setting": setting, "history_dropout": HISTORY_DROPOUT, "by_seed": by_seed, "summary": summary})
        tracker.log_artifact(out, "conditional-generation")
    print((out / "table.md").read_text())
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

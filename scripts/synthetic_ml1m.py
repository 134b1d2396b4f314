"""Synthetic logs drawn from VAEs trained on MovieLens 1M, measured against the real log.

    python scripts/synthetic_ml1m.py [--data ../shared/data/ml-1m] [--out evaluation/synthetic/ml-1m]

The split is ml-1m.toml's (strong generalization, 600 + 600 held-out users, seed 98765). Mult-VAE (the paper's
defaults) and RecVAE (200 epochs, learning rate 0.002) are trained on its training users, the epoch picked on
the validation users. Each draws as many synthetic users as the training log has, from the aggregate
posterior (the Gaussian mixture kept with the model) and from the prior, at temperature 1; a popularity
sampler (independent items by popularity, the training users' history lengths) is the baseline. The realism
report (``recvae.generative.report``) compares each with the real training log: item popularity, history
lengths, PMI of frequent pairs, genre mix, train-on-synthetic/test-on-real with EASE (lambda 500) scored on
the real test users, and memorisation. Logged to MLflow (one run). Writes report.json and the figures under
--out, and README.md's table as table.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from recvae.data import Interactions, preprocess, read_interactions
from recvae.data.side import item_genres, read_side_table
from recvae.environment import describe, environment
from recvae.generative.realism import popularity_sampler
from recvae.generative.report import realism_report
from recvae.models import MultVAE, RecVAE
from recvae.split import strong_generalization_split
from recvae.track.tracking import TrackingConfig, start_tracking

MODELS = {"Mult-VAE": lambda: MultVAE(), "RecVAE": lambda: RecVAE(epochs=200, learning_rate=0.002)}
COLUMNS = (("tstr_ratio", "TSTR ratio", "{:.3f}"), ("pmi_correlation", "PMI r", "{:.3f}"),
           ("item_share_jsd", "item JSD", "{:.4f}"), ("item_gini", "Gini", "{:.3f}"),
           ("length_jsd", "length JSD", "{:.4f}"), ("genre_mix_jsd", "genre JSD", "{:.4f}"),
           ("nearest_jaccard_mean", "nearest Jaccard (mean)", "{:.3f}"),
           ("nearest_jaccard_p99", "nearest Jaccard (p99)", "{:.3f}"), ("copies", "copies", "{}"))


def table(report: dict) -> str:
    real = report["real"]
    lines = ["| log | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines.append(f"| real training log | 1.000 | 1.000 | 0 | {real['item_gini']:.3f} | 0 | 0 | "
                 f"{real['nearest_jaccard_heldout_mean']:.3f} (held-out users) | "
                 f"{real['nearest_jaccard_heldout_p99']:.3f} (held-out users) | – |")
    for name, entry in report["logs"].items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(entry[key]) if key in entry else "–"
                                                 for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="evaluation/synthetic/ml-1m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data_dir, out = Path(args.data), Path(args.out)
    data = Interactions.from_frame(preprocess(read_interactions(data_dir / "user_movie_pairs.tsv.gz")))
    split = strong_generalization_split(data, heldout_users=600, seed=98765)
    genres = item_genres(read_side_table(data_dir / "movies.dat.gz"), split.items)
    n_users = split.train.shape[0]
    logs, seconds = {}, {}
    for name, build in MODELS.items():
        started = time.perf_counter()
        model = build().fit(split.train, split.validation, split.items)
        seconds[name] = round(time.perf_counter() - started, 1)
        for source in ("posterior", "prior"):
            frame = model.sample(n_users, seed=args.seed, source=source)
            logs[f"{name}, {source}"] = Interactions.from_frame(frame, items=split.items).matrix
    logs["popularity sampler"] = popularity_sampler(split.train, n_users, seed=args.seed)
    with start_tracking(TrackingConfig(), "synthetic-ml-1m") as tracker:
        report = realism_report(logs, split.train, split.test, out, genres=genres,
                                title="ML-1M: synthetic logs against the real training log")
        report["command"] = "python scripts/synthetic_ml1m.py " + shlex.join(sys.argv[1:])
        report["environment"] = environment()
        report["fit_seconds"] = seconds
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "table.md").write_text(table(report) + "\n")
        tracker.log_params({"data": str(data_dir), "models": list(MODELS), "seed": args.seed})
        for name, entry in report["logs"].items():
            tracker.log_metrics({k: v for k, v in entry.items() if isinstance(v, (int, float))},
                                prefix=name.replace(", ", ".").replace(" ", "_") + ".")
        tracker.log_artifact(out, "synthetic")
    print(table(report))
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

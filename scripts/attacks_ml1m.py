"""Shilling-attack detection on MovieLens 1M: fake profiles injected into the log, a Mult-VAE trained on the
poisoned log (the attacker is in the training data, as in practice), every user scored.

    python scripts/attacks_ml1m.py [--data ../shared/data/ml-1m] [--out evaluation/attacks/ml-1m] [--epochs 30]

Grid: random, bandwagon and segment attacks (``recvae.generative.attacks``), 1%, 3% and 5% of the users,
filler 1% and 5% of the items; one target item per cell, drawn among the less popular half. The VAE (the
paper's Mult-VAE, --epochs epochs, the last kept) gives three detectors: its anomaly score (negative ELBO per
interaction), its latent crowding (minus the mean distance to the 10 nearest users' posterior means), and the
two together (a user's higher rank of the two). Its score is also shown as the length and popularity
detectors are, as distance from the typical user's either way ("either side"). The simple detectors:
history length, mean popularity of the history, EASE's reconstruction error (lambda 500, fitted on the
poisoned log), PCA-VarSelect, and profile crowding (mean cosine similarity to the 10 nearest histories).
For each: ROC-AUC and precision at the number of attackers. The attack's effect: the share of 2,000 genuine
users whose top-20 (seen items left out) holds the target, under a Mult-VAE trained on the clean log, on the
poisoned log, and on the poisoned log less as many users as there are attackers, those the VAE's score or
crowding ranks highest. Logged to MLflow (one run). Writes results.json, tables.md and detection.png
under --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import scipy.sparse as sp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recvae.data import Interactions, read_interactions  # noqa: E402
from recvae.data.side import item_genres, read_side_table  # noqa: E402
from recvae.environment import describe, environment  # noqa: E402
from recvae.generative.attacks import (KINDS, Attack, detection, distance_from_typical, ease_error_scores,  # noqa: E402
                                       inject, length_scores, pca_scores, popularity_scores, profile_crowding_scores,
                                       rank_combination)
from recvae.models import MultVAE  # noqa: E402
from recvae.models.ease import ease_weights  # noqa: E402
from recvae.track.tracking import TrackingConfig, start_tracking  # noqa: E402

SIZES = (0.01, 0.03, 0.05)
FILLERS = (0.01, 0.05)
DETECTORS = ("VAE score", "VAE crowding", "VAE score or crowding", "VAE score, either side", "history length",
             "mean popularity", "EASE error", "PCA-VarSelect", "profile crowding")
NEIGHBOURS = 10
EASE_L2 = 500.0
GENUINE_SAMPLE = 2000


def target_share(model, histories: sp.csr_matrix, target: int, n: int = 20) -> float:
    """Share of ``histories``' users whose top-n (seen items left out) holds ``target``."""
    top = model.top_n(histories, n)[0]
    return float((top == target).any(axis=1).mean())


def run_cell(matrix, genres, attack: Attack, epochs: int, genuine_rows, clean_model) -> dict:
    poisoned = inject(matrix, attack, genres)
    started = time.perf_counter()
    model = MultVAE(epochs=epochs, patience=None, seed=attack.seed).fit(poisoned.matrix)
    fit_seconds = time.perf_counter() - started
    vae = model.anomaly_scores(poisoned.matrix, neighbours=NEIGHBOURS)
    scores = {
        "VAE score": vae.score,
        "VAE crowding": -vae.neighbour_distance,
        "VAE score or crowding": rank_combination(vae.score, -vae.neighbour_distance),
        # as the simple detectors are scored: distance from the typical user's, a profile too likely counting too
        "VAE score, either side": distance_from_typical(vae.score),
        "history length": length_scores(poisoned.matrix),
        "mean popularity": popularity_scores(poisoned.matrix),
        "EASE error": ease_error_scores(poisoned.matrix, ease_weights(poisoned.matrix, EASE_L2).numpy()),
        "PCA-VarSelect": pca_scores(poisoned.matrix),
        "profile crowding": profile_crowding_scores(poisoned.matrix, NEIGHBOURS),
    }
    fakes = int(poisoned.fake.sum())
    kept = np.sort(np.argsort(-scores["VAE score or crowding"], kind="stable")[fakes:])
    cleaned = MultVAE(epochs=epochs, patience=None, seed=attack.seed).fit(poisoned.matrix[kept])
    genuine = matrix[genuine_rows]
    return {"kind": attack.kind, "size": attack.size, "filler": attack.filler, "target": poisoned.target,
            "segment": poisoned.segment, "profiles": fakes, "fit_seconds": round(fit_seconds, 1),
            "detection": {name: detection(values, poisoned.fake) for name, values in scores.items()},
            "target_in_top20": {"clean": target_share(clean_model, genuine, poisoned.target),
                                "poisoned": target_share(model, genuine, poisoned.target),
                                "after_removal": target_share(cleaned, genuine, poisoned.target)},
            "fakes_removed": int(poisoned.fake[np.setdiff1d(np.arange(len(poisoned.fake)), kept)].sum())}


def tables(cells: list[dict]) -> str:
    head = "| attack | size | filler | " + " | ".join(DETECTORS) + " |"
    lines = ["### ROC-AUC (precision at the number of attackers)", "", head, "|" + "---|" * (3 + len(DETECTORS))]
    for c in cells:
        best = max(c["detection"][d]["roc_auc"] for d in DETECTORS)
        row = [f"{c['detection'][d]['roc_auc']:.3f} ({c['detection'][d]['precision_at_n']:.2f})" for d in DETECTORS]
        row = [f"**{r}**" if c["detection"][d]["roc_auc"] == best else r for r, d in zip(row, DETECTORS)]
        lines.append(f"| {c['kind']} | {c['size']:.0%} | {c['filler']:.0%} | " + " | ".join(row) + " |")
    for kind in KINDS:
        means = [np.mean([c["detection"][d]["roc_auc"] for c in cells if c["kind"] == kind]) for d in DETECTORS]
        lines.append(f"| **{kind}, mean** | | | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    means = [np.mean([c["detection"][d]["roc_auc"] for c in cells]) for d in DETECTORS]
    lines.append("| **all, mean** | | | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    lines += ["", "### The attack's effect: genuine users with the target in their top-20", "",
              "| attack | size | filler | target | clean log | poisoned | top-scored users removed | fakes among them |",
              "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        t = c["target_in_top20"]
        lines.append(f"| {c['kind']} | {c['size']:.0%} | {c['filler']:.0%} | {c['target']} | {t['clean']:.3f} | "
                     f"{t['poisoned']:.3f} | {t['after_removal']:.3f} | {c['fakes_removed']} / {c['profiles']} |")
    return "\n".join(lines)


def figure(cells: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(KINDS), figsize=(17, 5), sharey=True)
    for ax, kind in zip(axes, KINDS):
        rows = [c for c in cells if c["kind"] == kind]
        x = np.arange(len(rows))
        for offset, name in enumerate(DETECTORS):
            ax.bar(x + (offset - 4) * 0.09, [c["detection"][name]["roc_auc"] for c in rows], 0.09, label=name)
        ax.set_xticks(x, [f"{c['size']:.0%} users\n{c['filler']:.0%} filler" for c in rows], fontsize=8)
        ax.set_title(f"{kind} attack")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("ROC-AUC (fake vs genuine users)")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle("ML-1M: finding injected profiles among the training users (Mult-VAE trained on the poisoned log)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="evaluation/attacks/ml-1m")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Interactions.from_frame(read_interactions(data / "user_movie_pairs.tsv.gz"))
    matrix = log.matrix.astype(bool).astype(np.float32)
    genres = item_genres(read_side_table(data / "movies.dat.gz"), log.items)
    genuine_rows = np.sort(np.random.default_rng(args.seed).choice(matrix.shape[0], GENUINE_SAMPLE, replace=False))
    clean = MultVAE(epochs=args.epochs, patience=None, seed=args.seed).fit(matrix)
    cells = []
    with start_tracking(TrackingConfig(), "attacks-ml-1m") as tracker:
        tracker.log_params({"epochs": args.epochs, "ease_l2": EASE_L2, "data": str(data)})
        for kind in KINDS:
            for size in SIZES:
                for filler in FILLERS:
                    cell = run_cell(matrix, genres, Attack(kind, size, filler, seed=args.seed), args.epochs,
                                    genuine_rows, clean)
                    cells.append(cell)
                    key = f"{kind}_{int(size * 100)}_{int(filler * 100)}"
                    tracker.log_metrics({f"{key}.{d.replace(' ', '_')}_auc": cell["detection"][d]["roc_auc"]
                                         for d in DETECTORS})
                    print(key, {d: round(cell["detection"][d]["roc_auc"], 3) for d in DETECTORS},
                          cell["target_in_top20"], flush=True)
                    (out / "results.json").write_text(json.dumps({"cells": cells}, indent=1))
        figure(cells, out / "detection.png")
        command = "python scripts/attacks_ml1m.py " + shlex.join(sys.argv[1:])
        result = {"command": command, "environment": environment(), "epochs": args.epochs, "cells": cells,
                  "mean_roc_auc": {d: float(np.mean([c["detection"][d]["roc_auc"] for c in cells])) for d in DETECTORS}}
        (out / "results.json").write_text(json.dumps(result, indent=1))
        (out / "tables.md").write_text(tables(cells) + "\n")
        tracker.log_metrics({f"mean_auc.{d.replace(' ', '_')}": v for d, v in result["mean_roc_auc"].items()})
        tracker.log_artifact(out, "attacks")
    print(tables(cells))
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

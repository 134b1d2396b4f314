"""How far the linear path should reach into short histories: the CVAE with DLAE's path at each half length.

    python scripts/path_half_length_ml1m.py --linear-weight W [--half-lengths 0,3,10,30,100] [--out evaluation/cold-start/ml-1m-half-length]

On the first split seed of ``cold_start_ml1m.py`` (its splits, features gender and age, setting and history
dropout), the CVAE is trained without the path and once with DLAE's path (λ 500, dropout 0.5) at weight W for
each half length h (``linear_half_length``: the path's weight times n / (n + h) for a history of n items; 0 is
the same weight for every history; each h is its own fit, since early stopping picks the epoch on the sum).
Every fit is scored on the *validation* users, warm (their fold-in history) and with 1, 3 and 5 of their items
given, so that the h chosen here (the best mean NDCG@100 over those four) can be carried to the test users of
every seed by ``cold_start_ml1m.py --linear-half-length`` without having seen them. Logged to MLflow (one
run). Writes results.json, half_length.png and table.md under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cold_start_ml1m import HISTORY_DROPOUT, SETTING, SPLIT_SEED, conditioned_split, cvae_with_path
from recvae.environment import describe, environment, write_script_results
from recvae.evaluate import evaluate
from recvae.models import CVAE
from recvae.split.conditioned import cold_start
from recvae.track.plots import pyplot
from recvae.track.tracking import TrackingConfig, start_tracking

GIVEN = (1, 3, 5)


def validation_sets(data: Path, seed: int):
    """The first seed's CVAE training data and its validation users, warm and with 1, 3, 5 items given."""
    _, _, conditioned, width = conditioned_split(data, seed, ("gender", "age"))
    sets = {"warm": conditioned.validation}
    sets.update({f"{g} given": cold_start(conditioned.validation, g, seed, features=width) for g in GIVEN})
    return conditioned, width, sets


def scores_by_half_length(data: Path, weight: float, half_lengths: list[float], setting: dict) -> dict:
    conditioned, width, sets = validation_sets(data, SPLIT_SEED)
    fits = {"no path": CVAE(conditions=width, history_dropout=HISTORY_DROPOUT, **setting)}
    fits.update({f"h={h:g}": cvae_with_path(width, setting, weight, h) for h in half_lengths})
    result = {}
    for name, model in fits.items():
        model.fit(conditioned.train, conditioned.validation, conditioned.items)
        result[name] = {key: float(evaluate(model, users, ("ndcg@100",)).summary()["ndcg@100"])
                        for key, users in sets.items()}
        print(name, json.dumps(result[name]), flush=True)
    return result


def figure(result: dict, half_lengths: list[float]):
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(7, 4.2))
    positions = np.arange(len(half_lengths))
    for key in result["no path"]:
        gains = [result[f"h={h:g}"][key] - result["no path"][key] for h in half_lengths]
        axis.plot(positions, gains, marker="o", label=f"validation users, {key}")
    axis.axhline(0.0, color="grey", linewidth=1)
    axis.set_xticks(positions, [f"{h:g}" if h else "0 (one weight)" for h in half_lengths])
    axis.set_xlabel("half length h: the path's weight x n / (n + h) for n items")
    axis.set_ylabel("NDCG@100, CVAE + path minus CVAE")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.suptitle("ML-1M, first split seed: DLAE's path in the CVAE against the half length")
    fig.tight_layout()
    return fig


def table(result: dict, chosen: str) -> str:
    keys = list(result["no path"])
    lines = ["| fit | " + " | ".join(keys) + " | mean |", "|---|" + "---|" * (len(keys) + 1)]
    for name, row in result.items():
        mark = " (chosen)" if name == chosen else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + f" | {np.mean(list(row.values())):.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="evaluation/cold-start/ml-1m-half-length")
    parser.add_argument("--linear-weight", type=float, required=True, help="the path's weight (chosen on warm users)")
    parser.add_argument("--half-lengths", default="0,3,10,30,100")
    parser.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: the config's)")
    args = parser.parse_args(argv)
    half_lengths = [float(h) for h in args.half_lengths.split(",")]
    setting = SETTING if args.epochs is None else {**SETTING, "epochs": args.epochs}
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with start_tracking(TrackingConfig(), "path-half-length-ml-1m") as tracker:
        tracker.log_params({"data": str(data), "linear_weight": args.linear_weight, "half_lengths": args.half_lengths})
        result = scores_by_half_length(data, args.linear_weight, half_lengths, setting)
        chosen = max((f"h={h:g}" for h in half_lengths), key=lambda name: np.mean(list(result[name].values())))
        tracker.log_metrics({f"{name.replace('=', '_')}.{key.replace(' ', '_')}": v
                             for name, row in result.items() for key, v in row.items()})
        figure(result, half_lengths).savefig(out / "half_length.png", dpi=120)
        (out / "table.md").write_text(table(result, chosen) + "\n")
        write_script_results(out / "results.json", "scripts/path_half_length_ml1m.py", argv, started, {
            "setting": setting, "history_dropout": HISTORY_DROPOUT, "split_seed": SPLIT_SEED, "ndcg@100": result,
            "chosen": chosen})
        tracker.log_artifact(out, "half-length")
    print((out / "table.md").read_text())
    print(describe(environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

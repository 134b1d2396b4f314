"""Mixed precision against float32: quality on ML-1M and epoch time on a generated log.

    python scripts/benchmark_precision.py [--ml1m ../shared/data/ml-1m/user_movie_pairs.tsv.gz] [--pairs 3]

1. ML-1M, strong generalization (600 + 600 held-out users, the first split seed of ml-1m.toml): Mult-VAE
   at the setting ml-1m.toml chose (linear, learning rate 1e-2, dropout 0.13, β to 0.79 over 192 epochs,
   at most 200 epochs, patience 20), trained with precision fp32, bf16 and fp16 from the same seed: epochs, best validation NDCG@100, test NDCG@100 and Recall@20, and the largest
   relative difference of the per-epoch training loss from fp32's over the epochs both ran.
2. One Mult-VAE epoch (paper architecture) on a generated log of 34k users x 20k items, fp32 and bf16
   alternately, --pairs pairs; the median of the per-pair ratios.

Writes evaluation/perf/precision.md and precision.json. Run on the CPU here (no GPU was lent): autocast on
CPU uses the machine's bf16/fp16 units where it has them (AMX on this Xeon), so the speed figures say
nothing about a GPU's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from recvae.environment import describe, environment

PRECISIONS = ("fp32", "bf16", "fp16")


def quality(ml1m: str) -> list[dict]:
    from recvae.evaluate import evaluate
    from recvae.train import fit_model
    from recvae.models import MultVAE
    from recvae.pipeline import DataSpec, SplitSpec, prepare_split

    split, _ = prepare_split(DataSpec(path=ml1m), SplitSpec(heldout_users=600, seed=98765))
    settings = {
        "MultVAE": (MultVAE, dict(learning_rate=0.01, dropout=0.13, hidden_dims=(), beta_cap=0.79, anneal_epochs=192.0)),
    }
    rows = []
    for name, (model_class, params) in settings.items():
        curves = {}
        for precision in PRECISIONS:
            started = time.perf_counter()
            model = fit_model(model_class(precision=precision, **params), split.train, split.validation, split.items)
            seconds = time.perf_counter() - started
            test = evaluate(model, split.test, ["ndcg@100", "recall@20"]).summary()
            curves[precision] = [r["loss"] for r in model.history_]
            shared = min(len(curves[precision]), len(curves["fp32"]))
            worst = max(abs(a / b - 1.0) for a, b in zip(curves[precision][:shared], curves["fp32"][:shared]))
            rows.append({"model": name, "precision": precision, "epochs": len(model.history_),
                         "best_epoch": max(range(len(model.history_)), key=lambda i: model.history_[i]["val_ndcg@100"]) + 1,
                         "best_val_ndcg@100": max(r["val_ndcg@100"] for r in model.history_),
                         "test_ndcg@100": test["ndcg@100"], "test_recall@20": test["recall@20"],
                         "max_loss_rel_diff": worst, "seconds": seconds, "losses": curves[precision]})
            print(f"{name} {precision}: {rows[-1]['epochs']} epochs, val {rows[-1]['best_val_ndcg@100']:.4f}, "
                  f"test {test['ndcg@100']:.4f}, loss within {worst:.2%} of fp32, {seconds:.0f} s", file=sys.stderr, flush=True)
    return rows


def speed(pairs: int) -> dict:
    from recvae.data import SyntheticLog, generate_log, Interactions
    from recvae.models import MultVAE
    from recvae.train import Trainer

    log = generate_log(SyntheticLog(n_users=34_000, n_items=20_000, median_activity=52.0, string_ids=False))
    matrix = Interactions.from_frame(log[["user", "item"]]).matrix
    seconds = {p: [] for p in ("fp32", "bf16")}
    for _ in range(pairs):
        for precision in seconds:
            model = MultVAE(epochs=1, precision=precision, patience=None)
            started = time.perf_counter()
            model.fit(matrix, trainer=Trainer(progress=False))
            seconds[precision].append(time.perf_counter() - started)
    ratios = [a / b for a, b in zip(seconds["bf16"], seconds["fp32"])]
    return {"users": matrix.shape[0], "items": matrix.shape[1], "interactions": int(matrix.nnz),
            "seconds": seconds, "bf16_over_fp32": ratios, "median_ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ml1m", default="../shared/data/ml-1m/user_movie_pairs.tsv.gz")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", default="evaluation/perf")
    args = parser.parse_args()
    result = {"quality": quality(args.ml1m), "speed": speed(args.pairs), "machine": environment(),
              "torch_threads": torch.get_num_threads(),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "precision.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "precision.md").write_text(markdown(result))
    print((out / "precision.md").read_text())


def markdown(result: dict) -> str:
    lines = [
        "# Mixed precision against float32",
        "",
        "ML-1M, strong generalization, split seed 98765 (600 + 600 held-out users). Mult-VAE at ml-1m.toml's "
        "chosen setting; the same seed for every precision. Loss difference: the "
        "largest relative difference of an epoch's training loss from fp32's, over the epochs both ran.",
        "",
        "| model | precision | epochs (best) | best val NDCG@100 | test NDCG@100 | test Recall@20 | loss vs fp32 | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["quality"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['epochs']} ({r['best_epoch']}) | {r['best_val_ndcg@100']:.4f} | "
                     f"{r['test_ndcg@100']:.4f} | {r['test_recall@20']:.4f} | {r['max_loss_rel_diff']:.2%} | {r['seconds']:.0f} |")
    s = result["speed"]
    lines += [
        "",
        f"One Mult-VAE epoch (paper architecture, batches of 500) on a generated log of {s['users']} users x "
        f"{s['items']} items ({s['interactions']} interactions), fp32 and bf16 alternately:",
        "",
        "| pair | fp32 s | bf16 s | bf16 / fp32 |",
        "| --- | --- | --- | --- |",
    ]
    for i, (a, b, r) in enumerate(zip(s["seconds"]["fp32"], s["seconds"]["bf16"], s["bf16_over_fp32"]), start=1):
        lines.append(f"| {i} | {a:.1f} | {b:.1f} | {r:.2f} |")
    lines += ["", f"Median bf16 / fp32: **{s['median_ratio']:.2f}**. On this CPU, not a GPU: no GPU was lent to the "
              "sessions that built this.", "", f"Machine: {describe(result['machine'])}.", "",
              f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Time and memory of a whole item-to-item table (``recvae similar --items all``) beside asking one item at a time.

    python scripts/benchmark_similar.py [--users 50000] [--items 10000] [--repeats 3] [--out evaluation/perf]

On a generated log, Mult-VAE with the paper's architecture is trained for one epoch; then pairs of fresh processes
each build the top 20 of every item, one by ``similar_df`` over the whole catalogue (blocks of items, as the
command does), the other by implicit's single call ``similar_items(i, N)`` for every item, keeping each answer (a
loop a user of implicit's interface would write), the order alternating. Each process reports its seconds and
peak resident memory. Writes similar.md and similar.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = 20


def one(variant: str, model_dir: str) -> None:
    """In a fresh process: build every item's top 20 the way ``variant`` says; print seconds and peak RSS."""
    from recvae.models import Recommender

    model = Recommender.load(model_dir)
    started = time.perf_counter()
    if variant == "table":
        rows = len(model.similar_df(None, n=TOP))
    else:
        kept = [model.similar_items(index, N=TOP + 1) for index in range(model.n_items_)]
        rows = sum(len(ids) - 1 for ids, _ in kept)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="evaluation/perf")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(*args.one)
        return
    from recvae.data import Interactions, SyntheticLog, generate_log
    from recvae.environment import describe, environment
    from recvae.models import MultVAE

    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        log = generate_log(SyntheticLog(n_users=args.users, n_items=args.items, median_activity=52.0, seed=0,
                                        string_ids=False))[["user", "item"]]
        data = Interactions.from_frame(log)
        model_dir = str(Path(tmp) / "model")
        MultVAE(epochs=1, patience=None).fit(data.matrix, items=data.items).save(model_dir)
        say(f"{data.n_items} items; model trained")
        pairs = []
        for repeat in range(args.repeats):
            pair = {}
            for variant in (("table", "single") if repeat % 2 == 0 else ("single", "table")):
                done = subprocess.run([sys.executable, __file__, "--one", variant, model_dir], capture_output=True,
                                      text=True, check=True)
                pair[variant] = json.loads(done.stdout.strip().splitlines()[-1])
            say(f"pair {repeat + 1}: table {pair['table']['seconds']:.1f} s {pair['table']['peak_mb']:.0f} MB, "
                f"single calls {pair['single']['seconds']:.1f} s {pair['single']['peak_mb']:.0f} MB")
            pairs.append(pair)
    ratios = [p["single"]["seconds"] / p["table"]["seconds"] for p in pairs]
    median = {variant: {what: statistics.median(p[variant][what] for p in pairs) for what in ("seconds", "peak_mb")}
              for variant in ("table", "single")}
    result = {"users": args.users, "items": data.n_items, "top": TOP, "pairs": pairs, "median": median,
              "median_single_over_table": statistics.median(ratios), "machine": environment(),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    (out / "similar.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# A whole item-to-item table", "",
             f"Mult-VAE with the paper's architecture on {args.users} generated users x {data.n_items} items; the top "
             f"{TOP} of every item, each way in its own fresh process, {args.repeats} pairs, the order alternating.", "",
             "| | median s | median peak RSS, MB |", "| --- | --- | --- |",
             f"| `similar_df(None, n={TOP})` (what `recvae similar --items all` runs) | {median['table']['seconds']:.1f} | "
             f"{median['table']['peak_mb']:.0f} |",
             f"| `similar_items(i, N={TOP + 1})` for every item, answers kept | {median['single']['seconds']:.1f} | "
             f"{median['single']['peak_mb']:.0f} |", "",
             f"One item at a time takes **{result['median_single_over_table']:.2f}x** the table's time (median of the "
             f"pairs' ratios: {', '.join(f'{r:.2f}' for r in ratios)}).", "",
             f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    (out / "similar.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""EASE at 10k, 20k and 40k items: the float64 LU inverse it used to take against the float32 Cholesky in
place it takes now, and a grid of four lambdas scored on 600 validation users, by one fit per lambda
against one shared eigendecomposition (after it, a lambda costs products with the validation users only).

    python scripts/benchmark_ease.py [--items 10000,20000,40000] [--users 60000] [--timeout 1500] [--ml-1m FILE]
    python scripts/benchmark_ease.py --only-precision FILE   # add the float32/float64 check to an existing ease.json

Each variant runs in a fresh process on the same generated log (long-tailed item popularity, like
MovieLens), so its peak RSS is its own; a variant whose estimated memory exceeds what the machine has is
reported as refused, not run, and one that runs past --timeout seconds is stopped and reported so.
Writes evaluation/perf/ease.md and ease.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from recvae.environment import describe, environment

GRID = (100.0, 300.0, 1000.0, 3000.0)
VALIDATION_USERS = 600
VARIANTS = {  # name: (items x items matrices it holds at its peak, bytes per entry)
    "float64 LU inverse (before)": (3, 8),
    "float32 Cholesky in place (now)": (1, 4),
    "grid, validation scored: one fit per lambda": (1, 4),
    "grid, validation scored: one eigendecomposition": (3, 4),
}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no /proc/self/status")


def generated_log(n_users: int, n_items: int, seed: int = 0) -> sp.csr_matrix:
    """Users with ~60 items each, items drawn with Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    counts = rng.integers(20, 100, n_users)
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.choice(n_items, size=counts.sum(), p=popularity)
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    x.data[:] = 1.0
    return x


def run_variant(variant: str, path: str) -> dict:
    """In this (fresh) process: fit the variant on the saved log, return seconds and peak RSS."""
    import scipy.linalg

    from recvae.models.ease import EASE, gram_matrix

    x = sp.load_npz(path).tocsr()
    validation = sp.load_npz(path.replace(".npz", "-validation.npz")).tocsr()
    started = time.perf_counter()
    if variant.startswith("float64"):
        float64_weights(x, GRID[2])
    elif variant.startswith("float32"):
        EASE(l2=GRID[2]).fit(x)
    elif variant.endswith("one fit per lambda"):
        for l2 in GRID:
            EASE(l2=l2).fit(x).score(validation)
    else:
        # P = V diag(1/(e + l2)) V^T; validation scores X B = X - (X P) / diag(P), column by column
        eigenvalues, vectors = scipy.linalg.eigh(gram_matrix(x), overwrite_a=True, check_finite=False, driver="evd")
        eigenvalues = np.maximum(eigenvalues, 0)
        projected = validation @ vectors  # validation users x items, once
        squares = vectors**2
        for l2 in GRID:
            inverse = (1.0 / (eigenvalues + l2)).astype(np.float32)
            diagonal = squares @ inverse
            scores = validation.toarray() - ((projected * inverse) @ vectors.T) / diagonal[None, :]
            assert np.isfinite(scores).all()
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def float64_weights(x: sp.csr_matrix, l2: float) -> torch.Tensor:
    """What EASE computed before: a float64 Gram matrix inverted by LU."""
    gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
    gram.diagonal().add_(l2)
    precision = torch.linalg.inv(gram)
    weights = -precision / precision.diagonal()
    weights.diagonal().zero_()
    return weights.float()


def precision_check(path: str) -> list[dict]:
    """Test NDCG@100 and Recall@20 on a real log (the first seed of ml-1m.toml's split) of the float32 fit
    against the float64 one, at every lambda of the grid."""
    from recvae.evaluate import evaluate
    from recvae.models.ease import EASE
    from recvae.pipeline import DataSpec, SplitSpec, prepare_split

    split, _ = prepare_split(DataSpec(path=path), SplitSpec(protocol="strong", heldout_users=600, seed=98765))
    rows = []
    for l2 in GRID:
        model = EASE(l2=l2).fit(split.train)
        now = evaluate(model, split.test, metrics=("ndcg@100", "recall@20")).summary()
        new_weights = model.module_.weights
        model.module_.weights = float64_weights(split.train, l2)
        before = evaluate(model, split.test, metrics=("ndcg@100", "recall@20")).summary()
        rows.append({"l2": l2, "ndcg@100 float64": before["ndcg@100"], "ndcg@100 float32": now["ndcg@100"],
                     "recall@20 float64": before["recall@20"], "recall@20 float32": now["recall@20"],
                     "max weight difference": float((new_weights - model.module_.weights).abs().max())})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="10000,20000,40000")
    parser.add_argument("--users", type=int, default=60000)
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds one variant may run")
    parser.add_argument("--out", default="evaluation/perf")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--ml-1m", dest="ml_1m", metavar="FILE",
                        help="also compare float32 and float64 test figures on this log (ml-1m.toml's split, first seed)")
    parser.add_argument("--only-precision", metavar="FILE",
                        help="run only that comparison on FILE and add it to the ease.json/.md already in --out")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(*args.child)))
        return
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(args.out)
    if args.only_precision:
        saved = json.loads((out / "ease.json").read_text())
        saved.update(precision_check=precision_check(args.only_precision), precision_command=command,
                     precision_environment=environment(), precision_data=args.only_precision)
        (out / "ease.json").write_text(json.dumps(saved, indent=1))
        write_markdown(out, saved)
        return
    from recvae.models.ease import available_memory

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_items in (int(n) for n in args.items.split(",")):
            path = f"{tmp}/log-{n_items}.npz"
            x = generated_log(args.users, n_items)
            sp.save_npz(path, x)
            sp.save_npz(path.replace(".npz", "-validation.npz"), generated_log(VALIDATION_USERS, n_items, seed=1))
            for variant, (matrices, width) in VARIANTS.items():
                need_gb = matrices * n_items**2 * width / 2**30
                row = {"items": n_items, "users": args.users, "interactions": int(x.nnz), "variant": variant,
                       "estimated_gb": round(need_gb, 2)}
                if need_gb * 2**30 > 0.9 * available_memory():
                    rows.append({**row, "seconds": None, "peak_rss_mb": None, "note": "refused: would not fit"})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                try:
                    done = subprocess.run([sys.executable, __file__, "--child", variant, path], capture_output=True,
                                          text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    rows.append({**row, "seconds": None, "peak_rss_mb": None, "note": f"stopped after {args.timeout:.0f} s"})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                if done.returncode != 0:
                    rows.append({**row, "seconds": None, "peak_rss_mb": None, "note": done.stderr.strip()[-300:]})
                else:
                    rows.append({**row, **json.loads(done.stdout.strip().splitlines()[-1]), "note": ""})
                print(json.dumps(rows[-1]), flush=True)
    check = precision_check(args.ml_1m) if args.ml_1m else []
    saved = {"command": command, "environment": environment(), "grid": GRID, "users": args.users, "rows": rows,
             "precision_check": check, **({"precision_data": args.ml_1m} if args.ml_1m else {})}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ease.json").write_text(json.dumps(saved, indent=1))
    write_markdown(out, saved)


def write_markdown(out: Path, saved: dict) -> None:
    rows, check = saved["rows"], saved["precision_check"]
    users = saved.get("users", rows[0]["users"])
    lines = ["# EASE at scale", "", f"Generated logs of {users:,} users (20-100 items each, Zipf-like item "
             f"popularity); one fit at lambda {GRID[2]:g}; the grid is lambda in {list(GRID)}, each scored on "
             f"{VALIDATION_USERS} validation users (a search needs those scores, not the weights). Each variant in a "
             "fresh process; peak RSS is the process's high-water mark.", "",
             "| items | variant | seconds | peak RSS MB | estimated matrices GB | note |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        lines.append(f"| {r['items']:,} | {r['variant']} | {seconds} | {rss} | {r['estimated_gb']} | {r['note']} |")
    if check:
        lines += ["", f"## float32 against float64 on {saved['precision_data']}", "",
                  "The first split seed of evaluation/benchmarks/ml-1m.toml (600 validation + 600 test users); test "
                  "users scored by each fit's weights.", "",
                  "| lambda | NDCG@100 float64 | NDCG@100 float32 | Recall@20 float64 | Recall@20 float32 | max weight difference |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['l2']:g} | {r['ndcg@100 float64']:.4f} | {r['ndcg@100 float32']:.4f} | {r['recall@20 float64']:.4f} "
                  f"| {r['recall@20 float32']:.4f} | {r['max weight difference']:.1e} |" for r in check]
    lines += ["", f"Machine: {describe(saved['environment'])}.", "", f"Command: `{saved['command']}`", ""]
    if "precision_command" in saved:
        lines += [f"The float32 against float64 table: `{saved['precision_command']}` on "
                  f"{describe(saved['precision_environment'])}.", ""]
    (out / "ease.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

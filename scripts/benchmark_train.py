"""Mult-VAE training speed against the machine's limit, and time-to-quality beside RecBole.

    python scripts/benchmark_train.py [--users 136000] [--items 20000] [--skip-recbole] [--out evaluation/perf]

1. On a generated log shaped like MovieLens-20M, one epoch of Mult-VAE with the paper's architecture
   against the floor: the same epoch's unavoidable products alone, timed in the same process: the
   sparse first layer (embedding_bag forward and backward) and the decoder's output layer
   (600 -> items forward, and both backward products) for every batch.
2. Scaling: seconds per epoch for 5k, 20k and 80k items at a quarter of the users, and for 1x and
   4x users (a quarter and all of them) at 20k items.
3. Large catalogues: seconds per epoch with the full softmax and with a sampled one (--negatives shared
   negatives per batch) for --catalogues items at a quarter of the users.
4. Time-to-quality on ML-1M: RecBole's MultiVAE (its defaults, through recvae's adapter) to its best
   validation NDCG@100, and recvae's Mult-VAE (as benchmarked; its defaults; the paper's 200,000 anneal steps) to
   first reach that value.

Writes train.md, train.json and train_scaling.png under --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recvae.data import Interactions, SyntheticLog, generate_log
from recvae.defaults import SEED
from recvae.environment import describe, environment
from recvae.train import fit_model
from recvae.models import MultVAE
from recvae.models.nn import SparseBatch, make_adam
from recvae.train import Trainer


def make_matrix(users: int, items: int, median_activity: float, seed: int = 0):
    log = generate_log(SyntheticLog(n_users=users, n_items=items, median_activity=median_activity, seed=seed, string_ids=False))
    return Interactions.from_frame(log[["user", "item"]]).matrix


def catalogue_matrix(users: int, items: int, median_activity: float, seed: int = 0):
    """A log over exactly ``items`` items in O(interactions): every item is given to one random user, the rest
    of each user's log-normal activity is drawn from a power-law popularity (duplicates merged). The taste
    generator draws a users x items block of keys, which at 320k items took over 20 minutes and 18 GB; an
    epoch's cost depends on the shape and the number of interactions, not on the taste structure."""
    spec = SyntheticLog()
    rng = np.random.default_rng(seed)
    activity = np.clip(rng.lognormal(np.log(median_activity), spec.activity_sigma, size=users).round(),
                       spec.min_activity, items // 2).astype(np.int64)
    popularity = (rng.permutation(items) + 10.0) ** -spec.popularity_exponent
    rows = np.concatenate([rng.integers(0, users, size=items), np.repeat(np.arange(users), activity)])
    cols = np.concatenate([rng.permutation(items), rng.choice(items, size=int(activity.sum()), p=popularity / popularity.sum())])
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(users, items))
    matrix.data[:] = 1.0  # merged duplicates summed
    return matrix


def epoch_seconds(matrix, negatives: int = 0) -> float:
    """One training epoch of the paper's Mult-VAE, without validation (the loop's own timer)."""
    model = MultVAE(epochs=1, patience=None, negatives=negatives).fit(matrix)
    return model.history_[0]["train_seconds"]


def floor_seconds(matrix, batch_size: int = 500, hidden: int = 600, seed: int = 0) -> float:
    """The epoch's sparse first layer and decoder output layer, forward and backward, and nothing else."""
    n_users, n_items = matrix.shape
    order = np.random.default_rng(seed).permutation(n_users)
    batches = [SparseBatch.from_csr(matrix[np.sort(order[s:s + batch_size])], torch.device("cpu"))
               for s in range(0, n_users, batch_size)]
    w_in = torch.randn(n_items, hidden, requires_grad=True)
    w_out = torch.randn(n_items, hidden) * 0.01
    b_out = torch.zeros(n_items)
    grad_h = torch.randn(batch_size, hidden)
    grad_logits = torch.randn(batch_size, n_items)
    h = torch.randn(batch_size, hidden)
    started = time.perf_counter()
    for batch in batches:
        n = batch.n_rows
        first = F.embedding_bag(batch.indices, w_in, batch.offsets, mode="sum", per_sample_weights=batch.values)
        first.backward(grad_h[:n])
        w_in.grad = None
        torch.addmm(b_out, h[:n], w_out.T)  # forward
        g = grad_logits[:n]
        g.T @ h[:n]  # weight gradient
        g @ w_out  # input gradient
    return time.perf_counter() - started


def gap_seconds(matrix, batch_size: int = 500, hidden: int = 600, latent: int = 200, seed: int = 0) -> dict:
    """The parts of an epoch the floor leaves out, each timed alone over the epoch's batches: the multinomial's
    normalisation (log-sum-exp over every item, forward and backward), the fused Adam update of every parameter,
    and the small dense layers between (600 -> 2x200 -> 600, forward and backward)."""
    n_users, n_items = matrix.shape
    sizes = [min(batch_size, n_users - s) for s in range(0, n_users, batch_size)]
    logits = torch.randn(batch_size, n_items, requires_grad=True)
    model = MultVAE(epochs=1)._new_module(n_items)
    optimizer = make_adam(model.parameters(), 1e-3)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e-3
    middle = torch.nn.Sequential(torch.nn.Linear(hidden, 2 * latent), torch.nn.Tanh(), torch.nn.Linear(latent, hidden))
    h = torch.randn(batch_size, hidden, requires_grad=True)
    times = {}
    started = time.perf_counter()
    for n in sizes:
        torch.logsumexp(logits[:n], dim=1).sum().backward()
    times["normalisation_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in sizes:
        optimizer.step()
    times["adam_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    for n in sizes:
        code = torch.tanh(middle[0](h[:n]))[:, :latent]
        middle[2](code).sum().backward()
    times["middle_layers_seconds"] = time.perf_counter() - started
    return times


def time_to_quality(data_path: str, seed: int) -> dict:
    from recvae import preprocess, read_interactions
    from recvae.models.recbole import RecBoleModel, recbole_missing
    from recvae.split import strong_generalization_split

    reason = recbole_missing()
    if reason:
        return {"skipped": reason}
    data = Interactions.from_frame(preprocess(read_interactions(data_path)))
    split = strong_generalization_split(data, 600, seed=seed)
    rb = RecBoleModel(model="MultiVAE", patience=10).fit(split.train, split.validation)
    rb_curve = [(r["epoch"], r["val_ndcg@100"], r["seconds"]) for r in rb.history_]
    best_epoch, best, _ = max(rb_curve, key=lambda r: r[1])
    rb_seconds = sum(s for e, _, s in rb_curve if e <= best_epoch)
    result = {
        "recbole_best_val_ndcg": best, "recbole_best_epoch": best_epoch, "recbole_seconds_to_best": rb_seconds,
        "recbole_epochs_run": len(rb_curve),
    }
    # recvae's Mult-VAE as ml-1m.toml runs it (linear, learning rate 3e-3), with its defaults (the paper's
    # architecture and optimiser, β reaching its cap at 80% of the epochs), and with the paper's 200,000 anneal
    # steps (sized for ML-20M: β reaches about 1% of its cap here)
    runs = (("recvae", {"hidden_dims": (), "learning_rate": 3e-3}), ("recvae_default", {}),
            ("recvae_paper", {"total_anneal_steps": 200_000}))
    for key, settings in runs:
        epoch, seconds, ours_best = seconds_to_reach(split, best, settings)
        result.update({f"{key}_seconds_to_same": seconds, f"{key}_epoch_to_same": epoch, f"{key}_best_val_ndcg": ours_best,
                       f"{key}_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}})
    return result


def seconds_to_reach(split, target: float, settings: dict) -> tuple[int | None, float | None, float]:
    """Train until the validation NDCG@100 first reaches ``target`` (or 200 epochs); seconds include validation."""
    seen = {"seconds": 0.0, "best": -1.0}

    class Reached(Exception):
        pass

    def watch(record):
        seen["seconds"] += record["seconds"]
        seen["best"] = max(seen["best"], record["val_ndcg@100"])
        if record["val_ndcg@100"] >= target:
            seen["epoch"] = record["epoch"]
            raise Reached

    try:
        fit_model(MultVAE(patience=None, epochs=200, **settings), split.train, split.validation,
                  trainer=Trainer(callbacks=(watch,), progress=False))
    except Reached:
        return seen["epoch"], seen["seconds"], seen["best"]
    return None, None, seen["best"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=136_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--median-activity", type=float, default=52.0)
    parser.add_argument("--ml1m", default="../shared/data/ml-1m/user_movie_pairs.tsv.gz")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--catalogues", default="20000,80000,320000", help="items of the full/sampled comparison ('' skips it)")
    parser.add_argument("--negatives", type=int, default=1000, help="the sampled softmax's negatives per batch")
    parser.add_argument("--only-quality", action="store_true",
                        help="rerun only the time-to-quality part and replace it in an existing train.json")
    parser.add_argument("--only-catalogues", action="store_true",
                        help="rerun only the full/sampled catalogue comparison at --catalogues and replace it in an "
                             "existing train.json")
    parser.add_argument("--only-speed", action="store_true",
                        help="rerun only the epoch/floor pairs and the scaling, replacing them in an existing train.json")
    parser.add_argument("--repeats", type=int, default=3, help="(epoch, floor) pairs of the main case; the median is reported")
    parser.add_argument("--out", default="evaluation/perf")
    args = parser.parse_args()
    env = environment()
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    out = Path(args.out)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    if args.only_quality:
        result = {k: v for k, v in json.loads((out / "train.json").read_text()).items()
                  if not k.startswith(("recbole", "recvae", "skipped", "quality_"))}
        result.update(time_to_quality(args.ml1m, SEED), quality_machine=env, quality_command=command)
        (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(result, out)
        print((out / "train.md").read_text())
        return

    if args.only_catalogues:
        result = json.loads((out / "train.json").read_text())
        result.update(catalogues=catalogue_seconds(args, say), catalogues_machine=env, catalogues_command=command)
        (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(result, out)
        plot_catalogues(result["catalogues"], out / "train_catalogues.png")
        print((out / "train.md").read_text())
        return

    if args.only_speed:
        result = json.loads((out / "train.json").read_text())
        if "recbole_best_val_ndcg" in result:  # the kept time-to-quality part says which run made it
            result.setdefault("quality_command", result["command"])
            result.setdefault("quality_machine", result["machine"])
        result.update(speed_and_scaling(args, say), machine=env, command=command)
        (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(result, out)
        if result["scaling"]:
            plot_scaling(result["scaling"], out / "train_scaling.png")
        print((out / "train.md").read_text())
        return

    result = speed_and_scaling(args, say)
    catalogues = catalogue_seconds(args, say)
    result["catalogues"] = catalogues
    if not args.skip_recbole:
        result.update(time_to_quality(args.ml1m, SEED))
        say(json.dumps({k: v for k, v in result.items() if k.startswith(("recbole", "recvae", "skipped"))}))
    result["machine"] = env
    result["command"] = command
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out)
    if result["scaling"]:
        plot_scaling(result["scaling"], out / "train_scaling.png")
    if catalogues:
        plot_catalogues(catalogues, out / "train_catalogues.png")
    print((out / "train.md").read_text())


def speed_and_scaling(args, say) -> dict:
    """The main case's (epoch, floor) pairs, the median reported, and the scaling with items and users."""
    matrix = make_matrix(args.users, args.items, args.median_activity)
    say(f"log: {matrix.shape[0]} users x {matrix.shape[1]} items, {matrix.nnz} interactions")
    pairs = []
    for repeat in range(args.repeats):  # each pair in one run, so that the machine's load moves both alike
        epoch, floor = epoch_seconds(matrix), floor_seconds(matrix)
        pairs.append({"epoch_seconds": epoch, "floor_seconds": floor, **gap_seconds(matrix)})
        say(f"pair {repeat + 1}: epoch {epoch:.1f} s, floor {floor:.1f} s, ratio {epoch / floor:.2f}, {pairs[-1]}")
    middle = sorted(pairs, key=lambda p: p["epoch_seconds"] / p["floor_seconds"])[len(pairs) // 2]
    result = {
        "users": matrix.shape[0], "items": matrix.shape[1], "interactions": int(matrix.nnz), **middle,
        "ratio": middle["epoch_seconds"] / middle["floor_seconds"], "pairs": pairs,
    }
    scaling = []
    if not args.skip_scaling:
        quarter = args.users // 4
        for items in (5_000, 20_000, 80_000):
            m = make_matrix(quarter, items, args.median_activity, seed=1)
            e, f = epoch_seconds(m), floor_seconds(m)
            scaling.append({"users": m.shape[0], "items": m.shape[1], "interactions": int(m.nnz), "epoch_seconds": e, "floor_seconds": f})
            say(f"scaling {m.shape}: epoch {e:.1f} s, floor {f:.1f} s")
        scaling.append({**{k: result[k] for k in ("users", "items", "interactions", "epoch_seconds", "floor_seconds")}})
    result["scaling"] = scaling
    return result


def catalogue_seconds(args, say) -> list[dict]:
    """One epoch with the full and with the sampled softmax at each of --catalogues items (a quarter of the users)."""
    catalogues = []
    for items in (int(n) for n in args.catalogues.split(",") if n):
        m = catalogue_matrix(args.users // 4, items, args.median_activity, seed=3)
        full, sampled = epoch_seconds(m), epoch_seconds(m, args.negatives)
        catalogues.append({"users": m.shape[0], "items": m.shape[1], "interactions": int(m.nnz), "full_seconds": full,
                           "sampled_seconds": sampled, "negatives": args.negatives})
        say(f"catalogue {m.shape}: full softmax {full:.1f} s, sampled ({args.negatives}) {sampled:.1f} s")
        del m
    return catalogues


def plot_scaling(scaling: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quarter = min(s["users"] for s in scaling)
    by_items = sorted((s for s in scaling if s["users"] == quarter), key=lambda s: s["items"])
    by_users = sorted((s for s in scaling if s["items"] == 20_000), key=lambda s: s["users"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, rows, key, label in ((axes[0], by_items, "items", f"items ({quarter} users)"),
                                 (axes[1], by_users, "users", "users (20k items)")):
        x = [r[key] for r in rows]
        ax.plot(x, [r["epoch_seconds"] for r in rows], "o-", label="epoch")
        ax.plot(x, [r["floor_seconds"] for r in rows], "s--", label="floor")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_catalogues(catalogues: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    items = [c["items"] for c in catalogues]
    ax.loglog(items, [c["full_seconds"] for c in catalogues], "o-", label="full softmax")
    ax.loglog(items, [c["sampled_seconds"] for c in catalogues], "s--", label=f"sampled, {catalogues[0]['negatives']} negatives")
    ax.set_xlabel(f"items ({catalogues[0]['users']} users)")
    ax.set_ylabel("seconds per epoch")
    ax.set_title("Mult-VAE epoch against catalogue size")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_markdown(result: dict, out: Path) -> None:
    lines = [
        "# Mult-VAE training speed",
        "",
        f"Generated log shaped like MovieLens-20M: {result['users']} users, {result['items']} items, "
        f"{result['interactions']} interactions. Mult-VAE with the paper's architecture (I-600-200-600-I, "
        "batches of 500 users), one epoch without validation.",
        "",
        "| epoch s | floor s | epoch / floor |",
        "| --- | --- | --- |",
        f"| {result['epoch_seconds']:.1f} | {result['floor_seconds']:.1f} | {result['ratio']:.2f} |",
        "",
        "The floor is the same epoch's sparse first layer (embedding_bag forward and backward) and the "
        "decoder's output layer (forward, weight gradient, input gradient) for every batch, with nothing "
        "else, timed in the same process.",
        "",
    ]
    if "pairs" in result:
        pairs = result["pairs"]
        lines += [f"The row is the median by ratio of {len(pairs)} (epoch, floor) pairs, each timed in one run: ratios "
                  + ", ".join(f"{p['epoch_seconds'] / p['floor_seconds']:.2f}" for p in pairs) + ".", "",
                  "### What the gap is made of", "",
                  "The parts of an epoch the floor leaves out, each timed alone over the same batches right after its "
                  "pair (they overlap nothing, so they add up to an estimate of the gap):", "",
                  "| part | seconds | share of the gap |", "| --- | --- | --- |"]
        gap = result["epoch_seconds"] - result["floor_seconds"]
        parts = {"log-sum-exp over every item (forward, backward)": result["normalisation_seconds"],
                 "fused Adam update of every parameter": result["adam_seconds"],
                 "the dense layers between (600-400, 200-600; forward, backward)": result["middle_layers_seconds"]}
        parts["the rest (dropout, batching, the loss's gathers, Python)"] = gap - sum(parts.values())
        lines += [f"| {name} | {seconds:.1f} | {seconds / gap:.0%} |" for name, seconds in parts.items()]
        lines += [f"| gap (epoch − floor) | {gap:.1f} | 100% |", ""]
    if result["scaling"]:
        lines += ["## Scaling", "", "| users | items | interactions | epoch s | floor s | ratio |", "| --- | --- | --- | --- | --- | --- |"]
        for s in result["scaling"]:
            lines.append(f"| {s['users']} | {s['items']} | {s['interactions']} | {s['epoch_seconds']:.1f} | "
                         f"{s['floor_seconds']:.1f} | {s['epoch_seconds'] / s['floor_seconds']:.2f} |")
        lines += ["", "![scaling](train_scaling.png)", ""]
    if result.get("catalogues"):
        rows = result["catalogues"]
        lines += ["## Large catalogues: full against sampled softmax", "",
                  f"Seconds per epoch of the same Mult-VAE with the multinomial's full normalisation and with a sampled "
                  f"softmax of {rows[0]['negatives']} negatives per batch (popularity proposal, logQ-corrected); scoring "
                  "and validation stay exact. The plot is log-log: a slope of 1 is "
                  "cost proportional to the catalogue. Each catalogue's log gives every item to one random user and draws "
                  "the rest of each user's log-normal activity from a power-law popularity (`catalogue_matrix`).", "",
                  "| users | items | full s | sampled s | full / sampled |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {c['users']} | {c['items']} | {c['full_seconds']:.1f} | {c['sampled_seconds']:.1f} | "
                  f"{c['full_seconds'] / c['sampled_seconds']:.1f} |" for c in rows]
        lines += ["", "![catalogues](train_catalogues.png)", ""]
        if "catalogues_command" in result:
            lines += [f"This part comes from its own run: `{result['catalogues_command']}` on "
                      f"{describe(result['catalogues_machine'])}.", ""]
    if "recbole_best_val_ndcg" in result:
        def seconds(key):
            value = result.get(f"{key}_seconds_to_same")
            return f"{value:.1f} (epoch {result[f'{key}_epoch_to_same']})" if value else f"not reached in 200 epochs (best {result[f'{key}_best_val_ndcg']:.4f})"

        speedup = (result["recbole_seconds_to_best"] / result["recvae_seconds_to_same"]
                   if result.get("recvae_seconds_to_same") else float("nan"))
        lines += [
            "## Time to quality on ML-1M", "",
            f"Strong generalization, 600 + 600 held-out users, split seed {SEED}. RecBole's MultiVAE with its "
            "defaults, through recvae's adapter (its own trainer; validation users scored after every epoch, "
            "stopping after 10 epochs without a better score, RecBole's stopping_step). recvae's Mult-VAE until "
            "its validation NDCG@100 first reaches RecBole's best. Seconds include every epoch's validation.", "",
            "| model | best val NDCG@100 (until it stopped) | seconds to RecBole's best |", "| --- | --- | --- |",
            f"| RecBole MultiVAE (its defaults) | {result['recbole_best_val_ndcg']:.4f} at epoch {result['recbole_best_epoch']} "
            f"(of {result['recbole_epochs_run']} run) | {result['recbole_seconds_to_best']:.1f} |",
            f"| recvae Mult-VAE, as benchmarked (`hidden_dims=()`, learning rate 3e-3) | {result['recvae_best_val_ndcg']:.4f} | {seconds('recvae')} |",
            f"| recvae Mult-VAE, its defaults | {result['recvae_default_best_val_ndcg']:.4f} | {seconds('recvae_default')} |",
            f"| recvae Mult-VAE, the paper's 200,000 anneal steps | {result['recvae_paper_best_val_ndcg']:.4f} | "
            f"{seconds('recvae_paper')} |",
            "", f"recvae (as benchmarked) is **{speedup:.1f}x** faster to the same validation NDCG@100.", "",
        ]
        if "quality_command" in result:
            lines += [f"This part comes from its own run: `{result['quality_command']}` "
                      f"(commit {result['quality_machine']['git_commit']}).", ""]
    lines += [f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    (out / "train.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()

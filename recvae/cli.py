"""``recvae train | evaluate | recommend | benchmark | generate``: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
import types
import typing
from pathlib import Path

from recvae.defaults import SEED
from recvae.errors import RecvaeError

log = logging.getLogger("recvae")

FIELD_HELP = {
    "epochs": "maximum training epochs",
    "batch_size": "users per batch",
    "learning_rate": "Adam learning rate",
    "patience": "stop after this many epochs without a better validation score ('none': never)",
    "validation_metric": "metric that picks the best epoch",
    "seed": "seed of initialisation, shuffling, dropout and noise",
    "device": "torch device, e.g. cpu or cuda (default: RECVAE_DEVICE, else cuda if present, else cpu)",
    "hidden_dims": "hidden layer sizes between items and latent code, comma-separated ('' for none)",
    "latent_dim": "size of the latent code",
    "dropout": "dropout rate on the input",
    "activation": "tanh, relu, sigmoid or identity",
    "likelihood": "multinomial, gaussian or logistic",
    "l2": "L2 penalty on the weights",
    "beta_cap": "largest KL weight",
    "total_anneal_steps": "linear: updates over which beta would grow from 0 to 1 (it stops at the cap); "
                          "sigmoid: updates to reach the cap; cyclical: updates per cycle",
    "beta_schedule": "linear (the paper), constant, cyclical or sigmoid",
    "free_bits": "floor, in nats, on each latent dimension's KL penalty (0: off)",
    "hidden_dim": "RecVAE: width of the encoder's densely connected layers",
    "gamma": "RecVAE: KL weight per interaction of the user (β = gamma x history length)",
    "mixture_weights": "RecVAE: composite prior weights of N(0, I), the previous encoder's posterior, the wide normal",
    "wide_logvar": "RecVAE: log-variance of the prior's wide normal",
    "encoder_epochs": "RecVAE: encoder passes per epoch",
    "decoder_epochs": "RecVAE: decoder passes per epoch",
    "layer_norm_eps": "RecVAE: epsilon of the encoder's layer normalisation",
    "binarize": "count every interaction as 1 ('false': keep the values as weights)",
    "factors": "ALS, BPR: latent factors",
    "regularization": "ALS, BPR: L2 regularisation",
    "alpha": "ALS: confidence weight of an interaction",
    "iterations": "ALS, BPR: training iterations",
    "fold_in_steps": "BPR: Adam steps that fold a new user in",
    "fold_in_learning_rate": "BPR: learning rate of the fold-in",
}
# RecBole's models run in benchmarks only: they cannot be saved as recvae model directories.
CLI_EXCLUDED = ("RecBole",)


def _trainable_models() -> dict:
    """Registered models by lower-case name, as --model takes them."""
    from recvae.models import REGISTRY

    return {name.lower(): cls for name, cls in REGISTRY.items() if name not in CLI_EXCLUDED}


def _parse_field(kind):
    def parse(text: str):
        if text.lower() == "none" and type(None) in typing.get_args(kind):
            return None
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"expected true or false, not {text!r}")
            return text.lower() in ("true", "1", "yes")
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
        base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
        if typing.get_origin(base) is tuple:
            element = typing.get_args(base)[0]
            return tuple(element(p) for p in text.split(",") if p.strip())
        return base(text)

    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field of the models; defaults come from the config classes."""
    group = parser.add_argument_group("model hyperparameters (default: the model's own, from its paper or library)")
    seen = set()
    for config_class in (cls.config_class for cls in _trainable_models().values()):
        hints = typing.get_type_hints(config_class)
        for f in dataclasses.fields(config_class):
            if f.name in seen:
                continue
            seen.add(f.name)
            group.add_argument(
                f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", type=_parse_field(hints[f.name]),
                default=None, metavar=f.name.upper(), help=FIELD_HELP.get(f.name),
            )


def _add_reader_flags(group) -> None:
    group.add_argument("--user", help="user column: header name or 0-based position (default: guessed)")
    group.add_argument("--item", help="item column: header name or 0-based position (default: guessed)")
    group.add_argument("--rating", help="rating column, or 'none' to ignore (default: guessed)")
    group.add_argument("--timestamp", help="timestamp column, or 'none' to ignore (default: guessed)")
    group.add_argument("--sep", help="field delimiter, e.g. ',' or '\\t' or '::' (default: guessed)")
    group.add_argument("--header", action=argparse.BooleanOptionalAction, default=None, help="line 1 is a header (default: guessed)")
    group.add_argument("--skip-bad-lines", action="store_true", help="drop malformed lines (and say how many) instead of stopping")


def _reader_options(args) -> dict:
    reader = {k: _column(getattr(args, k)) for k in ("user", "item", "rating", "timestamp")}
    reader = {k: v for k, v in reader.items() if v is not None}
    if args.sep is not None:
        reader["sep"] = args.sep.encode().decode("unicode_escape")
    if args.header is not None:
        reader["header"] = args.header
    if args.skip_bad_lines:
        reader["skip_bad_lines"] = True
    return reader


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (default: the embedded synthetic log)")
    data.add_argument("--data", metavar="FILE", help="interaction log: CSV/TSV/any delimiter, MovieLens .dat/.csv, Parquet; .gz ok")
    data.add_argument("--test-data", metavar="FILE", help="a separate test log (implies --protocol presplit)")
    data.add_argument("--format", choices=("auto", "lightgcn"), default="auto", help="'lightgcn': 'user item item ...' per line")
    _add_reader_flags(data)
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--min-rating", type=float, help="keep interactions rated at least this (the paper: 4 on 1-5 stars)")
    prep.add_argument("--min-user-interactions", type=int, default=5, help="drop users with fewer interactions (default 5)")
    prep.add_argument("--min-item-interactions", type=int, default=0, help="drop items with fewer interactions (default 0)")
    split = parser.add_argument_group("split")
    split.add_argument("--protocol", choices=("strong", "holdout", "presplit"), help="strong generalization (default), per-user holdout, or pre-split files")
    split.add_argument("--heldout-users", type=int, help="strong: validation users and again test users (default: 10%% of users)")
    split.add_argument("--holdout-fraction", type=float, default=0.2, help="share of each held-out user's items to score (default 0.2)")
    split.add_argument("--split-seed", type=int, default=SEED, help=f"seed of the split (default {SEED})")


def _add_tracking_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracking (MLflow)")
    group.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    group.add_argument("--experiment", default="recvae", help="MLflow experiment name")
    group.add_argument("--no-tracking", action="store_true", help="do not log this run to MLflow")


def _tracker(args, run_name: str):
    from recvae.track import TrackingConfig, start_tracking

    return start_tracking(
        TrackingConfig(enabled=not args.no_tracking, tracking_uri=args.tracking_uri, experiment=args.experiment), run_name
    )


def _column(value: str | None):
    if value is None:
        return None
    if value.lower() == "none":
        return False
    return int(value) if value.isdigit() else value


def _specs(args):
    from recvae.data import Preprocessing
    from recvae.pipeline import DataSpec, SplitSpec

    reader = _reader_options(args)
    data = DataSpec(
        path=str(Path(args.data).resolve()) if args.data else None,
        test_path=str(Path(args.test_data).resolve()) if args.test_data else None,
        format=args.format,
        reader=reader,
        preprocessing=Preprocessing(
            min_rating=args.min_rating,
            min_user_interactions=args.min_user_interactions,
            min_item_interactions=args.min_item_interactions,
        ),
    )
    protocol = args.protocol or ("presplit" if args.test_data else "strong")
    split = SplitSpec(protocol=protocol, heldout_users=args.heldout_users, holdout_fraction=args.holdout_fraction, seed=args.split_seed)
    return data, split


def cmd_train(args) -> int:
    from recvae.pipeline import TrainSpec, format_table, train_model
    from recvae.track import TrackingConfig

    data_spec, split_spec = _specs(args)
    model_class = _trainable_models()[args.model]
    spec = TrainSpec(
        model=model_class.name, params={k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None},
        data=data_spec, split=split_spec, out=args.out, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
        auto_beta=args.auto_beta, metrics=tuple(args.metrics.split(",")), progress=False if args.quiet else None,
        tracking=TrackingConfig(enabled=not args.no_tracking, tracking_uri=args.tracking_uri, experiment=args.experiment),
    )
    result = train_model(spec, notify=lambda line: print(line, file=sys.stderr))
    print(f"\ntest users: {len(result.split.test)}")
    print(format_table(result.results, spec.metrics))
    print(f"\nmodel saved to {result.model_dir}")
    if result.run_id:
        print(f"MLflow run {result.run_id} (experiment {args.experiment!r})")
    return 0


def cmd_evaluate(args) -> int:
    from recvae.pipeline import EvaluateSpec, evaluate_saved, format_table
    from recvae.track import TrackingConfig

    data_spec, split_spec = _specs(args) if args.data else (None, None)
    metrics = tuple(args.metrics.split(","))
    spec = EvaluateSpec(model_dir=args.model, data=data_spec, split=split_spec, metrics=metrics, baseline=args.baseline,
                        tracking=TrackingConfig(enabled=not args.no_tracking, tracking_uri=args.tracking_uri,
                                                experiment=args.experiment))
    result = evaluate_saved(spec)
    print(f"data: {result.data.describe()}; test users: {len(result.split.test)}")
    print(format_table(result.results, metrics))
    return 0


def cmd_recommend(args) -> int:
    from recvae.export import export_recommendations
    from recvae.models import Recommender

    try:
        index, n_shards = (int(p) for p in args.shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard {args.shard!r}: expected i/n, e.g. 0/4") from None
    model = Recommender.load(args.model)
    started = time.perf_counter()
    stats = export_recommendations(
        model, args.interactions, args.out, n=args.top_n, include_seen=args.include_seen, allow=args.allow,
        deny=args.deny, fallback=args.fallback, shard=(index, n_shards), users_per_block=args.batch_users,
        reader=_reader_options(args), grouped=not args.ungrouped, progress=False if args.quiet else None,
    )
    seconds = time.perf_counter() - started
    print(f"wrote {stats.rows} rows for {stats.users_with_rows} users to {args.out} in {seconds:.1f} s "
          f"({stats.users / max(seconds, 1e-9):.0f} users/s)")
    if n_shards > 1:
        print(f"shard {index}/{n_shards}: {stats.users} users here, {stats.users_in_other_shards} in other shards")
    if stats.unknown_item_interactions:
        print(f"ignored {stats.unknown_item_interactions} of {stats.interactions} interactions with items the model does not know")
    if stats.users_without_known_items:
        what = "got popularity (fallback column)" if args.fallback else "got no row (--fallback popularity gives them popular items)"
        print(f"{stats.users_without_known_items} users had no known item and {what}")
    if stats.unknown_filter_items:
        print(f"{stats.unknown_filter_items} items of the allow/deny lists are unknown to the model and were ignored")
    return 0


def cmd_benchmark(args) -> int:
    from recvae.benchmark import benchmark, load_benchmark

    config = load_benchmark(args.config, data_path=args.data, seeds=args.seeds)
    if args.models:
        config = config.select([m.strip() for m in args.models.split(",") if m.strip()])
    command = "recvae " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with _tracker(args, f"benchmark {config.dataset}") as tracker:
        tracker.set_tags({"command": "benchmark", "dataset": config.dataset})
        _, folder = benchmark(config, args.out, tracker, progress=False if args.quiet else None, command=command)
    print((folder / "results.md").read_text())
    print(f"wrote {folder}/results.md, results.csv, runs.csv, results.json and plots")
    return 0


def cmd_generate(args) -> int:
    from recvae.data import SyntheticLog, generate_log

    frame = generate_log(SyntheticLog(n_users=args.users, n_items=args.items, seed=args.seed))
    out = Path(args.out)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False, sep="\t" if ".tsv" in out.suffixes else ",")
    print(f"wrote {len(frame)} interactions of {args.users} users and {args.items} items to {out}")
    return 0


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train", help="train a model, print test metrics beside popularity, save it",
        description="Train a model (Mult-VAE by default; Mult-DAE, RecVAE, EASE, ALS, BPR, popularity) on an interaction log, score the held-out "
        "test users, print Recall@20, Recall@50 and NDCG@100 beside a popularity baseline, and save the "
        "model. Without --data it trains on the embedded synthetic log.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--model", choices=sorted(_trainable_models()), default="multvae",
                       help="the model to train; its hyperparameters are the flags below")
    train.add_argument("--out", default="models/recvae-model", help="model directory to write")
    train.add_argument("--checkpoint-dir", help="write a checkpoint after every epoch here")
    train.add_argument("--resume", action="store_true", help="continue the run checkpointed in --checkpoint-dir")
    train.add_argument("--auto-beta", action="store_true",
                       help="Mult-VAE: anneal β to 1 once, take the β of the best validation epoch as the cap, retrain "
                            "(two trainings)")
    train.add_argument("--metrics", default="recall@20,recall@50,ndcg@100", help="comma-separated test metrics")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_flags(train)
    _add_tracking_flags(train)
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="score a saved model's test users",
        description="Load a model directory and score the test users of the split it was trained on "
        "(or of --data with the given split options).",
    )
    evaluate.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    evaluate.add_argument("--metrics", default="recall@20,recall@50,ndcg@100", help="comma-separated metrics")
    evaluate.add_argument("--baseline", action="store_true", help="also score popularity on the same split")
    _add_data_flags(evaluate)
    _add_tracking_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def _add_recommend(sub) -> None:
    recommend = sub.add_parser(
        "recommend", help="export the top-N items of every user of a log",
        description="Score every user of an interaction log with a saved model (fold-in: users need not "
        "have been in training) and write user, item, rank, score rows in original IDs. Users are streamed "
        "in blocks, so memory does not grow with their number; the output appears only when complete.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    recommend.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    recommend.add_argument("--interactions", required=True, metavar="FILE", help="users' histories (any format 'train --data' reads)")
    recommend.add_argument("--out", required=True, help="output file: .parquet, .csv or .tsv")
    recommend.add_argument("--top-n", type=int, default=100, help="items per user")
    recommend.add_argument("--include-seen", action="store_true", help="allow items already in a user's history")
    recommend.add_argument("--allow", metavar="FILE", help="only recommend these item IDs (one per line)")
    recommend.add_argument("--deny", metavar="FILE", help="never recommend these item IDs (one per line)")
    recommend.add_argument("--fallback", choices=("popularity",), help="give users with no known item the most popular items")
    recommend.add_argument("--shard", default="0/1", help="i/n: export only the i-th of n disjoint shares of the users")
    recommend.add_argument("--batch-users", type=int, default=1000, help="users scored at once")
    recommend.add_argument("--ungrouped", action="store_true", help="the log does not keep each user's rows together: group it in memory")
    recommend.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_reader_flags(recommend.add_argument_group("reading the log"))
    recommend.set_defaults(func=cmd_recommend)


def _add_benchmark(sub) -> None:
    bench = sub.add_parser(
        "benchmark", help="compare models on the same splits, with tuning on validation users and CIs over seeds",
        description="Run a benchmark file (TOML; see evaluation/benchmarks/): for every split seed, tune every "
        "model on the validation users, score the test users once, and write a Markdown table, CSV, JSON and "
        "plots under OUT/<dataset>/, with 95%% intervals over seeds and paired tests against the best model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_argument("config", help="benchmark file, e.g. evaluation/benchmarks/ml-1m.toml")
    bench.add_argument("--data", help="interaction file instead of the one the benchmark file names")
    bench.add_argument("--seeds", type=int, help="number of split seeds (default: the file's)")
    bench.add_argument("--models", help="comma-separated model names from the file (default: all)")
    bench.add_argument("--out", default="evaluation/results", help="results go to OUT/<dataset>/")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_tracking_flags(bench)
    bench.set_defaults(func=cmd_benchmark, experiment="recvae-benchmark")


def _add_generate(sub) -> None:
    generate = sub.add_parser("generate", help="write the embedded synthetic log to a file")
    generate.add_argument("--out", required=True, help=".csv, .tsv or .parquet (.gz ok for text)")
    generate.add_argument("--users", type=int, default=6000)
    generate.add_argument("--items", type=int, default=3000)
    generate.add_argument("--seed", type=int, default=20180423)
    generate.set_defaults(func=cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recvae",
        description="Variational autoencoders for collaborative filtering (Mult-VAE, Mult-DAE, RecVAE) beside "
        "EASE, ALS, BPR and popularity.",
        epilog="Run 'recvae COMMAND --help' for the options of a command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = parser.add_subparsers(dest="command", required=True)

    for add in (_add_train, _add_evaluate, _add_recommend, _add_benchmark, _add_generate):
        add(sub)
    return parser



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        hint = " (resume with --resume)" if getattr(args, "checkpoint_dir", None) else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    except (RecvaeError, ValueError) as exc:
        print(f"recvae: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``recvae train | evaluate | recommend | benchmark | generate``: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import dataclasses
import io
import logging
import os
import shlex
import signal
import sys
import types
import typing
from pathlib import Path

from recvae.defaults import DEFAULT_METRICS, PRESPLIT_METRICS, SEED
from recvae.errors import DataError, ParameterError, PeerLostError, RecvaeError

log = logging.getLogger("recvae")

METRICS_HELP = ("comma-separated metrics: recall@K (hits / min(K, test items)), recall_full@K (hits / all test "
                f"items, the LightGCN protocol), ndcg@K (default: {','.join(DEFAULT_METRICS)}; with --protocol "
                f"presplit: {','.join(PRESPLIT_METRICS)})")

ITEM_NAMES_HELP = ("table of item ID -> name: MovieLens movies.dat or movies.csv as they are, or any CSV/TSV whose "
                   "header names an ID column and a title or name column (without a header: ID, name)")
USER_FEATURES_HELP = ("a CVAE's users' side table (the one it was trained with): each user's features are read by ID "
                      "beside their items; a user not in the table gets the 'missing' features")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to a flag's help once, and only when there is a default worth saying."""

    def _get_help_string(self, action):
        text = action.help or ""
        # a switch (no value) says what it does when given; its stored default (True for a store_false) is no default
        if ("default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or action.nargs == 0 or action.default in ((), [])):
            return text
        return f"{text} (default: %(default)s)"


def _model_names() -> dict[str, str]:
    """The models the command line trains: --model's lower-case name → the REGISTRY name (read from the
    torch-free configs, so that help needs no torch)."""
    from recvae.models.config import MODEL_CONFIGS

    return {name.lower(): name for name in MODEL_CONFIGS}


def _model_class(flag: str) -> type:
    from recvae.models import REGISTRY

    return REGISTRY[_model_names()[flag]]


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
    """One flag per config field of the models; each help line gives every model's default once."""
    group = parser.add_argument_group("model hyperparameters (each model's default, from its paper or library)")
    from recvae.models.config import FIELD_CHOICES, FIELD_HELP, MODEL_CONFIGS

    fields: dict[str, tuple] = {}  # name -> (type, {model: default})
    for model, config_class in MODEL_CONFIGS.items():
        hints = typing.get_type_hints(config_class)
        for f in dataclasses.fields(config_class):
            kind, defaults = fields.setdefault(f.name, (hints[f.name], {}))
            defaults[model] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    for name, (kind, defaults) in fields.items():
        values = set(map(repr, defaults.values()))
        shown = (f"default {_shown(next(iter(defaults.values())))}" + ("" if len(defaults) == len(MODEL_CONFIGS)
                 else f"; {', '.join(defaults)}") if len(values) == 1
                 else "; ".join(f"{model} {_shown(value)}" for model, value in defaults.items()))
        choices = f"; one of {', '.join(FIELD_CHOICES[name])}" if name in FIELD_CHOICES else ""
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", type=_parse_field(kind),
                           default=argparse.SUPPRESS, metavar=name.upper(), choices=FIELD_CHOICES.get(name),
                           help=f"{FIELD_HELP[name]} ({shown}{choices})".replace("%", "%%"))


def _hyperparameters(args) -> dict:
    """The hyperparameter flags given, by field name. A flag that was not given is absent (its default is
    argparse.SUPPRESS), so one given as 'none' is None and applied, never dropped."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "''"
    return "none" if value is None else str(value)


def _add_reader_flags(group) -> None:
    group.add_argument("--user", help="user column: header name or 0-based position (default: guessed)")
    group.add_argument("--item", help="item column: header name or 0-based position (default: guessed)")
    group.add_argument("--rating", help="rating column, or 'none' to ignore (default: guessed)")
    group.add_argument("--timestamp", help="timestamp column, or 'none' to ignore (default: guessed)")
    group.add_argument("--sep", help="field delimiter, e.g. ',' or '\\t' or '::' (default: guessed)")
    group.add_argument("--header", action=argparse.BooleanOptionalAction, default=None, help="line 1 is a header (default: guessed)")
    group.add_argument("--skip-bad-lines", action="store_true", help="drop malformed lines (and say how many) instead of stopping")
    group.add_argument("--encoding", help="text encoding of the log, e.g. latin-1 (default: UTF-8, or UTF-16 by its byte-order mark)")


def _reader_options(args) -> dict:
    reader = {k: _column(getattr(args, k)) for k in ("user", "item", "rating", "timestamp")}
    reader = {k: v for k, v in reader.items() if v is not None}
    if args.sep is not None:
        reader["sep"] = args.sep.encode().decode("unicode_escape")
    if args.header is not None:
        reader["header"] = args.header
    if args.skip_bad_lines:
        reader["skip_bad_lines"] = True
    if args.encoding:
        reader["encoding"] = args.encoding
    return reader


def _add_data_flags(parser: argparse.ArgumentParser, default_data: str = "the embedded synthetic log") -> None:
    data = parser.add_argument_group(f"data (default: {default_data})")
    data.add_argument("--data", metavar="FILE", help="interaction log: CSV/TSV/any delimiter, MovieLens .dat/.csv, Parquet; .gz ok")
    data.add_argument("--test-data", metavar="FILE", help="a separate test log (implies --protocol presplit)")
    data.add_argument("--format", choices=("auto", "lightgcn"), default="auto", help="'lightgcn': 'user item item ...' per line")
    data.add_argument("--user-features", metavar="FILE",
                      help="the users' side table a CVAE reads (MovieLens users.dat, or a CSV/TSV/Parquet keyed by user ID)")
    data.add_argument("--user-columns", metavar="COL,COL",
                      help="with --user-features: train on these columns of the table only (default: every column "
                           "but names); a model reads them back from its saved encoding")
    data.add_argument("--item-features", metavar="FILE",
                      help="the items' side table MultVAE, MultDAE and CVAE read in their decoder, so that an item with "
                           "no training users is scored (MovieLens movies.dat/movies.csv: genres, and the title's year)")
    _add_reader_flags(data)
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--min-rating", type=float, help="keep interactions rated at least this (the paper: 4 on 1-5 stars)")
    prep.add_argument("--min-user-interactions", type=int, default=5, help="drop users with fewer interactions (default: 5)")
    prep.add_argument("--min-item-interactions", type=int, default=0, help="drop items with fewer interactions (default: 0)")
    split = parser.add_argument_group("split")
    split.add_argument("--protocol", choices=("strong", "holdout", "presplit"), help="strong generalization (default), per-user holdout, or pre-split files")
    split.add_argument("--heldout-users", type=int, help="strong: validation users and again test users (default: 10%% of users)")
    split.add_argument("--holdout-fraction", type=float, default=0.2, help="share of each held-out user's items to score (default: 0.2)")
    split.add_argument("--split-seed", type=int, default=SEED, help=f"seed of the split (default: {SEED})")
    split.add_argument("--cold-items", type=float, default=0.0, metavar="SHARE",
                       help="cold-item protocol: leave this share of the items out of training and rank them for the "
                            "test users against the items' content alone (needs --item-features; default: 0, off)")


def _add_tracking_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracking (MLflow)")
    group.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    group.add_argument("--experiment", default="recvae", help="MLflow experiment name")
    group.add_argument("--no-tracking", action="store_true", help="do not log this run to MLflow")


def _tracking_config(args):
    """The --tracking-uri / --experiment / --no-tracking flags as a TrackingConfig."""
    from recvae.track import TrackingConfig

    return TrackingConfig(enabled=not args.no_tracking, tracking_uri=args.tracking_uri, experiment=args.experiment)


def _tracker(args, run_name: str):
    from recvae.track import start_tracking

    return start_tracking(_tracking_config(args), run_name)


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
        user_features=str(Path(args.user_features).resolve()) if args.user_features else None,
        user_columns=tuple(c.strip() for c in args.user_columns.split(",")) if args.user_columns else None,
        item_features=str(Path(args.item_features).resolve()) if args.item_features else None,
        format=args.format,
        reader=reader,
        preprocessing=Preprocessing(
            min_rating=args.min_rating,
            min_user_interactions=args.min_user_interactions,
            min_item_interactions=args.min_item_interactions,
        ),
    )
    protocol = args.protocol or ("presplit" if args.test_data else "strong")
    split = SplitSpec(protocol=protocol, heldout_users=args.heldout_users, holdout_fraction=args.holdout_fraction,
                      seed=args.split_seed, cold_items=args.cold_items)
    return data, split


def _metrics(args) -> tuple[str, ...] | None:
    return tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else None


def cmd_train(args) -> int:
    from recvae.pipeline import TrainSpec, format_table, train_model

    data_spec, split_spec = _specs(args)
    model_class = _model_class(args.model)
    spec = TrainSpec(
        model=model_class.name, params=_hyperparameters(args),
        data=data_spec, split=split_spec, out=args.out, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
        auto_beta=args.auto_beta, metrics=_metrics(args), progress=False if args.quiet else None,
        overwrite=args.overwrite,
        tracking=_tracking_config(args),
    )
    result = train_model(spec, notify=lambda line: print(line, file=sys.stderr))
    if result.model_dir is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(f"\ntest users: {len(result.split.test)}")
    print(format_table(result.results, result.metrics))
    _print_cold_items(result.cold_items)
    print(f"\nmodel saved to {result.model_dir}")
    for path in result.plots:
        print(f"plot: {path}")
    if result.run_id:
        print(f"MLflow run {result.run_id} (experiment {args.experiment!r}): {result.mlflow_ui}")
    return 0


# The data, preprocessing and split flags a tuned-settings file records, so `train --config` reads the same data.
RUN_FLAGS = ("data", "test_data", "format", "user", "item", "rating", "timestamp", "sep", "header", "skip_bad_lines",
             "encoding", "min_rating", "min_user_interactions", "min_item_interactions", "protocol", "heldout_users",
             "holdout_fraction", "split_seed", "user_features", "user_columns", "item_features")


def cmd_tune(args) -> int:
    from recvae.tune import SearchConfig, TuneSpec, tune_model
    from recvae.tune.command import read_search_space

    data_spec, split_spec = _specs(args)
    model_class = _model_class(args.model)
    space = read_search_space(args.space) if args.space else None
    search = SearchConfig(trials=args.trials, pruner=args.pruner, timeout=args.timeout, storage=args.storage)
    spec = TuneSpec(
        model=model_class.name, params=_hyperparameters(args),
        space=space, data=data_spec, split=split_spec, metric=args.metric, search=search, out=args.out,
        tracking=_tracking_config(args),
    )
    options = {name: getattr(args, name) for name in RUN_FLAGS}
    # absolute: the file may be used elsewhere
    options.update(data=data_spec.path, test_data=data_spec.test_path, user_features=data_spec.user_features,
                   item_features=data_spec.item_features)
    result = tune_model(spec, notify=lambda line: print(line, file=sys.stderr), options=options)
    print(f"best validation {result.metric}: {result.study.best_score:.4f} ({result.study.budget_used} trials)")
    for name, value in sorted(result.study.best_params.items()):
        print(f"  {name} = {value}")
    print(f"written to {result.out}; train with: recvae train --config {result.out}")
    return 0


def _config_defaults(path: str, parser: argparse.ArgumentParser) -> dict:
    """`recvae train --config FILE`: the file's flags (what `recvae tune` writes) as defaults, so flags
    given on the command line override them."""
    from recvae.tune.command import read_train_config

    options, params = read_train_config(path)
    flags = {s[2:]: a for a in parser._actions for s in a.option_strings[:2] if s.startswith("--")}
    defaults = {}
    for key, value in [*options.items(), *((f"[params] {k}", v) for k, v in params.items())]:
        action = flags.get(key.removeprefix("[params] "))
        hyperparameter = action is not None and action.dest.startswith("cfg_")
        if action is None or action.dest == "flags_file" or hyperparameter != key.startswith("[params]"):
            where = "a model hyperparameter" if key.startswith("[params]") else "a recvae train option"
            raise ValueError(f"{path}: {key!r} is not {where} (hyperparameters go under [params], other flags above it)")
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{path}: {key} = {value!r}: expected one of {sorted(action.choices)}")
        defaults[action.dest] = value
    return defaults


def cmd_evaluate(args) -> int:
    from recvae.pipeline import EvaluateSpec, evaluate_saved, format_table

    if not args.data:  # the model's recorded data and split are used: a data or split flag would be ignored
        defaults = _subparser(build_parser(), "evaluate")
        for name in (*RUN_FLAGS, "cold_items"):
            if getattr(args, name) != defaults.get_default(name):
                raise ParameterError(name, getattr(args, name), "is read only with --data; without it the model "
                                     "is scored on the data and split it recorded, read as it was trained")
    data_spec, split_spec = _specs(args) if args.data else (None, None)
    spec = EvaluateSpec(model_dir=args.model, data=data_spec, split=split_spec, metrics=_metrics(args), baseline=args.baseline,
                        tracking=_tracking_config(args),
                        examples=args.examples, item_names=args.item_names, cold_start=_counts(args.cold_start))
    result = evaluate_saved(spec)
    print(f"data: {result.data.describe()}; test users: {len(result.split.test)}")
    print(format_table(result.results, result.metrics))
    _print_cold_items(result.cold_items)
    if result.cold_start is not None:
        print("\nnew users: the test users with only N of their items given, the rest held out")
        print(format_table(result.cold_start, result.metrics))
    if result.examples is not None:
        from recvae.evaluate import format_examples

        print(f"\n{args.examples} test users, their top 10 (held out: what the test hid from the model)")
        print(format_examples(result.examples))
    return 0


def _counts(text: str | None) -> tuple[int, ...]:
    """--cold-start's "0,1,3,5"."""
    if text is None:
        return ()
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise ParameterError("cold_start", text, "expected item counts separated by commas, e.g. 0,1,3,5") from None


def _print_cold_items(results: dict | None) -> None:
    if results is not None:
        from recvae.evaluate import COLD_ITEM_METRICS
        from recvae.pipeline import format_table

        print("\ncold items (no training users): the test users' cold items ranked among the cold items alone")
        print(format_table(results, COLD_ITEM_METRICS))


def cmd_recommend(args) -> int:
    from recvae.export.command import RecommendSpec, recommend_log

    spec = RecommendSpec(
        model=args.model, interactions=args.interactions, out=args.out, top_n=args.top_n, include_seen=args.include_seen,
        allow=args.allow, deny=args.deny, fallback=args.fallback, shard=args.shard, batch_users=args.batch_users,
        score_memory=args.score_memory, min_rating=args.min_rating, grouped=args.grouped, engine=args.engine,
        master=args.master, reader=_reader_options(args), progress=False if args.quiet else None, quiet=args.quiet,
        overwrite=args.overwrite,
        item_names=args.item_names, groups=args.groups, user_features=args.user_features)
    result = recommend_log(spec)
    if result.min_rating is not None:
        print(f"keeping interactions rated >= {result.min_rating:g}" + (" (as in training)" if result.min_rating_from_training
                                                                        else ""), file=sys.stderr)
    stats = result.stats
    if stats is None:
        print(f"wrote {result.rows} rows to {args.out} for the groups in {result.seconds:.1f} s")
        return 0
    how = " through Spark" if args.engine == "spark" else ""
    print(f"wrote {stats.rows} rows for {stats.users_with_rows} users to {args.out}{how} in {result.seconds:.1f} s "
          f"({stats.users / max(result.seconds, 1e-9):.0f} users/s)")
    index, n_shards = spec.shard_index()
    if n_shards > 1:
        print(f"shard {index}/{n_shards}: {stats.users} users here, {stats.users_in_other_shards} in other shards")
    for line in stats.left_out(args.fallback):
        print(line)
    return 0


def cmd_benchmark(args) -> int:
    from recvae.benchmark import benchmark, load_benchmark

    config = load_benchmark(args.config, data_path=args.data_path, seeds=args.seeds, sampler_seed=args.sampler_seed)
    if args.models:
        config = config.select([m.strip() for m in args.models.split(",") if m.strip()])
    command = "recvae " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with _tracker(args, f"benchmark {config.dataset}") as tracker:
        tracker.set_tags({"command": "benchmark", "dataset": config.dataset})
        _, folder = benchmark(config, args.out, tracker, progress=False if args.quiet else None, command=command,
                              overwrite=args.overwrite, resume=args.resume, merge=args.merge)
    print((folder / "results.md").read_text())
    print(f"wrote {folder}/results.md, results.csv, runs.csv, results.json and plots")
    return 0


def cmd_download(args) -> int:
    from recvae.data.download import fetch, find_manifest

    manifest = find_manifest(args.name)
    path = fetch(manifest, args.cache)
    print(path)
    if manifest.license:
        print(f"license: {manifest.license}", file=sys.stderr)
    reader = " ".join(f"--{k} {v!r}" if k == "sep" else (f"--{k}" if v is True else f"--no-{k}") for k, v in manifest.reader.items())
    print(f"train on it: recvae train --data {path} {reader}".rstrip(), file=sys.stderr)
    for member in manifest.side_members:
        print(f"beside it: {path.parent / Path(member).name}", file=sys.stderr)
    return 0


def cmd_embed(args) -> int:
    from recvae.export.embed import EmbedSpec, embed_log

    spec = EmbedSpec(**_user_log_options(args), items_out=args.items)
    result = embed_log(spec)
    print(f"wrote {result.users} users' positions ({result.dimensions} dimensions) to {args.out} in "
          f"{result.seconds:.1f} s" + (f"; the item vectors to {args.items}" if args.items else ""))
    if result.users_without_known_items:
        print(f"{result.users_without_known_items} users had no item the model knows and have no position")
    return 0


def cmd_sample(args) -> int:
    from recvae.export.embed import SampleSpec, sample_log

    if args.item_features and not args.report:
        raise ParameterError("item_features", args.item_features, "is read by the realism report only: add {report}")
    sample = SampleSpec(model=args.model, out=args.out, users=args.users, seed=args.seed, temperature=args.temperature,
                        source=args.source, batch_users=args.batch_users, overwrite=args.overwrite,
                        user_features=args.user_features, where=tuple(args.where or ()))
    if not args.report:
        rows = sample_log(sample)
        print(f"wrote {rows} interactions of {args.users} synthetic users to {args.out}")
        return 0
    from recvae.generative.command import RealismSpec, sample_with_report

    report = RealismSpec(model=args.model, synthetic=args.out, out=args.report, item_features=args.item_features,
                         seed=args.seed, tracking=_tracking_config(args))
    rows, numbers = sample_with_report(sample, report)
    print(f"wrote {rows} interactions of {args.users} synthetic users to {args.out}")
    for name, entry in numbers["logs"].items():
        print(f"{name}: train-on-synthetic/test-on-real {entry['tstr_ratio']:.3f} of the real log's EASE, "
              f"PMI correlation {entry['pmi_correlation']:.3f}, item-share JSD {entry['item_share_jsd']:.4f}, "
              f"nearest training user's Jaccard {entry['nearest_jaccard_mean']:.3f} (real held-out users "
              f"{numbers['real']['nearest_jaccard_heldout_mean']:.3f})")
    print(f"wrote {args.report}/report.json and the figures")
    return 0


def cmd_score_users(args) -> int:
    from recvae.export.embed import ScoreUsersSpec, score_users_log

    spec = ScoreUsersSpec(**_user_log_options(args), neighbours=args.neighbours)
    users, left_out, seconds = score_users_log(spec)
    print(f"scored {users} users to {args.out} in {seconds:.1f} s (score: negative ELBO per interaction; higher is "
          "less likely under the model)")
    if left_out:
        print(f"{left_out} users had no item the model knows and have no score")
    return 0


def cmd_latent_report(args) -> int:
    from recvae.latent.command import LatentReportSpec, write_latent_report

    spec = LatentReportSpec(model=args.model, data=args.data, out=args.out, user_features=args.user_features,
                            item_features=args.item_features, max_users=args.max_users, min_rating=args.min_rating,
                            umap=args.umap,
                            reader=_reader_options(args),
                            tracking=_tracking_config(args))
    numbers = write_latent_report(spec)
    print(f"{numbers['title']}: {numbers['verdict']}")
    for attribute, by in numbers.get("attribute_probes", {}).items():
        probe = by["posterior mean"]
        print(f"{attribute} from the posterior means: accuracy {probe['accuracy']:.3f} (majority class {probe['majority']:.3f})")
    for name, share in numbers.get("genre_neighbourhoods", {}).items():
        print(f"10 nearest items sharing a genre ({name}): {share['share']:.3f} (random items {share['random']:.3f})")
    print(f"wrote {args.out}/report.html, report.json and the figures")
    return 0


def cmd_similar(args) -> int:
    from recvae.export.similar import SimilarSpec, similar_items_table

    spec = SimilarSpec(model=args.model, items=tuple(i.strip() for i in args.items.split(",") if i.strip()),
                       out=args.out, top_n=args.top_n, item_names=args.item_names, overwrite=args.overwrite)
    table = similar_items_table(spec)
    if args.out:
        print(f"wrote {len(table)} rows to {args.out}")
    else:
        print(table.to_string(index=False))
    return 0


def cmd_generate(args) -> int:
    from recvae.data import SyntheticLog, generate_log

    from recvae.io import check_writable, write_atomic_bytes

    out = Path(args.out)
    suffix = "".join(out.suffixes[-2:]) if out.suffix == ".gz" else out.suffix
    if suffix not in (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz"):
        raise ValueError(f"--out {out}: name a .csv, .tsv or .parquet file (.csv.gz and .tsv.gz are compressed)")
    check_writable(out, "the log")
    config = SyntheticLog(n_users=args.n_users, n_items=args.n_items, seed=args.seed)  # checked before any work
    frame = generate_log(config)
    buffer = io.BytesIO()
    if suffix == ".parquet":
        frame.to_parquet(buffer, index=False)
    else:
        frame.to_csv(buffer, index=False, sep="\t" if suffix.startswith(".tsv") else ",",
                     compression={"method": "gzip", "mtime": 0} if suffix.endswith(".gz") else None)
    write_atomic_bytes(out, buffer.getvalue())
    print(f"wrote {len(frame)} interactions of {args.n_users} users and {args.n_items} items to {out}")
    return 0


def _add_train(sub, common) -> None:
    train = sub.add_parser(
        "train", parents=[common], help="train a model, print test metrics beside popularity, save it",
        usage="%(prog)s [--data FILE] [--model NAME] [--out DIR] [options] (all: recvae train --help)",
        description=f"Train a model (Mult-VAE by default; {', '.join(_model_names().values())}) on an interaction log, "
        "score the held-out "
        "test users, print Recall@20, Recall@50 and NDCG@100 beside a popularity baseline, and save the "
        "model. Without --data it trains on the embedded synthetic log.",
        formatter_class=_DefaultsFormatter,
    )
    train.add_argument("--model", choices=sorted(_model_names()), default="multvae",
                       help="the model to train; its hyperparameters are the flags below")
    train.add_argument("--out", default="models/recvae-model", help="model directory to write")
    train.add_argument("--overwrite", action="store_true", help="replace the model directory --out if it exists")
    train.add_argument("--checkpoint-dir", help="write a checkpoint after every epoch here")
    train.add_argument("--resume", action="store_true", help="continue the run checkpointed in --checkpoint-dir")
    train.add_argument("--auto-beta", action="store_true",
                       help="Mult-VAE: anneal β to 1 once, take the β of the best validation epoch as the cap, retrain "
                            "(two trainings)")
    train.add_argument("--metrics", help=METRICS_HELP)
    train.add_argument("--config", dest="flags_file", metavar="FILE", help="flags from a TOML file (what 'recvae tune' writes); flags given "
                                                        "here override it")
    _add_data_flags(train)
    _add_tracking_flags(train)
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)


def _add_tune(sub, common) -> None:
    tune = sub.add_parser(
        "tune", parents=[common], help="search a model's hyperparameters on the validation users (Optuna)",
        description="Search one model's hyperparameters with Optuna (seeded TPE, pruning of weak epoch-by-epoch "
        "trials) on the validation users of the split (test users are never scored), keep the study in a database "
        "so a stopped search resumes, and write the best setting as a file 'recvae train --config' trains from. "
        "Each trial is an MLflow child run.",
        formatter_class=_DefaultsFormatter,
    )
    tune.add_argument("--model", choices=sorted(set(_model_names()) - {"popularity"}), default="multvae",
                      help="the model to tune; flags below fix hyperparameters the search leaves alone")
    tune.add_argument("--out", default="tuned.toml", help="the best setting, as recvae train flags")
    tune.add_argument("--trials", type=int, default=20, help="trials (a space of fewer settings tries each once)")
    tune.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tune.add_argument("--storage", help="Optuna database URL (default: sqlite, OUT with .db: a rerun resumes it)")
    tune.add_argument("--space", metavar="FILE", help="TOML with a [search] table of ranges (default: the model's "
                                                      "search_space)")
    tune.add_argument("--metric", help="validation metric to maximise (default: ndcg@100; presplit: recall_full@20)")
    tune.add_argument("--pruner", choices=("median", "halving", "hyperband", "none"), default="median",
                      help="stop epoch-by-epoch trials that fall behind")
    _add_data_flags(tune)
    _add_tracking_flags(tune)
    _add_config_flags(tune)
    tune.set_defaults(func=cmd_tune)


def _add_evaluate(sub, common) -> None:
    evaluate = sub.add_parser(
        "evaluate", parents=[common], help="score a saved model's test users",
        description="Load a model directory and score the test users of the split it was trained on "
        "(or of --data with the given split options).",
    )
    evaluate.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    evaluate.add_argument("--metrics", help=METRICS_HELP)
    evaluate.add_argument("--baseline", action="store_true", help="also score popularity on the same split")
    evaluate.add_argument("--examples", type=int, default=3, metavar="N",
                          help="show N test users whole: history, top 10, which were held out (0: none)")
    evaluate.add_argument("--item-names", metavar="FILE", help=ITEM_NAMES_HELP + ": shown beside the examples' IDs")
    evaluate.add_argument("--cold-start", metavar="N,N,...",
                          help="new users: also score the test users with only N of their items given (each N in "
                               "turn, 0 for none; the rest held out), beside popularity; a CVAE reads their features")
    _add_data_flags(evaluate, "the data and split the model was trained on, as its model.json records them")
    _add_tracking_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def _add_recommend(sub, common) -> None:
    recommend = sub.add_parser(
        "recommend", parents=[common], help="export the top-N items of every user of a log",
        description="Score every user of an interaction log with a saved model (fold-in: users need not "
        "have been in training) and write user, item, rank, score rows in original IDs. Users are streamed "
        "in blocks, so memory does not grow with their number; the output appears only when complete.",
        formatter_class=_DefaultsFormatter,
    )
    recommend.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    recommend.add_argument("--interactions", "--data", required=True, metavar="FILE",
                           help="users' histories (any format 'train --data' reads)")
    recommend.add_argument("--out", required=True, help="output file: .parquet, .csv or .tsv (with --engine spark, a folder)")
    recommend.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    recommend.add_argument("--top-n", type=int, default=100, help="items per user")
    recommend.add_argument("--include-seen", action="store_true", help="allow items already in a user's history")
    recommend.add_argument("--allow", metavar="FILE", help="only recommend these item IDs (one per line)")
    recommend.add_argument("--deny", metavar="FILE", help="never recommend these item IDs (one per line)")
    recommend.add_argument("--fallback", choices=("popularity",), help="give users with no known item the most popular items")
    recommend.add_argument("--shard", default="0/1", help="i/n: export only the i-th of n disjoint shares of the users")
    recommend.add_argument("--batch-users", type=int, default=1000, help="users scored at once")
    recommend.add_argument("--score-memory", type=float, metavar="MB",
                           help="most memory a block's scores may take: the catalogue is then scored in item chunks "
                                "with a running top-n (the same rows; for catalogues whose users x items block does "
                                "not fit)")
    recommend.add_argument("--min-rating", metavar="R",
                           help="keep interactions rated at least R ('none': all); default: the model's training value")
    recommend.add_argument("--item-names", metavar="FILE", help=ITEM_NAMES_HELP + ": adds a name column")
    recommend.add_argument("--user-features", metavar="FILE",
                           help=USER_FEATURES_HELP + "; a user with no item the model knows is still scored from them")
    recommend.add_argument("--groups", metavar="FILE",
                           help="one list per group of users instead of one per user: a line per group, "
                                "'name: user ID, user ID, ...', from the mean of the members' posterior means "
                                "(their histories are read from --interactions); writes group, item, rank, score")
    recommend.add_argument("--ungrouped", dest="grouped", action="store_false", help="the log does not keep each user's rows together: group it in memory")
    _add_engine_flags(recommend)
    _add_reader_flags(recommend.add_argument_group("reading the log"))
    recommend.set_defaults(func=cmd_recommend)


def _add_embed(sub, common) -> None:
    embed = sub.add_parser(
        "embed", parents=[common], help="every user's position in the model's latent space, to Parquet",
        description="Place every user of an interaction log in a saved model's latent space (fold-in: users "
        "need not have been in training) and write user, mean and std (the posterior's standard deviation, "
        "where the model has one), each vector a fixed-size list of float32, in original IDs. Streamed in "
        "user blocks like 'recommend'; the file appears only when complete.",
        formatter_class=_DefaultsFormatter,
    )
    _add_user_log_flags(embed, "the users' file (.parquet); with --items, the item vectors' too", "encoded")
    embed.add_argument("--items", metavar="FILE", help="also write the item vectors (item, output, input) to this .parquet")
    embed.set_defaults(func=cmd_embed)


def _add_user_log_flags(parser, out_help: str, verb: str) -> None:
    """The flags of a command that reads a log and writes a row per user (embed, score-users)."""
    parser.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    parser.add_argument("--interactions", "--data", required=True, metavar="FILE",
                        help="users' histories (any format 'train --data' reads)")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--overwrite", action="store_true", help="replace the output files if they exist")
    parser.add_argument("--batch-users", type=int, default=1000, help=f"users {verb} at once")
    parser.add_argument("--min-rating", metavar="R",
                        help="keep interactions rated at least R ('none': all); default: the model's training value")
    parser.add_argument("--ungrouped", dest="grouped", action="store_false",
                        help="the log does not keep each user's rows together: group it in memory")
    parser.add_argument("--user-features", metavar="FILE", help=USER_FEATURES_HELP)
    _add_engine_flags(parser)
    _add_reader_flags(parser.add_argument_group("reading the log"))


def _add_engine_flags(parser) -> None:
    parser.add_argument("--engine", choices=("local", "spark"), default="local",
                        help="'spark': read, score and write through Spark (pip install recvae[spark]; --out is then "
                             "a Parquet directory)")
    parser.add_argument("--master", help="Spark master URL with --engine spark, e.g. local[2] (default: Spark's own)")


def _user_log_options(args) -> dict:
    """What embed's and score-users' specs take from those flags."""
    return dict(model=args.model, interactions=args.interactions, out=args.out, batch_users=args.batch_users,
                min_rating=args.min_rating, grouped=args.grouped, reader=_reader_options(args), overwrite=args.overwrite,
                user_features=args.user_features, engine=args.engine, master=args.master,
                progress=False if args.quiet else None, quiet=args.quiet)


def _add_sample(sub, common) -> None:
    sample = sub.add_parser(
        "sample", parents=[common], help="draw a synthetic interaction log from a trained VAE",
        description="Draw synthetic users from a saved model: a latent point (from a Gaussian mixture fitted to where "
        "the training users sit, or from the prior), decoded to scores over the items, a history length from the "
        "training users', that many distinct items in proportion to the softmax of the scores / --temperature. "
        "Writes user, item (original item IDs), streamed in blocks.",
        formatter_class=_DefaultsFormatter,
    )
    sample.add_argument("--model", required=True, help="model directory written by 'recvae train' (a model with a latent space)")
    sample.add_argument("--users", type=int, required=True, help="synthetic users to draw")
    sample.add_argument("--out", required=True, help="output file: .parquet, .csv or .tsv")
    sample.add_argument("--seed", type=int, default=0, help="the same seed gives the same log")
    sample.add_argument("--temperature", type=float, default=1.0, help="below 1: each user's items more alike")
    sample.add_argument("--source", choices=("posterior", "prior"), default="posterior",
                        help="where latent points come from: the training users' aggregate posterior, or N(0, I)")
    sample.add_argument("--batch-users", type=int, default=1000, help="users drawn at once")
    sample.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    sample.add_argument("--report", metavar="DIR", help="also measure how realistic the log is against the model's "
                        "own training log (rebuilt from the data and split it records) and a popularity sampler: "
                        "report.json and figures in DIR")
    sample.add_argument("--item-features", metavar="FILE", help="with --report: an item table with a genres column "
                        "(movies.dat, movies.csv) for the genre mix per user")
    sample.add_argument("--user-features", metavar="FILE", help="a CVAE's users' table (the one it was trained with): "
                        "each synthetic user is decoded with the features of a real user drawn from it")
    sample.add_argument("--where", action="append", metavar="COLUMN=VALUE",
                        help="with --user-features: draw only users whose COLUMN is VALUE (e.g. age=18; repeat to "
                             "require several): synthetic users of that group")
    _add_tracking_flags(sample)
    sample.set_defaults(func=cmd_sample)


def _add_score_users(sub, common) -> None:
    score = sub.add_parser(
        "score-users", parents=[common], help="how unlikely each user's history is under the model (anomaly scores)",
        description="Score every user of a log by the negative ELBO per interaction of their history under a "
        "saved VAE (its reconstruction and KL parts beside it): fake, bot or attack profiles tend to score high. "
        "Writes user, score, reconstruction, kl, interactions in original IDs, streamed in user blocks, and percentile: "
        "the share of the model's training users scoring lower (flag, e.g., percentile >= 0.99).",
        formatter_class=_DefaultsFormatter,
    )
    _add_user_log_flags(score, "output file: .parquet, .csv or .tsv", "scored")
    score.add_argument("--neighbours", type=int, metavar="K", help="also neighbour_distance: each user's mean "
                       "distance to the K nearest other users of the log in the latent space (low: crowded, as "
                       "injected profiles are); reads the log twice and holds every position")
    score.set_defaults(func=cmd_score_users)


def _add_latent_report(sub, common) -> None:
    report = sub.add_parser(
        "latent-report", parents=[common], help="what a model's latent space holds: figures, numbers, one HTML page",
        description="Place the users of a log in a saved model's latent space and write PNG figures, a "
        "self-contained report.html and report.json: KL and active units per dimension and a verdict on posterior "
        "collapse, 2-D maps of users and items, traversals of the most informative dimensions, and whether "
        "genres and user attributes show in the space (linear probes).",
        formatter_class=_DefaultsFormatter,
    )
    report.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    report.add_argument("--data", "--interactions", required=True, metavar="FILE",
                        help="users' histories (any format 'train --data' reads)")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    report.add_argument("--user-features", metavar="FILE",
                        help="user attributes: MovieLens users.dat as it is, or a CSV/TSV with an ID column and a header")
    report.add_argument("--item-features", metavar="FILE", help=ITEM_NAMES_HELP + "; a genres column colours the item map")
    report.add_argument("--max-users", type=int, default=20_000, help="users placed (drawn at random beyond it)")
    report.add_argument("--umap", action="store_true",
                        help="a UMAP map of the users beside the PCA one (needs umap-learn: pip install "
                             "'recvae[latent]'; about a minute for 6,000 users)")
    report.add_argument("--min-rating", metavar="R",
                        help="keep interactions rated at least R ('none': all); default: the model's training value")
    _add_reader_flags(report.add_argument_group("reading the log"))
    _add_tracking_flags(report)
    report.set_defaults(func=cmd_latent_report)


def _add_similar(sub, common) -> None:
    similar = sub.add_parser(
        "similar", parents=[common], help="the items most similar to given items",
        description="List the items a saved model holds most similar to each of --items (original IDs; the "
        "item itself left out): query item, similar item, rank, score, and names with --item-names.",
        formatter_class=_DefaultsFormatter,
    )
    similar.add_argument("--model", required=True, help="model directory written by 'recvae train'")
    similar.add_argument("--items", required=True, metavar="ID[,ID...]",
                         help="item IDs, comma-separated, or 'all': every item the model scores (a whole "
                         "item-to-item table, best written with --out)")
    similar.add_argument("--top-n", type=int, default=10, help="similar items per item")
    similar.add_argument("--item-names", metavar="FILE", help=ITEM_NAMES_HELP)
    similar.add_argument("--out", help="write a .csv, .tsv or .parquet file instead of printing the table")
    similar.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    similar.set_defaults(func=cmd_similar)


def _add_benchmark(sub, common) -> None:
    bench = sub.add_parser(
        "benchmark", parents=[common], help="compare models on the same splits, with tuning on validation users and CIs over seeds",
        description="Run a benchmark file (TOML; see evaluation/benchmarks/): for every split seed, tune every "
        "model on the validation users, score the test users once, and write a Markdown table, CSV, JSON and "
        "plots under OUT/<dataset>/, with 95% intervals over seeds and paired tests against the best model.",
        formatter_class=_DefaultsFormatter,
    )
    bench.add_argument("config", help="benchmark file, e.g. evaluation/benchmarks/ml-1m.toml")
    bench.add_argument("--data", dest="data_path", help="interaction file instead of the one the benchmark file names")
    bench.add_argument("--seeds", type=int, help="number of split seeds (default: the file's)")
    bench.add_argument("--models", help="comma-separated model names from the file (default: all)")
    bench.add_argument("--sampler-seed", type=int,
                       help="the studies' sampler seed instead of the file's [search] seed: the same search along "
                            "another path, to measure how stable each model's result is (give another --out)")
    bench.add_argument("--out", default="benchmark-results", help="results go to OUT/<dataset>/")
    bench.add_argument("--resume", action="store_true",
                       help="keep the (model, seed) runs an interrupted run of the same benchmark finished in OUT/<dataset>/runs/ "
                            "(an entry whose settings changed since is run and searched again)")
    bench.add_argument("--merge", nargs="+", metavar="DIR", default=(),
                       help="take the finished runs and studies of other --out folders of this benchmark file (parallel "
                            "--models subsets, say) into --out and rewrite its report; fits nothing (--resume then "
                            "finishes what is missing)")
    bench.add_argument("--force", dest="overwrite", action="store_true",
                       help="replace a report already in OUT/<dataset>/ (to regenerate evaluation/results: "
                            "--out evaluation/results --force)")
    _add_tracking_flags(bench)
    bench.set_defaults(func=cmd_benchmark, experiment="recvae-benchmark")


def _add_download(sub, common) -> None:
    download = sub.add_parser(
        "download", parents=[common], help="fetch a public dataset by its manifest, verify and cache it",
        description="Download a dataset named by a manifest under data/ (e.g. ml-1m) or a manifest file, check its "
        "checksum, extract the interactions into the cache and print their path. Nothing unverified is kept.",
        formatter_class=_DefaultsFormatter,
    )
    download.add_argument("name", help="manifest name (ml-1m) or path of a manifest .json")
    download.add_argument("--cache", help="cache folder (default: $RECVAE_DATA, else ~/.cache/recvae)")
    download.set_defaults(func=cmd_download)


def _add_generate(sub, common) -> None:
    generate = sub.add_parser(
        "generate", parents=[common], help="write the embedded synthetic log to a file",
        description="Write a synthetic interaction log (users with latent tastes over item groups, long-tailed "
        "activity and popularity: the log 'recvae train' uses without --data) to a CSV, TSV or Parquet file.",
        formatter_class=_DefaultsFormatter,
    )
    generate.add_argument("--out", required=True, help="file to write: .csv, .tsv or .parquet (.gz ok for text)")
    generate.add_argument("--users", dest="n_users", metavar="N", type=int, default=6000, help="number of users")
    generate.add_argument("--items", dest="n_items", metavar="N", type=int, default=3000, help="number of items")
    generate.add_argument("--seed", type=int, default=20180423, help="seed of the generator")
    generate.set_defaults(func=cmd_generate)


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every command takes, before or after its name (SUPPRESS: a subcommand's parse keeps the top level's)."""
    group = parser.add_argument_group("output and resources")
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log every step (INFO)")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or progress lines, only results and errors")
    group.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                       help="CPU threads for torch, numba and BLAS together (default: torch's, the number of cores)")


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: argparse would take --epoch for --epochs, and a typo for another flag. Subcommands'
    parsers are of the parser's own class, so this holds for every command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="recvae",
        description="Variational autoencoders for collaborative filtering, beside the references they are measured "
        f"against. Models (--model): {', '.join(_model_names().values())}.",
        epilog="Run 'recvae COMMAND --help' for the options of a command.",
    )
    from recvae.defaults import VERSION

    common = argparse.ArgumentParser(add_help=False)
    _add_common_flags(common)
    _add_common_flags(parser)
    parser.add_argument("--version", action="version", version=f"recvae {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_tune, _add_evaluate, _add_recommend, _add_similar, _add_embed, _add_latent_report,
                _add_score_users, _add_sample, _add_benchmark, _add_download, _add_generate):
        add(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    with _rank_0_alone_says_it():
        args = _parse(parser, argv)
    _configure_logging(args.verbose, args.quiet)
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    if ranks > 1 and args.command != "train":  # each process would run the whole command, and write its output
        if _rank_0():
            spark = " (--engine spark spreads it over a cluster)" if hasattr(args, "engine") else ""
            print(f"recvae: error: under torchrun ({ranks} processes) only 'train' runs, its processes training one "
                  f"model together: run 'recvae {args.command}' without torchrun{spark}", file=sys.stderr)
        return 2
    # SIGTERM (a scheduler's stop, `kill`) unwinds like Ctrl-C: temporary files go, MLflow runs end KILLED.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if getattr(args, "flags_file", None):
            command = _subparser(parser, args.command)
            command.set_defaults(**_config_defaults(args.flags_file, command))
            args = _parse(parser, argv)
        if args.threads is not None:
            _limit_threads(args.threads)
        return args.func(args)
    except KeyboardInterrupt:
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        if ranks > 1 and not _rank_0():
            return 130  # torchrun stopping its ranks: rank 0 says it once
        hint = " (resume with --resume)" if getattr(args, "checkpoint_dir", None) else ""
        if hint and ranks > 1:  # torchrun's agent may stop every rank before rank 0 sees a peer gone
            hint = f": {_resume_command(argv, int(os.environ.get('LOCAL_WORLD_SIZE', ranks)))}"
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    except (RecvaeError, ValueError) as exc:
        # the run is over: a SIGTERM now (torchrun stopping the other ranks) must not cut the one-line report
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if _of_the_settings_alone(exc) and not _rank_0():
            return 2
        # a benchmark's settings come from its TOML file, so a setting out of range is named as its key there
        benchmark_setting = args.command == "benchmark" and isinstance(exc, ParameterError)
        message = (exc.spoken(_flags(_subparser(parser, args.command)))
                   if isinstance(exc, RecvaeError) and not benchmark_setting else str(exc))
        if isinstance(exc, PeerLostError) and exc.checkpoint_dir:
            message += f": {_resume_command(argv, exc.world_size)}"
        print(f"recvae: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full or read-only disk, a folder where a file is meant: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"recvae: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rank_0() -> bool:
    """Whether this process is torchrun's rank 0, or runs without torchrun."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def _rank_0_alone_says_it():
    """Under torchrun every rank parses the same command line: argparse's complaint about it (a flag misspelt, a
    value of the wrong kind) is the same on each, so only rank 0's reaches the terminal."""
    if _rank_0():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _of_the_settings_alone(exc: Exception) -> bool:
    """An error every torchrun rank meets alike, rank 0 saying it: a setting out of range or at odds with another,
    found from the command line alone. An error of the data (a file missing on one machine only) is said by every
    rank that meets it."""
    return isinstance(exc, ParameterError) and not isinstance(exc, DataError)


def _resume_command(argv, processes: int) -> str:
    """The torchrun command that resumes this run from its checkpoints."""
    again = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--resume"]
    return f"torchrun --nproc-per-node {processes} -m recvae {' '.join(map(shlex.quote, again))} --resume"


def _parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would show the top-level usage: show the command's, and the flag meant
        command = _subparser(parser, args.command)
        flags = [s for action in command._actions for s in action.option_strings if s.startswith("--")]
        typed = next((u.split("=")[0] for u in unknown if u.startswith("-")), unknown[0])
        # a flag one of whose words was typed (--n for --top-n) before one spelled alike (--top_n)
        words = [f for f in flags if typed.lstrip("-") in f.lstrip("-").split("-")]
        close = sorted(words, key=len)[:1] or difflib.get_close_matches(typed, flags, n=1, cutoff=0.6)
        command.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" (did you mean {close[0]}?)" if close else ""))
    for flag, default in (("verbose", False), ("quiet", False), ("threads", None)):
        setattr(args, flag, getattr(args, flag, default))
    return args


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each setting's name in the library (its flag's destination, ``cfg_`` dropped) → the flag a user types;
    a switch also as ``name=True`` (or ``name=False`` for one that clears its setting) → the flag alone."""
    flags = {}
    for action in parser._actions:
        if long := [s for s in action.option_strings if s.startswith("--")]:
            name = action.dest.removeprefix("cfg_")
            flags[name] = long[0]
            if action.nargs == 0 and isinstance(action.const, bool):
                flags[f"{name}={action.const}"] = long[0]
    return flags


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _configure_logging(verbose: bool, quiet: bool) -> None:
    """recvae's warnings always; its progress lines (one per epoch or benchmark step, when no bar is drawn)
    unless --quiet; everything with -v. MLflow's own INFO lines only with -v."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = logging.getLogger("recvae.progress")
    # under torchrun every rank reads the log: rank 0 alone says what it found, as it alone prints the rest
    progress.setLevel(logging.WARNING if quiet or not _rank_0() else logging.INFO)
    if not progress.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.propagate = False
    # MLflow configures its own logger when it is first imported (later, and only if tracking is on): it
    # reads this variable then.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (a test's capture, a redirected stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_threads(n: int) -> None:
    """--threads: torch's intra-op pool (which also bounds the numba top-k kernel), every BLAS and OpenMP."""
    if n < 1:
        raise ValueError(f"--threads {n}: expected at least 1")
    # threadpoolctl reaches only the libraries loaded so far; one loaded later (scipy.linalg's own OpenBLAS,
    # which EASE's solve and the posterior mixture's EM run on) reads these when it loads. Left at the cores'
    # number beside a busy core, its small factorisations ran 60 times slower.
    os.environ.update({name: str(n) for name in THREAD_VARIABLES})
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    _limit_threads.pools = threadpool_limits(limits=n)  # kept: the limit lasts while it lives


if __name__ == "__main__":
    sys.exit(main())

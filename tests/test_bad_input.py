"""The bad-input suite (#17): every case builds its own inputs, runs the command line as a user would, and
asserts the exit code, the words of the one-line message (the file, line, flag or field it names) and that
nothing was written where the command would have written.

A case is ``(id, build)``: ``build(tmp)`` writes what the case needs under ``tmp`` and returns
``(argv, words, targets)``; ``targets`` are paths that must not exist afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from recvae.cli import main
from recvae.models.serialization import manifest_digest

QUIET = ["-q", "--no-tracking"]
GOOD_LOG = "user,item,rating\n" + "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(40) for i in range(u % 7, u % 7 + 8))


NEXT_LINE = GOOD_LOG.count("\n") + 1  # the number of a line appended to GOOD_LOG


def _log(tmp: Path, text: str = GOOD_LOG, name: str = "log.csv") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _train(tmp: Path, data: Path | str, *extra: str, words: str):
    out = tmp / "model"
    return ["train", "--data", str(data), "--out", str(out), *extra, *QUIET], words, [out]


# ---- the interaction log: read before any training, named by file and line ----


def min_rating_with_the_rating_column_ignored(tmp):
    return _train(tmp, _log(tmp, "user,item,rating\n1,2,5\n"), "--rating", "none", "--min-rating", "4",
                  words="--min-rating 4: keeps interactions by their rating, but --rating none ignores")

def missing_file(tmp):
    return _train(tmp, tmp / "nowhere.csv", words="nowhere.csv: no such file")


def a_directory(tmp):
    (tmp / "logs").mkdir()
    return _train(tmp, tmp / "logs", words="logs: is a directory")


def empty_file(tmp):
    return _train(tmp, _log(tmp, ""), words="log.csv: the file is empty")


def header_only(tmp):
    return _train(tmp, _log(tmp, "user,item\n"), words="log.csv: the file has a header but no rows")


def too_many_fields(tmp):
    return _train(tmp, _log(tmp, GOOD_LOG + "1,2,3,4\n"), words=f"line {NEXT_LINE}")


def skipped_bad_lines_then_no_column(tmp):
    return _train(tmp, _log(tmp), "--user", "customer", words="'customer'")


def empty_id(tmp):
    return _train(tmp, _log(tmp, GOOD_LOG + ",5,3\n"), words=f"line {NEXT_LINE}")


def nan_text_id(tmp):
    return _train(tmp, _log(tmp, GOOD_LOG + "NaN,5,3\n"), words=f"line {NEXT_LINE}")


def wrong_delimiter(tmp):
    return _train(tmp, _log(tmp, GOOD_LOG.replace(",", ";")), "--sep", ",", words="--sep")


def non_numeric_rating(tmp):
    return _train(tmp, _log(tmp, GOOD_LOG + "3,4,five\n"), "--min-rating", "4", words=f"line {NEXT_LINE}")


def damaged_gzip(tmp):
    path = tmp / "log.csv.gz"
    path.write_bytes(gzip.compress(GOOD_LOG.encode())[:60])
    return _train(tmp, path, words="log.csv.gz")


def latin1(tmp):
    path = tmp / "log.csv"
    path.write_bytes("user,item\nana,caf\u00e9\n".encode("latin-1"))
    return _train(tmp, path, words="line 2 is not valid utf-8")


def wrong_encoding_flag(tmp):
    return _train(tmp, _log(tmp), "--encoding", "klingon", words="--encoding 'klingon'")


def nobody_left_after_filtering(tmp):
    return _train(tmp, _log(tmp), "--min-user-interactions", "1000", words="--min-user-interactions")


def min_rating_without_ratings(tmp):
    return _train(tmp, _log(tmp, "user,item\n1,2\n2,3\n"), "--min-rating", "4", words="--min-rating")


def lightgcn_format_with_words(tmp):
    return _train(tmp, _log(tmp, "0 1 2\nuser x y\n", "train.txt"), "--format", "lightgcn", words="line 2")


# ---- options: checked before the data is read (the log here does not exist) ----

def _options(tmp, *extra, words):
    return _train(tmp, tmp / "not-read.csv", *extra, words=words)


def unknown_metric(tmp):
    return _options(tmp, "--metrics", "ndcg@x", words="unknown metric 'ndcg@x'")


def zero_epochs(tmp):
    return _options(tmp, "--epochs", "0", words="--epochs")


def zero_batch_size(tmp):
    return _options(tmp, "--batch-size", "0", words="--batch-size")


def negative_learning_rate(tmp):
    return _options(tmp, "--learning-rate", "-1", words="--learning-rate")


def dropout_of_one(tmp):
    return _options(tmp, "--dropout", "1.0", words="--dropout")


def unknown_activation(tmp):
    return _options(tmp, "--activation", "swishy", words="--activation")


def unknown_model(tmp):
    return _options(tmp, "--model", "svd", words="invalid choice: 'svd'")


def flag_of_another_model(tmp):
    return _options(tmp, "--model", "ease", "--epochs", "3", words="EASE has no hyperparameter(s) ['epochs']")


def resume_without_checkpoints(tmp):
    return _options(tmp, "--resume", words="--checkpoint-dir")


def auto_beta_for_ease(tmp):
    return _options(tmp, "--model", "ease", "--auto-beta", words="--auto-beta")


def checkpoints_for_ease(tmp):
    return _options(tmp, "--model", "ease", "--checkpoint-dir", str(tmp / "ckpt"), words="--checkpoint-dir")


def holdout_fraction_above_one(tmp):
    return _options(tmp, "--holdout-fraction", "1.5", words="--holdout-fraction")


def split_protocol_with_a_test_file(tmp):
    return _options(tmp, "--test-data", str(tmp / "test.csv"), "--protocol", "strong", words="--protocol presplit")


def cuda_without_cuda(tmp):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    return _options(tmp, "--model", "ease", "--device", "cuda", words="CUDA is not available")


def out_exists(tmp):
    (tmp / "model").mkdir()
    (tmp / "model" / "keep.txt").write_text("mine")
    argv, _, _ = _options(tmp, words="")
    return argv, "--overwrite", [tmp / "model" / "model.json"]


def out_is_a_file(tmp):
    blocker = tmp / "blocker"
    blocker.write_text("x")
    return ["train", "--data", str(tmp / "not-read.csv"), "--out", str(blocker / "m"), *QUIET], \
        f"{blocker}: is a file, not a folder", [blocker / "m"]


def too_many_heldout_users(tmp):
    return _train(tmp, _log(tmp), "--heldout-users", "30", words="--heldout-users")


# ---- saved models: every file covered, nothing outside the directory ----

def _saved(tmp) -> Path:
    model = tmp / "saved"
    assert main(["train", "--model", "popularity", "--data", str(_log(tmp)), "--out", str(model),
                 "--heldout-users", "5", *QUIET]) == 0
    return model


def _edit(model: Path, change) -> None:
    manifest = json.loads((model / "model.json").read_text())
    change(manifest)
    (model / "model.json").write_text(json.dumps(manifest))


def _evaluate(model, words):
    return ["evaluate", "--model", str(model), "--no-tracking"], words, []


def no_model_dir(tmp):
    return _evaluate(tmp / "nothing", "nothing")


def edited_model_json(tmp):
    model = _saved(tmp)
    _edit(model, lambda m: m["config"].update(binarize=False))
    return _evaluate(model, "model.json: contents differ from what was saved")


def model_json_not_json(tmp):
    model = _saved(tmp)
    (model / "model.json").write_text("{ not json")
    return _evaluate(model, "model.json")


def escaping_file_entry(tmp):
    model = _saved(tmp)

    def escape(manifest):
        manifest["files"]["../outside.bin"] = "0" * 64
        manifest["manifest_sha256"] = manifest_digest(manifest)  # as one who edits it would

    _edit(model, escape)
    return _evaluate(model, "is not a file name inside the model directory")


def truncated_weights(tmp):
    model = _saved(tmp)
    weights = model / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    return _evaluate(model, "weights.safetensors")


def missing_items_file(tmp):
    model = _saved(tmp)
    (model / "items.json").unlink()
    return _evaluate(model, "items.json")


def another_split(tmp):
    model = _saved(tmp)
    argv = ["evaluate", "--model", str(model), "--data", str(tmp / "log.csv"), "--split-seed", "99", "--no-tracking"]
    return argv, "is not the one the model was trained on", []


# ---- recommend: export targets are never half-written ----

def _recommend(tmp, *extra, words, model=None):
    out = tmp / "recs.csv"
    model = model or _saved(tmp)
    return ["recommend", "--model", str(model), "--interactions", str(tmp / "log.csv"), "--out", str(out), *extra, "-q"], \
        words, [out]


def spark_master_not_a_url(tmp):
    return _recommend(tmp, "--engine", "spark", "--master", "nonsense://x", words="--master 'nonsense://x': not a Spark master URL",
                      model=tmp / "not-read")


def zero_batch_users(tmp):
    return _recommend(tmp, "--batch-users", "0", words="--batch-users 0", model=tmp / "not-read")


def zero_top_n(tmp):
    return _recommend(tmp, "--top-n", "0", words="--top-n", model=tmp / "not-read")


def master_without_spark(tmp):
    return _recommend(tmp, "--master", "local[2]", words="--master", model=tmp / "not-read")


def spark_with_shard(tmp):
    return _recommend(tmp, "--engine", "spark", "--shard", "0/2", words="--shard", model=tmp / "not-read")


def zero_score_memory(tmp):
    return _recommend(tmp, "--score-memory", "0", words="--score-memory 0", model=tmp / "not-read")


def bad_shard(tmp):
    return _recommend(tmp, "--shard", "3/2", words="--shard", model=tmp / "not-read")


def recommend_unknown_model(tmp):
    _log(tmp)
    return _recommend(tmp, words="not-a-model", model=tmp / "not-a-model")


def missing_allow_list(tmp):
    return _recommend(tmp, "--allow", str(tmp / "allow.txt"), words="allow.txt")


def recommend_bad_log_line(tmp):
    argv, _, targets = _recommend(tmp, words="")
    _log(tmp, GOOD_LOG + "1,2,3,4\n")
    return argv, f"line {NEXT_LINE}", targets


# ---- benchmark files: the file and the key named, nothing under --out ----

BENCH = """dataset = "tiny"
seeds = 1
[data.synthetic]
n_users = 100
n_items = 40
[split]
heldout_users = 10
[[models]]
model = "Popularity"
"""


def _bench(tmp, text, words):
    path = tmp / "bench.toml"
    path.write_text(text)
    return ["benchmark", str(path), "--out", str(tmp / "results"), "--no-tracking", "-q"], words, [tmp / "results"]


def bench_missing_file(tmp):
    return ["benchmark", str(tmp / "none.toml"), "--out", str(tmp / "results"), "-q"], "none.toml: no such benchmark file", \
        [tmp / "results"]


def bench_data_file_missing(tmp):
    text = BENCH.replace("[data.synthetic]\nn_users = 100\nn_items = 40\n", '[data]\npath = "nowhere.csv"\n')
    return _bench(tmp, text, "point the benchmark at your copy (--data PATH)")


def bench_not_toml(tmp):
    return _bench(tmp, "dataset = \n", "bench.toml: not valid TOML")


def bench_escaping_dataset(tmp):
    return _bench(tmp, BENCH.replace('"tiny"', '"../../x"'), "dataset '../../x'")


def bench_seeds_in_words(tmp):
    return _bench(tmp, BENCH.replace("seeds = 1", 'seeds = "three"'), "seeds must be a whole number")


def bench_unknown_field(tmp):
    return _bench(tmp, "colour = 'red'\n" + BENCH, "bench.toml: unknown field(s) ['colour']")


def bench_unknown_model(tmp):
    return _bench(tmp, BENCH.replace('"Popularity"', '"SVD"'), "unknown model 'SVD'")


def bench_empty_metrics(tmp):
    return _bench(tmp, "metrics = []\n" + BENCH, "metrics must be a non-empty list")


def bench_unknown_selection_metric(tmp):
    return _bench(tmp, 'selection_metric = "auc"\n' + BENCH, "unknown metric 'auc'")


def bench_grid_not_a_list(tmp):
    return _bench(tmp, BENCH.replace('model = "Popularity"', 'model = "EASE"\ngrid = { l2 = 3.0 }'),
                  "grid value 'l2' must be a non-empty list")


def bench_selection_metric_outside_the_history(tmp):
    text = 'selection_metric = "ndcg@20"\n' + BENCH.replace('model = "Popularity"', 'model = "MultVAE"\nparams = { validation_metric = "recall@50" }')
    return _bench(tmp, text, "validation_metric 'recall@50' leaves selection_metric 'ndcg@20' out of its epoch history")


BENCH_SEARCH = BENCH.replace("[data.synthetic]", "[search]\ntrials = 3\n\n[data.synthetic]", 1)


def bench_search_empty_range(tmp):
    text = BENCH_SEARCH.replace('model = "Popularity"', 'model = "EASE"\nsearch = { l2 = { low = 5.0, high = 1.0 } }')
    return _bench(tmp, text, "model 'EASE': search key 'l2': empty range")


def bench_search_unknown_hyperparameter(tmp):
    text = BENCH_SEARCH.replace('model = "Popularity"', 'model = "EASE"\nsearch = { lam = [1.0] }')
    return _bench(tmp, text, "search key(s) ['lam'] are not hyperparameters")


def bench_search_log_over_zero(tmp):
    text = BENCH_SEARCH.replace(
        'model = "Popularity"', 'model = "EASE"\nsearch = { l2 = { low = 0.0, high = 9.0, log = true } }')
    return _bench(tmp, text, "search key 'l2': a log scale needs low > 0")


def bench_search_without_a_budget(tmp):
    return _bench(tmp, BENCH.replace('model = "Popularity"', 'model = "EASE"\nsearch = { l2 = [1.0, 2.0] }'),
                  "add a [search] section")


def bench_search_zero_trials(tmp):
    return _bench(tmp, BENCH + "[search]\ntrials = 0\n", "search trials must be a whole number")


def bench_search_timeout_as_text(tmp):  # was "'>' not supported between instances of 'str' and 'int'"
    return _bench(tmp, BENCH + '[search]\ntimeout = "600"\n', "search timeout must be a number, not '600'")


def bench_missing_data(tmp):
    text = BENCH.replace("[data.synthetic]\nn_users = 100\nn_items = 40\n", '[data]\npath = "gone.csv"\n')
    return _bench(tmp, text, "recvae download")


def bench_bad_hyperparameter(tmp):
    return _bench(tmp, BENCH.replace('model = "Popularity"', 'model = "EASE"\nparams = { l2 = -1.0 }'), "bad hyperparameters")


# ---- download and generate ----

def download_unknown_name(tmp):
    return ["download", "ml-2b", "--cache", str(tmp / "cache")], "no dataset manifest named 'ml-2b'", [tmp / "cache" / "ml-2b"]


def download_wrong_checksum(tmp):
    archive = tmp / "archive.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("d/ratings.csv", GOOD_LOG)
    archive.write_bytes(buffer.getvalue())
    manifest = tmp / "d.json"
    manifest.write_text(json.dumps({"name": "d", "url": archive.as_uri(), "member": "d/ratings.csv",
                                    "archive_sha256": hashlib.sha256(b"other").hexdigest()}))
    cache = tmp / "cache"
    return ["download", str(manifest), "--cache", str(cache)], "d: download has SHA-256", [cache / "d"]


def generate_no_users(tmp):
    return ["generate", "--out", str(tmp / "g.csv"), "--users", "0"], "--users", [tmp / "g.csv"]


def generate_unknown_suffix(tmp):
    return ["generate", "--out", str(tmp / "g.xlsx")], "g.xlsx", [tmp / "g.xlsx"]


CASES = [value for name, value in list(globals().items())
         if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == __name__]


def test_the_suite_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("build", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(build, tmp_path, capsys):
    argv, words, targets = build(tmp_path)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals (an unknown choice)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err, err
    assert "Traceback" not in err
    for target in targets:
        assert not Path(target).exists(), f"{target} was written"
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left"

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recvae.score.metrics import hits, mean_and_se, ndcg_at_k, parse_metric, recall_at_k, recall_full_at_k


def csr(rows, n_items=10):
    data, indices, indptr = [], [], [0]
    for r in rows:
        indices += r
        data += [1.0] * len(r)
        indptr.append(len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_items))


def test_hits_marks_target_items_at_their_ranks():
    top = np.array([[3, 1, 2], [0, 5, 9]])
    target = csr([[1, 7], [9]])
    assert hits(top, target).tolist() == [[False, True, False], [False, False, True]]


def test_recall_divides_by_min_of_k_and_target_size():
    top = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    target = csr([[0, 2, 8, 9], [5]])
    # user 0: 2 hits in top 2? ranks 0,1 -> items 0,1 -> 1 hit; min(2, 4) = 2
    assert recall_at_k(top, target, 2).tolist() == [0.5, 1.0]
    # top 4: user 0 has items 0 and 2 -> 2 hits / min(4, 4)
    assert recall_at_k(top, target, 4).tolist() == [0.5, 1.0]


def test_recall_full_divides_by_all_target_items_as_lightgcn_does():
    top = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [1, 2, 3, 4]])
    target = csr([[0, 2, 8, 9], [5], []])
    # user 0: 1 hit in the top 2 over all 4 targets (recall@2 says 1/2); user 1: 1/1
    assert recall_full_at_k(top, target, 2)[:2].tolist() == [0.25, 1.0]
    assert recall_at_k(top, target, 2)[:2].tolist() == [0.5, 1.0]
    assert recall_full_at_k(top, target, 4)[:2].tolist() == [0.5, 1.0]
    assert math.isnan(recall_full_at_k(top, target, 2)[2])
    assert parse_metric("recall_full@20") == ("recall_full", 20)


def test_protocol_default_metrics_and_the_cli_help_agree():
    from recvae.cli import METRICS_HELP
    from recvae.evaluate import DEFAULT_METRICS, PRESPLIT_METRICS, default_metrics

    assert default_metrics("presplit") == PRESPLIT_METRICS and default_metrics("strong") == DEFAULT_METRICS
    assert ",".join(DEFAULT_METRICS) in METRICS_HELP and ",".join(PRESPLIT_METRICS) in METRICS_HELP


def test_ndcg_hand_computed():
    top = np.array([[0, 1, 2], [4, 5, 6]])
    target = csr([[1, 2], [4]])
    got = ndcg_at_k(top, target, 3)
    dcg0 = 1 / math.log2(3) + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3)
    assert got[0] == pytest.approx(dcg0 / idcg0)
    assert got[1] == pytest.approx(1.0)


def test_ndcg_ideal_dcg_counts_only_k_positions():
    top = np.array([[0, 1]])
    target = csr([[0, 1, 2, 3, 4]])
    assert ndcg_at_k(top, target, 2)[0] == pytest.approx(1.0)
    assert recall_at_k(top, target, 2)[0] == pytest.approx(1.0)


def test_users_without_targets_are_nan_and_ignored_in_mean():
    top = np.array([[0, 1], [0, 1]])
    target = csr([[0], []])
    values = ndcg_at_k(top, target, 2)
    assert values[0] == 1.0 and np.isnan(values[1])
    assert mean_and_se(values) == (1.0, pytest.approx(float("nan"), nan_ok=True))


def test_mean_and_standard_error():
    mean, se = mean_and_se(np.array([0.0, 1.0, 0.5, 0.5]))
    assert mean == 0.5
    assert se == pytest.approx(np.std([0, 1, 0.5, 0.5], ddof=1) / 2)


def test_parse_metric_rejects_unknown_names():
    assert parse_metric("NDCG@100") == ("ndcg", 100)
    for bad in ("ndcg", "map@10", "recall@0", "recall@x"):
        with pytest.raises(ValueError):
            parse_metric(bad)


def test_metric_curves_match_the_single_k_functions():
    from recvae.score.metrics import metric_curves

    rng = np.random.default_rng(3)
    top = np.stack([rng.permutation(30)[:12] for _ in range(8)])
    target = csr([sorted(rng.choice(30, size=n, replace=False).tolist()) for n in (1, 2, 3, 5, 8, 13, 0, 4)], n_items=30)
    curves = metric_curves(top, target)
    for k in (1, 5, 12):
        assert np.allclose(curves["recall"][:, k - 1], recall_at_k(top, target, k), equal_nan=True)
        assert np.allclose(curves["ndcg"][:, k - 1], ndcg_at_k(top, target, k), equal_nan=True)


def test_a_k_that_covers_every_candidate_is_reported(caplog):
    import logging

    from recvae.data import Interactions, SyntheticLog, generate_log
    from recvae.evaluate import evaluate
    from recvae.models import Popularity
    from recvae.split import strong_generalization_split

    log = generate_log(SyntheticLog(n_users=200, n_items=40, n_groups=4, median_activity=8, seed=1))
    split = strong_generalization_split(Interactions.from_frame(log), 20, seed=0)
    model = Popularity().fit(split.train)
    with caplog.at_level(logging.WARNING):
        evaluate(model, split.test, ("recall@10", "recall@50"))
    assert "recall@50: K is at least the" in caplog.text and "recall@10" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        evaluate(model, split.test, ("recall@10", "ndcg@20"))
    assert "K is at least" not in caplog.text


def test_evaluate_takes_one_metric_name_and_refuses_what_is_not_held_out_users(small_split):
    from recvae.evaluate import evaluate
    from recvae.models import Popularity

    model = Popularity().fit(small_split.train)
    assert set(evaluate(model, small_split.test, "ndcg@10").summary()) == {"ndcg@10", "ndcg@10_se"}  # not n, d, c, ...
    for wrong in (None, small_split.train):
        with pytest.raises(TypeError, match="heldout must be held-out users"):
            evaluate(model, wrong)


def test_the_evaluation_calls_name_a_bad_count_before_scoring(small_split):
    """A batch of 0 users was range()'s "arg 3 must not be zero", max_k="5" a comparison of int and str, 0
    examples pandas' "No objects to concatenate", and cold_start(given="1") a comparison of str and int."""
    from recvae.errors import DataError, ParameterError
    from recvae.evaluate import evaluate, evaluate_curves, example_users
    from recvae.models import Popularity
    from recvae.split.conditioned import cold_start

    model = Popularity().fit(small_split.train, items=small_split.items)
    test = small_split.test
    for call, words in ((lambda: evaluate(model, test, batch_size=0), "batch_size=0: must be at least 1"),
                        (lambda: evaluate_curves(model, test, batch_size=0), "batch_size=0: must be at least 1"),
                        (lambda: evaluate_curves(model, test, max_k="5"), "max_k='5': must be a whole number"),
                        (lambda: evaluate_curves(model, test, max_k=0), "max_k=0: must be at least 1"),
                        (lambda: example_users(model, test, small_split.users, n_users=0), "n_users=0: must be at least 1"),
                        (lambda: cold_start(test, "1", seed=1), "given='1': must be a whole number")):
        with pytest.raises(ParameterError, match=words):
            call()
    with pytest.raises(DataError, match="pass the vocabulary of the users the split was made from"):
        example_users(model, test, small_split.users.subset(np.arange(3)))
    assert len(evaluate_curves(model, test, max_k=5)["ndcg"]) == 5

"""Synthetic logs measured against the real one, and shilling attacks with their detectors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recvae.cli import main
from recvae.errors import DataError, ParameterError
from recvae.generative.attacks import (Attack, detection, ease_error_scores, inject, length_scores, pca_scores,
                                       popularity_scores)
from recvae.generative.realism import (genre_shares, gini, jensen_shannon, length_divergence, nearest_jaccard,
                                       pmi_correlation, popularity_sampler)
from recvae.models.ease import ease_weights


def _genres(n_items: int) -> list[set]:
    return [{"Drama"} if i % 3 == 0 else {"Comedy", "Romance"} if i % 3 == 1 else {"Action"} for i in range(n_items)]


@pytest.mark.parametrize("kind", ["random", "bandwagon", "segment"])
def test_the_injector_writes_exactly_the_requested_profiles(small_split, kind):
    train = small_split.train
    n_users, n_items = train.shape
    genres = _genres(n_items)
    poisoned = inject(train, Attack(kind, size=0.05, filler=0.05, seed=3), genres)
    fakes = round(0.05 * n_users)
    filler = round(0.05 * n_items)
    assert poisoned.matrix.shape == (n_users + fakes, n_items) and poisoned.fake.sum() == fakes
    assert (poisoned.matrix[:n_users] != train).nnz == 0  # the genuine users are untouched
    profiles = poisoned.matrix[poisoned.fake]
    assert (np.diff(profiles.indptr) == filler + 1).all() and profiles.max() == 1  # distinct items, one target
    assert (profiles[:, poisoned.target].toarray() == 1).all()
    popularity = np.bincount(train.indices, minlength=n_items)
    assert popularity[poisoned.target] <= np.median(popularity)  # an item an attacker would push
    filled = np.setdiff1d(np.unique(profiles.indices), [poisoned.target])
    if kind == "bandwagon":
        assert set(filled) <= set(np.argsort(-popularity, kind="stable")[:max(round(0.1 * n_items), 2 * filler)])
    if kind == "segment":
        assert all(poisoned.segment in genres[i] for i in filled)
    again = inject(train, Attack(kind, size=0.05, filler=0.05, seed=3), genres)
    assert (again.matrix != poisoned.matrix).nnz == 0


def test_a_segment_attack_needs_genres_and_attacks_are_checked(small_split):
    with pytest.raises(DataError, match="needs every item's genres"):
        inject(small_split.train, Attack("segment", 0.01, 0.01))
    with pytest.raises(ParameterError, match="kind='average'"):
        Attack("average", 0.01, 0.01)
    with pytest.raises(ParameterError, match="filler=1.5: must lie in"):
        Attack("random", 0.01, 1.5)


def test_the_simple_detectors_find_what_they_are_built_for(small_split):
    train = small_split.train
    long_random = inject(train, Attack("random", size=0.03, filler=0.4, seed=1))
    assert detection(length_scores(long_random.matrix), long_random.fake)["roc_auc"] > 0.95
    assert detection(popularity_scores(long_random.matrix), long_random.fake)["roc_auc"] > 0.85  # random: obscure items
    weights = ease_weights(long_random.matrix, 50.0).numpy()
    assert detection(ease_error_scores(long_random.matrix, weights), long_random.fake)["roc_auc"] > 0.75
    scores = pca_scores(long_random.matrix)
    assert scores.shape == (long_random.matrix.shape[0],) and np.isfinite(scores).all()
    result = detection(np.r_[np.zeros(10), np.ones(2)], np.r_[np.zeros(10, bool), np.ones(2, bool)])
    assert result == {"roc_auc": 1.0, "precision_at_n": 1.0}


def test_realism_measures_are_zero_or_one_where_they_must_be(small_split):
    train = small_split.train
    assert jensen_shannon([1, 2, 3], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert gini(np.ones(50)) == pytest.approx(0.0) and gini(np.r_[np.zeros(99), 1.0]) == pytest.approx(0.99)
    assert length_divergence(train, train) == pytest.approx(0.0, abs=1e-9)
    assert pmi_correlation(train, train)["pmi_correlation"] == pytest.approx(1.0)
    np.testing.assert_allclose(nearest_jaccard(train[:20], train), 1.0)  # every user copied
    _, shares = genre_shares(train, _genres(train.shape[1]))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    sampled = popularity_sampler(train, 400, seed=2)
    assert set(np.diff(sampled.indptr)) <= set(np.diff(train.indptr)) and sampled.max() == 1
    assert pmi_correlation(train, sampled)["pmi_correlation"] < 0.5  # independent items carry no co-occurrence
    assert (popularity_sampler(train, 400, seed=2) != sampled).nnz == 0


def test_sample_with_a_realism_report_from_the_command_line(tmp_path, small_log_file, capsys):
    model, out, report = tmp_path / "m", tmp_path / "synthetic.csv", tmp_path / "report"
    movies = tmp_path / "movies.csv"
    items = pd.read_csv(small_log_file)["item"].unique()
    pd.DataFrame({"item": items, "title": items, "genres": ["Drama|Comedy" if i % 2 else "Action"
                                                            for i in range(len(items))]}).to_csv(movies, index=False)
    assert main(["train", "--data", str(small_log_file), "--out", str(model), "--epochs", "3", "--hidden-dims", "32",
                 "--latent-dim", "8", "--heldout-users", "40", "-q", "--no-tracking"]) == 0
    assert main(["sample", "--model", str(model), "--users", "200", "--out", str(out), "--report", str(report),
                 "--item-features", str(movies), "--no-tracking", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "train-on-synthetic/test-on-real" in printed and "popularity sampler" in printed
    numbers = json.loads((report / "report.json").read_text())
    assert set(numbers["logs"]) == {"MultVAE, sampled", "popularity sampler"}
    assert numbers["logs"]["MultVAE, sampled"]["users"] == 200 and "genre_mix_jsd" in numbers["logs"]["popularity sampler"]
    for figure in ("popularity_and_lengths.png", "pmi.png", "memorisation.png", "genres.png"):
        assert (report / figure).stat().st_size > 5000


def test_a_report_without_the_models_data_is_refused_before_anything_is_drawn(tmp_path, small_split, capsys):
    from recvae.models import MultVAE

    MultVAE(epochs=1, hidden_dims=(16,), latent_dim=4).fit(small_split.train, items=small_split.items).save(tmp_path / "m")
    out = tmp_path / "s.parquet"
    assert main(["sample", "--model", str(tmp_path / "m"), "--users", "10", "--out", str(out), "--report",
                 str(tmp_path / "r"), "-q"]) == 2
    assert "does not record the data it was trained on" in capsys.readouterr().err and not out.exists()
    assert main(["sample", "--model", str(tmp_path / "m"), "--users", "10", "--out", str(out), "--item-features",
                 "movies.dat", "-q"]) == 2
    assert "--item-features 'movies.dat': is read by the realism report only: add --report" in capsys.readouterr().err


def test_the_realism_report_refuses_logs_it_cannot_measure_before_writing(tmp_path, small_split):
    """A log over other items failed with an IndexError inside, an empty one after the real log's EASE was fitted,
    and no log at all with a KeyError while drawing."""
    import scipy.sparse as sp

    from recvae.generative.report import realism_report

    train, test, out = small_split.train, small_split.test, tmp_path / "report"
    for logs, words in (({}, "logs must map a name to each synthetic log .* without a log"),
                        ([train], "logs must map a name to each synthetic log .* got list"),
                        ({"narrow": train[:, :10]}, "'narrow' has 10 item columns and .* needs the real log's"),
                        ({"empty": sp.csr_matrix(train.shape)}, "'empty' has .* and 0 interactions"),
                        ({"dense": train[:5].toarray()}, "'dense' must be a scipy.sparse matrix")):
        with pytest.raises(DataError, match=words):
            realism_report(logs, train, test, out)
    with pytest.raises(DataError, match="genres has 3 entries"):
        realism_report({"same": train}, train, test, out, genres=[set()] * 3)
    with pytest.raises(ParameterError, match="l2=0"):
        realism_report({"same": train}, train, test, out, l2=0)
    assert not out.exists()

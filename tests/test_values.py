"""A model fitted with ``binarize=False`` sees the log's values (ratings, counts) in every path: the matrix the
data layer builds, scoring, ``recommend_df``, the streaming export and the CLI; the others count every row as 1."""

import numpy as np
import pandas as pd
import pytest

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.export import export_recommendations
from recvae.models import ALS, Popularity
from recvae.split import strong_generalization_split


@pytest.fixture(scope="module")
def rated():
    log = generate_log(SyntheticLog(n_users=400, n_items=120, n_groups=4, median_activity=15, seed=11))
    log = log[["user", "item"]].drop_duplicates().reset_index(drop=True)
    log["rating"] = np.random.default_rng(0).integers(1, 6, len(log)).astype(np.float32)
    return log


def test_the_data_layer_keeps_the_values(rated):
    data = Interactions.from_frame(preprocess(rated))
    assert sorted(set(data.matrix.data)) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert data.matrix.nnz == len(rated)


def test_popularity_counts_rows_unless_asked_for_the_values(rated):
    data = Interactions.from_frame(preprocess(rated))
    counts = Popularity().fit(data.matrix).item_popularity_.numpy()
    sums = Popularity(binarize=False).fit(data.matrix).item_popularity_.numpy()
    np.testing.assert_array_equal(counts, np.diff(data.matrix.tocsc().indptr))
    np.testing.assert_allclose(sums, np.asarray(data.matrix.sum(axis=0)).ravel())


def test_valued_scoring_is_the_same_in_top_n_recommend_df_and_the_export(rated, tmp_path):
    data = Interactions.from_frame(preprocess(rated))
    split = strong_generalization_split(data, 60, seed=3)
    model = ALS(binarize=False, factors=8, iterations=5, num_threads=1).fit(split.train, items=split.items)
    fold_in = split.test.fold_in
    expected, _ = model.top_n(fold_in, 5)
    rows = fold_in.tocoo()
    history = pd.DataFrame({"user": rows.row, "item": split.items.ids[rows.col], "rating": rows.data})
    frame = model.recommend_df(history, n=5)
    assert np.array_equal(frame["item"].to_numpy().reshape(-1, 5), split.items.ids[expected])
    history.sort_values("user", kind="stable").to_csv(tmp_path / "log.csv", index=False)
    export_recommendations(model, tmp_path / "log.csv", tmp_path / "recs.csv", n=5)
    exported = pd.read_csv(tmp_path / "recs.csv")
    assert np.array_equal(exported["item"].to_numpy().reshape(-1, 5), split.items.ids[expected])
    # the values matter: without them the same model ranks otherwise
    unvalued, _ = model.top_n(fold_in.astype(bool).astype(np.float32), 5)
    assert not np.array_equal(unvalued, expected)

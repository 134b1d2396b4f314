"""Splits with users' side features appended, and the cold-start users' protocol."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.errors import DataError
from recvae.split import strong_generalization_split
from recvae.split.conditioned import cold_start, with_user_features


@pytest.fixture(scope="module")
def split():
    log = generate_log(SyntheticLog(n_users=300, n_items=120, n_groups=4, median_activity=15, seed=5))
    return strong_generalization_split(Interactions.from_frame(preprocess(log)), 40, seed=2)


def _features(split):
    rng = np.random.default_rng(0)
    return sp.csr_matrix(np.eye(3, dtype=np.float32)[rng.integers(0, 3, len(split.users))])


def test_features_are_appended_to_every_part_and_never_to_targets(split):
    features = _features(split)
    conditioned = with_user_features(split, features, ["band=a", "band=b", "band=c"])
    n = split.n_items
    assert conditioned.train.shape == (split.train.shape[0], n + 3)
    np.testing.assert_array_equal(conditioned.train[:, n:].toarray(), features[split.train_users].toarray())
    np.testing.assert_array_equal(conditioned.train[:, :n].toarray(), split.train.toarray())
    for part, plain in ((conditioned.test, split.test), (conditioned.validation, split.validation)):
        np.testing.assert_array_equal(part.fold_in[:, n:].toarray(), features[plain.users].toarray())
        assert part.target[:, n:].nnz == 0 and (part.target[:, :n] != plain.target).nnz == 0
    assert conditioned.items.ids[-1] == "feature:band=c" and len(conditioned.items) == n + 3
    with pytest.raises(DataError, match="names"):
        with_user_features(split, features, ["one"])


@pytest.mark.parametrize("given", [0, 1, 3])
def test_cold_start_gives_that_many_items_and_holds_out_the_rest(split, given):
    features = _features(split)
    conditioned = with_user_features(split, features, ["a", "b", "c"]).test
    cold = cold_start(conditioned, given, seed=1, features=3)
    n = split.n_items
    whole = (split.test.fold_in + split.test.target).tocsr()
    rows = {user: row for row, user in enumerate(split.test.users)}
    assert len(cold) == int((np.diff(whole.indptr) > given).sum())
    for row, user in enumerate(cold.users):
        given_items, target = set(cold.fold_in[row, :n].indices), set(cold.target[row].indices)
        assert len(given_items) == given and target and not given_items & target
        assert given_items | target == set(whole[rows[user]].indices)  # nothing lost, nothing added
        np.testing.assert_array_equal(cold.fold_in[row, n:].toarray(), features[user].toarray())
    assert cold.target[:, n:].nnz == 0
    again = cold_start(conditioned, given, seed=1, features=3)
    assert (again.fold_in != cold.fold_in).nnz == 0
    # held-out users are never training users
    assert not set(cold.users) & set(split.train_users)


def test_a_processs_training_rows_gain_its_users_features_and_the_whole_matrixs_column_statistics(split):
    from recvae.data.shard import UserRows

    features = sp.csr_matrix(np.eye(3, dtype=np.float32)[np.arange(len(split.users)) % 3])
    whole = with_user_features(split, features, ["a", "b", "c"])
    train = split.train.tocsr()
    mine = np.arange(0, train.shape[0], 2)  # one process's share: every other training user
    share = dataclasses.replace(split, train=UserRows(train[mine], mine, train.shape[0], train.nnz,
                                                      np.asarray(train.sum(axis=0)).ravel(),
                                                      np.asarray((train != 0).sum(axis=0), float).ravel()))
    rows = with_user_features(share, features, ["a", "b", "c"]).train
    assert (rows.matrix != whole.train[mine]).nnz == 0 and rows.nnz == whole.train.nnz
    np.testing.assert_allclose(rows.item_sums, np.asarray(whole.train.sum(axis=0)).ravel())
    np.testing.assert_allclose(rows.item_users, np.asarray((whole.train != 0).sum(axis=0)).ravel())


def test_cold_items_over_a_training_matrix_held_in_parts_are_one_process_cold_items(split):
    """Under torchrun each process holds some training users' rows (UserRows): every part draws the same cold
    items as the whole matrix, keeps its own rows masked as the whole's, and the whole's column statistics."""
    from recvae.data.shard import gathered_rows, item_sums, item_users, user_activity
    from recvae.split.conditioned import cold_items

    # an item only the second part's users have must still be a candidate in the first part
    train = split.train.tolil()
    train[: split.train.shape[0] // 2, 0] = 0
    whole = dataclasses.replace(split, train=sp.csr_matrix(train))
    whole.train.eliminate_zeros()
    one = cold_items(whole, 0.2, seed=4)
    assert item_users(whole.train[: whole.train.shape[0] // 2])[0] == 0 < item_users(whole.train)[0]
    halves = np.array_split(np.arange(whole.train.shape[0]), 2)
    matrices = [whole.train[rows] for rows in halves]
    stats = [(item_sums(m), item_users(m), int(m.nnz), user_activity(m)) for m in matrices]
    for rows, matrix in zip(halves, matrices):
        part = cold_items(dataclasses.replace(whole, train=gathered_rows(matrix, rows, whole.train.shape[0], lambda _: stats)),
                          0.2, seed=4)
        np.testing.assert_array_equal(part.items, one.items)
        assert (part.split.train.matrix != one.split.train[rows]).nnz == 0
        np.testing.assert_array_equal(part.split.train.item_sums, item_sums(one.split.train))
        np.testing.assert_array_equal(part.split.train.item_users, item_users(one.split.train))
        assert part.split.train.nnz == one.split.train.nnz
        assert (part.test.target != one.test.target).nnz == 0

import numpy as np
import pandas as pd
import pytest

from recvae.data import Interactions, read_lightgcn
from recvae.errors import DataError
from recvae.split import presplit, random_holdout_split, strong_generalization_split


def pairs(matrix, rows=None):
    coo = matrix.tocoo()
    row_ids = coo.row if rows is None else np.asarray(rows)[coo.row]
    return set(zip(row_ids.tolist(), coo.col.tolist()))


def test_strong_split_users_are_disjoint_and_complete(small_data, small_split):
    s = small_split
    train, val, test = set(s.train_users.tolist()), set(s.validation.users.tolist()), set(s.test.users.tolist())
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train) == small_data.n_users - 300
    assert len(val) <= 150 and len(test) <= 150


def test_strong_split_fold_in_and_target_are_disjoint_and_add_up(small_data, small_split):
    s = small_split
    cols = small_data.items.index_of(s.items.ids)
    full = small_data.matrix[:, cols].tocsr()
    for part in (s.validation, s.test):
        fold_in, target = pairs(part.fold_in), pairs(part.target)
        assert not fold_in & target
        assert fold_in | target == pairs(full[part.users])
        n_total = np.diff(full[part.users].indptr)
        assert np.array_equal(np.diff(part.target.indptr), np.floor(0.2 * n_total + 1e-9).astype(int))


def test_strong_split_drops_items_no_training_user_saw():
    # item "rare" belongs to one user only; whichever part that user lands in, columns follow training users
    frame = pd.DataFrame({"user": np.repeat(np.arange(20), 5), "item": np.tile(np.arange(5), 20)})
    frame.loc[0, "item"] = 99
    data = Interactions.from_frame(frame)
    s = strong_generalization_split(data, 2, seed=3)
    seen_by_training = set(data.items.id_of(np.unique(data.matrix[s.train_users].indices)).tolist())
    assert set(s.items.ids.tolist()) == seen_by_training
    assert s.train.shape[1] == s.test.fold_in.shape[1] == len(s.items)


def test_same_seed_same_split_other_seed_other_split(small_data):
    a = strong_generalization_split(small_data, 100, seed=5)
    b = strong_generalization_split(small_data, 100, seed=5)
    c = strong_generalization_split(small_data, 100, seed=6)
    assert np.array_equal(a.test.users, b.test.users)
    assert (a.test.target != b.test.target).nnz == 0
    assert not np.array_equal(a.test.users, c.test.users)


def test_strong_split_rejects_too_many_heldout_users(small_data):
    with pytest.raises(DataError, match="cannot give"):
        strong_generalization_split(small_data, small_data.n_users // 2)


def test_random_holdout_split(small_data):
    s = random_holdout_split(small_data, seed=2)
    train, val, test = pairs(s.train), pairs(s.validation.target, s.validation.users), pairs(s.test.target, s.test.users)
    assert not (train & test) and not (train & val) and not (val & test)
    assert train | val | test == pairs(small_data.matrix)
    # test users fold in everything but their test items
    assert pairs(s.test.fold_in, s.test.users) == train | val


def test_lightgcn_presplit(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2 3\n1 2 4\n2 0\n")
    (tmp_path / "test.txt").write_text("0 4\n1 0 1\n2\n")
    s = presplit(read_lightgcn(tmp_path / "train.txt"), read_lightgcn(tmp_path / "test.txt"))
    assert s.items.ids.tolist() == [0, 1, 2, 3, 4]
    assert s.test.users.tolist() == [0, 1]
    assert pairs(s.test.target, s.test.users) == {(0, 4), (1, 0), (1, 1)}
    assert pairs(s.test.fold_in, s.test.users) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 4)}
    assert s.validation is None


def test_lightgcn_bad_line(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2\n1 x 4\n")
    with pytest.raises(DataError, match=r"train\.txt: line 2: 'x' is not an integer ID"):
        read_lightgcn(tmp_path / "train.txt")


def test_a_split_prints_its_sizes_not_its_arrays(small_split):
    text = repr(small_split)
    assert text.startswith("Split(") and "training users" in text and "array" not in text
    assert repr(small_split.test) == (f"HeldOut({len(small_split.test)} users, {small_split.test.fold_in.nnz} "
                                      f"fold-in and {small_split.test.target.nnz} target interactions)")

import numpy as np
import pandas as pd

from recvae.data import SyntheticLog, Vocabulary, generate_log


def test_same_spec_same_log_other_seed_other_log():
    spec = SyntheticLog(n_users=300, n_items=100, n_groups=4)
    a, b = generate_log(spec), generate_log(spec)
    pd.testing.assert_frame_equal(a, b)
    c = generate_log(SyntheticLog(n_users=300, n_items=100, n_groups=4, seed=1))
    assert not a[["user", "item"]].equals(c[["user", "item"]])


def test_log_has_realistic_shape():
    log = generate_log(SyntheticLog(n_users=2000, n_items=500, n_groups=5))
    assert not log.duplicated(["user", "item"]).any()
    per_user = log.groupby("user").size()
    assert per_user.min() >= 5 and per_user.max() > 4 * per_user.median()  # log-normal tail
    per_item = log.groupby("item").size().sort_values(ascending=False).to_numpy()
    assert per_item[: len(per_item) // 10].sum() > 0.2 * per_item.sum()  # a popular head, twice a uniform share
    assert set(log["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_vocabulary_json_round_trip_keeps_id_types():
    for ids in (np.array([3, 1, 7]), np.array(["b", "a"], dtype=object)):
        vocab = Vocabulary(ids, "item")
        again = Vocabulary.from_json(vocab.to_json())
        assert again == vocab and again.ids.tolist() == ids.tolist()

"""Each torchrun rank reads only its own users' rows, and the split they cut together is the one process's."""

import threading

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recvae.data import Interactions, Preprocessing, SyntheticLog, generate_log, preprocess
from recvae.data.shard import UserRows, file_chunks, gathered_rows, owners, read_user_shard
from recvae.errors import DataError
from recvae.models import MultDAE
from recvae.split import strong_generalization_split
from recvae.split.sharded import sharded_strong_split


def run_ranks(size: int, work):
    """``work(rank, gather)`` in ``size`` threads whose ``gather`` exchanges values as torchrun's ranks do."""
    barrier, slots, results, errors = threading.Barrier(size), [None] * size, [None] * size, []

    def gather_of(rank):
        def gather(value):
            slots[rank] = value
            barrier.wait()
            out = list(slots)
            barrier.wait()
            return out
        return gather

    def run(rank):
        try:
            results[rank] = work(rank, gather_of(rank))
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return results


def messy_log() -> pd.DataFrame:
    """String IDs, a repeated pair with a later rating, low ratings and rare items: every preprocessing step acts."""
    log = generate_log(SyntheticLog(n_users=500, n_items=150, n_groups=5, median_activity=14, seed=5))
    log["user"] = "u" + log["user"].astype(str)
    repeated = log.iloc[:40].assign(rating=1.0, timestamp=log["timestamp"].iloc[:40] + 1)
    return pd.concat([log, repeated], ignore_index=True).sample(frac=1.0, random_state=0)


def whole_matrix(rows: list[UserRows]) -> sp.csr_matrix:
    """The training matrix the ranks hold between them."""
    order = np.argsort(np.concatenate([r.rows for r in rows]))
    return sp.vstack([r.matrix for r in rows]).tocsr()[order]


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("preprocessing", [Preprocessing(), Preprocessing(min_rating=3.0, min_item_interactions=6)])
def test_ranks_cut_the_split_one_process_cuts(size, preprocessing):
    log = messy_log()
    heldout = 40 if preprocessing == Preprocessing() else None  # None: 10% of the users left by preprocessing
    whole = Interactions.from_frame(preprocess(log, preprocessing))
    one = strong_generalization_split(whole, heldout or round(0.1 * whole.n_users), seed=9)
    text = log.assign(user=log["user"].astype(str), item=log["item"].astype(str))  # as file_chunks reads IDs
    chunks = [text.iloc[start:start + 400] for start in range(0, len(text), 400)]

    def work(rank, gather):
        frame = read_user_shard(iter(chunks), rank, size)
        return frame, sharded_strong_split(frame, preprocessing, heldout, gather, seed=9)

    results = run_ranks(size, work)
    frames, splits = [r[0] for r in results], [r[1] for r in results]
    # every user's rows are in exactly one rank, and each rank holds only its own
    assert sum(len(f) for f in frames) == len(log)
    for rank, frame in enumerate(frames):
        assert len(frame) < len(log) and (owners(frame["user"], size) == rank).all()
    for split in splits:
        assert split.users == one.users and split.items == one.items
        np.testing.assert_array_equal(split.train_users, one.train_users)
        for mine, theirs in ((split.validation, one.validation), (split.test, one.test)):
            np.testing.assert_array_equal(mine.users, theirs.users)
            assert (mine.fold_in != theirs.fold_in).nnz == 0 and (mine.target != theirs.target).nnz == 0
        assert split.train.shape == one.train.shape and split.train.nnz == one.train.nnz
        np.testing.assert_array_equal(split.train.item_users, np.asarray((one.train != 0).sum(axis=0)).ravel())
        np.testing.assert_allclose(split.train.item_sums, np.asarray(one.train.sum(axis=0)).ravel())
        assert split.fingerprint() is None and split.summary() == one.summary()
    assert (whole_matrix([s.train for s in splits]) != one.train).nnz == 0
    assert all(0 < s.train.matrix.shape[0] < one.train.shape[0] for s in splits)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])  # IDs as text, and as an integer column
def test_integer_ids_become_the_integers_one_process_reads(tmp_path, suffix):
    log = generate_log(SyntheticLog(n_users=300, n_items=60, n_groups=4, median_activity=12, seed=2))
    log = log.assign(user=log["user"].str[1:].astype(int) * 3, item=log["item"].str[1:].astype(int) + 7)  # u00012 -> 36
    path = tmp_path / f"log.{suffix}"
    log.to_csv(path, index=False) if suffix == "csv" else log.to_parquet(path, index=False)
    one = strong_generalization_split(Interactions.from_frame(preprocess(log)), 30, seed=1)

    def work(rank, gather):
        # chunks of 500 lines: no rank ever holds the whole file
        frame = read_user_shard(file_chunks(path, {}, chunk_rows=500), rank, 2)
        return sharded_strong_split(frame, Preprocessing(), 30, gather, seed=1)

    splits = run_ranks(2, work)
    assert splits[0].users.kind == "int" and splits[0].users == one.users and splits[0].items == one.items
    assert (whole_matrix([s.train for s in splits]) != one.train).nnz == 0


def test_one_id_written_12_and_12_0_goes_to_one_rank():
    assert owners(pd.Series(["12", "12.0", " 12.00"]), 7).tolist() == [owners(pd.Series([12]), 7)[0]] * 3
    spread = np.bincount(owners(pd.Series(np.arange(3000)), 3), minlength=3)
    assert spread.min() > 900  # a hash, not a block of IDs per rank


def test_sharded_split_refuses_what_the_whole_split_refuses():
    log = messy_log()
    text = log.assign(item=log["item"].astype(str))
    with pytest.raises(DataError, match="cannot give"):
        run_ranks(2, lambda rank, gather: sharded_strong_split(read_user_shard(iter([text]), rank, 2),
                                                               Preprocessing(), 1000, gather))
    with pytest.raises(DataError, match="no interaction left"):
        run_ranks(2, lambda rank, gather: sharded_strong_split(read_user_shard(iter([text]), rank, 2),
                                                               Preprocessing(min_rating=9.0), 10, gather))


def test_a_model_learns_the_whole_popularity_from_a_ranks_rows():
    matrix = sp.random(30, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    matrix.data[:] = 1.0
    halves = run_ranks(2, lambda rank, gather: gathered_rows(matrix[rank::2], np.arange(rank, 30, 2), 30, gather))
    assert halves[0].nnz == matrix.nnz and halves[0].shape == matrix.shape
    np.testing.assert_array_equal(halves[1].item_sums, np.asarray(matrix.sum(axis=0)).ravel())
    with pytest.raises(ValueError, match="increasing"):
        UserRows(matrix[:2], np.array([3, 1]), 30, 0, np.zeros(12), np.zeros(12))
    from recvae.models import Popularity

    np.testing.assert_array_equal(Popularity().fit(halves[0]).item_popularity_.numpy(),
                                  Popularity().fit(matrix).item_popularity_.numpy())
    # a model's training rows in one process may be given as UserRows too: the same fit as the matrix
    whole = MultDAE(epochs=2, batch_size=7, latent_dim=4, hidden_dims=(8,), dropout=0.0, patience=None).fit(matrix)
    one = gathered_rows(matrix, np.arange(30), 30, lambda value: [value])
    shard = MultDAE(epochs=2, batch_size=7, latent_dim=4, hidden_dims=(8,), dropout=0.0, patience=None).fit(one)
    np.testing.assert_array_equal(shard.score(matrix[:5]), whole.score(matrix[:5]))


@pytest.mark.parametrize("late_ids", ["text", "decimal point"])
def test_ids_typed_over_the_whole_file_when_one_chunk_differs(tmp_path, late_ids):
    from recvae.data import read_interactions

    log = generate_log(SyntheticLog(n_users=200, n_items=40, n_groups=4, median_activity=10, seed=4))[["user", "item"]]
    log = log.assign(user=log["user"].str[1:].astype(int).astype(str), item=log["item"].str[1:].astype(int).astype(str))
    tail = log["user"].iloc[-30:]
    log.loc[log.index[-30:], "user"] = ("x" + tail) if late_ids == "text" else (tail + ".0")
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    one = strong_generalization_split(Interactions.from_frame(preprocess(read_interactions(path))), 20, seed=2)

    def work(rank, gather):  # chunks of 300 lines: the late IDs are in the last chunk only
        return sharded_strong_split(read_user_shard(file_chunks(path, {}, chunk_rows=300), rank, 2),
                                    Preprocessing(), 20, gather, seed=2)

    splits = run_ranks(2, work)
    assert one.users.kind == ("str" if late_ids == "text" else "int")
    assert splits[1].users == one.users and splits[0].items == one.items
    assert (whole_matrix([s.train for s in splits]) != one.train).nnz == 0

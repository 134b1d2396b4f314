import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recvae.score.topk import GROUP, top_k_rows, top_n_from_scores, top_n_in_chunks


def assert_same_as_torch(scores: torch.Tensor, k: int) -> None:
    values, items = top_k_rows(scores.clone(), k)
    expected, _ = torch.topk(scores, k, dim=1)
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, items), values)  # each index points at its score
    assert all(len(set(row.tolist())) == k for row in items)  # no item twice in a row


@pytest.mark.parametrize("width", [20_000, 20_000 + GROUP // 2 + 3, 12_800])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_grouped_selection_equals_torch_topk(width, k):
    generator = torch.Generator().manual_seed(width + k)
    scores = torch.randn(64, width, generator=generator)
    scores[:, ::7] = -torch.inf  # masked items, as the history mask leaves them
    assert_same_as_torch(scores, k)
    assert_same_as_torch(scores.round(decimals=1), k)  # many ties
    assert_same_as_torch(scores[:, 5:], k)  # a non-contiguous block, as an allow-list leaves it
    # the best items bunched into a few groups: most candidates of the top groups survive
    scores[:, :k] += 100.0
    assert_same_as_torch(scores, k)


def test_rows_with_too_few_scored_items_pad_with_distinct_masked_items():
    scores = torch.randn(8, 20_000)
    scores[0, 50:] = -torch.inf  # 50 items left for a top 100
    values, items = top_k_rows(scores.clone(), 100)
    assert torch.isfinite(values[0]).sum() == 50 and torch.isinf(values[0, 50:]).all()
    assert len(set(items[0].tolist())) == 100
    assert torch.equal(values[1:], torch.topk(scores[1:], 100, dim=1).values)


def test_nan_scores_do_not_lose_items():
    scores = torch.randn(8, 20_000)
    scores[3, 17] = float("nan")
    values, items = top_k_rows(scores.clone(), 100)
    assert items.shape == (8, 100) and all(len(set(row.tolist())) == 100 for row in items)
    expected, _ = torch.topk(scores, 100, dim=1)  # torch ranks NaN first
    torch.testing.assert_close(values, expected, equal_nan=True, rtol=0, atol=0)
    assert items[3, 0] == 17


@pytest.mark.parametrize("width", [20_000, 300])  # the grouped kernel, and the narrow rows torch.topk would take
def test_ties_keep_the_earlier_item_first(width):
    values, items = top_k_rows(torch.zeros(3, width), 10)
    assert torch.equal(items, torch.arange(10).expand(3, 10)) and not values.any()
    generator = torch.Generator().manual_seed(width)
    scores = torch.randint(-3, 3, (200, width), generator=generator).float() / 2  # every score tied many times
    scores[0, :4] = torch.tensor([-0.0, 0.0, -torch.inf, torch.inf])
    expected = torch.sort(scores, dim=1, descending=True, stable=True)
    values, items = top_k_rows(scores.clone(), 40)
    assert torch.equal(items, expected.indices[:, :40]) and torch.equal(values, expected.values[:, :40])


def _tied_case(users=40, items=500, seed=0):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.integers(0, 6, (users, items)).astype(np.float32))  # heavy ties
    scores[3] = -torch.inf  # a row with nothing to recommend
    history = sp.random(users, items, density=0.2, format="csr", random_state=seed, dtype=np.float32)
    return scores, history


@pytest.mark.parametrize("chunk", [1, 7, 64, 499])
@pytest.mark.parametrize("n", [5, 100])
def test_chunked_top_n_equals_the_unchunked_one_ties_included(chunk, n):
    scores, history = _tied_case()
    allowed = np.arange(3, 500, 3)[::-1]  # unsorted, as a caller may pass it
    for exclude, allow in [(None, None), (history, None), (history, allowed)]:
        expected = top_n_from_scores(scores.clone(), n, exclude, allow)
        chunked = top_n_in_chunks(lambda items: scores[:, items].clone(), 500, chunk, n, exclude, allow)
        assert np.array_equal(chunked[0], expected[0]) and np.array_equal(chunked[1], expected[1])


def test_chunked_top_n_pads_like_the_unchunked_one():
    scores, history = _tied_case(items=30)
    allowed = np.array([2, 9, 29])
    chunked = top_n_in_chunks(lambda items: scores[:, items].clone(), 30, 4, 10, history, allowed)
    assert chunked[0].shape == (40, 3)
    assert np.array_equal(chunked[0], top_n_from_scores(scores.clone(), 10, history, allowed)[0])
    assert (chunked[0][3] == -1).all() and np.isneginf(chunked[1][3]).all()


def test_history_and_allow_list_masks_on_a_wide_catalogue():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(30, 20_000, generator=generator)
    history = sp.random(30, 20_000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    allowed = np.setdiff1d(np.arange(20_000), np.arange(0, 20_000, 10))  # a deny list of every tenth item
    idx, val = top_n_from_scores(scores.clone(), 50, history, allowed)
    for row in range(30):
        assert not set(idx[row]) & (set(history[row].indices) | set(range(0, 20_000, 10)))
    dense = scores.numpy().copy()
    dense[history.toarray() > 0] = -np.inf
    assert np.array_equal(val, -np.sort(-dense[:, allowed], axis=1)[:, :50])
    assert np.array_equal(np.take_along_axis(dense, idx, axis=1), val)

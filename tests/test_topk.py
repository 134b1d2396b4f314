import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recvae.score.topk import GROUP, top_k_rows, top_n_from_scores


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


def test_ties_keep_the_earlier_item_first():
    values, items = top_k_rows(torch.zeros(3, 20_000), 10)
    assert torch.equal(items, torch.arange(10).expand(3, 10)) and not values.any()


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

"""The sampled-softmax likelihood: exact at a full sample, unbiased through its logQ correction, seeded."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recvae.evaluate import evaluate
from recvae.models import MultVAE, Popularity, RecVAE
from recvae.models.nn import NegativeSampler, SparseBatch, negative_log_likelihood, sampled_softmax_nll


def _case(users=5, items=40, hidden=8, seed=3):
    x = sp.random(users, items, density=0.15, format="csr", random_state=seed, dtype=np.float32)
    x.data[:] = 1.0
    torch.manual_seed(seed)
    output = torch.nn.Linear(hidden, items)
    return SparseBatch.from_csr(x, torch.device("cpu")), torch.randn(users, hidden), output


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_a_sample_of_the_whole_catalogue_is_the_full_softmax():
    batch, hidden, output = _case()
    sampler = NegativeSampler(torch.ones(40), 40, _generator())
    sampled = sampled_softmax_nll(hidden, output, batch, *sampler.draw(torch.device("cpu")))
    full = negative_log_likelihood(output(hidden), batch, "multinomial")
    assert torch.allclose(sampled, full, atol=1e-5)


def test_the_batchs_items_are_in_every_users_partition_exactly():
    batch, hidden, output = _case(users=40, items=20, seed=1)  # dense enough that the batch holds every item
    assert torch.unique(batch.indices).numel() == 20
    full = negative_log_likelihood(output(hidden), batch, "multinomial")
    for negatives in (torch.tensor([3, 7]), torch.tensor([], dtype=torch.long)):  # whatever was drawn
        sampled = sampled_softmax_nll(hidden, output, batch, negatives, torch.full((negatives.numel(),), 2.0))
        assert torch.allclose(sampled, full, atol=1e-5)


def _log_partition(hidden, output, batch, negatives, log_expected):
    """The estimated log-partition of every user, read back from the loss."""
    nll = sampled_softmax_nll(hidden, output, batch, negatives, log_expected)
    logits = output(hidden)
    observed = torch.zeros(batch.n_rows).index_add_(0, batch.rows, logits[batch.rows, batch.indices] * batch.values)
    return (nll + observed) / batch.row_sums


def test_the_logq_correction_makes_the_partition_estimate_unbiased():
    batch, hidden, output = _case()
    with torch.no_grad():
        exact = torch.logsumexp(output(hidden), dim=1).exp()
        proposal = torch.linspace(1.0, 20.0, 40)  # far from the logits: only the correction can make it unbiased
        sampler = NegativeSampler(proposal, 10, _generator())
        draws = [sampler.draw(torch.device("cpu")) for _ in range(4000)]
        corrected = torch.stack([_log_partition(hidden, output, batch, n, q).exp() for n, q in draws]).mean(0)
        uncorrected = torch.stack([_log_partition(hidden, output, batch, n, torch.zeros_like(q)).exp()
                                   for n, q in draws]).mean(0)
    assert torch.allclose(corrected, exact, rtol=0.03)
    assert not torch.allclose(uncorrected, exact, rtol=0.3)  # the same draws without the correction are far off


def test_the_sampler_is_deterministic_given_its_seed_and_draws_by_the_proposal():
    proposal = torch.tensor([1.0, 0.0, 3.0, 6.0])
    first, second = NegativeSampler(proposal, 3, _generator(5)), NegativeSampler(proposal, 3, _generator(5))
    draws = [first.draw(torch.device("cpu")) for _ in range(5000)]
    again = [second.draw(torch.device("cpu")) for _ in range(5000)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(draws, again))
    counts = torch.zeros(4)
    for items, log_weights in draws:  # the weight is count / (S q): read each draw's counts back from it
        drawn = torch.exp(log_weights) * 3 * proposal[items] / 10
        assert torch.allclose(drawn, drawn.round(), atol=1e-4) and drawn.sum().round() == 3
        counts[items] += drawn.round()
    assert torch.allclose(counts / counts.sum(), proposal / 10, atol=0.01)


@pytest.mark.parametrize("model_class", [MultVAE, RecVAE])
def test_sampled_training_is_seeded_and_beats_popularity(small_split, model_class):
    params = dict(epochs=8, batch_size=100, negatives=60) if model_class is MultVAE else dict(epochs=4, batch_size=100, negatives=60)
    first = model_class(**params).fit(small_split.train, small_split.validation)
    second = model_class(**params).fit(small_split.train, small_split.validation)
    assert np.array_equal(first.score(small_split.test.fold_in), second.score(small_split.test.fold_in))
    full = model_class(**{**params, "negatives": 0}).fit(small_split.train, small_split.validation)
    assert first.history_[0]["loss"] != full.history_[0]["loss"]  # the sampled loss is the one trained on
    sampled = evaluate(first, small_split.test).mean("ndcg@100")
    popularity = evaluate(Popularity().fit(small_split.train), small_split.test).mean("ndcg@100")
    assert sampled > popularity + 0.1


def test_negatives_need_the_multinomial_likelihood():
    with pytest.raises(ValueError, match="needs likelihood multinomial"):
        MultVAE(negatives=100, likelihood="gaussian")
    with pytest.raises(ValueError, match="negatives=-1: must be at least 0"):
        RecVAE(negatives=-1)
    with pytest.raises(ValueError, match="negative_proposal"):
        MultVAE(negatives=10, negative_proposal="zipf")

"""The gated activation (Kim & Suh 2019's gating): each layer it follows puts out values and gates, and the
activation multiplies the values by the gates' sigmoids."""

import numpy as np
import pytest
import torch

from recvae.models import CVAE, MultDAE, MultVAE
from recvae.models.nn import AutoEncoder, HierarchicalAutoEncoder, SparseBatch


def test_a_gated_layer_is_its_values_times_the_sigmoid_of_its_gates(tiny_log):
    module = AutoEncoder(tiny_log.shape[1], (6,), 3, True, "gated")
    module.reset_parameters(torch.Generator().manual_seed(0))
    assert module.input_weight.shape == (tiny_log.shape[1], 12)  # values and gates of 6 units
    assert module.encoder[0].weight.shape == (6, 6)  # reads 6 units, puts out mean and log-variance of 3
    assert module.decoder[0].weight.shape == (12, 3) and module.decoder[1].weight.shape == (tiny_log.shape[1], 6)
    rows = tiny_log[:4]
    with torch.no_grad():
        mean, logvar = module.encode(SparseBatch.from_csr(rows, torch.device("cpu")),
                                     torch.from_numpy(rows.data.astype("float32")))
        first = torch.from_numpy(rows.toarray().astype("float32")) @ module.input_weight + module.input_bias
        hidden = first[:, :6] * torch.sigmoid(first[:, 6:])
        direct = module.encoder[0](hidden)
        torch.testing.assert_close(mean, direct[:, :3])
        torch.testing.assert_close(logvar, direct[:, 3:])
        out = module.decoder[0](mean)
        torch.testing.assert_close(module.decode(mean), module.decoder[1](out[:, :6] * torch.sigmoid(out[:, 6:])))


def test_the_hierarchical_levels_are_gated_too():
    module = HierarchicalAutoEncoder(20, (8,), 3, "gated")
    assert module.top_to_bottom.weight.shape == (16, 3) and module.bottom_head.weight.shape == (6, 16)
    assert [layer.weight.shape for layer in module.conditional_prior_layers] == [(16, 3), (6, 8)]


@pytest.mark.parametrize("model", [
    MultVAE(epochs=2, batch_size=50, hidden_dims=(16,), latent_dim=4, activation="gated"),
    MultVAE(epochs=2, batch_size=50, hidden_dims=(), latent_dim=4, activation="gated"),  # nothing to gate
    MultDAE(epochs=2, batch_size=50, latent_dim=4, activation="gated"),  # the code itself is gated
    CVAE(epochs=2, batch_size=50, hidden_dims=(16,), latent_dim=4, conditions=2, activation="gated"),
], ids=["MultVAE", "MultVAE-no-hidden", "MultDAE", "CVAE"])
def test_gated_models_fit_score_and_round_trip(model, tiny_log, tmp_path):
    model.fit(tiny_log)
    scores = model.score(tiny_log[:5])
    items = tiny_log.shape[1] - getattr(model.config, "conditions", 0)  # a CVAE's last columns are its features
    assert np.isfinite(scores[:, :items]).all()
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(type(model).load(tmp_path / "m").score(tiny_log[:5]), scores)

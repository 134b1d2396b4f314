"""Auto-β: the procedure Liang et al. (2018, §2.2.2) describe for choosing the KL weight, which
their public code does not implement.

1. Train once with β annealed linearly from 0 to 1 over the whole run, validating every epoch.
2. Take the β of the epoch with the best validation score.
3. Train again with the same anneal rate, stopping β at that value (the paper's β cap), and keep
   that model's best epoch as usual.

The curve of validation score against β is what the choice rests on: it is returned, plotted
(``recvae.track.plots.auto_beta_figure``) and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import scipy.sparse as sp

from recvae.data.vocab import Vocabulary
from recvae.errors import DataError
from recvae.models.multvae import MultVAE, MultVAEConfig
from recvae.models.training import EpochCallback, Trainer
from recvae.models.training.validation import Scorer

log = logging.getLogger(__name__)


def warn_if_peak_at_edge(peak: dict, curve: list[dict], metric: str) -> bool:
    """A peak at the anneal's last epoch may not be a peak (the curve was still rising at β ≈ 1); one at the
    first says only that the smallest β tried was best. Either way the choice rests on the range's edge."""
    if len(curve) < 2 or peak["epoch"] not in (curve[0]["epoch"], curve[-1]["epoch"]):
        return False
    if peak["epoch"] == curve[-1]["epoch"]:
        advice = ("the best β may lie above it: try beta_schedule constant with a larger beta_cap, "
                  "or more epochs for a finer anneal")
    else:
        advice = "more epochs anneal more slowly and try smaller β values first"
    log.warning("auto-β: validation %s peaks at the %s epoch of the anneal (epoch %d of %d, β %.3g, %s %.4f); %s",
                metric, "last" if peak["epoch"] == curve[-1]["epoch"] else "first", peak["epoch"], len(curve),
                peak["beta"], metric, peak[metric], advice)
    return True


@dataclass
class AutoBetaResult:
    beta: float  # β at the anneal run's validation peak: the cap of the final model
    peak_epoch: int
    total_anneal_steps: int  # the anneal run's: β reached 1 at its last update
    metric: str
    curve: list[dict]  # per epoch of the anneal run: epoch, beta, the validation metric
    model: MultVAE  # retrained with beta_cap = beta

    def to_json(self) -> dict:
        return {"beta": self.beta, "peak_epoch": self.peak_epoch, "total_anneal_steps": self.total_anneal_steps,
                "metric": self.metric, "curve": self.curve}


def auto_beta(
    config: MultVAEConfig,
    train: sp.csr_matrix,
    validation: Scorer,
    items: Vocabulary | None = None,
    *,
    callbacks: tuple[EpochCallback, ...] = (),
    progress: bool | None = None,
) -> AutoBetaResult:
    """Choose Mult-VAE's β cap by ``validation`` (a scorer, see ``recvae.train.validation_scorer``)
    and return the curve and the retrained model.

    The anneal run trains all ``config.epochs`` epochs (no early stopping: the curve must reach
    β = 1); ``config``'s schedule and cap are replaced, everything else is kept. ``callbacks``
    see the final model's epochs; the anneal run is in the returned curve.
    """
    if validation is None:
        raise DataError("auto-β needs validation users to score each β on")
    n_users = train.shape[0]
    if n_users == 0:
        raise DataError("user_items has no users to train on")
    steps = config.epochs * math.ceil(n_users / config.batch_size)
    anneal = dataclasses.replace(config, beta_schedule="linear", beta_cap=1.0, total_anneal_steps=steps, anneal_epochs=None,
                                 patience=None)
    probe = MultVAE(anneal).fit(train, validation, items, trainer=Trainer(progress=progress))
    key = f"val_{config.validation_metric}"
    curve = [{"epoch": r["epoch"], "beta": r["beta"], config.validation_metric: r[key]} for r in probe.history_]
    peak = max(curve, key=lambda r: r[config.validation_metric])
    log.info("auto-β: validation %s peaks at %.4f with β %.3g (epoch %d of %d)", config.validation_metric,
             peak[config.validation_metric], peak["beta"], peak["epoch"], len(curve))
    warn_if_peak_at_edge(peak, curve, config.validation_metric)
    final = dataclasses.replace(config, beta_schedule="linear", beta_cap=peak["beta"], total_anneal_steps=steps,
                                anneal_epochs=None)
    model = MultVAE(final).fit(train, validation, items, trainer=Trainer(callbacks=callbacks, progress=progress))
    return AutoBetaResult(beta=peak["beta"], peak_epoch=peak["epoch"], total_anneal_steps=steps,
                          metric=config.validation_metric, curve=curve, model=model)

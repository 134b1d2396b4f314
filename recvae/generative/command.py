"""What ``recvae sample --report`` does: set a written synthetic log against the real training log of the model
that drew it (rebuilt from the data and split the model records), beside a popularity sampler's log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recvae.data.interactions import Interactions
from recvae.data.readers import read_interactions
from recvae.data.side import item_genres, read_side_table
from recvae.errors import DataError, settle_kinds
from recvae.export.embed import SampleSpec, sample_log
from recvae.generative.realism import popularity_sampler
from recvae.generative.report import realism_report
from recvae.io import check_writable
from recvae.pipeline import DataSpec, SplitSpec, saved_model_split
from recvae.split import Split
from recvae.track.tracking import TrackingConfig, start_tracking


@dataclass(frozen=True)
class RealismSpec:
    """``synthetic``: a log drawn from the saved ``model`` (``recvae sample``); ``item_features``: a table
    with a genres column for the genre mix; ``l2``: EASE's for train-on-synthetic / test-on-real."""

    model: str
    synthetic: str
    out: str
    item_features: str | None = None
    l2: float = 500.0
    seed: int = 0
    tracking: TrackingConfig = TrackingConfig()

    def __post_init__(self):
        settle_kinds(self)


def recorded_split(model, where) -> Split:
    """The split a model trained by ``recvae train`` records, rebuilt from its data and checked against the model
    (a CVAE's users' features set aside: the split's items are the catalogue); refused, saying why, for a model
    that records none, or one whose data changed since."""
    meta = model.metadata_
    if "data" not in meta or "split" not in meta:
        raise DataError(f"{where}: the model does not record the data it was trained on (trained from Python, not by "
                        "'recvae train'), so there is no real log to compare with")
    try:
        split, *_ = saved_model_split(model, where, DataSpec.from_json(meta["data"]), SplitSpec(**meta["split"]))
    except ValueError as exc:
        raise DataError(f"{where}: {exc} (the data it records changed since)") from None
    return split


def sample_with_report(sample: SampleSpec, spec: RealismSpec) -> tuple[int, dict]:
    """``recvae sample --report``: the log drawn and written, then measured; the report's folder and the split the
    model records and the items' table are checked before anything is drawn.
    (interactions, numbers)"""
    from recvae.models import Recommender

    check_writable(Path(spec.out) / "report.json", "the report")
    model = Recommender.load(spec.model)
    split = recorded_split(model, spec.model)
    genres = item_genres(read_side_table(spec.item_features), split.items) if spec.item_features else None
    return sample_log(sample, model), write_realism_report(spec, model, split, genres)


def write_realism_report(spec: RealismSpec, model, split: Split, genres) -> dict:
    """The report's numbers for ``model`` (the one at ``spec.model``), its recorded ``split`` and the genres of
    its items (``recvae.data.side.item_genres``; None: no genre mix); its files are under ``spec.out``, and in the
    model's MLflow run when tracking is on."""
    frame = read_interactions(spec.synthetic)
    unknown = ~frame["item"].isin(split.items.ids)
    if unknown.any():
        raise DataError(f"{spec.synthetic}: {int(unknown.sum())} rows name items the model does not know "
                        f"(e.g. {frame['item'][unknown].iloc[0]!r}); was it drawn from this model?")
    synthetic = Interactions.from_frame(frame[["user", "item"]], items=split.items).matrix
    logs = {f"{model.name}, sampled": synthetic,
            "popularity sampler": popularity_sampler(split.train, synthetic.shape[0], spec.seed)}
    numbers = realism_report(logs, split.train, split.test, spec.out, genres, spec.l2,
                             title=f"{model.name}: {Path(spec.synthetic).name} against the real training log")
    with start_tracking(spec.tracking, f"realism-{model.name}", run_id=model.metadata_.get("mlflow_run_id")) as tracker:
        # tags, not params: the model's run may hold reports of several logs, and a param cannot change
        tracker.set_tags({"realism.synthetic": spec.synthetic, "realism.l2": spec.l2})
        tracker.log_metrics({k: v for k, v in numbers["logs"][f"{model.name}, sampled"].items()
                             if isinstance(v, (int, float))}, prefix="realism.")
        tracker.log_artifact(Path(spec.out), "realism_report")
    return numbers

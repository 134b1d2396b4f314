"""What ``recvae latent-report`` does: read a log and its side tables, place its users in a saved model's
latent space, write the report, and log it to the model's own MLflow run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recvae.data.interactions import Interactions
from recvae.data.readers import read_interactions, typed_ids
from recvae.data.side import read_side_table
from recvae.errors import DataError, at_least, settle_kinds
from recvae.export.command import check_min_rating, min_rating_for
from recvae.io import check_writable
from recvae.latent.report import SideData, latent_report
from recvae.models.latent import require_latent_space
from recvae.score.recommend import UserSide
from recvae.track.tracking import TrackingConfig, start_tracking


@dataclass(frozen=True)
class LatentReportSpec:
    """``user_features`` / ``item_features``: side tables (``recvae.data.side.read_side_table``: MovieLens'
    users.dat and movies.dat as published). ``max_users``: users placed, drawn at random beyond it."""

    model: str
    data: str
    out: str
    user_features: str | None = None
    item_features: str | None = None
    max_users: int = 20_000
    umap: bool = False  # a UMAP map beside the PCA one (umap-learn: pip install 'recvae[latent]')
    min_rating: float | str | None = None
    reader: dict = field(default_factory=dict)
    tracking: TrackingConfig = TrackingConfig()

    def __post_init__(self):
        settle_kinds(self)
        at_least(1, max_users=self.max_users)
        check_min_rating(self.min_rating)


def write_latent_report(spec: LatentReportSpec) -> dict:
    """The report's numbers; its files are under ``spec.out``, and in the model's MLflow run when tracking is on."""
    from recvae.models import Recommender

    check_writable(Path(spec.out) / "report.json", "the report")
    model = Recommender.load(spec.model)
    require_latent_space(model)  # before the log is read
    # a CVAE reads the same table as its users' side features; for any other model it only describes them
    user_side = UserSide.for_model(model, spec.user_features) if getattr(model.config, "conditions", 0) else None
    side = SideData(read_side_table(spec.user_features) if spec.user_features else None,
                    read_side_table(spec.item_features) if spec.item_features else None)
    frame = read_interactions(spec.data, **spec.reader)
    threshold = min_rating_for(model, spec.min_rating)
    if threshold is not None and "rating" in frame:
        frame = frame[frame["rating"] >= threshold]
    # typed as the model's IDs: a CVAE's are text (its feature columns share the vocabulary), a log's read as numbers
    frame = frame.assign(item=typed_ids(frame["item"], model.items_.kind))
    frame = frame[frame["item"].isin(model.items_.ids)]
    if frame.empty:
        raise DataError(f"{spec.data}: none of its items is one the model knows")
    data = Interactions.from_frame(frame[["user", "item"] + (["rating"] if "rating" in frame else [])], items=model.items_)
    matrix = data.matrix if user_side is None else user_side.beside(data.matrix, data.users.ids)
    title = f"{model.name}: {Path(spec.data).name}"
    numbers = latent_report(model, matrix, data.users, spec.out, side, title=title, max_users=spec.max_users,
                            umap=spec.umap)
    with start_tracking(spec.tracking, f"latent-report-{model.name}", run_id=model.metadata_.get("mlflow_run_id")) as tracker:
        tracker.log_artifact(Path(spec.out), "latent_report")
    return numbers

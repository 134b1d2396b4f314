"""recvae models as MLflow pyfunc models: ``predict`` takes (user, item) histories and returns
the top-N per user in original IDs, exactly as ``Recommender.recommend_df``."""

from __future__ import annotations

import mlflow.pyfunc


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps a saved recvae model directory (the artifact ``recvae_model``)."""

    def load_context(self, context) -> None:
        from recvae.models import Recommender

        self.model = Recommender.load(context.artifacts["recvae_model"])

    def predict(self, context, model_input, params=None):
        params = params or {}
        return self.model.recommend_df(
            model_input[["user", "item"]], n=int(params.get("n", 10)), include_seen=bool(params.get("include_seen", False))
        )

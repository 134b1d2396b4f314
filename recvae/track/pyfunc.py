"""recvae models as MLflow pyfunc models: ``predict`` takes (user, item) histories and returns
the top-N per user in original IDs, exactly as ``Recommender.recommend_df``.

Logged as MLflow "models from code": MLflow stores this file and runs it on load, so
nothing is pickled and the weights stay in recvae's safetensors directory."""

import mlflow.models
import pandas as pd
import mlflow.pyfunc


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps a saved recvae model directory (the artifact ``recvae_model``)."""

    def load_context(self, context) -> None:
        from recvae.models import Recommender

        self.model = Recommender.load(context.artifacts["recvae_model"])

    # No `from __future__ import annotations` here: MLflow reads this hint as a live type.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        return self.model.recommend_df(
            model_input[["user", "item"]], n=int(params.get("n", 10)), include_seen=bool(params.get("include_seen", False))
        )


mlflow.models.set_model(RecommenderPyfunc())

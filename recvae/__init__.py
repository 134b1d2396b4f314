"""recvae: variational autoencoders for collaborative filtering."""

__version__ = "0.1.0"

from recvae.data import Interactions, Preprocessing, Vocabulary, generate_log, preprocess, read_interactions  # noqa: E402
from recvae.errors import DataError, ModelFileError, NotFittedError  # noqa: E402
from recvae.evaluate import evaluate  # noqa: E402
from recvae.models import MultDAE, MultDAEConfig, MultVAE, MultVAEConfig, Popularity, Recommender  # noqa: E402
from recvae.split import presplit, random_holdout_split, read_lightgcn, strong_generalization_split  # noqa: E402

__all__ = [
    "DataError", "Interactions", "ModelFileError", "MultDAE", "MultDAEConfig", "MultVAE", "MultVAEConfig",
    "NotFittedError", "Popularity", "Preprocessing", "Recommender", "Vocabulary", "__version__", "evaluate",
    "generate_log", "preprocess", "presplit", "random_holdout_split", "read_interactions", "read_lightgcn",
    "strong_generalization_split",
]

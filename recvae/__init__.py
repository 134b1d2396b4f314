"""recvae: variational autoencoders for collaborative filtering."""

from recvae.defaults import VERSION as __version__

from recvae.data import Interactions, Preprocessing, Vocabulary, generate_log, preprocess, read_interactions, read_lightgcn  # noqa: E402
from recvae.errors import DataError, ModelFileError, NotFittedError  # noqa: E402
from recvae.evaluate import evaluate  # noqa: E402
from recvae.models import MultDAE, MultDAEConfig, MultVAE, MultVAEConfig, Popularity, Recommender  # noqa: E402
from recvae.split import presplit, random_holdout_split, strong_generalization_split  # noqa: E402

__all__ = [
    "DataError", "Interactions", "ModelFileError", "MultDAE", "MultDAEConfig", "MultVAE", "MultVAEConfig",
    "NotFittedError", "Popularity", "Preprocessing", "Recommender", "Vocabulary", "__version__", "evaluate",
    "generate_log", "preprocess", "presplit", "random_holdout_split", "read_interactions", "read_lightgcn",
    "strong_generalization_split",
]

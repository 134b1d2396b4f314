"""Read interaction logs and turn them into matrices with ID vocabularies."""

from recvae.data.interactions import Interactions, Preprocessing, preprocess
from recvae.data.readers import read_interactions, read_lightgcn
from recvae.data.synthetic import SyntheticLog, generate_log
from recvae.data.vocab import Vocabulary

__all__ = ["Interactions", "Preprocessing", "SyntheticLog", "Vocabulary", "generate_log", "preprocess", "read_interactions", "read_lightgcn"]

"""Turn a block of scores into top-N lists."""

from recvae.score.topk import top_n_from_scores

__all__ = ["top_n_from_scores"]

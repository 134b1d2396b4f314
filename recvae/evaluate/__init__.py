"""Score held-out users and measure the rankings."""

from recvae.evaluate.evaluation import DEFAULT_METRICS, EvaluationResult, evaluate, evaluate_curves
from recvae.evaluate.metrics import ndcg_at_k, recall_at_k

__all__ = ["DEFAULT_METRICS", "EvaluationResult", "evaluate", "evaluate_curves", "ndcg_at_k", "recall_at_k"]

"""Score held-out users and measure the rankings."""

from recvae.evaluate.evaluation import DEFAULT_METRICS, PRESPLIT_METRICS, EvaluationResult, default_metrics, evaluate, evaluate_curves
from recvae.evaluate.examples import example_users, format_examples
from recvae.score.metrics import ndcg_at_k, recall_at_k, recall_full_at_k

__all__ = [
    "DEFAULT_METRICS", "PRESPLIT_METRICS", "EvaluationResult", "default_metrics", "evaluate", "evaluate_curves",
    "example_users", "format_examples",
    "ndcg_at_k", "recall_at_k", "recall_full_at_k",
]

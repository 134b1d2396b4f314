"""Score held-out users and measure the rankings."""

from recvae.evaluate.baselines import ScoredRanking, content_similarity, random_ranking
from recvae.evaluate.evaluation import DEFAULT_METRICS, PRESPLIT_METRICS, COLD_ITEM_METRICS, EvaluationResult, cold_item_baselines, default_metrics, evaluate, evaluate_cold_items, evaluate_curves
from recvae.evaluate.examples import example_users, format_examples
from recvae.score.metrics import ndcg_at_k, recall_at_k, recall_full_at_k

__all__ = [
    "DEFAULT_METRICS", "PRESPLIT_METRICS", "COLD_ITEM_METRICS", "EvaluationResult", "default_metrics", "evaluate",
    "cold_item_baselines", "evaluate_cold_items", "evaluate_curves",
    "example_users", "format_examples", "ScoredRanking", "content_similarity", "random_ranking",
    "ndcg_at_k", "recall_at_k", "recall_full_at_k",
]

"""Top-N recommendations for many users, in original IDs, streamed to Parquet or CSV."""

from recvae.export.export import export_recommendations
from recvae.score.recommend import ExportStats

__all__ = ["ExportStats", "export_recommendations"]

"""Values that several stages must agree on, written once."""

VERSION = "0.1.0"
SEED = 98765  # the default seed of splits and of every model's initialisation and sampling
# The metrics each protocol is reported with unless others are asked for. Pre-split files come from the
# LightGCN line of papers: scored by that protocol's own Recall definition, they compare with the published figures.
DEFAULT_METRICS = ("recall@20", "recall@50", "ndcg@100")
PRESPLIT_METRICS = ("recall_full@20", "ndcg@20")

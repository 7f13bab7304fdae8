"""Evaluation: exact blocked kNN (``retrieval.evaluation.knn``), retrieval metrics over the full ranking,
the Revisited Oxford/Paris protocol and the papers' evaluation protocols."""
from retrieval.evaluation.metrics import per_query_metrics, recall_at_k, retrieval_metrics
from retrieval.evaluation.protocols import PROTOCOLS
from retrieval.evaluation.revisited import evaluate_revisited

__all__ = ["PROTOCOLS", "evaluate_revisited", "per_query_metrics", "recall_at_k", "retrieval_metrics"]

"""Evaluation: exact blocked kNN, retrieval metrics over the full ranking, the Revisited Oxford/Paris protocol,
the papers' evaluation protocols, and qualitative figures of the retrievals.

Features are (N, D) float rows (L2-normalised here if they are not), labels (N,) integers; metrics are
fractions in [0, 1] (Recall@K, mAP, MAP@R, R-precision; mAP and mP@k for the revisited protocol).
"""
from retrieval.evaluation.knn import Neighbours, knn
from retrieval.evaluation.metrics import per_query_metrics, recall_at_k, retrieval_metrics
from retrieval.evaluation.protocols import PROTOCOLS, faces, leave_one_out, query_gallery, revisited, vehicleid
from retrieval.evaluation.qualitative import Retrievals, choose_queries, rank_split
from retrieval.evaluation.revisited import evaluate_revisited

__all__ = ["Neighbours", "PROTOCOLS", "Retrievals", "choose_queries", "evaluate_revisited", "faces", "knn",
           "leave_one_out", "per_query_metrics", "query_gallery", "rank_split", "recall_at_k", "retrieval_metrics",
           "revisited", "vehicleid"]

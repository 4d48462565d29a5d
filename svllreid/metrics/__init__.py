"""Retrieval metrics of re-identification from features and labels: CMC, mAP, mINP, re-ranking, spread."""

from svllreid.metrics.ranking import RankingResult, Reranker, evaluate
from svllreid.metrics.rerank import KReciprocal

__all__ = ["KReciprocal", "RankingResult", "Reranker", "evaluate"]

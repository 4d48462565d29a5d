"""Evaluation: retrieval metrics (CMC, mAP, mINP) of re-identification, from features."""

from svllreid.eval.ranking import RankingResult, Reranker, evaluate
from svllreid.eval.rerank import KReciprocal

__all__ = ["KReciprocal", "RankingResult", "Reranker", "evaluate"]

"""Evaluation: retrieval metrics (CMC, mAP, mINP) of re-identification."""

from svllreid.eval.ranking import RankingResult, evaluate

__all__ = ["RankingResult", "evaluate"]

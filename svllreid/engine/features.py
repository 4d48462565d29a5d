"""Deprecated: moved to svllreid.inference.features and svllreid.evaluation.model_eval (see svllreid._moved)."""

from svllreid._moved import merge

merge(__name__, "svllreid.inference.features", "svllreid.evaluation.model_eval")

"""Deprecated: moved to svllreid.training.options and svllreid.evaluation.options (see svllreid._moved)."""

from svllreid._moved import merge

merge(__name__, "svllreid.training.options", "svllreid.evaluation.options")

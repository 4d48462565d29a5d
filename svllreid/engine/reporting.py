"""Deprecated: moved to svllreid.evaluation.reporting (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.evaluation.reporting")

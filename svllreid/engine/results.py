"""Deprecated: moved to svllreid.evaluation.results (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.evaluation.results")

"""Deprecated: moved to svllreid.metrics.ranking_plan (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.metrics.ranking_plan")

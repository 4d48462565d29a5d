"""Deprecated: moved to svllreid.metrics.rerank (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.metrics.rerank")

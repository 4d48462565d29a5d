"""Deprecated: moved to svllreid.metrics.spread (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.metrics.spread")

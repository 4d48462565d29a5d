"""Deprecated: moved to svllreid.metrics.summary (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.metrics.summary")

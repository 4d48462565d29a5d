"""Deprecated: moved to svllreid.metrics.feature_file (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.metrics.feature_file")

"""Deprecated: moved to svllreid.metrics (see svllreid._moved)."""

from svllreid._moved import merge

merge(__name__, "svllreid.metrics")

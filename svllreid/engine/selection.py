"""Deprecated: moved to svllreid.evaluation.selection (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.evaluation.selection")

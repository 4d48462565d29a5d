"""Deprecated: moved to svllreid.training.trainer (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.training.trainer")

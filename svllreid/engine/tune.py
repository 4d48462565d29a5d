"""Deprecated: moved to svllreid.training.tune (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.training.tune")

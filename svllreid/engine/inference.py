"""Deprecated: moved to svllreid.inference.trained (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.inference.trained")
